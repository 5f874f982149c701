# SPDX-License-Identifier: Apache-2.0
"""Attach a live status line to a running training graph.

``ros2 launch sac_robot status.launch.py [robot:=dclaw]``, or without ROS 2's launch tooling
``sac-robot launch status.launch.py [robot:=dclaw]``.
"""

from sac_robot.bringup.graph import Argument, Graph, NodeSpec, SIM_ENVIRONMENT, config_file
from sac_robot.bringup.ros_launch import launch_description


def _nodes(values):
    return [NodeSpec('status_monitor', 'status_monitor', namespace=values['robot'],
                     parameters=(config_file('status_monitor.yaml'),
                                 {'period': float(values['period'])}))]


GRAPH = Graph(
    description='a status line (steps, episodes, returns, policy version, updates/s)',
    arguments=[
        Argument('robot', 'minitaur', 'Namespace of the robot whose training to follow (the '
                 "training graphs': minitaur, dclaw)."),
        Argument('period', '2.0', 'Seconds between status lines.'),
    ],
    build=_nodes,
    environment=lambda values: SIM_ENVIRONMENT)


def generate_launch_description():
    """Return the launch description for ``ros2 launch``."""
    return launch_description(GRAPH)
