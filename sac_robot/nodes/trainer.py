# SPDX-License-Identifier: Apache-2.0
"""trainer: replay buffer + SAC/SQL updates in a thread of their own, versioned weights out.

Receives ``experience`` chunks (sac_robot/Experience), checks them, and adds them to the replay
buffer in sequence order (each robot's stream is numbered; duplicates are ignored, gaps wait),
acknowledging on ``experience/ack`` (latched). ``robots`` (namespaces) makes it the trainer of a
fleet: one stream per robot, each with its own numbering, acknowledgements and checkpointed
position on ``/<robot>/experience`` and ``/<robot>/experience/ack``, every robot's policy fed
the same weights on its ``/<robot>/policy/weights``; a robot that joins late, leaves or
restarts moves only its own stream (the default, ``['']``: the robot of the trainer's own
namespace, topics relative to it). A training thread runs updates continuously,
independent of how fast experience comes, keeping the update-to-data ratio at most
``max_utd`` (updates per received transition) once ``learning_starts`` transitions are in; the
ratio is reported, and below ``min_utd`` a warning says that training cannot keep up. Every
``publish_every`` updates it publishes the policy on ``policy/weights`` (sac_robot/PolicyWeights,
safetensors + SHA-256, latched, version 1, 2, ... under the run's ``run_id``, random at a fresh
start and kept across resume: a policy compares versions within a run only).

Checkpoints (networks, optimisers, temperature, replay buffer, the experience stream position,
the policy version) go to ``checkpoint_dir`` every ``checkpoint_period`` seconds and on
shutdown; ``resume`` continues from there, and the acknowledgement then tells the collector to
send again whatever came after the checkpoint. With ``max_steps`` the trainer checkpoints and
exits once it holds that many transitions. Every agent setting is a parameter ``agent.<name>``
(the fields of :class:`~sac_robot.algorithms.sac.SACConfig` or
:class:`~sac_robot.algorithms.sql.SQLConfig`), so a config YAML sets them. With
``tensorboard_dir`` (the launch files: ``<run_dir>/tb``) it writes TensorBoard scalars
(:mod:`sac_robot.scalars`): each episode's return and length as the chunks bring them, and with
every ``training_stats`` the update's metrics, the rates, updates per transition, the lag of
the acting policy's version behind the newest and the weights' age when acted on
(``weights_age_steps``: control steps from a version's publication to each transition it chose,
the mean since the last statistics), and the training thread's idle time (``data_wait_*``:
waiting for experience at ``max_utd``).
"""

import collections
import dataclasses
import hashlib
import json
import math
import os
import secrets
import threading
import time

import numpy as np
import torch
from rclpy.node import Node
from rclpy.parameter import Parameter

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


def _digest(msg: Experience) -> str:
    """What tells one chunk from another with the same number (its transitions, its counts)."""
    digest = hashlib.sha256(f'{msg.episode_id} {msg.first_step} {msg.num_transitions} '
                            f'{msg.dropped}'.encode())
    for field in (msg.observations, msg.actions, msg.rewards, msg.next_observations,
                  msg.images):
        digest.update(np.asarray(field).tobytes())
    return digest.hexdigest()


def declare_agent_settings(node: Node, config_class) -> dict:
    """Declare every field of ``config_class`` as ``agent.<field>``; return the values set.

    ``None`` defaults are declared as NaN (floats) and read back as ``None``; tuples as lists
    (an empty one as a list of strings: ``privileged``).
    """
    settings = {}
    for field in dataclasses.fields(config_class):
        default = field.default
        if default is None:
            default = math.nan
        elif isinstance(default, tuple):
            default = list(default) or Parameter.Type.STRING_ARRAY  # (typed, not set)
        value = node.declare_parameter(f'agent.{field.name}', default, describe(
            f'{config_class.__name__}.{field.name} (see sac_robot/algorithms/)')).value
        if isinstance(value, float) and math.isnan(value):
            value = None
        elif isinstance(field.default, tuple):
            value = tuple(value or ())
        settings[field.name] = value
    return settings


@dataclasses.dataclass
class _Stream:
    """One robot's experience stream: how far it is, what waits, what it brought."""

    robot_id: str
    ack: object = None  # its ExperienceAck publisher
    weights: object = None  # its PolicyWeights publisher
    progress: object = None  # its TrainingProgress publisher
    stats: object = None  # its TrainingStats publisher (a fleet's: each robot's own)
    next_sequence: int = 0
    checkpointed_sequence: int = 0
    waiting: dict = dataclasses.field(default_factory=dict)  # sequence -> chunk before a gap
    refusals: dict = dataclasses.field(default_factory=dict)  # (sequence, digest) -> refused
    returns: dict = dataclasses.field(default_factory=dict)  # episode -> (return, steps) so far
    env_steps: int = 0
    episodes: int = 0
    dropped: int = 0  # transitions its collector reported lost (or passed over)
    newest: tuple = (0, 0)  # (episode id, its transitions received) of its newest chunk
    acting_version: int = 0  # of the policy that chose its newest transition
    last_return: float = math.nan  # of its newest finished episode
    last_chunk: float = math.nan  # monotonic time its newest chunk came

    def position(self) -> dict:
        """What a checkpoint keeps of it."""
        return {'next_sequence': self.next_sequence, 'env_steps': self.env_steps,
                'episodes': self.episodes, 'dropped': self.dropped,
                'episode_id': self.newest[0]}


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
        robots = [r.strip('/') for r in declare('robots', [''], describe(
            "Namespaces of the robots whose experience this trainer learns from (a fleet: "
            "['dclaw0', 'dclaw1'], topics /<robot>/experience, ...); ['']: the robot of its "
            'own namespace (robot_id), topics relative to it.')).value]
        if len(set(robots)) != len(robots) or ('' in robots and len(robots) > 1):
            raise ValueError(f'robots: {robots} names a robot twice, or mixes the own '
                             "namespace ('') with others")
        self.checkpoint_dir = os.path.abspath(os.path.expanduser(declare(
            'checkpoint_dir', 'runs/train/checkpoint', describe(
                'Directory of the checkpoint (written atomically).')).value))
        resume = declare('resume', False, describe(
            'Continue from the checkpoint in checkpoint_dir, if there is one.')).value
        init_checkpoint = declare('init_checkpoint', '', describe(
            'Start (when not resuming) from the agent of this checkpoint, e.g. a pretrained one '
            "(sac-robot pretrain's): its networks go to the robot at once; the replay buffer "
            "starts empty. '': from scratch.")).value
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
        #: Each robot's stream, by robot id (the fleet's namespaces, or this node's robot).
        self.streams = {robot_id or self.robot_id: _Stream(robot_id or self.robot_id)
                        for robot_id in robots}
        self.fleet = robots != ['']
        self.env_steps, self.episodes, self.dropped = 0, 0, 0  # of all the streams together
        self.policy_version = 0
        #: This run's identity on its weights (a resumed run keeps it: its versions go on).
        self.run_id = secrets.token_hex(8)
        self.scalars = Scalars(tensorboard_dir) if tensorboard_dir else None
        self.rejections = Rejections(self.get_logger())
        self.acting_version = 0  # of the policy that chose the newest transition
        self.absent = {}  # streams of the checkpoint resumed that this run has no robot for
        # Policy version -> transitions received when it was published (the newest 1000), and
        # the ages of the weights that chose the transitions since the last statistics.
        self.published = collections.OrderedDict()
        self.ages = []
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
        if init_checkpoint and not resuming:
            load_checkpoint(os.path.expanduser(init_checkpoint), self.agent, load_replay=False)
            self.agent.gradient_steps = 0  # (max_utd compares this run's updates and steps)
            self.get_logger().info(f'starting from the agent of {init_checkpoint}')
        if resuming:
            meta = read_checkpoint_meta(self.checkpoint_dir)
            if meta['algorithm'] != self.algorithm:
                raise ValueError(f'{self.checkpoint_dir} holds a {meta["algorithm"]} agent, '
                                 f'not {self.algorithm}')
            restored, extra = load_checkpoint(self.checkpoint_dir, self.agent)
            self.buffer = restored if restored is not None else self.buffer
            self.env_steps = int(extra.get('env_steps', len(self.buffer)))
            self.episodes = int(extra.get('episodes', 0))
            self.policy_version = int(extra.get('policy_version', 0))
            self.run_id = str(extra.get('run_id') or self.run_id)
            self.dropped = int(extra.get('dropped', 0))
            self._restore_streams(extra)
            where = ', '.join(f'{s.robot_id} from chunk {s.next_sequence}'
                              for s in self.streams.values())
            self.get_logger().info(
                f'resumed from {self.checkpoint_dir}: {self.env_steps} transitions, '
                f'{self.agent.gradient_steps} updates, policy v{self.policy_version}, '
                f'experience: {where}')

        self.stats_publisher = self.create_publisher(TrainingStats, 'training_stats', qos.EVENTS)
        for stream in self.streams.values():
            prefix = f'/{stream.robot_id}/' if self.fleet else ''
            stream.ack = self.create_publisher(ExperienceAck, f'{prefix}experience/ack',
                                               qos.LATCHED)
            stream.weights = self.create_publisher(PolicyWeights, f'{prefix}policy/weights',
                                                   qos.LATCHED)
            stream.progress = self.create_publisher(
                TrainingProgress, f'{prefix}training/progress', qos.LATCHED)
            stream.stats = (self.create_publisher(TrainingStats, f'{prefix}training_stats',
                                                  qos.EVENTS) if self.fleet else None)
            self.create_subscription(
                Experience, f'{prefix}experience',
                lambda msg, stream=stream: self.on_experience(msg, stream), qos.CHUNKS)
        self.create_timer(stats_period, self.publish_stats)
        if self.checkpoint_period > 0:
            self.create_timer(self.checkpoint_period, self.checkpoint)
        for stream in self.streams.values():
            self._ack(stream)
        self.publish_progress()
        if self.policy_version or (init_checkpoint and not resuming):
            self.publish_policy()  # the robot acts with the resumed (or given) agent at once

        self._stop = threading.Event()
        self._rate_mark = (time.monotonic(), self.agent.gradient_steps, self.env_steps, 0.0)
        self.rates, self.wait_fraction = (0.0, 0.0), 0.0
        self.thread = threading.Thread(target=self._train, name='training', daemon=True)
        self.thread.start()
        self.exit_status = None

    # Experience -----------------------------------------------------------------------------

    @property
    def next_sequence(self) -> int:
        """The next chunk the (one) robot's stream waits for."""
        [stream] = self.streams.values()
        return stream.next_sequence

    def _restore_streams(self, extra: dict):
        """Each stream's position from a checkpoint's ``extra``.

        ``streams``, by robot; a checkpoint from before fleets holds one stream's
        ``next_sequence``.
        """
        positions = extra.get('streams')
        if not isinstance(positions, dict):
            [stream] = self.streams.values() if not self.fleet else [None]
            if stream is None:
                raise ValueError(f"{self.checkpoint_dir} holds one robot's stream, not the "
                                 f'streams of {", ".join(self.streams)}')
            positions = {stream.robot_id: {'next_sequence': extra.get('next_sequence', 0),
                                           'env_steps': self.env_steps,
                                           'episodes': self.episodes,
                                           'dropped': self.dropped}}
        self.absent = {}  # robots of the checkpoint not in this run: kept for the next one
        for robot_id, position in positions.items():
            stream = self.streams.get(robot_id)
            if stream is None:
                self.absent[robot_id] = dict(position)
                continue
            stream.next_sequence = stream.checkpointed_sequence = int(position['next_sequence'])
            stream.env_steps = int(position['env_steps'])
            stream.episodes = int(position['episodes'])
            stream.dropped = int(position['dropped'])
            stream.newest = (int(position.get('episode_id', 0)), 0)  # (numbering resumes after)

    def on_experience(self, msg: Experience, stream: _Stream | None = None):
        """Add chunks to the buffer in each robot's sequence order; acknowledge."""
        if stream is None:  # (the one stream: a direct call)
            [stream] = self.streams.values()
        if msg.robot_id != stream.robot_id:
            self.get_logger().warning(
                f"experience from {msg.robot_id!r} on {stream.robot_id!r}'s topic ignored",
                throttle_duration_sec=5.0)
            return
        if msg.sequence < stream.next_sequence:
            self._ack(stream)  # a duplicate: our acknowledgement was perhaps lost
            return
        try:
            rows = convert.read_experience(msg, self.profile.observation_spec,
                                           self.profile.action_size, 'experience')
            longest = self.max_episode_steps
            if msg.episode_id > stream.newest[0] + convert.EPISODE_ID_JUMP:
                raise convert.MessageError(
                    f'experience: chunk {msg.sequence} is of episode {msg.episode_id}, more '
                    f'than {convert.EPISODE_ID_JUMP} after the newest, {stream.newest[0]} '
                    '(episode ids grow one an episode)')
            if msg.first_step + msg.num_transitions + msg.dropped > longest:
                # (counts come from the sender: bounded by what an episode can hold)
                raise convert.MessageError(
                    f'experience: chunk {msg.sequence} claims steps from {msg.first_step}, '
                    f'{msg.num_transitions} taken and {msg.dropped} lost after them, in an '
                    f'episode of at most {longest} steps (max_episode_steps)')
        except convert.MessageError as error:
            self.rejections(self._topic(stream), str(error), 'chunk rejected')
            self._refused_again(msg, stream)
            return
        if msg.dropped:
            self.get_logger().warning(f'{stream.robot_id} episode {msg.episode_id}: '
                                      f'{msg.dropped} transition(s) lost before delivery')
        stream.last_chunk = time.monotonic()
        stream.waiting[msg.sequence] = (rows, msg.dropped, msg.episode_id, msg.first_step)
        self._drain(stream)
        self.publish_progress(stream)
        if (self.max_steps and self.env_steps + self.dropped >= self.max_steps
                and self.exit_status is None):
            self.get_logger().info(f'{self.env_steps} transitions received: done')
            self.finish()

    def _topic(self, stream: _Stream) -> str:
        return f'/{stream.robot_id}/experience' if self.fleet else 'experience'

    def _drain(self, stream: _Stream):
        """Add the chunks that now follow in order; acknowledge."""
        while stream.next_sequence in stream.waiting:
            self._add(stream, *stream.waiting.pop(stream.next_sequence))
            stream.next_sequence += 1
        self._ack(stream)

    def _refused_again(self, msg: Experience, stream: _Stream):
        """A chunk refused as often as the collector resends it must not stop every later one.

        The collector sends an unacknowledged chunk again and again; once the chunk the stream
        waits for has been refused ``REFUSALS_BEFORE_SKIP`` times, the same chunk each time (the
        same poison resent, not one stray message nor different ones forged with its
        number), it is passed over as lost (counted with the dropped transitions, at most an
        episode's worth) and the stream goes on.
        """
        if msg.sequence != stream.next_sequence:
            return
        key = (msg.sequence, _digest(msg))
        stream.refusals[key] = stream.refusals.get(key, 0) + 1
        if stream.refusals[key] < REFUSALS_BEFORE_SKIP:
            return
        lost = min(int(msg.num_transitions), self.max_episode_steps)
        self.get_logger().error(f'{self._topic(stream)}: chunk {msg.sequence} refused '
                                f'{REFUSALS_BEFORE_SKIP} times: passed over as lost ({lost} '
                                'transition(s)); the stream goes on')
        stream.refusals = {k: n for k, n in stream.refusals.items() if k[0] > msg.sequence}
        self.dropped += lost
        stream.dropped += lost
        stream.next_sequence += 1
        self._drain(stream)

    def _add(self, stream: _Stream, rows: dict, dropped: int, episode_id: int = 0,
             first_step: int = 0):
        self.dropped += dropped
        stream.dropped += dropped
        stream.newest = (episode_id, first_step + len(rows['rewards']))
        if not len(rows['rewards']):
            # Only a report of what was lost: the episode ended after a gap (its transitions
            # before the gap, if any, came without the end's flag).
            self.episodes += int(dropped > 0)
            stream.episodes += int(dropped > 0)
            stream.returns.pop(episode_id, None)
            return
        with self.lock:
            self.buffer.add(rows['observations'], rows['actions'], rows['rewards'],
                            rows['next_observations'], rows['terminated'], rows['truncated'])
        self._weights_ages(rows['policy_versions'])
        self.env_steps += len(rows['rewards'])
        stream.env_steps += len(rows['rewards'])
        ended = bool(np.any(rows['terminated'] | rows['truncated']))
        self.episodes += int(ended)
        stream.episodes += int(ended)
        stream.acting_version = self.acting_version = int(rows['policy_versions'][-1])
        # (a chunk holds steps of one episode)
        total, steps = stream.returns.pop(episode_id, (0.0, 0))
        total, steps = total + float(np.sum(rows['rewards'])), steps + len(rows['rewards'])
        if not ended:
            stream.returns[episode_id] = (total, steps)
            return
        stream.last_return = total
        if self.scalars is not None:
            self.scalars.add(self.env_steps, {'episode_return': total,
                                              'episode_length': steps}, 'rollout')
            if self.fleet:
                self.scalars.add(self.env_steps, {f'{stream.robot_id}/episode_return': total},
                                 'rollout')

    def _weights_ages(self, versions):
        """Keep how old each transition's weights were when it was taken, in control steps.

        The steps received between the weights' publication and the transition (the version's
        env_steps stamp against the transition's place in the stream): the time the weights
        took to reach the policy and were acted on before newer ones came. Versions published
        before this run (or the warm-up's, version 0) are not counted.
        """
        for offset, version in enumerate(versions.tolist()):
            published = self.published.get(int(version))
            if published is not None:
                self.ages.append(self.env_steps + offset - published)

    def _ack(self, stream: _Stream):
        if not self.context.ok():
            return  # shutting down (Ctrl-C): the next start reads the checkpoint instead
        msg = ExperienceAck()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.robot_id, msg.next_sequence = stream.robot_id, stream.next_sequence
        msg.checkpointed_sequence = stream.checkpointed_sequence
        msg.episode_id, msg.env_steps = stream.newest[0], stream.env_steps
        stream.ack.publish(msg)

    # Training -------------------------------------------------------------------------------

    def _train(self):
        compiling = getattr(self.agent, 'start_compiling', None)  # (SAC's compile)
        compiled = getattr(self.agent, 'wait_compiled', None)
        while not self._stop.is_set():
            if compiling is not None and len(self.buffer) >= self._starts() // 2:
                # Half-way through the warm-up: the compiler has the other half, while the
                # trainer has nothing to do (a run that never learns compiles nothing).
                compiling()
                compiling = None
            if self._starving():
                if not self.starved:  # a policy holding for us must go on
                    self.starved = True
                    self.publish_progress()
                time.sleep(0.002)  # training waits for collection
                if len(self.buffer) >= self._starts():
                    self.data_wait += 0.002  # (max_utd reached)
                continue
            self.starved = False
            if compiled is not None:  # the first update: what is left of the compiling,
                compiled()  # outside the lock (the experience callbacks go on meanwhile)
                compiled = None
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

    def publish_progress(self, stream: _Stream | None = None):
        """Tell the policy nodes how far training is (their min_utd gate).

        ``stream``: its robot's only; else every robot's.
        """
        if not self.context.ok():
            return
        for each in [stream] if stream is not None else self.streams.values():
            msg = TrainingProgress()
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.gradient_steps, msg.env_steps = self.agent.gradient_steps, self.env_steps
            msg.learning_starts = self.config.learning_starts
            msg.episode_id, msg.episode_steps = each.newest
            msg.waiting_for_experience = self._starving()
            each.progress.publish(msg)

    def publish_policy(self):
        """Publish the current policy as the next version, the same to every robot."""
        with self.lock:
            self.policy_version += 1
            data = export_policy(self.agent, self.policy_version)
            updates = self.agent.gradient_steps
        msg = convert.policy_weights(
            data, self.policy_version, self.algorithm, json.dumps(policy_metadata(data)),
            updates, self.env_steps, self.get_clock().now().nanoseconds, self.run_id)
        self.published[self.policy_version] = self.env_steps
        while len(self.published) > 1000:
            self.published.popitem(last=False)
        for stream in self.streams.values():
            stream.weights.publish(msg)

    def checkpoint(self):
        """Write the checkpoint; tell the collectors what they may forget."""
        with self.lock:
            positions = {robot_id: stream.position()
                         for robot_id, stream in self.streams.items()}
            save_checkpoint(self.checkpoint_dir, self.agent, self.buffer, {
                'env_steps': self.env_steps, 'episodes': self.episodes,
                'policy_version': self.policy_version, 'run_id': self.run_id,
                'dropped': self.dropped,
                # (a robot of an earlier run that this one lacks keeps its place)
                'streams': {**self.absent, **positions}})
        for robot_id, stream in self.streams.items():
            stream.checkpointed_sequence = positions[robot_id]['next_sequence']
            self._ack(stream)
        self.get_logger().info(f'checkpoint: {self.env_steps} transitions, '
                               f'{self.agent.gradient_steps} updates -> {self.checkpoint_dir}')

    def publish_stats(self):
        """Publish training statistics (and warn when training falls behind min_utd)."""
        # The progress too, though nothing moved: a foreign message on its latched topic (a
        # forged count of 2^64 transitions held the lockstep policy for good) lasts a period.
        self.publish_progress()
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
        ages, self.ages = self.ages, []
        metrics = dict(self.metrics, utd=utd, data_wait_fraction=self.wait_fraction,
                       data_wait_seconds=self.data_wait,
                       version_lag=self.policy_version - self.acting_version,
                       # mean over the transitions since the last statistics (NaN: none)
                       weights_age_steps=float(np.mean(ages)) if ages else math.nan)
        if self.fleet:  # each robot's part: <robot>/env_steps, ...
            for robot_id, stream in self.streams.items():
                metrics.update({f'{robot_id}/{name}': value
                                for name, value in self._robot_stats(stream, now).items()})
        msg.names = list(metrics)
        msg.values = [float(v) for v in metrics.values()]
        self.stats_publisher.publish(msg)
        for stream in self.streams.values():
            if stream.stats is not None:  # the robot's own line: its steps and episodes
                own = TrainingStats(**{field: getattr(msg, field) for field in (
                    'header', 'algorithm', 'gradient_steps', 'buffer_size', 'policy_version',
                    'updates_per_second', 'env_steps_per_second', 'names', 'values')})
                own.env_steps, own.episodes = stream.env_steps, stream.episodes
                stream.stats.publish(own)
        if self.scalars is not None and self.metrics:
            self.scalars.add(steps, {**self.metrics, 'utd': utd, 'version_lag': float(
                self.policy_version - self.acting_version), **({'weights_age_steps': float(
                    np.mean(ages))} if ages else {})}, 'train')
            self.scalars.add(steps, {'updates_per_second': self.rates[0],
                                     'env_steps_per_second': self.rates[1],
                                     'data_wait_fraction': self.wait_fraction}, 'time')

    def _robot_stats(self, stream: _Stream, now: float) -> dict:
        """One robot's figures for the statistics.

        Its transitions, episodes, newest return, the version lag of the policy it acts with,
        and seconds since its newest chunk (NaN: none yet).
        """
        return {'env_steps': stream.env_steps, 'episodes': stream.episodes,
                'return': stream.last_return, 'dropped': stream.dropped,
                'version_lag': self.policy_version - stream.acting_version,
                'idle_s': now - stream.last_chunk}

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
