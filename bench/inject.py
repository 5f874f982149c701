# SPDX-License-Identifier: Apache-2.0
"""Bad messages into a running Minitaur graph, as a foreign process on the network would send.

``python bench/inject.py MODE [--namespace /minitaur] [--seconds S]``: joins the graph's
domain, prints ``ready`` once it sees the topics it needs, waits for a line on stdin (the
campaign's random moment; end of input works too), sends, prints one line of what it sent and
exits. A process of its own, with plain rclpy and the package's messages: nothing here reaches
into the graph's nodes. The modes:

- ``poisoned steps``: copies of the policy's real steps (same episode, step and stamp) with NaN
  actions, infinite observations or actions outside [-1, 1];
- ``future sensor``: joint states with a NaN position stamped 10^6 s after the newest real one;
- ``implausible mocap``: motion-capture poses 10^300 m away, stamped as the newest real one;
- ``nan reward``: NaN rewards for the steps of the running episode;
- ``malformed weights``: policy weights whose safetensors header is a list or longer than the
  file, whose metadata is a string, whose sizes are words, whose layer is named
  ``net.x.weight`` or has a shape of strings, each with a good checksum and a version of 2^62;
- ``forged ack``: an acknowledgement far ahead of anything the collector sent;
- ``forged chunk``: experience chunks with the number the trainer waits for, claiming 10^6 lost
  transitions;
- ``bad seed``: the driver's reset service called with a seed of -2^63;
- ``fuzz``: random values of the right type (NaN, infinities, 1e300, wrong-length arrays, odd
  strings) on every topic of the namespace, with its publishers' QoS, for ``--seconds``; then
  the emergency stop, which random Bools on its line may have left set, is released through
  the safety node's service, as the person would.
"""

import argparse
import json
import math
import random
import re
import struct
import sys
import time

import rclpy
from rclpy.qos import HistoryPolicy, QoSProfile

from sac_robot.msg import Experience, ExperienceAck, PolicyStep, PolicyWeights, RewardTerms
from sac_robot.nodes import convert, qos
from sac_robot.nodes.recorder import message_class

MODES = ('poisoned steps', 'future sensor', 'implausible mocap', 'nan reward',
         'malformed weights', 'forged ack', 'forged chunk', 'bad seed', 'fuzz')


# Random values of a ROS field type -----------------------------------------------------------

_INTEGERS = {'int8': 8, 'int16': 16, 'int32': 32, 'int64': 64,
             'uint8': 8, 'uint16': 16, 'uint32': 32, 'uint64': 64}


def _value(kind: str, rng: random.Random, depth: int):
    sequence = re.fullmatch(r'sequence<(.+?)(?:, (\d+))?>', kind)
    if sequence:
        bound = int(sequence.group(2)) if sequence.group(2) else 40
        return [_value(sequence.group(1), rng, depth) for _ in range(rng.randrange(bound + 1))]
    array = re.fullmatch(r'(.+)\[(\d+)\]', kind)
    if array:
        return [_value(array.group(1), rng, depth) for _ in range(int(array.group(2)))]
    if kind in ('float', 'double'):
        return rng.choice([math.nan, math.inf, -math.inf, 1e300, -0.0, rng.uniform(-1e3, 1e3)])
    if kind == 'boolean':
        return rng.random() < 0.5
    if kind in ('octet', 'byte'):
        return bytes([rng.randrange(256)])
    if kind == 'char':
        return chr(rng.randrange(128))
    if kind in _INTEGERS:
        bits = _INTEGERS[kind]
        low, high = (0, 2 ** bits - 1) if kind.startswith('u') else (-2 ** (bits - 1),
                                                                     2 ** (bits - 1) - 1)
        return rng.choice([low, high, 0, 1, rng.randint(low, high)])
    if kind.startswith(('string', 'wstring')):
        return rng.choice(['', 'minitaur', 'x' * 300, 'stamp_ns=1;episode=999999',
                           '\u00e9\u00e8', '{"json": [1, 2]}'])
    if '/' in kind and depth < 3:
        return garbage(message_class(kind if kind.count('/') == 2 else
                                     kind.replace('/', '/msg/')), rng, depth + 1)
    raise ValueError(f'no values for {kind}')


def garbage(msg_class, rng: random.Random, depth: int = 0):
    """A ``msg_class`` message with random values of each field's type (what fits)."""
    msg = msg_class()
    for name, kind in msg_class.get_fields_and_field_types().items():
        try:
            setattr(msg, name, _value(kind, rng, depth))
        except (AssertionError, TypeError, ValueError, OverflowError):
            pass  # outside what the type can carry (1e300 in a float32): the default stays
    return msg


# The modes -----------------------------------------------------------------------------------

def _weights_variants() -> list:
    """Safetensors bytes with a good checksum that are not what the policy can load."""
    def file(header) -> bytes:
        text = json.dumps(header).encode()
        return struct.pack('<Q', len(text)) + text + bytes(16)
    meta = {'format': 'sac_robot.policy/1', 'algorithm': 'sac', 'obs_spec': '112',
            'action_dim': '8', 'hidden': '[64, 64]'}
    layer = {'dtype': 'F32', 'shape': [2, 2], 'data_offsets': [0, 16]}
    return [file([1, 2]), struct.pack('<Q', 10 ** 6) + b'{}',
            file({'__metadata__': 'a string', 'w': layer}),
            file({'__metadata__': {**meta, 'action_dim': 'eight'}, 'w': layer}),
            file({'__metadata__': meta, 'net.x.weight': layer}),
            file({'__metadata__': meta, 'w': {**layer, 'shape': ['2', '2']}})]


class Injector:
    """One mode's node: what it listens to before the moment, and what it sends then."""

    def __init__(self, mode: str, namespace: str, seconds: float, seed: int):
        self.mode, self.ns, self.seconds = mode, namespace.rstrip('/'), seconds
        self.rng = random.Random(seed)
        self.node = rclpy.create_node('injector')
        self.steps, self.newest = [], {}  # real policy steps; newest message per topic
        self.ack = None
        listen = {'poisoned steps': [('policy/steps', PolicyStep, qos.EXPERIENCE)],
                  'nan reward': [('policy/steps', PolicyStep, qos.EXPERIENCE)],
                  'forged chunk': [('experience/ack', ExperienceAck, qos.LATCHED)]}
        for topic, msg_class, profile in listen.get(mode, []):
            self.node.create_subscription(msg_class, f'{self.ns}/{topic}',
                                          lambda m, t=topic: self._heard(t, m), profile)
        if mode in ('future sensor', 'implausible mocap'):
            from geometry_msgs.msg import PoseStamped
            from sensor_msgs.msg import JointState
            topic, msg_class = (('joint_states', JointState) if mode == 'future sensor'
                                else ('mocap/pose', PoseStamped))
            self.node.create_subscription(msg_class, f'{self.ns}/{topic}',
                                          lambda m, t=topic: self._heard(t, m), qos.SENSOR)

    def _heard(self, topic: str, msg):
        self.newest[topic] = msg
        if topic == 'policy/steps':
            self.steps.append(msg)
        if topic == 'experience/ack':
            self.ack = msg

    def spin(self, seconds: float):
        """Take what comes for ``seconds``."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.01)

    def publisher(self, topic: str, msg_class, profile: QoSProfile):
        """A publisher on the namespace's ``topic``, once a reader has matched (10 s at most)."""
        publisher = self.node.create_publisher(msg_class, f'{self.ns}/{topic}', profile)
        end = time.monotonic() + 10
        while publisher.get_subscription_count() == 0 and time.monotonic() < end:
            self.spin(0.05)
        return publisher

    def run(self) -> str:
        """Send; a line of what was sent."""
        return getattr(self, '_' + self.mode.replace(' ', '_'))()

    def _poisoned_steps(self) -> str:
        publisher = self.publisher('policy/steps', PolicyStep, qos.EXPERIENCE)
        self.steps.clear()
        sent, end = 0, time.monotonic() + 10
        while sent < 30 and time.monotonic() < end:
            self.spin(0.01)
            for real in self.steps:
                copy = PolicyStep(header=real.header, robot_id=real.robot_id,
                                  episode_id=real.episode_id, step=real.step,
                                  observation=real.observation, action=real.action,
                                  policy_version=real.policy_version)
                which = sent % 3
                if which == 0:
                    copy.action = [math.nan] * len(real.action)
                elif which == 1:
                    copy.observation = [math.inf] * len(real.observation)
                else:
                    copy.action = [1.5] * len(real.action)
                publisher.publish(copy)
                sent += 1
            self.steps.clear()
        return f'{sent} poisoned copies of real steps'

    def _future_sensor(self) -> str:
        return self._sensor('joint_states', 'future sensor')

    def _implausible_mocap(self) -> str:
        return self._sensor('mocap/pose', 'implausible mocap')

    def _sensor(self, topic: str, what: str) -> str:
        end = time.monotonic() + 10
        while topic not in self.newest and time.monotonic() < end:
            self.spin(0.05)
        real = self.newest.get(topic)
        if real is None:
            return f'{what}: no {topic} heard'
        infos = self.node.get_publishers_info_by_topic(f'{self.ns}/{topic}')
        profile = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                             reliability=infos[0].qos_profile.reliability,
                             durability=infos[0].qos_profile.durability)
        publisher = self.publisher(topic, type(real), profile)
        for _ in range(20):
            real = self.newest[topic]
            if topic == 'joint_states':
                real.header.stamp.sec += 10 ** 6
                position = list(real.position)
                position[2] = math.nan
                real.position = position
            else:
                real.pose.position.x = 1e300
            publisher.publish(real)
            self.spin(0.02)
        return f'{what}: 20 messages on {topic}'

    def _nan_reward(self) -> str:
        publisher = self.publisher('reward', RewardTerms, qos.EXPERIENCE)
        self.steps.clear()
        end = time.monotonic() + 10
        while not self.steps and time.monotonic() < end:
            self.spin(0.02)
        if not self.steps:
            return 'nan reward: no policy step heard'
        step = self.steps[-1]
        for k in range(20):
            publisher.publish(RewardTerms(robot_id=step.robot_id, episode_id=step.episode_id,
                                          step=step.step + 1 + k, reward=math.nan))
        return f'nan reward: 20 for episode {step.episode_id} from step {step.step + 1}'

    def _malformed_weights(self) -> str:
        publisher = self.publisher('policy/weights', PolicyWeights, qos.LATCHED)
        variants = _weights_variants()
        for data in variants:
            publisher.publish(convert.policy_weights(data, 2 ** 62, 'sac', '{}', 0, 0,
                                                     run_id='forged'))
            self.spin(0.3)
        return f'malformed weights: {len(variants)}'

    def _forged_ack(self) -> str:
        robot = self.ns.rsplit('/', 1)[-1]
        publisher = self.publisher('experience/ack', ExperienceAck, qos.LATCHED)
        publisher.publish(ExperienceAck(robot_id=robot, next_sequence=10 ** 9,
                                        checkpointed_sequence=10 ** 9))
        self.spin(1.0)
        return 'forged ack: next_sequence 10^9'

    def _forged_chunk(self) -> str:
        end = time.monotonic() + 10
        while self.ack is None and time.monotonic() < end:
            self.spin(0.05)
        if self.ack is None:
            return 'forged chunk: no acknowledgement heard'
        publisher = self.publisher('experience', Experience, qos.CHUNKS)
        for k in range(2):
            publisher.publish(convert.experience(self.ack.robot_id, self.ack.next_sequence,
                                                 self.ack.episode_id, 0, None,
                                                 dropped=10 ** 6 + k))
            self.spin(0.2)
        return f'forged chunk: 2 with sequence {self.ack.next_sequence}'

    def _bad_seed(self) -> str:
        from sac_robot.srv import Reset
        client = self.node.create_client(Reset, f'{self.ns}/reset')
        if not client.wait_for_service(timeout_sec=20):
            return 'bad seed: no reset service'
        future = client.call_async(Reset.Request(seed=-2 ** 63, reason='a forged reset'))
        rclpy.spin_until_future_complete(self.node, future, timeout_sec=20)
        result = future.result()
        return (f'bad seed: success={result.success} message={result.message!r}'
                if result else 'bad seed: no answer')

    def _fuzz(self) -> str:
        skip = ('/clock', '/rosout', '/parameter_events')
        end = time.monotonic() + 20  # (discovery: a loaded machine can take seconds)
        while time.monotonic() < end and not any(
                topic.startswith(self.ns + '/') and self.node.get_publishers_info_by_topic(topic)
                for topic, _ in self.node.get_topic_names_and_types()):
            self.spin(0.1)
        publishers = []
        for topic, types in self.node.get_topic_names_and_types():
            if not topic.startswith(self.ns + '/') or topic in skip or not types:
                continue
            infos = self.node.get_publishers_info_by_topic(topic)
            if not infos:
                continue
            profile = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                                 reliability=infos[0].qos_profile.reliability,
                                 durability=infos[0].qos_profile.durability)
            msg_class = message_class(types[0])
            publishers.append((self.node.create_publisher(msg_class, topic, profile),
                               msg_class))
        if not publishers:
            return f'fuzz: no topic under {self.ns} heard'
        # Until every new publisher has met its topic's readers (discovery, per writer-reader
        # pair, takes seconds on a loaded machine): a message sent before is heard by no one.
        end = time.monotonic() + 20
        while time.monotonic() < end and not all(
                publisher.get_subscription_count() > 0 for publisher, _ in publishers
                if self.node.get_subscriptions_info_by_topic(publisher.topic_name)):
            self.spin(0.1)
        sent, end = 0, time.monotonic() + self.seconds
        while time.monotonic() < end:
            publisher, msg_class = self.rng.choice(publishers)
            publisher.publish(garbage(msg_class, self.rng))
            sent += 1
            if sent % 20 == 0:
                self.spin(0.001)
        return f'fuzz: {sent} messages on {len(publishers)} topics; ' + self._release()

    def _release(self) -> str:
        """The person, having looked at the robot, releases the emergency stop.

        Random Bools on the stop line set it (as a button would) and release it; a stop the
        fuzz left set holds the robot until someone releases it, which is what it is for.
        """
        from std_srvs.srv import Trigger
        client = self.node.create_client(Trigger, f'{self.ns}/release_emergency_stop')
        if not client.wait_for_service(timeout_sec=10):
            return 'no release_emergency_stop service'
        future = client.call_async(Trigger.Request())
        rclpy.spin_until_future_complete(self.node, future, timeout_sec=10)
        result = future.result()
        return 'no answer from release_emergency_stop' if result is None else result.message


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('mode', choices=MODES)
    parser.add_argument('--namespace', default='/minitaur')
    parser.add_argument('--seconds', type=float, default=2.0, help='how long a fuzz lasts')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    rclpy.init()
    injector = Injector(args.mode, args.namespace, args.seconds, args.seed)
    injector.spin(0.5)
    print('ready', flush=True)
    sys.stdin.readline()
    print(injector.run(), flush=True)
    injector.node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
