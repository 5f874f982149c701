# SPDX-License-Identifier: Apache-2.0
"""The QoS profiles of the graph, chosen on purpose and defined once.

- sensor streams (joint states, IMU, motion capture, camera): volatile, as sensor drivers
  publish them (a late joiner gets no stale samples); read best effort on hardware (a late
  sample is worthless and must never block the publisher), reliable in lockstep simulation;
- commands: reliable, published at depth 1 (only the newest target matters), read at depth 10
  (a bad message must not displace a good one before it is read). No QoS deadline: a subscriber
  deadline would refuse publishers without one (``ros2 topic pub``, other tools); the safety
  node watches the stream's age itself (COMMAND_TIMEOUT);
- latched state (the newest policy weights): reliable + transient local, so a late joiner (a
  restarted inference node) receives the newest message at once;
- experience (policy steps, rewards, experience chunks): reliable, deep and transient local:
  nothing may be dropped while a reader catches up, and a reader that matches a writer late
  (discovery is per writer-reader pair, so a node can see a topic's subscriber before the
  writer does) still gets the recent history; readers ignore what they already have;
- events and statistics: reliable, modest depth, transient local: a node that starts late (the
  policy importing torch) still learns which episode is running.
"""

from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)

SENSOR = qos_profile_sensor_data

#: What the graph's nodes subscribe to sensors with in lockstep simulation: reliable and deep, so
#: a node descheduled for a moment (two cores, a trainer running) loses nothing; volatile, as
#: the sensor streams are. A reliable subscription does not match best-effort publishers (most
#: hardware drivers, vrpn_mocap), so on hardware or in real time the nodes use SENSOR instead
#: (parameter ``sensor_qos``).
SENSOR_DEEP = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=500, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE)


def sensor_subscription(name: str) -> QoSProfile:
    """The sensor subscription QoS called ``name``: 'reliable' or 'best_effort'."""
    if name not in ('reliable', 'best_effort'):
        raise ValueError(f"sensor_qos must be 'reliable' or 'best_effort', not {name!r}")
    return SENSOR_DEEP if name == 'reliable' else SENSOR

#: Commands older than this count as stale by default (five periods of a 100 Hz control loop).
COMMAND_TIMEOUT = 0.05

COMMAND = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE)

#: What the driver and the safety node take commands with: reliable, depth 10, as ros2_control's
#: forward command controller subscribes (the system default). At depth 1 a malformed or foreign
#: message arriving before the callback ran displaced the policy's real command (a flood of bad
#: commands all but stopped lockstep); each queued message is now read in turn, the bad ones
#: refused, and the newest good one acts.
COMMAND_IN = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE)

#: Sensor streams of the simulated driver (and /clock in lockstep): reliable and deep. In
#: lockstep the loop runs as fast as the policy answers, and a subscriber further behind than
#: the writer's history (the reward estimator, descheduled for a moment) would lose samples.
#: Volatile, as sensor drivers publish: a late joiner (``ros2 topic echo``, ``ros2 bag
#: record``) gets no stale samples; a graph reader that matches late is covered by the
#: driver's wait for its readers and its resending of the newest observation. Best-effort
#: (``qos_profile_sensor_data``) and default subscribers both match it.
SENSOR_RELIABLE = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=500, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE)

LATCHED = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL)

EXPERIENCE = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL)

#: Experience chunks (collector -> trainer): reliable, volatile, modest depth. Unlike the other
#: experience topics no history is kept for late readers (chunks are large): the collector sends
#: every unacknowledged chunk again until the trainer has it.
CHUNKS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE)

EVENTS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL)

#: /diagnostics, as ROS drivers publish it (the rclpy default: reliable, volatile, depth 10).
DIAGNOSTICS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE)
