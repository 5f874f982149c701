# SPDX-License-Identifier: Apache-2.0
"""sac_robot: maximum-entropy reinforcement learning for real robots over ROS 2.

The core (``sac_robot.algorithms``, ``sac_robot.robots``, ``sac_robot.tasks``,
``sac_robot.backends``, rewards and safety) is plain Python on numpy, torch and MuJoCo and never
imports rclpy; MuJoCo is imported only when a simulation is made, so a process that drives real
hardware never loads it. The ROS 2 adapters live in ``sac_robot.nodes`` and the bringup (launch
descriptions, the launcher) in ``sac_robot.bringup``.
"""

__version__ = '0.1.0'

# Register the gymnasium environments (sac_robot/...) on import of the package.
from sac_robot import tasks as _tasks  # noqa: F401
