# SPDX-License-Identifier: Apache-2.0
"""Train the D'Claw to turn the valve with SAC (or SQL) over ROS 2 topics (SAC paper Section 7.3).

``ros2 launch sac_robot dclaw_train.launch.py`` or, without ROS 2's launch tooling,
``sac-robot launch dclaw_train.launch.py``, with the same ``name:=value`` arguments
(``--show-args`` lists them).
"""

from sac_robot.bringup.training_graph import training_graph
from sac_robot.bringup.ros_launch import launch_description

GRAPH = training_graph('dclaw', train=True)


def generate_launch_description():
    """Return the launch description for ``ros2 launch``."""
    return launch_description(GRAPH)
