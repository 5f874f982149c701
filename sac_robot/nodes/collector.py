# SPDX-License-Identifier: Apache-2.0
"""collector: policy steps + rewards + episode ends -> transitions, delivered exactly once.

Joins ``policy/steps`` (observation, action, version), ``reward``, ``episode_events`` and
``episode_checks`` into transitions ``(o_k, a_k, r_k, o_{k+1}, terminated, truncated)``.
Transitions stream to the trainer while the episode runs: the safety node confirms every few
steps that a measurement passed its checks (``CHECKED`` on ``episode_checks``), and a
transition is final once the step after its successor is confirmed (so the one before an
``END`` still gets its truncated flag, even when the end comes without a new measurement, as
stale commands do). The rest of an episode is final once its ``END`` has come (only then is it
known which step was the last; steps the policy took past the end are dropped). Without
confirmations (the safety node's ``confirm_every`` 0) whole episodes go out after their end.
Transitions go out as ``experience`` chunks (sac_robot/Experience) of at most ``chunk_size``
transitions, checked every ``period`` seconds. With ``pixels`` each step's camera image (in the
policy step) goes with it, as the chunk's ``images``.

Delivery: every chunk gets the next sequence number of this robot's stream. The trainer
acknowledges on ``experience/ack`` (latched) the next sequence it expects and the newest one
its checkpoint holds; chunks not yet acknowledged are sent again every ``resend_period``
seconds, and a chunk is forgotten only once a checkpoint holds it, so a trainer that dies and
resumes from its checkpoint gets everything again. Numbering starts from the trainer's first
acknowledgement (chunks wait until then: the trainer may be away), so a restarted collector
continues the trainer's stream.
"""

import collections
import time

import numpy as np
from rclpy.node import Node

from sac_robot.algorithms.observations import wire_layout
from sac_robot.msg import EpisodeEvent, Experience, ExperienceAck, PolicyStep, RewardTerms
from sac_robot.nodes import convert, qos
from sac_robot.nodes.params import declare_robot, declare_robot_id, describe
from sac_robot.nodes.rejections import Rejections
from sac_robot.nodes.robots import profile as make_profile
from sac_robot.nodes.spin import run


#: Episodes held open at once (the running one, and the one before it while its last rewards
#: come); more are steps of episodes that never end.
OPEN_EPISODES = 16


class _Episode:
    def __init__(self):
        self.steps = {}  # step -> PolicyStep
        self.images = {}  # step -> its image [H, W, C] uint8, when the policy sees pixels
        self.rewards = {}  # step -> reward
        self.end = None  # EpisodeEvent END
        self.ended_at = None  # monotonic time END arrived
        self.confirmed = 0  # the newest step the safety node let the episode go on past
        self.sent = 0  # transitions already made into chunks (0 .. sent - 1)


class DataCollector(Node):
    """Assemble transitions and deliver them to the trainer with nothing lost or doubled."""

    def __init__(self, **kwargs):
        super().__init__('collector', **kwargs)
        self.rejections = Rejections(self.get_logger())
        declare = self.declare_parameter
        robot = declare_robot(self)
        self.profile = make_profile(robot, pixels=declare('pixels', False, describe(
            "The policy acts on the camera image (the D'Claw): its steps carry images.")).value)
        self.observation_size, self.image_shape = wire_layout(self.profile.observation_spec)
        self.robot_id = declare_robot_id(self, robot, 'Name of this robot in its experience')
        self.chunk_size = declare('chunk_size', 250, describe(
            'Most transitions in one experience message.')).value
        self.resend_period = declare('resend_period', 2.0, describe(
            'Seconds after which an unacknowledged chunk is sent again.')).value
        self.max_episode_steps = declare('max_episode_steps', 0, describe(
            "The longest episode, in steps (the safety node's time limit; 0: the robot's): "
            'an episode event claiming more is refused, steps past it are of no '
            'transition.')).value or self.profile.max_episode_steps
        self.complete_wait = declare('complete_wait', 30.0, describe(
            "Seconds after an episode's END to wait for its last steps and rewards; what is "
            'still missing then is dropped from the first gap on, with a warning.')).value

        self.publisher = self.create_publisher(Experience, 'experience', qos.CHUNKS)
        self.create_subscription(PolicyStep, 'policy/steps', self.on_step, qos.EXPERIENCE)
        self.create_subscription(RewardTerms, 'reward', self.on_reward, qos.EXPERIENCE)
        self.create_subscription(EpisodeEvent, 'episode_events', self.on_event, qos.EVENTS)
        self.create_subscription(ExperienceAck, 'experience/ack', self.on_ack, qos.LATCHED)
        self.create_subscription(EpisodeEvent, 'episode_checks', self.on_check, qos.EXPERIENCE)
        self.create_timer(declare('period', 0.05, describe(
            'Seconds between looks for finished transitions and chunks to (re)send.')).value,
            self.on_timer)

        self.episodes = collections.OrderedDict()  # episode id -> _Episode
        self.finished = set()  # episode ids already turned into transitions
        self.unnumbered = collections.deque()  # chunks (dict of arrays) waiting for numbering
        self.unacked = collections.OrderedDict()  # sequence -> [Experience, last sent time]
        self.next_sequence = None  # unknown until the trainer's first acknowledgement
        self.acked, self.checkpointed = 0, 0
        self.transitions = 0  # assembled
        self.delivered = 0  # acknowledged by the trainer
        self.dropped = 0

    def _episode(self, episode_id: int):
        """The episode's entry (made at its first message), newest-heard last; None if done.

        At most ``OPEN_EPISODES`` are held: steps of episode ids that never end (a foreign
        node's, random values) would otherwise pile up for good. The one heard of longest ago
        goes first, said and counted; the running episode is heard of every step.
        """
        if episode_id in self.finished:
            return None
        episode = self.episodes.get(episode_id)
        if episode is not None:
            self.episodes.move_to_end(episode_id)
            return episode
        if len(self.episodes) >= OPEN_EPISODES:
            old_id, old = self.episodes.popitem(last=False)
            self.rejections('policy/steps', f'episode {old_id}: no end heard while '
                            f'{OPEN_EPISODES} newer episodes began; its {len(old.steps)} '
                            'step(s) forgotten', 'episode dropped')
        episode = self.episodes[episode_id] = _Episode()
        return episode

    def on_step(self, msg: PolicyStep):
        """Keep a policy step."""
        if msg.robot_id != self.robot_id:
            return
        try:  # (refused where it enters: a NaN in a chunk would be refused again and again)
            convert.read_policy_step(msg, self.observation_size, self.profile.action_size,
                                     'policy/steps')
            image = (None if self.image_shape is None else
                     convert.read_image(msg.image, self.image_shape, self._where(msg)))
        except convert.MessageError as error:
            self.rejections('policy/steps', str(error), 'step refused')
            return
        if msg.step > self.max_episode_steps:  # (the policy's steps past an end: of no use)
            return
        episode = self._episode(msg.episode_id)
        if episode is None or msg.step < episode.sent:
            return
        first = episode.steps.get(msg.step)
        if first is not None:  # (a copy: the policy sends each step once)
            if (first.header.stamp != msg.header.stamp or list(first.action) != list(msg.action)
                    or list(first.observation) != list(msg.observation)):
                self.rejections('policy/steps', f'{self._where(msg)} came again, different: '
                                'the first kept', 'step refused')
            return
        episode.steps[msg.step] = msg
        if image is not None:
            episode.images[msg.step] = image

    @staticmethod
    def _where(msg: PolicyStep) -> str:
        return f'policy/steps: step {msg.step} of episode {msg.episode_id}'

    def on_reward(self, msg: RewardTerms):
        """Keep a step's reward."""
        if msg.robot_id != self.robot_id:
            return
        try:  # (refused where it enters: a NaN in a chunk would be refused again and again)
            reward = convert.read_reward(msg, 'reward')
        except convert.MessageError as error:
            self.rejections('reward', str(error), 'reward refused')
            return
        if msg.step >= self.max_episode_steps:
            return
        episode = self._episode(msg.episode_id)
        if episode is not None and msg.step >= episode.sent:
            episode.rewards[msg.step] = reward

    def on_event(self, msg: EpisodeEvent):
        """An END makes an episode's transitions final."""
        if msg.robot_id != self.robot_id or msg.event != EpisodeEvent.END \
                or not self._plausible(msg, 'episode_events'):
            return
        episode = self._episode(msg.episode_id)
        if episode is not None:
            episode.end, episode.ended_at = msg, time.monotonic()

    def on_check(self, msg: EpisodeEvent):
        """The safety node let an episode go on past a step."""
        if msg.robot_id != self.robot_id or msg.event != EpisodeEvent.CHECKED \
                or not self._plausible(msg, 'episode_checks'):
            return
        episode = self._episode(msg.episode_id)
        if episode is not None:
            episode.confirmed = max(episode.confirmed, msg.steps)

    def _plausible(self, msg: EpisodeEvent, topic: str) -> bool:
        """Whether an event's step count fits in an episode (counts from senders are bounded)."""
        if msg.steps <= self.max_episode_steps:
            return True
        self.rejections(topic, f'{topic}: episode {msg.episode_id} claims {msg.steps} steps, '
                        f'more than an episode holds ({self.max_episode_steps}, '
                        'max_episode_steps)', 'event refused')
        return False

    def on_ack(self, msg: ExperienceAck):
        """Forget checkpointed chunks; (re)start numbering where the trainer stands."""
        if msg.robot_id != self.robot_id:
            return
        if self.next_sequence is not None and (
                msg.next_sequence > self.next_sequence
                or msg.checkpointed_sequence > msg.next_sequence):
            # Ahead of anything sent: taking it would forget chunks no checkpoint holds.
            self.rejections('experience/ack', f'experience/ack: next_sequence '
                            f'{msg.next_sequence}, checkpointed {msg.checkpointed_sequence}, '
                            f'but only chunks before {self.next_sequence} were sent',
                            'acknowledgement refused')
            return
        if self.next_sequence is None:
            self.next_sequence = msg.next_sequence
            self.get_logger().info(f'trainer found; experience continues at chunk '
                                   f'{msg.next_sequence}')
        elif msg.next_sequence < self.acked:
            # The trainer went back to an older checkpoint: what it lost is still here.
            self.get_logger().warning(f'trainer resumed at chunk {msg.next_sequence}; '
                                      f'sending again from there')
            for sequence, entry in self.unacked.items():
                if msg.next_sequence <= sequence < self.acked:
                    self.delivered -= entry[0].num_transitions
                entry[1] = 0.0
            self.acked = msg.next_sequence
        for sequence in list(self.unacked):
            if sequence < msg.next_sequence and sequence >= self.acked:
                self.delivered += self.unacked[sequence][0].num_transitions
        self.acked = msg.next_sequence
        self.checkpointed = msg.checkpointed_sequence
        for sequence in [s for s in self.unacked if s < self.checkpointed]:
            del self.unacked[sequence]

    def on_timer(self):
        """Finish ended episodes, number waiting chunks, (re)send unacknowledged ones."""
        now = time.monotonic()
        for episode_id, episode in list(self.episodes.items()):
            if episode.end is not None and (self._complete(episode)
                                            or now - episode.ended_at > self.complete_wait):
                self._finish(episode_id, episode)
            elif episode.end is None and episode.confirmed >= episode.sent + 2:
                # Transition k is final once step k + 2 is confirmed: step k + 1 was not the
                # last, and an END without a new measurement (stale commands) cannot make it so.
                self._emit(episode_id, episode, self._usable(episode, episode.confirmed - 1))
        while self.next_sequence is not None and self.unnumbered:
            first_step, episode_id, rows, dropped = self.unnumbered.popleft()
            msg = convert.experience(self.robot_id, self.next_sequence, episode_id, first_step,
                                     rows, self.get_clock().now().nanoseconds, dropped,
                                     self.profile.observation_spec)
            self.unacked[self.next_sequence] = [msg, 0.0]
            self.next_sequence += 1
        for sequence, entry in self.unacked.items():
            if sequence >= self.acked and now - entry[1] > self.resend_period:
                self.publisher.publish(entry[0])
                entry[1] = now

    @staticmethod
    def _complete(episode: _Episode) -> bool:
        n = episode.end.steps
        return all(k in episode.steps for k in range(episode.sent, n + 1)) and all(
            k in episode.rewards for k in range(episode.sent, n))

    @staticmethod
    def _usable(episode: _Episode, n: int) -> int:
        """How many of transitions 0 .. n - 1 are complete, without a gap."""
        usable = episode.sent
        while usable < n and usable in episode.rewards and usable + 1 in episode.steps \
                and usable in episode.steps:
            usable += 1
        return usable

    def _finish(self, episode_id: int, episode: _Episode):
        del self.episodes[episode_id]
        self.finished.add(episode_id)
        for old in [e for e in self.finished if e < episode_id - 1000]:
            self.finished.discard(old)
        n = episode.end.steps
        usable = self._usable(episode, n)
        if usable < n:
            self.dropped += n - usable
            self.get_logger().warning(f'episode {episode_id}: step {usable} of {n} incomplete; '
                                      f'{n - usable} transition(s) dropped')
        if usable == episode.sent:  # nothing (more) to send: tell the trainer what was lost
            if n > usable:
                self.unnumbered.append((usable, episode_id, None, n - usable))
            return
        rows = self._emit(episode_id, episode, usable, dropped=n - usable)
        if usable == n:
            rows['terminated'][-1] = episode.end.terminated
            rows['truncated'][-1] = episode.end.truncated
        else:
            rows['truncated'][-1] = True  # cut at the gap: not a terminal state

    def _emit(self, episode_id: int, episode: _Episode, upto: int,
              dropped: int = 0) -> dict | None:
        """Queue transitions ``episode.sent .. upto - 1`` as chunks; return their rows.

        ``dropped`` (transitions lost after these, at an episode's end) goes with the last chunk.
        """
        first = episode.sent
        if upto <= first:
            return None
        steps, rewards, images = episode.steps, episode.rewards, episode.images
        rows = {
            'observations': np.stack([steps[k].observation for k in range(first, upto)]),
            'actions': np.stack([steps[k].action for k in range(first, upto)]),
            'rewards': np.array([rewards[k] for k in range(first, upto)], np.float32),
            'next_observations': np.stack([steps[k + 1].observation
                                           for k in range(first, upto)]),
            'terminated': np.zeros(upto - first, bool),
            'truncated': np.zeros(upto - first, bool),
            'policy_versions': np.array([steps[k].policy_version for k in range(first, upto)],
                                        np.uint64)}
        if self.image_shape is not None:
            rows['images'] = np.stack([images[k] for k in range(first, upto)])
            rows['next_images'] = np.stack([images[k + 1] for k in range(first, upto)])
        for k in range(first, upto):  # keep step `upto`: the next transition starts there
            steps.pop(k, None)
            rewards.pop(k, None)
            images.pop(k, None)
        episode.sent = upto
        self.transitions += upto - first
        starts = list(range(0, upto - first, self.chunk_size))
        for start in starts:  # views: the flags set on rows after this reach the last chunk
            chunk = {k: v[start:start + self.chunk_size] for k, v in rows.items()}
            self.unnumbered.append((first + start, episode_id, chunk,
                                    dropped if start == starts[-1] else 0))
        return rows

    def pending(self) -> int:
        """Transitions assembled but not yet acknowledged by the trainer."""
        return self.transitions - self.delivered


def main(args=None) -> int:
    """Run the data collector node."""
    return run(DataCollector, args)
