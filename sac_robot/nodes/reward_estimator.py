# SPDX-License-Identifier: Apache-2.0
"""reward_estimator: the task reward and its named terms, from what the robot measures.

Minitaur: forward velocity from consecutive motion-capture poses, the angular-acceleration
penalty over the last three actions, the pitch and front-legs penalties
(:func:`sac_robot.rewards.minitaur_walk_reward`). D'Claw: the valve-turning terms from the valve
encoder and the joints (:func:`sac_robot.rewards.dclaw_turn_reward`). The same functions score
the gymnasium tasks.

For each ``policy/steps`` message (step ``k`` of an episode, taken at stamp ``t_k``) it waits for
the next measurement after ``t_k`` and publishes ``reward`` (sac_robot/RewardTerms) for step
``k``, stamped with that measurement's time.
"""

import collections

import numpy as np
from rclpy.node import Node

from sac_robot.msg import PolicyStep, RewardTerms
from sac_robot.nodes import convert, qos
from sac_robot.nodes.params import declare_robot, describe
from sac_robot.nodes.rejections import Rejections
from sac_robot.nodes.robots import profile as make_profile
from sac_robot.nodes.spin import run
from sac_robot.nodes.sync import SensorSync


class RewardEstimator(Node):
    """Publish the reward of every policy step once the measurement after it has come."""

    def __init__(self, **kwargs):
        super().__init__('reward_estimator', **kwargs)
        robot = declare_robot(self)
        pretraining = self.declare_parameter('pretraining', False, describe(
            "The Minitaur: the SQL paper's pretraining reward (speed in any direction, Section "
            '5.3) instead of forward walking.')).value
        if pretraining and robot != 'minitaur':
            raise ValueError(f"pretraining is the Minitaur's reward, not the {robot}'s")
        self.profile = make_profile(robot, pretraining=pretraining)
        self.publisher = self.create_publisher(RewardTerms, 'reward', qos.EXPERIENCE)
        self.sync = SensorSync(self, self.profile, self.profile.reward_sensors,
                               self.on_measurement)
        self.create_subscription(PolicyStep, 'policy/steps', self.on_step, qos.EXPERIENCE)
        self.measurements = collections.OrderedDict()  # stamp -> measurement, newest last
        self.pending = collections.OrderedDict()  # stamp -> PolicyStep awaiting the next one
        self.actions = {}  # episode -> deque of the last three actions (newest first)
        self.seen = collections.OrderedDict()  # (episode, step) of the newest steps taken
        self.published = 0
        self.rejections = Rejections(self.get_logger())

    def on_measurement(self, stamp: int, readings: dict):
        """Keep the measurement; score the steps it completes."""
        self.measurements[stamp] = self.profile.measurement(readings)
        while len(self.measurements) > 200:
            self.measurements.popitem(last=False)
        for step_stamp in [s for s in self.pending if s < stamp]:
            self._score(self.pending.pop(step_stamp))

    def on_step(self, msg: PolicyStep):
        """Remember the step's action; score it if its next measurement is already here."""
        stamp = convert.stamp_ns(msg.header.stamp)
        try:  # (no reward from a step the collector would refuse)
            convert.read_policy_step(msg, len(msg.observation), self.profile.action_size,
                                     'policy/steps')
        except convert.MessageError as error:
            self.rejections('policy/steps', str(error), 'step refused')
            return
        key = (msg.episode_id, msg.step)
        if key in self.seen:  # (a copy: the first one counts)
            return
        self.seen[key] = None
        while len(self.seen) > 400:
            self.seen.popitem(last=False)
        self.pending[stamp] = msg
        while len(self.pending) > 200:
            self.pending.popitem(last=False)
        if any(s > stamp for s in reversed(self.measurements)):
            self._score(self.pending.pop(stamp))

    def _score(self, step: PolicyStep):
        stamp = convert.stamp_ns(step.header.stamp)
        after_stamp = next((s for s in self.measurements if s > stamp), None)
        before = self.measurements.get(stamp)
        if before is None or after_stamp is None:
            self.get_logger().warning(f'no measurement around step {step.step} of episode '
                                      f'{step.episode_id}: no reward', throttle_duration_sec=1.0)
            return
        history = self.actions.setdefault(step.episode_id, collections.deque(
            [np.zeros(self.profile.action_size)] * 2, maxlen=3))
        history.appendleft(np.asarray(step.action, np.float64))
        for old in [e for e in self.actions if e < step.episode_id]:
            del self.actions[old]
        terms = self.profile.reward_terms(before, self.measurements[after_stamp],
                                          np.stack(history))
        msg = RewardTerms()
        msg.header.stamp = convert.to_stamp(after_stamp)
        msg.robot_id, msg.episode_id, msg.step = step.robot_id, step.episode_id, step.step
        msg.names = list(terms)
        msg.values = [float(v) for v in terms.values()]
        msg.reward = float(sum(msg.values))
        self.publisher.publish(msg)
        self.published += 1


def main(args=None) -> int:
    """Run the reward estimator node."""
    return run(RewardEstimator, args)
