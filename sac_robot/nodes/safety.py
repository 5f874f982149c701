# SPDX-License-Identifier: Apache-2.0
"""safety: ends episodes, runs resets, and holds the robot when its commands go stale.

Watches the robot's sensors (synchronised by stamp) and decides, at every measurement of the
running episode, whether it ends:

- terminated: a fall or drift (Minitaur: |roll| or |pitch| over the limits, the base too low,
  too far from the start; :func:`sac_robot.rewards.minitaur_safety`);
- truncated: the episode's time limit (``max_episode_steps``), the run's ``max_steps``, a
  stale command stream, or a fault of the driver's hardware (a new fault in its
  ``/diagnostics``: the reason is its message, naming the joint or servo), or a reset it
  did not ask for (the driver's diagnostics name an episode after the running one: someone
  called the driver's ``reset`` service; the episode ends at its last measurement before that
  reset, and this node resets the robot for an episode of its own).

It then publishes ``END`` on ``episode_events`` (sac_robot/EpisodeEvent, with the step count,
the reason and the return summed from ``reward``), calls the driver's ``reset`` service and
publishes ``START`` with the stamp of the new episode's first measurement. After ``max_steps``
environment steps in all it starts no new episode and reports ``done``. Every ``confirm_every``
steps that pass the checks it says so (``CHECKED`` on ``episode_checks``): the collector then
delivers the transitions before them without waiting for the episode's end.

Emergency stop: ``emergency_stop`` (std_msgs/Bool, latched: a late joiner learns it at once)
is the robot's stop line; anyone may set it (a button node), and this node's services
``emergency_stop`` and ``release_emergency_stop`` (std_srvs/Trigger) do. While it is set the
running episode ends truncated ("emergency stop"), no episode starts, this node commands no
hold, and the driver commands the robot no more (it turns torque off where it can); no episode
means no experience, so collection pauses too. Only a release lets the next reset run.

Command watchdog: once the policy has commanded in an episode, a gap of more than
``command_timeout`` seconds between commands makes it publish the robot's hold pose (the
Minitaur standing, the hand at its reset pose) on ``hold`` (the driver's, in the command
topic's form) at the control rate until the policy is back; the episode ends truncated ("stale
commands").

Resuming: with ``number_after_trainer`` (the training graphs set it) the first episode waits for
the trainer's acknowledgement (``experience/ack``, latched) and takes the id after the newest
episode the trainer holds transitions of, its reset seeded from ``seed`` and that id;
``max_steps`` counts from the steps the trainer has of this robot. A robot
side relaunched against a resumed trainer (after ``kill -9`` of the whole graph, or of the robot
side alone) so continues the run's numbering and random streams instead of collecting its
first episodes again.
"""

import collections
import time

import numpy as np

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import Trigger

from sac_robot.msg import EpisodeEvent, ExperienceAck, RewardTerms
from sac_robot.nodes import convert, qos
from sac_robot.nodes.params import declare_robot, declare_robot_id, describe
from sac_robot.nodes.rejections import Rejections
from sac_robot.nodes.robots import profile as make_profile
from sac_robot.nodes.spin import run
from sac_robot.nodes.sync import SensorSync
from sac_robot.srv import Reset


class SafetyNode(Node):
    """Episode boundaries, resets and the command watchdog of one robot."""

    def __init__(self, **kwargs):
        super().__init__('safety', **kwargs)
        declare = self.declare_parameter
        robot = declare_robot(self)
        self.profile = make_profile(robot)
        self.robot_id = declare_robot_id(self, robot, 'Name of this robot in its episode events')
        self.max_episode_steps = declare('max_episode_steps', self.profile.max_episode_steps,
                                         describe('Steps after which an episode is cut.')).value
        self.max_steps = declare('max_steps', 0, describe(
            'Stop after this many environment steps in all (0: no limit).')).value
        self.command_timeout = declare('command_timeout', 0.25, describe(
            'Seconds between commands after which the stream counts as stale (0: never).')
        ).value
        self.confirm_every = declare('confirm_every', 10, describe(
            'Publish CHECKED on episode_checks every this many steps that pass the checks, so '
            "the collector streams the episode's transitions (0: only at its END).")).value
        self.seed = declare('seed', 0, describe('Seed given to the first reset.')).value
        self.number_after_trainer = declare('number_after_trainer', False, describe(
            "Before the first episode, wait for the trainer's acknowledgement (experience/ack) "
            'and number episodes after the newest it holds (a resumed run continues its '
            'numbering and random streams).')).value
        # The newest episode the trainer holds and the steps it has of this robot (its ack).
        self.trainer_episode, self.trainer_steps = None, 0
        self.exit_when_done = declare('exit_when_done', False, describe(
            'End the node (and a launch that requires it) after max_steps.')).value
        self.wait_for = [self._parse_wait(entry) for entry in declare(
            'wait_for', [''], describe(
                "Before the first episode, wait until each 'topic>=N' has N subscribers, so "
                'that no node of the graph misses its start.')).value if entry]
        self.reward_wait = declare('reward_wait', 1.0, describe(
            "Seconds to wait for an ending episode's last reward before announcing the end."
        )).value
        # The robot's own episode-ending limits (the Minitaur's falls; the hand has none).
        self.profile.set_end_limits({
            k: declare(f'limits.{k}', v, describe(f'Episode-ending {k} limit ({unit}).')).value
            for k, (v, unit) in self.profile.end_limits.items()})

        self.events = self.create_publisher(EpisodeEvent, 'episode_events', qos.EVENTS)
        self.checks = self.create_publisher(EpisodeEvent, 'episode_checks', qos.EXPERIENCE)
        self.hold_publisher = self.create_publisher(Float64MultiArray, 'hold', qos.COMMAND)
        self.reset_client = self.create_client(Reset, 'reset')
        self.sync = SensorSync(self, self.profile, self.profile.safety_sensors,
                               self.on_measurement)
        self.rejections = Rejections(self.get_logger())  # of rewards
        self.create_subscription(Float64MultiArray, 'position_controller/commands',
                                 self.on_command, qos.COMMAND_IN)
        self.create_subscription(RewardTerms, 'reward', self.on_reward, qos.EXPERIENCE)
        if self.number_after_trainer:
            self.create_subscription(ExperienceAck, 'experience/ack', self.on_ack, qos.LATCHED)
        self.create_subscription(DiagnosticArray, '/diagnostics', self.on_diagnostics,
                                 qos.DIAGNOSTICS)
        self.create_timer(self.profile.control_period, self.on_timer)
        self.stop_publisher = self.create_publisher(Bool, 'emergency_stop', qos.LATCHED)
        self.create_subscription(Bool, 'emergency_stop', self.on_emergency_stop, qos.LATCHED)
        self.create_service(Trigger, 'emergency_stop', self.on_stop_service)
        self.create_service(Trigger, 'release_emergency_stop', self.on_release_service)
        self.stopped = False  # the emergency stop is set
        #: The driver's diagnostics name, and its fault count when last seen.
        self.driver_name = f'{self.get_namespace().rstrip("/")}/driver'
        self.faults_seen = 0

        self.state = 'starting'  # starting, running, ending, resetting, done
        self.episode_id, self.start_stamp, self.start = None, None, None
        self.step_stamps = []
        self.steps, self.total_steps, self.episodes = 0, 0, 0
        self.returns = collections.defaultdict(float)  # episode -> summed reward
        self.rewarded = collections.defaultdict(int)  # episode -> rewards received
        self.recent = collections.OrderedDict()  # stamp -> measurement (start may come first)
        self.last_command, self.holding = None, False
        self.ending = None  # (deadline, terminated, truncated, reason)
        self._reset_future = None
        self._first_reset = True
        self.exit_status = None

    @staticmethod
    def _parse_wait(entry: str) -> tuple:
        topic, _, count = entry.partition('>=')
        if not topic or not count.strip().isdigit():
            raise ValueError(f"wait_for entries look like 'topic>=N', not {entry!r}")
        return topic.strip(), int(count)

    def _graph_ready(self) -> bool:
        missing = [f'{topic} ({self.count_subscribers(topic)}/{count})'
                   for topic, count in self.wait_for if self.count_subscribers(topic) < count]
        if missing:
            self.get_logger().info(f'waiting for subscribers: {", ".join(missing)}',
                                   throttle_duration_sec=5.0)
        return not missing

    # Episodes -------------------------------------------------------------------------------

    def _request_reset(self, reason: str):
        if not self.reset_client.service_is_ready():
            return False
        request = Reset.Request(seed=self.seed if self._first_reset else -1, reason=reason)
        if self._first_reset and self.trainer_episode:
            # The run goes on: after the trainer's newest episode, on a stream of its own.
            request.episode_id = self.trainer_episode + 1
            request.seed = int(np.random.SeedSequence(
                [self.seed, request.episode_id]).generate_state(1)[0])
            self.total_steps = self.trainer_steps  # (max_steps counts the run's steps)
            self.get_logger().info(f'the trainer holds episodes up to {self.trainer_episode} '
                                   f'({self.trainer_steps} steps): this run continues at '
                                   f'episode {request.episode_id}')
        self._first_reset = False
        self.state = 'resetting'
        self._reset_future = self.reset_client.call_async(request)
        self._reset_future.add_done_callback(self._on_reset_done)
        return True

    def _on_reset_done(self, future):
        response = future.result()
        if response is None or not response.success:
            message = 'no response' if response is None else response.message
            self.get_logger().warning(f'reset failed: {message}; trying again',
                                      throttle_duration_sec=5.0)
            self._first_reset = self.episode_id is None
            self.state = 'starting'
            return
        self.episode_id, self.start_stamp = response.episode_id, convert.stamp_ns(response.stamp)
        self.steps, self.start, self.last_command, self.holding = 0, None, None, False
        self.step_stamps = []  # of the measurements counted as this episode's steps
        self.state = 'running'
        self._publish_event(EpisodeEvent.START, self.start_stamp)
        if self.stopped:  # (set while the reset ran)
            self._end(self.start_stamp, False, True, 'emergency stop')
            return
        for stamp, measurement in list(self.recent.items()):
            if stamp >= self.start_stamp:
                self._check(stamp, measurement)

    def _publish_event(self, event: int, stamp: int, terminated=False, truncated=False,
                       reason='', publisher=None):
        msg = EpisodeEvent()
        msg.header.stamp = convert.to_stamp(stamp)
        msg.robot_id, msg.episode_id, msg.event = self.robot_id, self.episode_id, event
        msg.steps, msg.terminated, msg.truncated, msg.reason = (
            self.steps, terminated, truncated, reason)
        msg.episode_return = float(self.returns.get(self.episode_id, 0.0))
        (publisher or self.events).publish(msg)

    def _end(self, stamp: int, terminated: bool, truncated: bool, reason: str):
        self.state = 'ending'
        self.end_stamp = stamp
        self.ending = (time.monotonic() + self.reward_wait, terminated, truncated, reason)
        self._maybe_finish_end()

    def _maybe_finish_end(self):
        if self.state != 'ending':
            return
        deadline, terminated, truncated, reason = self.ending
        if self.rewarded[self.episode_id] < self.steps and time.monotonic() < deadline:
            return  # the last reward is still on its way
        self._publish_event(EpisodeEvent.END, self.end_stamp, terminated, truncated, reason)
        self.get_logger().info(
            f'episode {self.episode_id} ended after {self.steps} steps ({reason}), return '
            f'{self.returns.get(self.episode_id, 0.0):.2f}')
        self.total_steps += self.steps
        self.episodes += 1
        for old in [e for e in self.returns if e < self.episode_id]:
            self.returns.pop(old, None)
            self.rewarded.pop(old, None)
        if self.max_steps and self.total_steps >= self.max_steps:
            self.state = 'done'
            self.get_logger().info(f'{self.total_steps} environment steps: done')
            if self.exit_when_done:
                self.exit_status = 0
            return
        self.state = 'starting'
        if not self.stopped:
            self._request_reset(reason)

    # The emergency stop ---------------------------------------------------------------------

    def on_stop_service(self, request, response):
        """Set the emergency stop (for everyone, on the latched topic)."""
        del request
        self.stop_publisher.publish(Bool(data=True))
        self.on_emergency_stop(Bool(data=True))
        response.success, response.message = True, 'emergency stop set'
        return response

    def on_release_service(self, request, response):
        """Release the emergency stop: the next reset may run."""
        del request
        was = self.stopped
        self.stop_publisher.publish(Bool(data=False))
        self.on_emergency_stop(Bool(data=False))
        response.success = was
        response.message = 'emergency stop released' if was else 'no emergency stop was set'
        return response

    def on_emergency_stop(self, msg: Bool):
        """The stop line changed: end the episode, start none, command nothing."""
        stop = bool(msg.data)
        if stop == self.stopped:
            return
        self.stopped = stop
        if not stop:
            self.get_logger().warning('emergency stop released: the next reset may run')
            return
        self.get_logger().error('EMERGENCY STOP: no more commands, no new episode until '
                                f'`ros2 service call {self.get_namespace().rstrip("/")}'
                                '/release_emergency_stop std_srvs/srv/Trigger`')
        self.holding = False
        if self.state == 'running':
            self._end(self.start_stamp if self.start is None else max(self.recent),
                      False, True, 'emergency stop')

    # Callbacks ------------------------------------------------------------------------------

    def on_measurement(self, stamp: int, readings: dict):
        """Check a measurement of the running episode."""
        measurement = self.profile.measurement(readings)
        self.recent[stamp] = measurement
        while len(self.recent) > 50:
            self.recent.popitem(last=False)
        if self.state == 'running' and stamp >= self.start_stamp:
            self._check(stamp, measurement)

    def _check(self, stamp: int, measurement: dict):
        if self.state != 'running':
            return
        if stamp == self.start_stamp:
            self.start = measurement
            return
        if self.start is None:
            # The episode's first measurement was lost: measure drift from this one, and
            # count the step all the same (the policy counts it, and the episode must end).
            self.get_logger().warning(f'episode {self.episode_id}: its first measurement '
                                      'never came; drift is measured from the second')
            self.start = measurement
        self.steps += 1
        self.step_stamps.append(stamp)
        reason = self.profile.end_reason(measurement, self.start)
        if reason is not None:
            self._end(stamp, True, False, reason)
        elif self.steps >= self.max_episode_steps:
            self._end(stamp, False, True, 'time_limit')
        elif self.max_steps and self.total_steps + self.steps >= self.max_steps:
            self._end(stamp, False, True, 'max_steps')
        elif self.confirm_every and self.steps % self.confirm_every == 0:
            self._publish_event(EpisodeEvent.CHECKED, stamp, publisher=self.checks)

    def on_reward(self, msg: RewardTerms):
        """Sum the episode's return (of finite rewards whose terms add up to them)."""
        try:
            convert.read_reward(msg, 'reward')
        except convert.MessageError as error:
            self.rejections('reward', str(error), 'reward refused')
            return
        if msg.episode_id == self.episode_id and (self.state == 'running' or
                                                  msg.step < self.steps):
            self.returns[msg.episode_id] += msg.reward
            self.rewarded[msg.episode_id] += 1
            self._maybe_finish_end()

    def on_diagnostics(self, msg: DiagnosticArray):
        """A new fault of this robot's driver, or a reset not asked for, ends the episode."""
        for status in msg.status:
            if status.name != self.driver_name:
                continue
            values = {kv.key: kv.value for kv in status.values}
            self._check_outside_reset(values)
            try:
                faults = int(values.get('faults', '0'))
            except ValueError:
                self.get_logger().error(f'/diagnostics: {status.name} faults '
                                        f'{values["faults"]!r} is not a count',
                                        throttle_duration_sec=5.0)
                continue
            if faults <= self.faults_seen:
                continue
            self.faults_seen = faults
            if self.state == 'running':
                self.get_logger().error(f'episode {self.episode_id}: {status.message}')
                self._end(self.start_stamp if self.start is None else max(self.recent),
                          False, True, status.message)

    def _check_outside_reset(self, values: dict):
        """The driver began an episode this node did not ask for: end the running one there.

        Its steps are the measurements before that reset (any counted after it belong to the
        driver's episode and are uncounted): the collector then drops the policy's steps past
        it, so no transition spans the reset. The next reset is this node's, as after any end.
        """
        if self.state != 'running' or 'episode' not in values:
            return
        try:
            episode, start = int(values['episode']), int(values.get('episode_start_ns', '0'))
        except ValueError:
            self.get_logger().error(f'/diagnostics: {self.driver_name} episode '
                                    f'{values["episode"]!r} is not an id',
                                    throttle_duration_sec=5.0)
            return
        if episode <= self.episode_id:
            return
        before = [t for t in self.step_stamps if t < start] if start else self.step_stamps
        self.steps, self.step_stamps = len(before), before
        reason = (f'reset from outside: the driver began episode {episode} (someone called '
                  f'its reset service)')
        self.get_logger().warning(f'episode {self.episode_id}: {reason}; it ends after '
                                  f'{self.steps} steps, and a reset of this node follows')
        self._end(before[-1] if before else self.start_stamp, False, True, reason)

    def on_command(self, msg: Float64MultiArray):
        """Note when the policy last commanded (a command the driver would refuse is none)."""
        try:
            convert.read_command(msg, len(self.profile.joint_names),
                                 'position_controller/commands')
        except convert.MessageError as error:
            self.rejections('position_controller/commands', str(error), 'command not counted')
            return
        self.last_command = time.monotonic()
        if self.holding:
            self.get_logger().info('commands are back: hold released')
            self.holding = False

    def on_ack(self, msg: ExperienceAck):
        """Note the newest episode the trainer holds of this robot (before the first one)."""
        if msg.robot_id == self.robot_id and self.episode_id is None:
            self.trainer_episode, self.trainer_steps = int(msg.episode_id), int(msg.env_steps)

    def on_timer(self):
        """Start the first episode; finish ending ones; watch the command stream."""
        if self.state == 'starting' and self.stopped:
            pass  # no episode starts while the emergency stop is set
        elif (self.state == 'starting' and self._first_reset and self.number_after_trainer
              and self.trainer_episode is None):
            self.get_logger().info("waiting for the trainer's acknowledgement on "
                                   f'{self.resolve_topic_name("experience/ack")} to number '
                                   'episodes after the ones it holds', throttle_duration_sec=5.0)
        elif self.state == 'starting' and (not self._first_reset or self._graph_ready()):
            self._request_reset('start' if self._first_reset else 'retry')
        elif self.state == 'ending':
            self._maybe_finish_end()
        stale = (not self.stopped and self.command_timeout > 0 and self.last_command is not None
                 and time.monotonic() - self.last_command > self.command_timeout)
        if stale and self.state in ('running', 'ending', 'done'):
            if not self.holding:
                self.get_logger().warning(
                    f'no command for {time.monotonic() - self.last_command:.2f} s: holding')
                self.holding = True
                if self.state == 'running':
                    self._end(self.start_stamp if self.start is None else max(self.recent),
                              False, True, 'stale commands')
            self.hold()

    def hold(self):
        """Command the robot's hold pose."""
        self.hold_publisher.publish(convert.command(self.profile.hold_command()))


def main(args=None) -> int:
    """Run the safety node."""
    return run(SafetyNode, args)
