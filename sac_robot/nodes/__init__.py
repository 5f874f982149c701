# SPDX-License-Identifier: Apache-2.0
"""ROS 2 adapters: one node class per node, thin over the core library.

Only this package (and the tests) import ``rclpy`` and message types.
"""
