# SPDX-License-Identifier: Apache-2.0
"""recorder: every topic of the graph into a rosbag2 bag (mcap), with the rosbags library.

Discovers topics every ``discovery_period`` seconds and subscribes to each new one with the
serialized (raw CDR) callback, choosing QoS like ``ros2 bag record`` does: transient local when
a publisher latches (the newest policy weights), reliable when every publisher is, best effort
otherwise. Messages are written as received, stamped with the receive time, with their message
definitions (custom sac_robot types included), so ``ros2 bag info/play``, Foxglove and
``sac-robot bag`` read the bag. The bag is closed (its metadata.yaml written) on shutdown.

At SIGINT or SIGTERM the recorder does not stop at once: it goes on taking messages until none
has come for ``QUIET`` seconds (at most ``spin.DRAIN_LIMIT``; SIGTERM ends it), so the
last things the graph said before it stopped (the final experience chunk, the last
statistics), queued for it behind a backlog of writes, are in the bag too.
"""

import importlib
import os
import time

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from sac_robot.bagtools import typestore_with_package_types
from sac_robot.nodes.params import describe
from sac_robot.nodes.spin import run

#: Seconds without a message after which a stopping recorder has taken everything.
QUIET = 0.5


def message_class(type_name: str):
    """The Python class of ``pkg/msg/Name``."""
    package, _, name = type_name.split('/')
    return getattr(importlib.import_module(f'{package}.msg'), name)


class Recorder(Node):
    """Write every topic to an mcap bag."""

    def __init__(self, **kwargs):
        super().__init__('recorder', **kwargs)
        self.path = os.path.abspath(os.path.expanduser(self.declare_parameter(
            'bag', '', describe('Directory of the new bag (must not exist; '
                                'default: bags/<date>_<time>).')).value
            or time.strftime('bags/%Y%m%d_%H%M%S')))
        period = self.declare_parameter('discovery_period', 0.5, describe(
            'Seconds between looks for new topics.')).value
        from rosbags.rosbag2 import StoragePlugin, Writer
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.typestore = typestore_with_package_types()
        self.writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self.connections, self.counts = {}, {}
        self._last_write = time.monotonic()
        self.create_timer(period, self.discover)
        self.discover()
        self.get_logger().info(f'recording to {self.path}')

    def _qos(self, topic: str) -> QoSProfile:
        infos = self.get_publishers_info_by_topic(topic)
        latched = any(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
                      for i in infos)
        reliable = infos and all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE
                                 for i in infos)
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=1000,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
            durability=(DurabilityPolicy.TRANSIENT_LOCAL if latched
                        else DurabilityPolicy.VOLATILE))

    def discover(self):
        """Subscribe to topics not yet recorded."""
        for topic, types in self.get_topic_names_and_types():
            if topic in self.connections or topic.endswith('/_action/status') or not types:
                continue
            if not self.get_publishers_info_by_topic(topic):
                continue  # only subscribers so far: QoS unknown, look again later
            type_name = types[0]
            try:
                msg_class = message_class(type_name)
                self.connections[topic] = self.writer.add_connection(
                    topic, type_name, typestore=self.typestore)
            except Exception as error:  # an unknown type must not stop the recording
                self.get_logger().error(f'cannot record {topic} ({type_name}): {error}')
                self.connections[topic] = None
                continue
            self.counts[topic] = 0
            self.create_subscription(msg_class, topic,
                                     lambda data, topic=topic: self._write(topic, data),
                                     self._qos(topic), raw=True)

    def _write(self, topic: str, data: bytes):
        self.writer.write(self.connections[topic], time.time_ns(), data)
        self.counts[topic] += 1
        self._last_write = time.monotonic()

    def drained(self, since: float) -> bool:
        """Whether nothing has come for ``QUIET`` seconds since ``since`` (the stop signal)."""
        return time.monotonic() - max(self._last_write, since) > QUIET

    def close(self):
        """Close the bag (writes its metadata)."""
        self.writer.close()
        total = sum(self.counts.values())
        self.get_logger().info(f'{total} messages on {len(self.counts)} topics in {self.path}')


def main(args=None) -> int:
    """Run the recorder node."""
    return run(Recorder, args)
