# SPDX-License-Identifier: Apache-2.0
"""policy: observation -> action -> joint command, with the newest policy weights.

Subscribes to the robot's sensors (synchronised by stamp, :mod:`sac_robot.nodes.sync`),
``episode_events`` and ``policy/weights`` (latched). For every measurement of a running episode
it builds the observation exactly as the gymnasium task does (history stacking included; the
same code, :mod:`sac_robot.nodes.robots`), samples an action, publishes the joint command
(``position_controller/commands``, labelled with the observation's stamp) and then the
``policy/steps`` message (observation, action, policy version, episode and step). With
``pixels`` (the D'Claw) the observation is the environment's dict: the camera image rides in the
step's ``image``, the joint positions and velocities in its ``observation``.

Composed with a real-time driver in one process (``connect_local``), it reads each
measurement's state from the driver directly, before any message is built, and hands the joint
targets straight back, as a ros2_control controller reads state and writes command interfaces
(``local_measurements``, ``local_commands``); the command is published all the same.

Until the first weights arrive the actions are uniform random, which is SAC's warm-up
exploration. New weights are checked (SHA-256, safetensors only, sizes) and rebuilt on a
background thread, then swapped in between two control steps: control never waits for them.
``deterministic`` takes the mean action (evaluation); ``checkpoint`` loads a policy from a
checkpoint directory or an exported ``policy.safetensors`` at start.

Episode boundaries come from the safety node: ``START`` says which stamp begins an episode (the
history restarts there); after ``END`` the policy publishes the step of the final observation
(for the collector's last transition) without commanding, then waits for the next ``START``.
"""

import os
import threading
import time

import numpy as np
import torch
from rclpy.node import Node

from sac_robot.algorithms.checkpoint import (CheckpointError, import_policy, policy_header,
                                             policy_layers)
from sac_robot.algorithms.networks import LOG_STD_MAX, LOG_STD_MIN
from sac_robot.algorithms.observations import to_wire
from sac_robot.msg import EpisodeEvent, PolicyStep, PolicyWeights, TrainingProgress
from sac_robot.nodes import convert, qos
from sac_robot.nodes.handover import LocalControl
from sac_robot.nodes.params import declare_robot, declare_robot_id, describe
from sac_robot.nodes.rejections import Rejections
from sac_robot.nodes.robots import profile as make_profile
from sac_robot.nodes.spin import run
from sac_robot.nodes.sync import SensorSync
from std_msgs.msg import Float64MultiArray


class LoadedPolicy:
    """A rebuilt policy and what it maps observations with.

    For flat observations the fully connected layers are read straight into float32 numpy
    arrays (:func:`~sac_robot.algorithms.checkpoint.policy_layers`, no torch module: a new
    version is cheap to build beside the control loop) and one action is computed with
    three small matrix-vector products: a fraction of a torch forward pass's per-call overhead,
    which is on every control step's latency path. Images (the D'Claw's camera) go through the
    torch network.
    """

    def __init__(self, data: bytes, version: int, observation_spec, action_size: int,
                 seed: int = 0, episode_id: int = 0):
        _, spec, action_dim = policy_header(data)
        if spec != observation_spec:
            raise CheckpointError(f'policy v{version} takes observations of {spec}, this robot '
                                  f'gives {observation_spec}')
        if action_dim != action_size:
            raise CheckpointError(f'policy v{version} outputs {action_dim} actions, '
                                  f'this robot takes {action_size}')
        self.network, self.layers = None, None  # torch network (pixels), or numpy layers
        if isinstance(spec, int):
            self.layers, meta = policy_layers(data)  # [(weight [in, out], bias [out])]
        else:
            self.network, meta = import_policy(data)
        self.algorithm, self.version = meta['algorithm'], version
        self.run_id = ''  # the trainer's run that published it ('' from a file)
        self.action_size = action_size
        self.reseed(seed, episode_id)

    def reseed(self, seed: int, episode_id: int):
        """Exploration noise: a stream of its own for each seed, weights version and episode.

        (A robot side restarted in a resumed run, acting with the weights it stopped with, does
        not draw its first run's noise again.)
        """
        streams = np.random.SeedSequence([seed, self.version, episode_id]).spawn(2)
        self.generator = torch.Generator().manual_seed(int(streams[0].generate_state(1)[0]))
        self.rng = np.random.default_rng(streams[1])

    def _mlp(self, x: np.ndarray) -> np.ndarray:
        for weight, bias in self.layers[:-1]:
            x = np.maximum(x @ weight + bias, 0.0)
        weight, bias = self.layers[-1]
        return x @ weight + bias

    def act(self, observation, deterministic: bool) -> np.ndarray:
        """One action in [-1, 1]."""
        if self.layers is None:
            return self._act_torch(observation, deterministic)
        obs = np.asarray(observation, np.float32)
        if self.algorithm == 'sac':  # a = tanh(mu + sigma * eps) (SAC paper Eq. 8, App. C)
            out, n = self._mlp(obs), self.action_size  # [mean, log std]
            if deterministic:
                return np.tanh(out[:n]).astype(np.float64)
            std = np.exp(np.minimum(np.maximum(out[n:], LOG_STD_MIN), LOG_STD_MAX))
            return np.tanh(out[:n] + std * self.rng.standard_normal(n))
        # SQL's sampler a = tanh(f(s, xi)); it has no mean action.
        noise = self.rng.standard_normal(self.action_size).astype(np.float32)
        return np.tanh(self._mlp(np.concatenate([obs, noise]))).astype(np.float64)

    @torch.no_grad()
    def _act_torch(self, observation, deterministic: bool) -> np.ndarray:
        if isinstance(observation, dict):
            obs = {key: torch.as_tensor(np.asarray(value))[None]
                   for key, value in observation.items()}
        else:
            obs = torch.as_tensor(observation, dtype=torch.float32)[None]
        if self.algorithm == 'sac':
            action, _ = self.network(obs, deterministic, self.generator)
        else:
            action = self.network(obs, 1, generator=self.generator)[:, 0]
        return action[0].numpy().astype(np.float64)


class PolicyNode(Node):
    """Act on every measurement of a running episode."""

    def __init__(self, **kwargs):
        super().__init__('policy', **kwargs)
        declare = self.declare_parameter
        robot = declare_robot(self)
        self.robot_id = declare_robot_id(self, robot,
                                         'Name of this robot in the experience it produces')
        self.deterministic = declare('deterministic', False, describe(
            'Take the mean action (evaluation) instead of sampling.')).value
        checkpoint = declare('checkpoint', '', describe(
            'Load this policy at start: a checkpoint directory or a policy.safetensors file.')
        ).value
        seed = declare('seed', 0, describe(
            'Seed of the warm-up random actions and the exploration noise.')).value
        self.min_utd = declare('min_utd', 0.0, describe(
            'Lockstep simulation: hold the next action while the trainer has done fewer than '
            'min_utd updates per step taken (beyond learning_starts and utd_slack); 0: never.')
        ).value
        self.utd_slack = declare('utd_slack', 0, describe(
            'Steps the policy may run ahead of the min_utd line (experience on its way to the '
            'trainer counts as taken). The gate never holds a trainer that waits for '
            'experience, so any value is safe; more lets the simulation run further ahead of '
            'the updates.')).value
        self.local_commands = declare('local_commands', True, describe(
            "Composed with a real-time driver in one process: hand it each command's joint "
            'targets directly, before publishing the command (as a ros2_control controller '
            "writes command interfaces), so the command does not queue behind the other nodes' "
            'callbacks.')).value
        self.local_measurements = declare('local_measurements', True, describe(
            "Composed with a real-time driver in one process: read each measurement's state "
            'from it directly, before its messages are built (as a ros2_control controller '
            'reads state interfaces), instead of after the DDS round trip and behind the other '
            "nodes' callbacks (it then does not subscribe to the sensor topics).")
        ).value
        self.local_drivers = []  # command takers of drivers in this process (connect_local)
        # One thread: a control step is a small forward pass, and the other core belongs to
        # the trainer.
        torch.set_num_threads(1)
        self.profile = make_profile(robot, pixels=declare('pixels', False, describe(
            "Act on the camera image (the D'Claw): observations are the image, joint positions "
            'and velocities, as in sac_robot/DClawTurnPixels-v0.')).value)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.command_publisher = self.create_publisher(
            Float64MultiArray, 'position_controller/commands', qos.COMMAND)
        self.step_publisher = self.create_publisher(PolicyStep, 'policy/steps', qos.EXPERIENCE)
        # Events first: when an episode's START and its first measurement are both waiting, the
        # executor takes the subscription made first.
        self.create_subscription(EpisodeEvent, 'episode_events', self.on_event, qos.EVENTS)
        self.create_subscription(PolicyWeights, 'policy/weights', self.on_weights, qos.LATCHED)
        self.create_subscription(TrainingProgress, 'training/progress', self.on_progress,
                                 qos.LATCHED)
        self.sync = SensorSync(self, self.profile, self.profile.policy_sensors,
                               self.on_readings, on_repeat=self.on_repeat)

        self.policy = None  # LoadedPolicy, swapped whole by the loader thread
        self._loading = threading.Lock()
        self.rejections = Rejections(self.get_logger())  # of weights
        # A real-time driver's control thread hands measurements over (local_measurements)
        # while the executor delivers events and progress: the episode state, one at a time.
        self._state = threading.RLock()
        self.episode_id, self.step, self.end_step = None, 0, None
        self.observer = self.profile.observer()
        self.last_action = np.zeros(self.profile.action_size)
        self.starts = {}  # stamp -> episode id, from START events not reached yet
        self.recent = {}  # stamp -> measurement, the newest few
        self.last_command = None  # (stamp, msg), sent again if the driver repeats the stamp
        self.steps_published = 0
        self.commands = 0  # actions sent in this run: the min_utd gate counts them
        self.progress = None  # the trainer's newest TrainingProgress
        self.held = None  # (stamp, measurement, since) of one waiting for the trainer
        self.last_stamp = -1  # of the newest measurement acted on
        self.last_started = 0  # id of the newest episode begun
        self.waited = 0.0  # seconds spent waiting for the trainer, in all
        if checkpoint:
            self._load_checkpoint(checkpoint)

    def connect_local(self, nodes: list):
        """Find a real-time driver of this robot among the nodes of this process."""
        for node in nodes:
            if (not isinstance(node, LocalControl) or not node.offers_local_control()
                    or node.get_namespace() != self.get_namespace()):
                continue
            if self.local_commands:
                self.local_drivers.append(node.take_local_targets)
                self.get_logger().info(f'commands also go straight to {node.get_name()} '
                                       '(same process)')
            if self.local_measurements:
                node.add_local_reader(self.on_readings, self.sync.keys)
                self.sync.unsubscribe()  # the published copies would only cost the executor
                self.get_logger().info(f'measurements come straight from {node.get_name()} '
                                       '(same process)')

    def _load_checkpoint(self, path: str):
        file = os.path.join(path, 'policy.safetensors') if os.path.isdir(path) else path
        if not os.path.isfile(file):
            raise CheckpointError(f'no policy at {file} (a checkpoint directory written by the '
                                  'trainer or sac-robot train holds policy.safetensors)')
        with open(file, 'rb') as stream:
            data = stream.read()
        self.policy = LoadedPolicy(data, 1, self.profile.observation_spec,
                                   self.profile.action_size, self.seed)
        self.get_logger().info(f'policy loaded from {path}')

    # Weights --------------------------------------------------------------------------------

    def _is_new(self, run_id: str, version: int) -> bool:
        """Whether weights ``version`` of trainer run ``run_id`` replace the acting ones.

        Versions grow within a run; another run's weights (a trainer started afresh) are new
        whatever their version, so no version, however high, makes a later run look old.
        """
        policy = self.policy
        return policy is None or run_id != policy.run_id or version > policy.version

    def on_weights(self, msg: PolicyWeights):
        """Check new weights, then rebuild them off the control path."""
        if not self._is_new(msg.run_id, msg.version):
            return
        try:
            data = convert.read_policy_weights(msg, 'policy/weights')
        except convert.MessageError as error:
            self.rejections('policy/weights', str(error), 'weights rejected')
            return
        threading.Thread(target=self._build, args=(data, msg.version, msg.run_id),
                         daemon=True).start()

    def _build(self, data: bytes, version: int, run_id: str = ''):
        with self._loading:
            if not self._is_new(run_id, version):
                return
            try:
                policy = LoadedPolicy(data, version, self.profile.observation_spec,
                                      self.profile.action_size, self.seed,
                                      self.episode_id or 0)
            except CheckpointError as error:
                self.rejections('policy/weights', f'v{version}: {error}', 'weights rejected')
                return
            except Exception as error:  # (a check missed: refused all the same, never a dead
                # loading thread; the kind of error names what to check next)
                self.rejections('policy/weights', f'v{version}: unreadable '
                                f'({type(error).__name__}: {error})', 'weights rejected')
                return
            policy.run_id = run_id
            if self.policy is not None and run_id != self.policy.run_id:
                self.get_logger().info(
                    f'weights of trainer run {run_id or "(none)"} v{version} replace run '
                    f'{self.policy.run_id or "(a file)"} v{self.policy.version}')
            self.policy = policy  # one reference assignment: the control path sees old or new

    # Episodes and control -------------------------------------------------------------------

    def on_event(self, msg: EpisodeEvent):
        """Note where episodes start and end."""
        with self._state:
            self._on_event(msg)

    def _on_event(self, msg: EpisodeEvent):
        if msg.event == EpisodeEvent.START:
            if msg.episode_id <= self.last_started:
                return  # this episode has begun already (the event came again)
            stamp = convert.stamp_ns(msg.header.stamp)
            self.starts[stamp] = msg.episode_id
            if stamp in self.recent:  # its first measurement came first (perhaps used wrongly)
                self._act_or_hold(stamp, self.recent[stamp])
        elif msg.event == EpisodeEvent.END and msg.episode_id == self.episode_id:
            self.end_step = msg.steps
            if self.step >= msg.steps:
                self.episode_id = None  # already past the end: wait for the next START
            elif self.held is not None and self._final_next():
                stamp, measurement, _ = self.held  # the final observation: no need to wait
                self.held = None
                self.on_measurement(stamp, measurement)

    def on_readings(self, stamp: int, readings: dict):
        """A measurement's readings, from its topics (SensorSync) or a driver of this process."""
        self._on_measured(stamp, self.profile.measurement(readings))

    def _on_measured(self, stamp: int, measurement: dict):
        with self._state:
            self.recent[stamp] = measurement
            if len(self.recent) > 8:
                del self.recent[min(self.recent)]
            self._act_or_hold(stamp, measurement)

    def _act_or_hold(self, stamp: int, measurement: dict):
        """Act on a measurement, or hold it while the trainer is behind (min_utd)."""
        if self._behind_trainer(stamp) and not self._final_next():
            self.held = (stamp, measurement, time.monotonic())
            progress = self.progress
            self.get_logger().info(
                f'waiting for the trainer (min_utd {self.min_utd}): '
                + ('no trainer yet' if progress is None else
                   f'{progress.env_steps} transitions received + {self._unsent(stamp)} on '
                   f'their way, {progress.gradient_steps} updates'), throttle_duration_sec=10.0)
            return
        self.on_measurement(stamp, measurement)

    def _final_next(self) -> bool:
        """Whether the next measurement is its episode's last (published without acting)."""
        return (self.episode_id is not None and self.end_step is not None
                and self.step + 1 >= self.end_step)

    def _behind_trainer(self, stamp: int) -> bool:
        """Whether acting on the measurement at ``stamp`` must wait for the trainer (min_utd).

        Counts the transitions the trainer has received plus those of the running episode it
        has not (steps taken past an episode's end never become data and do not count; a
        measurement that starts an episode is its step 0). A trainer that waits for experience
        (before ``learning_starts``, or at its ``max_utd``) is never held: only more steps can
        move it on.
        """
        if not self.min_utd:
            return False
        if self.progress is None:  # no trainer yet: utd_slack steps, then wait for it
            return self.commands >= self.utd_slack
        progress = self.progress
        if progress.waiting_for_experience:
            return False
        ahead = (progress.env_steps + self._unsent(stamp) - progress.learning_starts
                 - self.utd_slack)
        return ahead > 0 and progress.gradient_steps < self.min_utd * ahead

    def _unsent(self, stamp: int) -> int:
        """Steps of the running episode the trainer has not received (yet)."""
        if stamp in self.starts or self.episode_id is None:
            return 0  # step 0 of a new episode
        if self.progress is not None and self.progress.episode_id == self.episode_id:
            return max(self.step - self.progress.episode_steps, 0)
        return self.step

    def on_progress(self, msg: TrainingProgress):
        """The trainer moved on: act on a measurement held for it."""
        with self._state:
            self.progress = msg
            if self.held is not None and not self._behind_trainer(self.held[0]):
                stamp, measurement, since = self.held
                self.held = None
                self.waited += time.monotonic() - since
                self.on_measurement(stamp, measurement)

    def on_measurement(self, stamp: int, measurement: dict):
        """Observation -> action -> command, for a measurement of a running episode."""
        if self.held is not None and self.held[0] <= stamp:
            self.held = None  # acting on it (or on a newer one) now
        if stamp in self.starts:
            self.episode_id, self.step, self.end_step = self.starts.pop(stamp), 0, None
            self.last_started = self.episode_id
            for old in [s for s in self.starts if s < stamp]:
                del self.starts[old]
            observation = self.observer.reset(measurement)
            self.last_action = np.zeros(self.profile.action_size)
            # Random streams of the episode's own (warm-up actions, exploration noise): the
            # same episode of a run draws the same, whenever its robot side was started.
            self.rng = np.random.default_rng([self.seed, self.episode_id])
            if self.policy is not None:
                self.policy.reseed(self.seed, self.episode_id)
        elif self.episode_id is None:
            return  # between episodes (a START naming this stamp may still come)
        elif stamp <= self.last_stamp:
            return  # acted on already (a held copy, an event racing a measurement)
        else:
            self.step += 1
            observation = self.observer.push(measurement, self.last_action)
        final = self.end_step is not None and self.step >= self.end_step
        policy = self.policy
        if final:
            action = np.zeros(self.profile.action_size)
        else:
            if policy is None:
                action = self.rng.uniform(-1.0, 1.0, self.profile.action_size)
            else:
                action = policy.act(observation, self.deterministic)
            # What the experience records (float32) is exactly what the robot was sent.
            action = action.astype(np.float32).astype(np.float64)
            targets = self.profile.action_to_command(action)
            for take in self.local_drivers:  # the robot first, then the topic
                take(targets, stamp)
            command = convert.command(targets, stamp, self.episode_id)
            self.command_publisher.publish(command)
            self.commands += 1
            self.last_command = (stamp, command)
            self.last_action = action
        self.last_stamp = stamp
        self._publish_step(stamp, observation, action, 0 if policy is None else policy.version)
        if final:
            self.episode_id = None

    def on_repeat(self, stamp: int):
        """The driver sent the newest observation again: our command may be lost; resend."""
        last = self.last_command
        if last is not None and last[0] == stamp:
            self.command_publisher.publish(last[1])

    def _publish_step(self, stamp: int, observation, action, version: int):
        msg = PolicyStep()
        msg.header.stamp = convert.to_stamp(stamp)
        msg.robot_id, msg.episode_id, msg.step = self.robot_id, self.episode_id, self.step
        flat, image = to_wire(observation, self.profile.observation_spec)
        msg.observation = flat
        if image is not None:
            msg.image = convert.image(image, stamp, self.profile.camera_frame)
        msg.action = np.asarray(action, np.float32)
        msg.policy_version, msg.deterministic = int(version), self.deterministic
        self.step_publisher.publish(msg)
        self.steps_published += 1


def main(args=None) -> int:
    """Run the policy node."""
    return run(PolicyNode, args)
