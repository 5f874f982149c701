# SPDX-License-Identifier: Apache-2.0
"""Run a trained D'Claw policy without training (deterministic actions by default).

``sac-robot launch dclaw_eval.launch.py checkpoint:=runs/dclaw_train/checkpoint``
"""

from sac_robot.bringup.training_graph import training_graph
from sac_robot.bringup.ros_launch import launch_description

GRAPH = training_graph('dclaw', train=False)


def generate_launch_description():
    """Return the launch description for ``ros2 launch``."""
    return launch_description(GRAPH)
