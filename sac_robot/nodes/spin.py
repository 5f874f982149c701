# SPDX-License-Identifier: Apache-2.0
"""The one way every sac_robot node process starts, spins and shuts down."""

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

try:  # rclpy's C++ events executor (Kilted; Jazzy backports): a fraction of the per-callback
    # cost of the wait-set executors, which is what an observation-to-command round trip pays.
    from rclpy.experimental import EventsExecutor
except ImportError:  # older rclpy
    EventsExecutor = SingleThreadedExecutor


def run(node_class, args=None, executor_class=EventsExecutor) -> int:
    """Create ``node_class()`` and spin it until Ctrl-C, SIGTERM or ``rclpy.shutdown``.

    Spins with ``spin_once`` in a loop rather than ``rclpy.spin``: the latter can sit in
    ``rcl_wait`` and miss SIGINT/SIGTERM (see ../shared/ROS2_FROM_PYPI.md, "Pitfalls").
    Returns the process exit status; a node ends its own run with ``node.finish(status)``.
    """
    rclpy.init(args=args)
    node = None
    try:
        node = node_class()
        executor = executor_class()
        executor.add_node(node)
        while rclpy.ok() and getattr(node, 'exit_status', None) is None:
            executor.spin_once(timeout_sec=0.1)
        return getattr(node, 'exit_status', None) or 0
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        if node is not None:
            close = getattr(node, 'close', None)
            if close is not None:
                close()
            node.destroy_node()
        rclpy.try_shutdown()
