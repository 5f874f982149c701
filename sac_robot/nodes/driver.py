# SPDX-License-Identifier: Apache-2.0
"""driver: one robot through a backend (its MuJoCo stand-in or its hardware), on one clock.

The backend (parameter ``backend``, from :data:`sac_robot.backends.BACKENDS`: ``mujoco`` for
either robot, ``dynamixel`` for the D'Claw's servos) reads the robot's sensors and takes joint
targets (:mod:`sac_robot.backends.interface`); this node publishes every sensor the backend
reports, each as its robot description's message (:data:`sac_robot.nodes.convert.
SENSOR_MESSAGES`), all with the same stamp, every control step (relative to the namespace):

- Minitaur: ``joint_states`` (sensor_msgs/JointState: the eight motors' angles, velocities,
  torques), ``imu/data`` (sensor_msgs/Imu: orientation, body rates, acceleration),
  ``mocap/pose`` (geometry_msgs/PoseStamped of the base in ``world``, as vrpn_mocap publishes a
  tracked rigid body);
- D'Claw: ``joint_states`` (the nine servos), ``valve/joint_states`` (the valve encoder, joint
  ``valve``), and with ``pixels`` ``camera/image_raw`` (sensor_msgs/Image, rgb8, 32 x 32) and
  ``camera/camera_info`` beside each image.

Takes ``position_controller/commands`` (std_msgs/Float64MultiArray, ros2_control's forward
command form: one target per joint, in the order of ``joint_states``) and ``hold`` (the same
form: the safety node's hold pose, which only sets the targets), and offers ``reset``
(sac_robot/srv/Reset: the backend's reset, the hand's scripted valve reset) and
``confirm_reset`` (std_srvs/Trigger: a person says the robot is ready after a reset that asked
for one; resets are refused until then). The backend's life cycle follows the node's:
configured and activated (torque on) when it starts, deactivated and closed (torque off) when it
ends, however it ends. Its state goes on ``/diagnostics`` every ``diagnostics_period``, at
each reset (before the episode's first measurement: its ``episode`` and ``episode_start_ns``,
so the safety node knows of a reset it did not ask for) and at once on a fault (a
:class:`~sac_robot.backends.interface.BackendFault`: the backend turned torque off; the
driver stops, the safety node ends the episode with the fault as its reason, and the next reset
configures the backend again). With neither a command nor a hold for ``torque_off_after``
seconds, it turns torque off itself until the next command.

Clock modes (parameter ``clock``):

- ``lockstep`` (simulated backends only): the physics advances one control period per command,
  as fast as commands come, and ``/clock`` carries the simulated time. A command labelled
  with the stamp and episode of the observation it answers (see
  :func:`sac_robot.nodes.convert.command`) steps only if that is the newest observation, so
  stale commands (from before a reset) are dropped; an unlabelled command steps at once. If
  nothing comes for ``resend_period`` seconds the newest observation is published again, so a
  lost sample cannot stall the loop.
- ``realtime``: a control thread of its own, every control period, advances a simulation by
  one period, reads, publishes (a policy of this process answers at once) and writes the newest
  targets (held between commands), as ros2_control's read-update-write cycle: an answer acts
  during the period after its measurement; stamps are the node's clock. Like ros2_control's
  controller manager, the thread runs at real-time priority
  (``thread_priority``, SCHED_FIFO) where the system allows it and keeps an absolute schedule:
  a period it overruns is counted and the schedule restarts from now (never a burst of catch-up
  steps). Not the executor's timer: that fires behind whatever callbacks the process has queued,
  and periods are lost (bench/control_latency.py measures it). In a node process
  the thread also runs the process's callbacks between its steps (``spin_on_control_thread``):
  one Python thread per step, so a step never waits for the interpreter lock. A policy node of
  the same process reads each measurement's state before any message is built and writes its
  targets back (:class:`~sac_robot.nodes.handover.LocalControl`), as a ros2_control controller
  uses state and command interfaces; the messages follow for everyone else.
"""

import dataclasses
import os
import sys
import threading
import time
import traceback

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import Trigger

from sac_robot.backends import backend_class
from sac_robot.backends.interface import BackendError, BackendFault
from sac_robot.nodes import convert, qos
from sac_robot.nodes.handover import LocalControl
from sac_robot.nodes.params import declare_robot, describe
from sac_robot.nodes.rejections import Rejections
from sac_robot.nodes.robots import profile as make_profile
from sac_robot.nodes.spin import run
from sac_robot.srv import Reset


def _all_finite(readings: dict) -> bool:
    """Whether every floating-point reading (``{key: (array or None, ...)}``) is finite."""
    floats = [value for reading in readings.values() for value in reading
              if value is not None and value.dtype.kind == 'f']
    return not floats or bool(np.isfinite(np.concatenate(floats)).all())


class Driver(Node, LocalControl):
    """Run one robot through its backend, publish its sensors; step on commands or in time."""

    def __init__(self, **kwargs):
        super().__init__('driver', **kwargs)
        declare = self.declare_parameter
        robot = declare_robot(self)
        backend = declare('backend', 'mujoco', describe(
            "What runs the robot: mujoco (its simulation); for the D'Claw dynamixel (its servos; "
            'dynamixel.* says where), for the Minitaur ros2_control (a running stack and motion '
            'capture; ros2_control.*)')).value
        self.clock_mode = declare('clock', 'lockstep', describe(
            'lockstep: one control step per command, as fast as they come, /clock published '
            '(a simulation only); realtime: a control thread at the control rate')).value
        self.clock_topic = declare('clock_topic', '/clock', describe(
            "Lockstep: where the simulation's time goes (rosgraph_msgs/Clock); several "
            "simulated robots on one graph (a fleet) each publish their own: 'clock', in the "
            "robot's namespace.")).value
        self.resend_period = declare('resend_period', 0.5, describe(
            'Lockstep: seconds without a command before the newest observation is sent again.')
        ).value
        self.latency_log = declare('latency_log', '', describe(
            'Real time: on shutdown, write every published measurement (its stamp, whether the '
            'control thread or a reset published it, and the latency in ms of the command that '
            'answered it) and the counts of missed deadlines and overruns to this CSV file.')
        ).value
        self.thread_priority = declare('thread_priority', 50, describe(
            "Real time: SCHED_FIFO priority (1-99) of the control thread, as ros2_control's "
            'thread_priority; 0 or not permitted (no CAP_SYS_NICE or rtprio limit; a warning '
            'says so): normal scheduling.')).value
        self.spin_on_control_thread = declare('spin_on_control_thread', True, describe(
            "Real time, in a sac-robot node process: the control thread also runs the "
            "process's other callbacks (its nodes' subscriptions, timers, services), between "
            'its steps, so that no other thread of the process holds the interpreter lock '
            "while a step runs; false: the process's main thread runs them.")).value
        self.wait_for_readers = [entry for entry in declare('wait_for_readers', [''], describe(
            "Before the first episode, refuse resets until each sensor topic ('topic>=N') has "
            'N matched readers, so that no node of the graph misses its first measurements.')
        ).value if entry]
        self.torque_off_after = declare('torque_off_after', 2.0, describe(
            'Real time: seconds without a command or a hold (the policy and the safety node '
            'both silent) after which the driver turns torque off itself; it comes back on with '
            'the next command (0: never).')).value
        self.rejections = Rejections(self.get_logger())  # commands and holds refused
        self.diagnostics_period = declare('diagnostics_period', 1.0, describe(
            'Seconds between diagnostics on /diagnostics (and at once on a fault).')).value
        if self.clock_mode not in ('lockstep', 'realtime'):
            raise ValueError(f"clock must be 'lockstep' or 'realtime', not {self.clock_mode!r}")
        self.profile = make_profile(robot)
        description = self.profile.description

        def declare_setting(name, default, text):  # a backend's settings are parameters
            return declare(name, default, describe(text)).value

        self.backend = backend_class(backend, robot).from_parameters(
            declare_setting, logger=self.get_logger())
        if self.clock_mode == 'lockstep' and not self.backend.simulated:
            raise ValueError(f'clock:=lockstep needs a simulation; the {backend} backend runs '
                             'on the wall clock (clock:=realtime)')
        self.backend.attach(self)  # (a backend that speaks ROS itself: ros2_control's topics)
        try:
            self.backend.configure()
            try:
                self.backend.activate()
            except BackendFault as fault:  # (torque already off): the port closed, one line
                self.backend.close()
                raise BackendError(f'{self.backend.hardware_id}: cannot start: {fault}'
                                   ) from None
        except BaseException:
            # (A pre-flight that fails: its topics' thread must not outlive the refusal, or
            # the process aborts in rcl on its way out instead of exiting 1.)
            self.backend.detach()
            raise
        self.period_ns = int(round(self.profile.control_period * 1e9))
        #: The sensors published: those of the description the backend reports.
        self.sensors = {key: description.sensors[key] for key in self.backend.sensors}
        #: IMUs whose covariances the parameter sets (over what a backend passes on).
        self.imu_set = set()
        for key, sensor in self.sensors.items():
            if sensor.message != 'sensor_msgs/Imu':
                continue
            values = declare('imu_variances', [0.0, 0.0, 0.0], describe(
                'Diagonal variances of the IMU: orientation (rad^2), angular velocity '
                '((rad/s)^2), linear acceleration ((m/s^2)^2), -1 where it gives no estimate; '
                "all 0: the backend's own (a ros2_control IMU's, passed on) or else unknown "
                '(sensor_msgs: zeros)')).value
            variances = tuple(float(v) for v in values)
            convert.imu_covariances(variances)  # (refused here when malformed)
            if any(variances):
                self.sensors[key] = dataclasses.replace(sensor, variances=variances)
                self.imu_set.add(key)

        # Reliable publishers match reliable and best-effort subscribers alike.
        self.publishers_ = {key: self.create_publisher(self.profile.sensors[key][1],
                                                       sensor.topic, qos.SENSOR_RELIABLE)
                            for key, sensor in self.sensors.items()}
        # Beside every image its sensor_msgs/CameraInfo (the size and frame; no calibration).
        self.camera_infos = {
            key: self.create_publisher(CameraInfo, sensor.topic.rsplit('/', 1)[0]
                                       + '/camera_info', qos.SENSOR_RELIABLE)
            for key, sensor in self.sensors.items() if sensor.message == 'sensor_msgs/Image'}
        # /clock as deep as the sensors: in lockstep it ticks as fast as the loop runs, and a
        # recorder a moment behind must not lose ticks.
        self.clock_publisher = (self.create_publisher(Clock, self.clock_topic,
                                                      qos.SENSOR_RELIABLE)
                                if self.clock_mode == 'lockstep' else None)
        self.create_subscription(Float64MultiArray, 'position_controller/commands',
                                 self.on_command, qos.COMMAND_IN)
        self.create_subscription(Float64MultiArray, 'hold', self.on_hold, qos.COMMAND_IN)
        self.create_subscription(Bool, 'emergency_stop', self.on_emergency_stop, qos.LATCHED)
        self.create_service(Reset, 'reset', self.on_reset)
        self.create_service(Trigger, 'confirm_reset', self.on_confirm_reset)
        self.diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics',
                                                 qos.DIAGNOSTICS)
        if self.diagnostics_period > 0:
            self.create_timer(self.diagnostics_period, self.publish_diagnostics)

        self.episode_id = 0
        self.episode_start = 0  # stamp (ns) of the episode's first measurement
        self.sim_time = 0  # ns, lockstep
        self.stamp = None  # of the newest published observation
        self.targets = self.profile.hold_command()
        self.readings_ = None  # the newest measurement's (lockstep resends it)
        self.steps = 0
        self.dropped = 0
        # Real time: stamp -> observation-to-command latency (ms) of its command, and every
        # published stamp with whether the control thread (1) or a reset (0) published it.
        self.latencies, self.timeline = {}, []
        self._log_timeline = bool(self.latency_log) and self.clock_mode == 'realtime'
        self.local_readers = []  # nodes of this process taking measurements directly
        self.local_keys = set()  # the sensors they read
        self.local_counts = {}  # topic -> how many of them read it
        self.answered, self.missed = None, 0
        self._last_activity = time.monotonic()
        self.overruns = 0  # real time: periods the control thread came too late for
        # Real time: the control thread owns the robot; the reset service hands it requests.
        self._reset_request = None  # (seed, episode id, done event, result box)
        self._stop = threading.Event()
        self._thread = None
        self._executor = None  # spun by the control thread between steps (take_executor)
        self._deadline = 0.0  # of the control thread's next step (time.monotonic)
        self.fault = None  # the BackendFault that stopped the robot, until a reset recovers
        self.faults = 0  # in all (diagnostics carry it: a reader tells a new one from the last)
        self.awaiting_operator = None  # why a person must confirm before the next reset
        self._waiting_since = None  # monotonic time the robot began waiting for a person
        self.operator_seconds = 0.0  # waiting for a person, in all (apart from robot time)
        self.operator_resets = 0  # resets a person confirmed
        self.torque_off = False  # by the driver, the commands having gone silent
        self.stopped = False  # the emergency stop is set: no reset runs
        self.passive = False  # since an emergency stop, until the next reset: nothing commanded
        self._last_command = None  # monotonic time of the newest command or hold
        if self.backend.simulated:  # (hardware waits for the first reset to move)
            self._reset_robot(-1)
        # Commands ignored for a reason (well-formed, not refused), said like refusals.
        self.ignored = Rejections(self.get_logger(), period=10.0, severity='info')
        self.get_logger().info(self._what_it_does(backend))
        if self.clock_mode == 'realtime':
            self._thread = threading.Thread(target=self._control_loop, name='control',
                                            daemon=True)
            self._thread.start()
        else:
            self.create_timer(min(self.resend_period, 0.1), self.on_resend_check)

    def _what_it_does(self, backend: str) -> str:
        """The start-up line: the robot, what runs it, the clock, the topics and services."""
        rate = 1.0 / self.profile.control_period
        clock = (f'realtime: a control thread at {rate:g} Hz' if self.clock_mode == 'realtime'
                 else 'lockstep: one control step per command, /clock published')
        topics = ', '.join(self.resolve_topic_name(s.topic) for s in self.sensors.values())
        services = ', '.join(self.resolve_service_name(s) for s in ('reset', 'confirm_reset'))
        return (f'{self.profile.description.name} on the {backend} backend '
                f'({self.backend.hardware_id}), clock {clock}; publishes {topics}; takes '
                f'{self.resolve_topic_name("position_controller/commands")} (and hold, '
                f'emergency_stop); services {services}')

    def _ignore_command(self, reason: str):
        """Say why a command was ignored: the first time, then at most every 10 s, counted."""
        self.ignored('position_controller/commands', reason, 'command ignored')

    # The robot ------------------------------------------------------------------------------

    def _reset_robot(self, seed: int):
        result = self.backend.reset({'seed': seed})
        rest = self.profile.description.rest_pose
        # Waiting for a person, the robot rests (a crouch, where it has one); else it holds.
        self.targets = (rest.copy() if result.needs_operator and rest is not None
                        else self.profile.hold_command())
        return result

    def _next_stamp(self) -> int:
        if self.clock_mode == 'lockstep':
            self.sim_time += self.period_ns
            return self.sim_time
        return self.get_clock().now().nanoseconds

    def _step(self):
        backend = self.backend
        if self.fault is not None:
            return  # torque is off; a reset recovers (or a person)
        try:
            if self.passive:
                pass  # an emergency stop: the robot is commanded no more until a reset
            elif self._commands_silent():
                if not self.torque_off:
                    self.get_logger().error(
                        f'no command or hold for {self.torque_off_after:.1f} s: torque off '
                        '(on again with the next command)')
                    backend.deactivate()
                    self.torque_off = True
            elif self.torque_off:
                self.get_logger().info('commands are back: torque on')
                backend.activate()
                self.torque_off = False
            realtime = self._thread is not None
            if not (realtime or self.torque_off or self.passive):
                backend.write(self.targets)  # lockstep: the command that steps it
            if backend.simulated:
                backend.advance()
            readings = backend.read()
        except BackendFault as fault:
            self._on_fault(fault)
            return
        self.steps += 1
        stamp = self._next_stamp()
        if self._log_timeline:
            self.timeline.append((stamp, 1))
        self.publish(stamp, readings)
        if realtime:
            self._send()

    def _send(self):
        """Real time: the newest targets to the robot, now.

        Right after each measurement is published (read, then the local policy answers in
        :meth:`publish`, then write, as ros2_control's read-update-write cycle): the command
        for a measurement acts during the period that follows it, so the next measurement
        shows its effect, as in lockstep. Writing at the start of the next period instead
        (before reading) delayed every action by a whole period: the next measurement never
        saw it. A command over DDS that comes between ticks is written when it comes, where
        the process's callbacks run on the control thread (``spin_on_control_thread``), else
        with the next tick's.
        """
        if self.torque_off or self.passive or self.fault is not None:
            return
        try:
            self.backend.write(self.targets)
        except BackendFault as fault:
            self._on_fault(fault)

    def _commands_silent(self) -> bool:
        """Real time: whether nothing commanded or held the robot for ``torque_off_after``."""
        return (self._thread is not None and self.torque_off_after > 0
                and self._last_command is not None
                and time.monotonic() - self._last_command > self.torque_off_after)

    def _on_fault(self, fault: BackendFault):
        """The hardware failed (the backend turned torque off): stop, and say so at once."""
        self.fault = fault
        self.faults += 1
        where = ', '.join(f'{k} {v}' for k, v in (('joint', fault.joint), ('servo', fault.servo))
                          if v is not None)
        self.get_logger().error(f'fault{f" ({where})" if where else ""}: {fault}; the robot '
                                'stops until a reset recovers it')
        self.publish_diagnostics()

    def publish_diagnostics(self):
        """This driver's state on /diagnostics (diagnostic_msgs, as every ROS driver)."""
        status = DiagnosticStatus(name=self.get_fully_qualified_name(),
                                  hardware_id=self.backend.hardware_id if self.backend else '')
        if self.stopped:
            status.level, status.message = DiagnosticStatus.ERROR, 'emergency stop'
        elif self.awaiting_operator is not None:
            # First, also over a fault that came meanwhile (a stall of the resting robot's
            # sensors): the person's confirmation is what the next reset needs, and a fault
            # alone would hide that (the stand-in's operator waited for good).
            status.level = DiagnosticStatus.ERROR
            status.message = f'waiting for a person: {self.awaiting_operator}' + (
                f' (then recovering from fault: {self.fault})' if self.fault is not None
                else '')
        elif self.fault is not None:
            status.level, status.message = DiagnosticStatus.ERROR, f'fault: {self.fault}'
        elif self.torque_off:
            status.level, status.message = DiagnosticStatus.WARN, 'commands silent: torque off'
        else:
            status.level, status.message = DiagnosticStatus.OK, 'running'
        waiting = self.operator_seconds + (time.monotonic() - self._waiting_since
                                           if self._waiting_since is not None else 0.0)
        figures = {'faults': self.faults, 'steps': self.steps, 'episode': self.episode_id,
                   'episode_start_ns': self.episode_start,
                   'clock': self.clock_mode, 'overruns': self.overruns, 'missed': self.missed,
                   'operator_wait_s': f'{waiting:.1f}', 'operator_resets': self.operator_resets,
                   **{f'rejected {topic}': count
                      for topic, count in self.rejections.by_topic().items()},
                   **(self.backend.status() if self.backend else {})}
        status.values = [KeyValue(key=str(k), value=str(v)) for k, v in figures.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics.publish(msg)

    def publish(self, stamp: int, readings: dict | None = None):
        """Publish every sensor's reading at ``stamp`` (ns), after the local readers have it.

        ``readings``: the backend's; none: the newest again.
        """
        if readings is None:
            readings = self.readings_
        self.readings_, self.stamp = readings, stamp
        self._last_activity = time.monotonic()
        if self.clock_publisher is not None:
            self.clock_publisher.publish(Clock(clock=convert.to_stamp(stamp)))
        if self.local_readers:  # the policy of this process acts first, on what it reads
            local = self.local_readings(readings)
            if _all_finite(local):
                for reader in self.local_readers:
                    reader(stamp, local)
            else:  # (the published copies carry it: their subscribers reject them)
                self.get_logger().error(f'the measurement at {stamp} ns is not finite: not '
                                        "handed to this process's readers",
                                        throttle_duration_sec=1.0)
        for key, msg in self.measurements(stamp, readings).items():
            self.publishers_[key].publish(msg)
            if key in self.camera_infos:  # (as camera drivers do: the info beside each image)
                info = CameraInfo(header=msg.header, height=msg.height, width=msg.width)
                self.camera_infos[key].publish(info)

    def local_readings(self, readings: dict) -> dict:
        """What a local reader gets of a measurement.

        Per sensor it reads, the tuple the profile's ``read`` makes of the sensor's message
        (the message's leading fields).
        """
        return {key: convert.reader_fields(self.sensors[key], readings[key])
                for key in self.local_keys}

    def measurements(self, stamp: int, readings: dict) -> dict:
        """Every published sensor's message of a backend's ``readings``, stamped ``stamp``."""
        return {key: convert.sensor_message(
                    self.sensors[key], readings[key][:3] if key in self.imu_set
                    else readings[key], stamp)
                for key in self.publishers_}

    # Callbacks ------------------------------------------------------------------------------

    def on_command(self, msg: Float64MultiArray):
        """Take new joint targets; in lockstep, step once per fresh observation."""
        try:
            targets, label = convert.read_command(msg, len(self.profile.joint_names),
                                                  'position_controller/commands')
        except convert.MessageError as error:
            self.rejections('position_controller/commands', str(error), 'command rejected')
            return
        if self.awaiting_operator is not None:  # the robot rests until a person sets it right
            self._ignore_command('the robot waits for a person (confirm_reset)')
            return
        self._last_command = time.monotonic()
        if self.clock_mode == 'realtime':
            stamp = label.get(convert.STAMP_KEY)
            if stamp is not None:
                if stamp == self.answered:
                    return  # the published copy of a command handed over in-process
                self._answered(stamp)
            self.targets = targets
            if threading.current_thread() is self._thread:
                self._send()  # (the control thread runs the callbacks: the bus is ours)
            return
        if self.stamp is None:
            self._ignore_command('no episode yet (lockstep steps once a reset has run)')
            return
        stamp, episode = label.get(convert.STAMP_KEY), label.get(convert.EPISODE_KEY)
        if (stamp is not None and stamp != self.stamp) or (
                episode is not None and episode != self.episode_id):
            self.dropped += 1  # answers an older observation (before a reset, or repeated)
            self._ignore_command('it answers an older observation than the newest (its '
                                 'label: stamp_ns, episode); lockstep steps on an answer to '
                                 'the newest')
            return
        self.targets = targets
        self._step()

    def on_emergency_stop(self, msg: Bool):
        """Follow the stop line (``emergency_stop``, latched).

        Set: the robot is commanded no more (torque off where the backend can) and no reset
        runs; released: the next reset starts the robot again.
        """
        stop = bool(msg.data)
        if stop == self.stopped:
            return
        self.stopped = stop
        if stop:
            self.passive = True
            try:
                self.backend.emergency_stop()
            except BackendFault as fault:  # (torque off failed to confirm: said, and on)
                self._on_fault(fault)
            self.torque_off = True  # (the next reset activates the robot again)
            self.get_logger().error('EMERGENCY STOP: the robot is commanded no more')
        else:
            self.backend.release_emergency_stop()
            self.get_logger().warning('emergency stop released: the next reset starts the '
                                      'robot again')
        self.publish_diagnostics()

    def on_hold(self, msg: Float64MultiArray):
        """The safety node's hold pose: the targets from now on, without a step."""
        try:
            targets = convert.read_command(msg, len(self.profile.joint_names), 'hold')[0]
        except convert.MessageError as error:
            self.rejections('hold', str(error), 'hold rejected')
            return
        if self.awaiting_operator is None:  # (waiting for a person, the robot rests)
            self.targets, self._last_command = targets, time.monotonic()

    def _answered(self, stamp: int):
        """Real time: the measurement at ``stamp`` has its command; time it."""
        if stamp != self.stamp:
            self.missed += 1  # a newer measurement went out before this answer came
        self.answered = stamp
        self.latencies.setdefault(stamp, (self.get_clock().now().nanoseconds - stamp) / 1e6)

    def offers_local_control(self) -> bool:
        """Real time only: in lockstep the published command is what steps the robot."""
        return self.clock_mode == 'realtime'

    def add_local_reader(self, reader, keys):
        """Hand every measurement's ``keys`` sensors to ``reader(stamp_ns, readings)``.

        For a node of this process (the policy, real time only): it gets the readings
        (:meth:`local_readings`, the tuples its profile's ``read`` makes of the messages)
        before the messages are built and published, as a ros2_control controller reads state
        interfaces, instead of after the DDS round trip and behind the other nodes' callbacks.
        The published messages follow as usual. A measurement that is not finite is not
        handed over (logged); its messages still go out.
        """
        unknown = set(keys) - set(self.publishers_)
        if unknown:
            raise ValueError(f'{self.get_name()} publishes no {", ".join(sorted(unknown))}')
        self.local_readers.append(reader)
        self.local_keys.update(keys)
        for key in keys:
            topic = self.profile.sensors[key][0]
            self.local_counts[topic] = self.local_counts.get(topic, 0) + 1

    def take_local_targets(self, targets: np.ndarray, stamp: int) -> bool:
        """Joint targets from a policy node in this process, for the measurement at ``stamp``.

        Real time only (:meth:`offers_local_control`): what the command topic would
        deliver, as a controller writes command interfaces, taken before the command is
        published; its published copy then comes as a repeat and is ignored. Targets of the
        wrong size or not finite are refused (logged; False), as the topic's would be.
        """
        targets = np.asarray(targets, np.float64)
        if targets.shape != (len(self.profile.joint_names),) or not np.isfinite(targets).all():
            self.get_logger().error(
                f'local targets rejected for the measurement at {stamp} ns: expected '
                f'{len(self.profile.joint_names)} finite values, got {targets.tolist()}',
                throttle_duration_sec=1.0)
            return False
        if self.awaiting_operator is not None:
            return False  # the robot rests until a person has set it right
        if stamp != self.answered:
            self._answered(stamp)
        self.targets = targets
        self._last_command = time.monotonic()
        return True

    def _control_loop(self):
        """Real time: call :meth:`on_tick` every control period, on an absolute schedule."""
        self._raise_priority()
        period = self.profile.control_period
        self._deadline = time.monotonic()
        while True:
            self._deadline += period
            if self._deadline - time.monotonic() < -period:  # overran a whole period: count
                self.overruns += 1  # it, restart the schedule
                self._deadline = time.monotonic()
            try:
                if self._wait():
                    break
                request, self._reset_request = self._reset_request, None
                if request is None:
                    self.on_tick()
                else:  # a reset asked for by the service: this period's measurement
                    seed, episode_id, done, box = request
                    box['result'] = self._reset(seed, episode_id)
                    done.set()
            except Exception:  # noqa: BLE001 - a failed control step ends the run, loudly
                if not (self._stop.is_set() or not self.context.ok()):
                    self.get_logger().fatal(f'control thread failed:\n{traceback.format_exc()}')
                    self.exit_status = 1
                break
        self._close_backend()  # in the thread that rendered

    def _wait(self) -> bool:
        """Wait for the next step's deadline; True when the thread is to stop.

        Runs the process's callbacks meanwhile if it handed its executor over, one at a time,
        so a step starts at most one callback late. (A reset done by one of them moves the
        deadline: its measurement gets a whole period, as a step's does.)
        """
        while not self._stop.is_set():
            delay = self._deadline - time.monotonic()
            if delay <= 0.0:
                return False
            executor = self._executor
            if executor is None:
                self._stop.wait(delay)
            else:
                executor.spin_once(timeout_sec=delay)
        return True

    def take_executor(self, executor) -> bool:
        """Offered the process's executor (``spin.run_nodes``): spin it on the control thread.

        Real time with ``spin_on_control_thread`` only. A step then never shares the
        interpreter with the process's callbacks: with the executor on a thread of its own
        the control thread waited for the lock behind it, and for as long as the scheduler
        kept that thread off the CPU while it held the lock. Returns whether it took it; the
        process must then call :meth:`release_executor` before it destroys any node.
        """
        if self._thread is None or not self.spin_on_control_thread:
            return False
        self._executor = executor
        return True

    def release_executor(self):
        """Stop the control thread (and with it the executor's spinning)."""
        self._stop_control()

    def _raise_priority(self):
        """Put the calling thread under SCHED_FIFO at ``thread_priority``, if allowed."""
        # A waiting control thread gets the interpreter lock after at most this long (the
        # default 5 ms would be half a control period spent behind another thread's Python).
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        if self.thread_priority <= 0:
            return
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(self.thread_priority))
        except (PermissionError, AttributeError, OSError) as error:
            self.get_logger().warning(
                f'control thread at normal priority (SCHED_FIFO {self.thread_priority} not '
                f'permitted: {error}); for steadier control periods allow real-time priority '
                '(docs/realtime.md)')

    def _stop_control(self):
        if not hasattr(self, '_stop'):
            return  # (its constructor failed before the control thread existed)
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    def destroy_node(self):
        """Stop the control thread before the node goes."""
        self._stop_control()
        return super().destroy_node()

    def on_tick(self):
        """Real time: one control period with the newest targets."""
        self._step()

    def on_resend_check(self):
        """Lockstep: publish the newest observation again when the loop has gone quiet."""
        if self.stamp is not None and time.monotonic() - self._last_activity > self.resend_period:
            self.publish(self.stamp)

    def _missing_readers(self) -> list:
        by_topic = {topic: self.publishers_[key] for key, (topic, _) in
                    self.profile.sensors.items() if key in self.publishers_}
        if self.clock_publisher is not None:
            by_topic[self.clock_topic] = self.clock_publisher
        missing = []
        for entry in self.wait_for_readers:
            topic, _, count = entry.partition('>=')
            publisher = by_topic.get(topic.strip())
            if publisher is None:
                continue
            # Matched readers, and nodes of this process that take the sensor directly.
            readers = publisher.get_subscription_count() + self.local_counts.get(
                topic.strip(), 0)
            if readers < int(count):
                missing.append(f'{topic.strip()} ({readers}/{count})')
        return missing

    def on_reset(self, request: Reset.Request, response: Reset.Response):
        """Start a new episode: reset the physics and publish its first observation.

        In real time the control thread does it (it owns the robot: a camera's GL context works
        in one thread only): right here when it runs the process's callbacks, the next step then
        a whole period later; otherwise in place of its next step, the service waiting for it.
        """
        if request.seed < -1:
            response.success = False
            response.message = (f'seed {request.seed}: a seed is >= 0 (restart the random '
                                'stream) or -1 (keep it)')
            return response
        if request.episode_id and request.episode_id <= self.episode_id:
            response.success = False
            response.message = (f'episode {request.episode_id}: this driver has begun episode '
                                f'{self.episode_id} already (episode ids only grow)')
            return response
        if request.episode_id > self.episode_id + convert.EPISODE_ID_JUMP:
            response.success = False
            response.message = (f'episode {request.episode_id}: more than '
                                f"{convert.EPISODE_ID_JUMP} after this driver's "
                                f'{self.episode_id} (episode ids grow one an episode)')
            return response
        if self.episode_id == 0 and self.wait_for_readers:
            missing = self._missing_readers()  # matched readers, as this writer sees them
            if missing:
                response.success = False
                response.message = f'waiting for readers: {", ".join(missing)}'
                return response
        if self._thread is None:
            stamp, message = self._reset(request.seed, request.episode_id)
        elif threading.current_thread() is self._thread:  # it runs the callbacks too
            stamp, message = self._reset(request.seed, request.episode_id)
            self._deadline = time.monotonic() + self.profile.control_period
        else:
            done, box = threading.Event(), {}
            self._reset_request = (request.seed, request.episode_id, done, box)
            # (A hardware reset takes seconds: wait as long as the control thread lives.)
            while not done.wait(timeout=max(1.0, 20 * self.profile.control_period)):
                if not self._thread.is_alive():
                    response.success = False
                    response.message = 'the control thread did not take the reset (stopped)'
                    return response
            stamp, message = box['result']
        if stamp is None:
            response.success, response.message = False, message
            return response
        self.get_logger().debug(f'episode {self.episode_id} starts at {stamp} ns '
                                f'({request.reason or "no reason given"}; {message})')
        response.success, response.episode_id = True, self.episode_id
        response.message = message
        response.stamp = convert.to_stamp(stamp)
        return response

    def on_confirm_reset(self, request: Trigger.Request, response: Trigger.Response):
        """A person says the robot is ready again (after a reset that asked for one)."""
        del request
        if self.awaiting_operator is None or self.backend is None:
            response.success = False
            response.message = ('the driver has stopped' if self.backend is None
                                else 'no reset is waiting for a person')
            return response
        waited = time.monotonic() - self._waiting_since
        self.operator_seconds += waited
        self.operator_resets += 1
        self.get_logger().info(f'confirmed by a person after {waited:.1f} s (was: '
                               f'{self.awaiting_operator}); the next reset tries again')
        self.awaiting_operator, self._waiting_since = None, None
        self.backend.operator_confirmed()
        response.success, response.message = True, 'the next reset tries again'
        return response

    def _reset(self, seed: int, episode_id: int = 0) -> tuple:
        """Reset the robot and publish the new episode's first measurement.

        The episode takes id ``episode_id`` (0: the one after the last).

        Returns ``(stamp, message)``; ``(None, why)`` when it could not: a person must confirm
        first, recovering from a fault failed, or the backend's reset failed (one that asks for
        a person then waits for ``confirm_reset``).
        """
        if self.stopped:
            return None, ('emergency stop: release it first (`ros2 service call '
                          f'{self.get_namespace().rstrip("/")}/release_emergency_stop '
                          'std_srvs/srv/Trigger`)')
        if self.awaiting_operator is not None:
            return None, (f'waiting for a person: {self.awaiting_operator}; confirm with '
                          f'`ros2 service call {self._confirm_service()} std_srvs/srv/Trigger`')
        try:
            if self.fault is not None:
                self._recover()
            elif self.torque_off:  # (turned off for silence: a reset moves the robot)
                self.backend.activate()
                self.torque_off = False
            result = self._reset_robot(seed)
            if not result.success:
                if result.needs_operator:
                    self.awaiting_operator = result.message
                    self._waiting_since = time.monotonic()
                    self.get_logger().error(
                        f'{result.message}: a person must set the robot right, then call '
                        f'`ros2 service call {self._confirm_service()} std_srvs/srv/Trigger`')
                    self.publish_diagnostics()
                return None, result.message
            readings = self.backend.read()
        except BackendFault as fault:
            self._on_fault(fault)
            return None, f'fault: {fault}'
        self.torque_off, self.passive, self._last_command = False, False, time.monotonic()
        self.episode_id = max(self.episode_id + 1, episode_id)
        stamp = self._next_stamp()
        self.episode_start = stamp
        # At once, before the episode's first measurement: a reset the safety node did not ask
        # for (a person's `ros2 service call`) ends its running episode there.
        self.publish_diagnostics()
        if self._log_timeline:
            self.timeline.append((stamp, 0))
        self.publish(stamp, readings)
        if self._thread is not None and threading.current_thread() is self._thread:
            self._send()  # the first command of the episode, at once
        return stamp, result.message

    def _confirm_service(self) -> str:
        namespace = self.get_namespace().rstrip('/')
        return f'{namespace}/confirm_reset'

    def _recover(self):
        """After a fault: the backend closed and configured again (raises BackendFault)."""
        self.get_logger().info(f'recovering from the fault ({self.fault}): configuring the '
                               'backend again')
        try:
            self.backend.close()
            self.backend.configure()
            self.backend.activate()
        except BackendError as error:
            raise BackendFault(f'recovery failed: {error}') from error
        self.fault = None

    def close(self):
        """Stop the control thread; write the latency log; close the backend (torque off)."""
        self._stop_control()
        if self.latency_log:
            with open(self.latency_log, 'w', encoding='utf-8') as stream:
                stream.write(f'# steps {self.steps}, missed deadlines {self.missed}, '
                             f'overruns {self.overruns}\n'
                             'stamp_ns,timer,latency_ms\n')
                stream.writelines(f'{stamp},{timer},{self.latencies.get(stamp, np.nan):.4f}\n'
                                  for stamp, timer in self.timeline)
        if self._thread is None:
            self._close_backend()

    def _close_backend(self):
        """Torque off and release the hardware (or the renderer); once, on every way out."""
        backend, self.backend = self.backend, None
        if backend is not None:
            # What the hardware went through, in one line at the end (retries absorbed,
            # bad messages, hardware errors), beside the diagnostics that carried it.
            try:
                figures = backend.status()
            except Exception as error:  # (a backend failed part-way: the close matters more)
                figures = {'status': f'unavailable ({error})'}
            if figures:
                self.get_logger().info(f'{self.steps} steps, {self.faults} fault(s); at the '
                                       'end: ' + ', '.join(f'{k} {v}' for k, v in
                                                           figures.items()))
            backend.close()
            backend.detach()


def main(args=None) -> int:
    """Run the driver node."""
    return run(Driver, args)
