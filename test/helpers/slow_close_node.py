# SPDX-License-Identifier: Apache-2.0
"""A node run by sac_robot's run() whose close takes a while: ``slow_close_node.py OUT``.

Prints ``spinning`` once it spins, ``closing`` when its close begins; the close then works
for a second (as the trainer's last checkpoint does) and writes OUT at its end. With OUT
``refuse``: the node refuses to start, as a trainer does a corrupt checkpoint.
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

    def tick(self):
        if not self.ticked:
            self.ticked = True
            print('spinning', flush=True)

    def close(self):
        print('closing', flush=True)
        time.sleep(1.0)
        with open(sys.argv[1], 'w') as stream:
            stream.write('closed\n')


if __name__ == '__main__':
    sys.exit(run(SlowClose, args=sys.argv[:1]))
