# SPDX-License-Identifier: Apache-2.0
"""Run a trained Minitaur policy without training (deterministic actions by default).

``sac-robot launch minitaur_eval.launch.py checkpoint:=runs/minitaur_train/checkpoint``
"""

from sac_robot.bringup.training_graph import training_graph
from sac_robot.bringup.ros_launch import launch_description

GRAPH = training_graph('minitaur', train=False)


def generate_launch_description():
    """Return the launch description for ``ros2 launch``."""
    return launch_description(GRAPH)
