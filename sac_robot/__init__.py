# SPDX-License-Identifier: Apache-2.0
"""sac_robot: maximum-entropy reinforcement learning for real robots over ROS 2.

The core (``sac_robot.algorithms``, ``sac_robot.robots``, ``sac_robot.tasks``,
``sac_robot.backends``, rewards and safety) is plain Python on numpy, torch and MuJoCo and never
imports rclpy; MuJoCo is imported only when a simulation is made, so a process that drives real
hardware never loads it. The ROS 2 adapters live in ``sac_robot.nodes`` and the bringup (launch
descriptions, the launcher) in ``sac_robot.bringup``.
"""

import os as _os
import sys as _sys

__version__ = '0.1.0'


def _find_generated_interfaces():
    """Let a source checkout import what only the installed package holds.

    The generated interfaces (``sac_robot.msg``, ``sac_robot.srv`` and their type-support
    libraries) are built into the installed package (the venv's site-packages, or a colcon
    install), not the source tree. A script run from the repository root imports this
    ``sac_robot/`` first (the working directory leads ``sys.path``): so its modules are
    looked for in the installed package too, after these sources.
    """
    here = _os.path.dirname(_os.path.abspath(__file__))
    if _os.path.isdir(_os.path.join(here, 'msg')):
        return  # this is the installed package (or one built in place)
    for entry in _sys.path:
        candidate = _os.path.join(_os.path.abspath(entry or _os.curdir), 'sac_robot')
        if (_os.path.isdir(_os.path.join(candidate, 'msg'))
                and _os.path.realpath(candidate) != _os.path.realpath(here)):
            __path__.append(candidate)
            return


_find_generated_interfaces()

# Register the gymnasium environments (sac_robot/...) on import of the package.
from sac_robot import tasks as _tasks  # noqa: E402, F401 (after the path is complete)
