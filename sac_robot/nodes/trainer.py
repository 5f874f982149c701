# SPDX-License-Identifier: Apache-2.0
"""trainer: replay buffer + SAC/SQL updates in a thread of their own, versioned weights out.

Receives ``experience`` chunks (sac_robot/Experience), checks them, and adds them to the replay
buffer in sequence order (each robot's stream is numbered; duplicates are ignored, gaps wait),
acknowledging on ``experience/ack`` (latched). A training thread runs updates continuously,
independent of how fast experience comes, keeping the update-to-data ratio at most
``max_utd`` (updates per received transition) once ``learning_starts`` transitions are in; the
ratio is reported, and below ``min_utd`` a warning says that training cannot keep up. Every
``publish_every`` updates it publishes the policy on ``policy/weights`` (sac_robot/PolicyWeights,
safetensors + SHA-256, latched, version 1, 2, ...).

Checkpoints (networks, optimisers, temperature, replay buffer, the experience stream position,
the policy version) go to ``checkpoint_dir`` every ``checkpoint_period`` seconds and on
shutdown; ``resume`` continues from there, and the acknowledgement then tells the collector to
send again whatever came after the checkpoint. With ``max_steps`` the trainer checkpoints and
exits once it holds that many transitions. Every agent setting is a parameter ``agent.<name>``
(the fields of :class:`~sac_robot.algorithms.sac.SACConfig` or
:class:`~sac_robot.algorithms.sql.SQLConfig`), so a config YAML sets them. With
``tensorboard_dir`` (the launch files: ``<run_dir>/tb``) it writes TensorBoard scalars
(:mod:`sac_robot.scalars`): each episode's return and length as the chunks bring them, and with
every ``training_stats`` the update's metrics, the rates, updates per transition and the lag of
the acting policy's version behind the newest.
"""

import dataclasses
import json
import math
import os
import threading
import time

import numpy as np
import torch
from rclpy.node import Node

from sac_robot.algorithms.checkpoint import (export_policy, load_checkpoint, policy_metadata,
                                             read_checkpoint_meta, recover_checkpoint,
                                             save_checkpoint)
from sac_robot.algorithms.replay import ReplayBuffer
from sac_robot.algorithms.sac import SACConfig
from sac_robot.algorithms.sql import SQLConfig
from sac_robot.msg import (Experience, ExperienceAck, PolicyWeights, TrainingProgress,
                           TrainingStats)
from sac_robot.nodes import convert, qos
from sac_robot.nodes.params import declare_robot, declare_robot_id, describe
from sac_robot.nodes.rejections import Rejections
from sac_robot.nodes.robots import profile as make_profile
from sac_robot.nodes.spin import run
from sac_robot.scalars import Scalars
from sac_robot.training import build_agent

CONFIGS = {'sac': SACConfig, 'sql': SQLConfig}
#: Times the chunk the stream waits for is refused before it is passed over as lost.
REFUSALS_BEFORE_SKIP = 3


def declare_agent_settings(node: Node, config_class) -> dict:
    """Declare every field of ``config_class`` as ``agent.<field>``; return the values set.

    ``None`` defaults are declared as NaN (floats) and read back as ``None``; tuples as lists.
    """
    settings = {}
    for field in dataclasses.fields(config_class):
        default = field.default
        if default is None:
            default = math.nan
        elif isinstance(default, tuple):
            default = list(default)
        value = node.declare_parameter(f'agent.{field.name}', default, describe(
            f'{config_class.__name__}.{field.name} (see sac_robot/algorithms/)')).value
        if isinstance(value, float) and math.isnan(value):
            value = None
        elif isinstance(field.default, tuple):
            value = tuple(value)
        settings[field.name] = value
    return settings


class Trainer(Node):
    """Learn from delivered experience; publish the policy; checkpoint and resume."""

    def __init__(self, **kwargs):
        super().__init__('trainer', **kwargs)
        declare = self.declare_parameter
        robot = declare_robot(self)
        self.algorithm = declare('algorithm', 'sac', describe('sac or sql')).value
        if self.algorithm not in CONFIGS:
            raise ValueError(f"algorithm must be 'sac' or 'sql', not {self.algorithm!r}")
        self.robot_id = declare_robot_id(
            self, robot, 'The robot whose experience stream this trainer acknowledges')
        self.checkpoint_dir = os.path.abspath(os.path.expanduser(declare(
            'checkpoint_dir', 'runs/train/checkpoint', describe(
                'Directory of the checkpoint (written atomically).')).value))
        resume = declare('resume', False, describe(
            'Continue from the checkpoint in checkpoint_dir, if there is one.')).value
        replay_file = declare('replay_file', '', describe(
            'Start (when not resuming) with the transitions of this replay buffer, e.g. one '
            'made from a bag by sac-robot bag to-buffer.')).value
        self.max_steps = declare('max_steps', 0, describe(
            'Checkpoint and exit after this many transitions (0: no limit).')).value
        self.min_utd = declare('min_utd', 0.0, describe(
            'Warn when updates per transition fall below this.')).value
        self.max_utd = declare('max_utd', 1.0, describe(
            'Most updates per received transition.')).value
        self.publish_every = declare('publish_every', 20, describe(
            'Updates between published policies.')).value
        self.checkpoint_period = declare('checkpoint_period', 120.0, describe(
            'Seconds between checkpoints.')).value
        stats_period = declare('stats_period', 1.0, describe(
            'Seconds between training_stats messages.')).value
        tensorboard_dir = declare('tensorboard_dir', '', describe(
            'Write TensorBoard scalars here (episode returns, losses, alpha, entropy, Q, '
            "updates/s, updates per transition, policy version lag); '': none. The training "
            'launch files set <run_dir>/tb.')).value
        self.max_episode_steps = declare('max_episode_steps', 0, describe(
            "The longest episode, in steps (the safety node's time limit; 0: the robot's): an "
            'experience chunk claiming steps past it is refused.')).value or None
        seed = declare('seed', 0, describe('Seed of the agent and the replay sampling.')).value
        threads = declare('threads', 0, describe('Torch threads (0: torch default).')).value
        settings = declare_agent_settings(self, CONFIGS[self.algorithm])
        if threads:
            torch.set_num_threads(threads)

        self.profile = make_profile(robot, pixels=declare('pixels', False, describe(
            "Learn from the camera image (the D'Claw): observations are the image, joint "
            'positions and velocities.')).value)
        self.max_episode_steps = self.max_episode_steps or self.profile.max_episode_steps
        obs_size, action_size = self.profile.observation_spec, self.profile.action_size
        self.agent = build_agent(self.algorithm, obs_size, action_size, settings, seed)
        self.config = self.agent.config
        self.buffer = ReplayBuffer(obs_size, action_size, self.config.buffer_size, seed=seed)
        self.lock = threading.Lock()  # the agent and the buffer
        self.next_sequence, self.checkpointed_sequence = 0, 0
        self.waiting = {}  # sequence -> Experience that came before a gap was filled
        self.env_steps, self.episodes, self.policy_version = 0, 0, 0
        self.scalars = Scalars(tensorboard_dir) if tensorboard_dir else None
        self.rejections = Rejections(self.get_logger())
        self.refusals = {}  # sequence -> times the chunk the stream waits for was refused
        self.returns = {}  # episode -> (return, steps) so far, for the scalars
        self.acting_version = 0  # of the policy that chose the newest transition
        self.dropped = 0  # transitions the collector reported lost
        self.newest = (0, 0)  # (episode id, its transitions received) of the newest chunk
        self.starved = False  # the training thread is waiting for experience
        self.data_wait = 0.0  # seconds the training thread waited for experience (max_utd)
        self.metrics = {}

        self.preloaded = 0  # transitions from replay_file: they count for max_utd
        resuming = resume and recover_checkpoint(self.checkpoint_dir)
        if replay_file and not resuming:
            preload = ReplayBuffer.load(os.path.expanduser(replay_file), obs_size, action_size)
            n = len(preload)
            self.buffer.add(*preload.transitions())
            self.preloaded = n
            self.get_logger().info(f'{n} transitions from {replay_file}')
        if resuming:
            meta = read_checkpoint_meta(self.checkpoint_dir)
            if meta['algorithm'] != self.algorithm:
                raise ValueError(f'{self.checkpoint_dir} holds a {meta["algorithm"]} agent, '
                                 f'not {self.algorithm}')
            restored, extra = load_checkpoint(self.checkpoint_dir, self.agent)
            self.buffer = restored if restored is not None else self.buffer
            self.next_sequence = self.checkpointed_sequence = int(extra.get('next_sequence', 0))
            self.env_steps = int(extra.get('env_steps', len(self.buffer)))
            self.episodes = int(extra.get('episodes', 0))
            self.policy_version = int(extra.get('policy_version', 0))
            self.dropped = int(extra.get('dropped', 0))
            self.get_logger().info(
                f'resumed from {self.checkpoint_dir}: {self.env_steps} transitions, '
                f'{self.agent.gradient_steps} updates, policy v{self.policy_version}, '
                f'experience from chunk {self.next_sequence}')

        self.ack_publisher = self.create_publisher(ExperienceAck, 'experience/ack', qos.LATCHED)
        self.weights_publisher = self.create_publisher(PolicyWeights, 'policy/weights',
                                                       qos.LATCHED)
        self.stats_publisher = self.create_publisher(TrainingStats, 'training_stats', qos.EVENTS)
        self.progress_publisher = self.create_publisher(TrainingProgress, 'training/progress',
                                                        qos.LATCHED)
        self.create_subscription(Experience, 'experience', self.on_experience, qos.CHUNKS)
        self.create_timer(stats_period, self.publish_stats)
        if self.checkpoint_period > 0:
            self.create_timer(self.checkpoint_period, self.checkpoint)
        self._ack()
        self.publish_progress()
        if self.policy_version:
            self.publish_policy()  # the policy node gets the resumed weights at once

        self._stop = threading.Event()
        self._rate_mark = (time.monotonic(), self.agent.gradient_steps, self.env_steps, 0.0)
        self.rates, self.wait_fraction = (0.0, 0.0), 0.0
        self.thread = threading.Thread(target=self._train, name='training', daemon=True)
        self.thread.start()
        self.exit_status = None

    # Experience -----------------------------------------------------------------------------

    def on_experience(self, msg: Experience):
        """Add chunks to the buffer in sequence order; acknowledge."""
        if msg.robot_id != self.robot_id:
            self.get_logger().warning(f'experience from {msg.robot_id!r} ignored (this trainer '
                                      f'serves {self.robot_id!r})', throttle_duration_sec=5.0)
            return
        if msg.sequence < self.next_sequence:
            self._ack()  # a duplicate: our acknowledgement was perhaps lost
            return
        try:
            rows = convert.read_experience(msg, self.profile.observation_spec,
                                           self.profile.action_size, 'experience')
            longest = self.max_episode_steps
            if msg.first_step + msg.num_transitions + msg.dropped > longest:
                # (counts come from the sender: bounded by what an episode can hold)
                raise convert.MessageError(
                    f'experience: chunk {msg.sequence} claims steps from {msg.first_step}, '
                    f'{msg.num_transitions} taken and {msg.dropped} lost after them, in an '
                    f'episode of at most {longest} steps (max_episode_steps)')
        except convert.MessageError as error:
            self.rejections('experience', str(error), 'chunk rejected')
            self._refused_again(msg)
            return
        if msg.dropped:
            self.get_logger().warning(f'episode {msg.episode_id}: {msg.dropped} transition(s) '
                                      'lost before delivery')
        self.waiting[msg.sequence] = (rows, msg.dropped, msg.episode_id, msg.first_step)
        while self.next_sequence in self.waiting:
            self._add(*self.waiting.pop(self.next_sequence))
            self.next_sequence += 1
        self._ack()
        self.publish_progress()
        if (self.max_steps and self.env_steps + self.dropped >= self.max_steps
                and self.exit_status is None):
            self.get_logger().info(f'{self.env_steps} transitions received: done')
            self.finish()

    def _refused_again(self, msg: Experience):
        """A chunk refused as often as the collector resends it must not stop every later one.

        The collector sends an unacknowledged chunk again and again; once the chunk the stream
        waits for has been refused ``REFUSALS_BEFORE_SKIP`` times (the same poison, not one
        stray message), it is passed over as lost (counted with the dropped transitions, at
        most an episode's worth) and the stream goes on.
        """
        if msg.sequence != self.next_sequence:
            return
        self.refusals[msg.sequence] = self.refusals.get(msg.sequence, 0) + 1
        if self.refusals[msg.sequence] < REFUSALS_BEFORE_SKIP:
            return
        lost = min(int(msg.num_transitions), self.max_episode_steps)
        self.get_logger().error(f'experience: chunk {msg.sequence} refused '
                                f'{REFUSALS_BEFORE_SKIP} times: passed over as lost ({lost} '
                                'transition(s)); the stream goes on')
        del self.refusals[msg.sequence]
        self.dropped += lost
        self.next_sequence += 1
        while self.next_sequence in self.waiting:
            self._add(*self.waiting.pop(self.next_sequence))
            self.next_sequence += 1
        self._ack()

    def _add(self, rows: dict, dropped: int, episode_id: int = 0, first_step: int = 0):
        self.dropped += dropped
        self.newest = (episode_id, first_step + len(rows['rewards']))
        if not len(rows['rewards']):
            # Only a report of what was lost: the episode ended after a gap (its transitions
            # before the gap, if any, came without the end's flag).
            self.episodes += int(dropped > 0)
            return
        with self.lock:
            self.buffer.add(rows['observations'], rows['actions'], rows['rewards'],
                            rows['next_observations'], rows['terminated'], rows['truncated'])
        self.env_steps += len(rows['rewards'])
        ended = bool(np.any(rows['terminated'] | rows['truncated']))
        self.episodes += int(ended)
        self.acting_version = int(rows['policy_versions'][-1])
        if self.scalars is not None:  # (a chunk holds steps of one episode)
            total, steps = self.returns.pop(episode_id, (0.0, 0))
            total, steps = total + float(np.sum(rows['rewards'])), steps + len(rows['rewards'])
            if ended:
                self.scalars.add(self.env_steps, {'episode_return': total,
                                                  'episode_length': steps}, 'rollout')
            else:
                self.returns[episode_id] = (total, steps)

    def _ack(self):
        if not self.context.ok():
            return  # shutting down (Ctrl-C): the next start reads the checkpoint instead
        msg = ExperienceAck()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.robot_id, msg.next_sequence = self.robot_id, self.next_sequence
        msg.checkpointed_sequence = self.checkpointed_sequence
        self.ack_publisher.publish(msg)

    # Training -------------------------------------------------------------------------------

    def _train(self):
        while not self._stop.is_set():
            if self._starving():
                if not self.starved:  # a policy holding for us must go on
                    self.starved = True
                    self.publish_progress()
                time.sleep(0.002)  # training waits for collection
                if len(self.buffer) >= self._starts():
                    self.data_wait += 0.002  # (max_utd reached)
                continue
            self.starved = False
            with self.lock:
                batch = self.buffer.sample(self.config.batch_size, self.agent.device)
                metrics = self.agent.update(batch)
            self.metrics = metrics
            if self.agent.gradient_steps % self.publish_every == 0:
                self.publish_policy()
            if self.agent.gradient_steps % 10 == 0:
                self.publish_progress()

    def _starts(self) -> int:
        return max(self.config.learning_starts, self.config.batch_size)

    def _starving(self) -> bool:
        """Whether no update can run until more experience comes."""
        return (len(self.buffer) < self._starts() or self.agent.gradient_steps
                >= self.max_utd * (self.env_steps + self.preloaded))

    def publish_progress(self):
        """Tell the policy node how far training is (its min_utd gate)."""
        if not self.context.ok():
            return
        msg = TrainingProgress()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.gradient_steps, msg.env_steps = self.agent.gradient_steps, self.env_steps
        msg.learning_starts = self.config.learning_starts
        msg.episode_id, msg.episode_steps = self.newest
        msg.waiting_for_experience = self._starving()
        self.progress_publisher.publish(msg)

    def publish_policy(self):
        """Publish the current policy as the next version."""
        with self.lock:
            self.policy_version += 1
            data = export_policy(self.agent, self.policy_version)
            updates = self.agent.gradient_steps
        self.weights_publisher.publish(convert.policy_weights(
            data, self.policy_version, self.algorithm, json.dumps(policy_metadata(data)),
            updates, self.env_steps, self.get_clock().now().nanoseconds))

    def checkpoint(self):
        """Write the checkpoint; tell the collector what it may forget."""
        with self.lock:
            sequence = self.next_sequence
            save_checkpoint(self.checkpoint_dir, self.agent, self.buffer, {
                'env_steps': self.env_steps, 'episodes': self.episodes,
                'next_sequence': sequence, 'policy_version': self.policy_version,
                'dropped': self.dropped})
        self.checkpointed_sequence = sequence
        self._ack()
        self.get_logger().info(f'checkpoint: {self.env_steps} transitions, '
                               f'{self.agent.gradient_steps} updates -> {self.checkpoint_dir}')

    def publish_stats(self):
        """Publish training statistics (and warn when training falls behind min_utd)."""
        now, updates, steps = time.monotonic(), self.agent.gradient_steps, self.env_steps
        then, updates0, steps0, wait0 = self._rate_mark
        if now > then:
            self.rates = ((updates - updates0) / (now - then), (steps - steps0) / (now - then))
            self.wait_fraction = (self.data_wait - wait0) / (now - then)
        self._rate_mark = (now, updates, steps, self.data_wait)
        # Updates per transition since learning started (the warm-up has none by design).
        learned_on = steps + self.preloaded - self.config.learning_starts
        utd = updates / max(learned_on, 1)
        if self.min_utd and learned_on > 0 and utd < self.min_utd:
            self.get_logger().warning(f'{utd:.2f} updates per transition, below min_utd '
                                      f'{self.min_utd}', throttle_duration_sec=10.0)
        msg = TrainingStats()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.algorithm, msg.gradient_steps, msg.env_steps = self.algorithm, updates, steps
        msg.episodes, msg.buffer_size = self.episodes, len(self.buffer)
        msg.policy_version = self.policy_version
        msg.updates_per_second, msg.env_steps_per_second = self.rates
        metrics = dict(self.metrics, utd=utd, data_wait_fraction=self.wait_fraction,
                       data_wait_seconds=self.data_wait)
        msg.names = list(metrics)
        msg.values = [float(v) for v in metrics.values()]
        self.stats_publisher.publish(msg)
        if self.scalars is not None and self.metrics:
            self.scalars.add(steps, {**self.metrics, 'utd': utd, 'version_lag': float(
                self.policy_version - self.acting_version)}, 'train')
            self.scalars.add(steps, {'updates_per_second': self.rates[0],
                                     'env_steps_per_second': self.rates[1],
                                     'data_wait_fraction': self.wait_fraction}, 'time')

    def finish(self, status: int = 0):
        """Stop training, checkpoint, and end the node's run."""
        self._stop.set()
        self.thread.join()
        self.checkpoint()
        self._close_scalars()
        self.exit_status = status

    def close(self):
        """On shutdown: stop the training thread and checkpoint (unless already done)."""
        if self.exit_status is None:
            self._stop.set()
            self.thread.join()
            self.checkpoint()
        self._close_scalars()

    def _close_scalars(self):
        if self.scalars is not None:
            self.scalars.close()
            self.scalars = None  # (the stats timer may fire once more: no new file)


def main(args=None) -> int:
    """Run the trainer node."""
    return run(Trainer, args)
