# SPDX-License-Identifier: Apache-2.0
"""sac_robot: maximum-entropy reinforcement learning for real robots over ROS 2.

The core (``sac_robot.algorithms``, ``sac_robot.robots``, ``sac_robot.tasks``, rewards and
safety) is plain Python on numpy, torch and MuJoCo and never imports rclpy; the ROS 2 adapters
live in ``sac_robot.nodes`` and the bringup (launch descriptions, the launcher) in
``sac_robot.bringup``.
"""

__version__ = '0.1.0'

# MuJoCo reads MUJOCO_GL once, when first imported: choose an offscreen backend (EGL, then
# OSMesa) now, before anything of ours imports it, unless the user chose one.
from sac_robot.robots.rendering import RenderingError as _Unavailable  # noqa: E402
from sac_robot.robots.rendering import configure_gl as _configure_gl  # noqa: E402

try:
    _configure_gl()
except _Unavailable:  # rendering then raises a clear error when it is asked for
    pass

# Register the gymnasium environments (sac_robot/...) on import of the package.
from sac_robot import tasks as _tasks  # noqa: E402, F401
