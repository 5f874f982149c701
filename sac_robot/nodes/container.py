# SPDX-License-Identifier: Apache-2.0
"""container: several of the graph's nodes in one process, on one executor.

``container driver policy --ros-args ...`` runs the driver and the policy node
together, as a ROS 2 component container runs composable nodes (rclpy has none). Nodes of one
process share a DDS participant, and Fast DDS hands a message from one to another inside the
process instead of over the loopback transport: the observation-to-command round trip of the
control loop then costs no process switch (see bench/control_latency.py). Each node keeps its
own name, parameters (parameter files address it by name) and topics; nothing else changes.
"""

import importlib
import sys

import rclpy

from sac_robot.nodes.spin import run_nodes

#: The nodes a container can hold: executable name -> "module:class".
NODE_CLASSES = {
    'camera': 'sac_robot.nodes.camera:Camera',
    'collector': 'sac_robot.nodes.collector:DataCollector',
    'driver': 'sac_robot.nodes.driver:Driver',
    'policy': 'sac_robot.nodes.policy:PolicyNode',
    'recorder': 'sac_robot.nodes.recorder:Recorder',
    'reward_estimator': 'sac_robot.nodes.reward_estimator:RewardEstimator',
    'robot_state': 'sac_robot.nodes.robot_state:RobotState',
    'safety': 'sac_robot.nodes.safety:SafetyNode',
    'status_monitor': 'sac_robot.nodes.status_monitor:StatusMonitor',
    'trainer': 'sac_robot.nodes.trainer:Trainer',
}


def node_class(name: str):
    """The node class of the executable ``name``."""
    if name not in NODE_CLASSES:
        raise ValueError(f'container: no node {name!r}; it can hold '
                         f'{", ".join(sorted(NODE_CLASSES))}')
    module, cls = NODE_CLASSES[name].split(':')
    return getattr(importlib.import_module(module), cls)


def main(args=None) -> int:
    """Run the nodes named before ``--ros-args`` in one process."""
    argv = sys.argv if args is None else args
    names = rclpy.utilities.remove_ros_args(argv)[1:]
    if not names:
        print('usage: container NODE [NODE ...] [--ros-args ...]', file=sys.stderr)
        return 2
    try:
        classes = [node_class(name) for name in names]
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    return run_nodes(classes, argv)
