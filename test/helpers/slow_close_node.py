# SPDX-License-Identifier: Apache-2.0
"""A node run by sac_robot's run() whose close takes a while: ``slow_close_node.py OUT [busy]``.

Prints ``spinning`` once it spins, ``closing`` when its close begins; the close then works
for a second (as the trainer's last checkpoint does) and writes OUT at its end. With OUT
``refuse``: the node refuses to start, as a trainer does a corrupt checkpoint. With ``busy``
it is always inside a callback, as a robot side is: a 1 kHz timer publishes 100 floats that
its own subscription sums, and its close is short.
"""

import sys
import time

from rclpy.node import Node

from sac_robot.nodes.spin import run


class SlowClose(Node):
    def __init__(self):
        super().__init__('slow_close')
        if sys.argv[1] == 'refuse':
            from sac_robot.algorithms.checkpoint import CheckpointError
            raise CheckpointError('runs/x/checkpoint/agent.safetensors: sha256 differs from '
                                  'agent.json (corrupt or replaced)')
        self.create_timer(0.05, self.tick)
        self.ticked = False
        self.busy = sys.argv[2:] == ['busy']
        if self.busy:
            from std_msgs.msg import Float64MultiArray
            self.message = Float64MultiArray(data=[float(i) for i in range(100)])
            self.publisher = self.create_publisher(Float64MultiArray, 'busy', 10)
            self.create_subscription(Float64MultiArray, 'busy', self.take, 10)
            self.create_timer(0.001, self.publish)
            self.taken = 0.0

    def publish(self):
        self.publisher.publish(self.message)

    def take(self, message):
        self.taken += sum(message.data)

    def tick(self):
        if not self.ticked:
            self.ticked = True
            print('spinning', flush=True)

    def close(self):
        print('closing', flush=True)
        time.sleep(0.05 if self.busy else 1.0)
        with open(sys.argv[1], 'w') as stream:
            stream.write('closed\n')


if __name__ == '__main__':
    sys.exit(run(SlowClose, args=sys.argv[:1]))
