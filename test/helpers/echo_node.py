# SPDX-License-Identifier: Apache-2.0
"""Echo every sac_robot message from ``in/<Type>`` to ``out/<Type>``; serve ``reset``.

Run as a separate process by test_messages.py, so messages cross DDS between processes.
"""

import os
import sys

import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from helpers.messages import MESSAGE_TYPES, message_class  # noqa: E402
from sac_robot.srv import Reset  # noqa: E402

QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                 durability=DurabilityPolicy.TRANSIENT_LOCAL)


class Echo(Node):
    """Republish what arrives; answer Reset with values derived from the request."""

    def __init__(self):
        super().__init__('echo')
        self.outputs = {}
        for name in MESSAGE_TYPES:
            cls = message_class(name)
            self.outputs[name] = self.create_publisher(cls, f'out/{name}', QOS)
            self.create_subscription(cls, f'in/{name}', self._forward(name), QOS)
        self.create_service(Reset, 'reset', self.on_reset)

    def _forward(self, name):
        return lambda msg: self.outputs[name].publish(msg)

    def on_reset(self, request, response):
        response.success = True
        response.message = f'{request.seed}:{request.reason}'
        response.episode_id = 2 * request.seed
        return response


def main():
    rclpy.init()
    node = Echo()
    print('echo ready', flush=True)
    try:
        while rclpy.ok():
            rclpy.spin_once(node, timeout_sec=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
