# SPDX-License-Identifier: Apache-2.0
"""Exact-time synchronisation of a robot's sensor topics (message_filters' ExactTime policy).

A driver publishes one message per sensor per control step, all with the same header stamp;
:class:`SensorSync` subscribes to the ones a node needs and calls back once per stamp when all
have arrived. Incomplete stamps older than the newest complete one are dropped (a lost
best-effort sample must not stall the stream). Each message is checked as it arrives, before
anything advances: a malformed one (whatever its stamp, even one in the future) is dropped,
counted and said per kind (:class:`~sac_robot.nodes.rejections.Rejections`), and changes
nothing: the stream goes on with the next good message.
"""

import collections

from rclpy.event_handler import SubscriptionEventCallbacks

from sac_robot.nodes import qos
from sac_robot.nodes.convert import MessageError, stamp_ns
from sac_robot.nodes.params import describe
from sac_robot.nodes.rejections import Rejections


class SensorSync:
    """Call ``callback(stamp_ns, {key: reading})`` when every sensor of a stamp has arrived.

    The readings are the profile's (:meth:`read`: checked, in the robot's order), made once, as
    each message arrives.
    """

    def __init__(self, node, profile, keys, callback, max_pending: int = 20,
                 qos_profile=None, on_repeat=None):
        self.node, self.profile, self.keys, self.callback = node, profile, tuple(keys), callback
        self.on_repeat = on_repeat  # called with the stamp when the newest one comes again
        self.max_pending = max_pending
        self._pending = collections.OrderedDict()  # stamp -> {key: msg}
        self._newest = -1
        #: Messages refused, by topic and kind (the node's diagnostics may carry them).
        self.rejections = Rejections(node.get_logger())
        if qos_profile is None:
            if not node.has_parameter('sensor_qos'):
                node.declare_parameter('sensor_qos', 'reliable', describe(
                    'reliable (lockstep simulation: nothing lost) or best_effort (hardware '
                    'drivers and real time: what they publish).'))
            qos_profile = qos.sensor_subscription(node.get_parameter('sensor_qos').value)
        self.subscriptions = []
        for key in self.keys:
            topic, msg_type = profile.sensors[key]
            events = SubscriptionEventCallbacks(
                message_lost=lambda info, topic=topic: self._on_lost(topic, info))
            self.subscriptions.append(node.create_subscription(
                msg_type, topic, lambda msg, key=key: self._on_message(key, msg), qos_profile,
                event_callbacks=events))

    def _on_lost(self, topic: str, info):
        self.node.get_logger().warning(f'{topic}: {info.total_count_change} sample(s) lost on '
                                       f'the way ({info.total_count} in all)',
                                       throttle_duration_sec=1.0)

    def _on_message(self, key, msg):
        topic = self.profile.sensors[key][0]
        try:  # (checked first: a bad message changes nothing)
            reading = self.profile.read({key: msg})[key]
        except MessageError as error:
            self.rejections(topic, str(error), 'sensor message dropped')
            return
        stamp = stamp_ns(msg.header.stamp)
        if stamp <= self._newest:  # a late or repeated sample of a stamp already handled
            if stamp == self._newest and key == self.keys[0] and self.on_repeat is not None:
                self.on_repeat(stamp)
            return
        group = self._pending.setdefault(stamp, {})
        group[key] = reading
        if len(group) < len(self.keys):
            while len(self._pending) > self.max_pending:
                self._pending.popitem(last=False)
            return
        del self._pending[stamp]
        self._complete(stamp, group)

    def _complete(self, stamp: int, group: dict):
        for old in [s for s in self._pending if s < stamp]:
            have = self._pending.pop(old)
            missing = [key for key in self.keys if key not in have]
            self.node.get_logger().warning(
                f'measurement at {old} ns dropped incomplete (no {", ".join(missing)}): a '
                f'newer one is complete', throttle_duration_sec=1.0)
        try:
            self.callback(stamp, group)
        except MessageError as error:
            self.rejections('measurement', str(error), f'dropped the measurement at {stamp} ns')
            return
        self._newest = stamp

    def unsubscribe(self):
        """Stop listening to the topics (the node takes the measurements some other way)."""
        for subscription in self.subscriptions:
            self.node.destroy_subscription(subscription)
        self.subscriptions = []
