# SPDX-License-Identifier: Apache-2.0
"""The QoS profiles of the graph, chosen on purpose and defined once.

- sensor streams (joint states, IMU, motion capture, camera): best effort, keep the newest few;
  a late sample is worthless and must never block the publisher;
- commands: reliable, depth 1, with a deadline so that a stale command stream is noticed;
- latched state (the newest policy weights): reliable + transient local, so a late joiner (a
  restarted inference node) receives the newest message at once;
- experience: reliable and deep, nothing may be dropped while the trainer catches up;
- events and statistics: reliable, modest depth.
"""

from rclpy.duration import Duration
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)

SENSOR = qos_profile_sensor_data

#: Commands older than this count as stale (two periods of a 100 Hz control loop, plus margin).
COMMAND_DEADLINE = Duration(seconds=0.05)

COMMAND = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE, deadline=COMMAND_DEADLINE)

LATCHED = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL)

EXPERIENCE = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE)

EVENTS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE)
