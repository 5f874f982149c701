# SPDX-License-Identifier: Apache-2.0
"""Small real ROS 2 nodes for launcher tests: ``demo_nodes.py <role> [--ros-args ...]``.

talker    publishes std_msgs/String on ``chatter`` every 50 ms until SIGINT
listener  exits 0 after ``count`` messages on ``chatter`` (count from the parameter)
crasher   exits with status 3 after half a second
stubborn  ignores SIGINT and SIGTERM (only SIGKILL ends it)
"""

import signal
import sys
import time

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from std_msgs.msg import String


def talker(node):
    publisher = node.create_publisher(String, 'chatter', 10)
    count = [0]

    def tick():
        count[0] += 1
        publisher.publish(String(data=f'hello {count[0]}'))

    node.create_timer(0.05, tick)
    try:
        while rclpy.ok():
            rclpy.spin_once(node, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):  # (rclpy's handler may win the race)
        print('talker stopping on SIGINT', flush=True)
    return 0


def listener(node):
    wanted = node.declare_parameter('count', 3).value
    heard = []
    node.create_subscription(String, 'chatter', lambda msg: heard.append(msg.data), 10)
    while rclpy.ok() and len(heard) < wanted:
        rclpy.spin_once(node, timeout_sec=0.1)
    print(f'heard {len(heard)} messages, namespace {node.get_namespace()}', flush=True)
    return 0


def crasher(node):
    time.sleep(0.5)
    print('crashing', flush=True)
    return 3


def stubborn(node):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print('stubborn ready', flush=True)
    while True:
        time.sleep(0.1)


def main():
    role = sys.argv[1]
    rclpy.init(args=sys.argv)
    node = Node(role)
    try:
        status = globals()[role](node)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    sys.exit(status)


if __name__ == '__main__':
    main()
