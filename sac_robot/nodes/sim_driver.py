# SPDX-License-Identifier: Apache-2.0
"""sim_driver: the MuJoCo stand-in of a robot, speaking what the hardware drivers speak.

Publishes (relative to the robot's namespace), every control step, all with the same stamp:

- Minitaur: ``joint_states`` (sensor_msgs/JointState: the eight motors' angles, velocities,
  torques), ``imu/data`` (sensor_msgs/Imu: orientation, body rates, acceleration),
  ``mocap/pose`` (geometry_msgs/PoseStamped of the base in ``world``, as vrpn_mocap publishes a
  tracked rigid body);
- D'Claw: ``joint_states`` (the nine servos), ``valve/joint_states`` (the valve encoder, joint
  ``valve``), and with ``pixels`` ``camera/image_raw`` (sensor_msgs/Image, rgb8, 32 x 32).

Takes ``position_controller/commands`` (std_msgs/Float64MultiArray, ros2_control's forward
command form: one target per joint, in the order of ``joint_states``) and offers ``reset``
(sac_robot/srv/Reset).

Clock modes (parameter ``clock``):

- ``lockstep``: the physics advances one control period per command, as fast as commands come,
  and ``/clock`` carries the simulated time. A command labelled with the stamp and episode of the
  observation it answers (see :func:`sac_robot.nodes.convert.command`) steps only if that is the
  newest observation, so stale commands (from before a reset) are dropped; an unlabelled command
  steps at once; a ``hold`` command only sets the targets. If nothing comes for
  ``resend_period`` seconds the newest observation is published again, so a lost sample cannot
  stall the loop.
- ``realtime``: a timer steps the physics every control period with the newest targets (held
  between commands); stamps are the node's clock.
"""

import collections
import time

import numpy as np
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from std_msgs.msg import Float64MultiArray

from sac_robot.nodes import convert, qos
from sac_robot.nodes.params import describe
from sac_robot.nodes.robots import profile as make_profile
from sac_robot.nodes.spin import run
from sac_robot.srv import Reset

HOLD_LABEL = 'hold'


class SimDriver(Node):
    """Simulate one robot and publish its sensors; step on commands or in real time."""

    def __init__(self, **kwargs):
        super().__init__('sim_driver', **kwargs)
        declare = self.declare_parameter
        robot = declare('robot', 'minitaur', describe('minitaur or dclaw')).value
        self.clock_mode = declare('clock', 'lockstep', describe(
            'lockstep: one control step per command, as fast as they come, /clock published; '
            'realtime: a timer at the control rate')).value
        self.seed = declare('seed', 0, describe('Seed of resets (valve angle, randomisation).')
                            ).value
        latency = declare('latency', 0.0, describe(
            'Minitaur: command latency in seconds (whole physics steps).')).value
        self.randomize = declare('randomize', False, describe(
            'Minitaur: draw masses, friction, motor strength and damping at every reset.')).value
        self.pixels = declare('pixels', False, describe(
            "D'Claw: publish the 32 x 32 camera image.")).value
        self.resend_period = declare('resend_period', 0.5, describe(
            'Lockstep: seconds without a command before the newest observation is sent again.')
        ).value
        self.latency_log = declare('latency_log', '', describe(
            'Real time: on shutdown, write the observation-to-command latency (ms) of every '
            'command and the count of missed deadlines to this CSV file.')).value
        self.wait_for_readers = [entry for entry in declare('wait_for_readers', [''], describe(
            "Before the first episode, refuse resets until each sensor topic ('topic>=N') has "
            'N matched readers, so that no node of the graph misses its first measurements.')
        ).value if entry]
        if self.clock_mode not in ('lockstep', 'realtime'):
            raise ValueError(f"clock must be 'lockstep' or 'realtime', not {self.clock_mode!r}")
        self.profile = make_profile(robot)
        self.rng = np.random.default_rng(self.seed)
        if robot == 'minitaur':
            from sac_robot.robots.minitaur import MinitaurSim
            self.robot = MinitaurSim(latency=latency)
        else:
            from sac_robot.robots.dclaw import DClawSim
            self.robot = DClawSim()
        self.substeps = int(round(self.profile.control_period / self.robot.timestep))
        self.period_ns = int(round(self.profile.control_period * 1e9))

        # Reliable publishers match reliable and best-effort subscribers alike.
        self.publishers_ = {key: self.create_publisher(msg_type, topic, qos.SENSOR_RELIABLE)
                            for key, (topic, msg_type) in self.profile.sensors.items()
                            if key != 'camera' or self.pixels}
        # /clock as deep as the sensors: in lockstep it ticks as fast as the loop runs, and a
        # recorder a moment behind must not lose ticks.
        self.clock_publisher = (self.create_publisher(Clock, '/clock', qos.SENSOR_RELIABLE)
                                if self.clock_mode == 'lockstep' else None)
        self.create_subscription(Float64MultiArray, 'position_controller/commands',
                                 self.on_command, qos.COMMAND)
        self.create_service(Reset, 'reset', self.on_reset)

        self.episode_id = 0
        self.sim_time = 0  # ns, lockstep
        self.stamp = None  # of the newest published observation
        self.targets = self.profile.hold_command()
        self.steps = 0
        self.dropped = 0
        self.latencies = []  # real time: observation-to-command latency of each command, ms
        self.answered, self.missed = None, 0
        self.published = collections.deque(maxlen=2)  # the two newest observation stamps
        self._last_activity = time.monotonic()
        self._reset_robot()
        if self.clock_mode == 'realtime':
            self.create_timer(self.profile.control_period, self.on_tick)
        else:
            self.create_timer(min(self.resend_period, 0.1), self.on_resend_check)

    # Simulation -----------------------------------------------------------------------------

    def _reset_robot(self):
        if self.profile.name == 'minitaur':
            if self.randomize:
                self.robot.randomize(self.rng)
            self.robot.reset()
        else:
            self.robot.reset(valve_angle=float(self.rng.uniform(-np.pi, np.pi)))
            self.robot.show_target(self.profile.target_angle)
        self.targets = self.profile.hold_command()
        self.robot.command(self.targets)

    def _next_stamp(self) -> int:
        if self.clock_mode == 'lockstep':
            self.sim_time += self.period_ns
            return self.sim_time
        return self.get_clock().now().nanoseconds

    def _step(self):
        self.robot.command(self.targets)
        self.robot.step(self.substeps)
        self.steps += 1
        self.publish(self._next_stamp())

    def publish(self, stamp: int):
        """Publish every sensor at ``stamp`` (ns)."""
        self.stamp = stamp
        self.published.append(stamp)
        self._last_activity = time.monotonic()
        if self.clock_publisher is not None:
            self.clock_publisher.publish(Clock(clock=convert.to_stamp(stamp)))
        for key, msg in self.measurements(stamp).items():
            self.publishers_[key].publish(msg)

    def measurements(self, stamp: int) -> dict:
        """The sensor messages of the current state, stamped ``stamp``."""
        robot, names = self.robot, self.profile.joint_names
        if self.profile.name == 'minitaur':
            data = robot.data
            position, orientation = robot.base_pose()
            return {
                'joints': convert.joint_state(names, robot.motor_angles(),
                                              robot.motor_velocities(), robot.motor_torques(),
                                              stamp, 'base'),
                'imu': convert.imu(robot.base_orientation(), robot.base_angular_velocity(),
                                   data.sensor('imu_accelerometer').data, stamp, 'imu'),
                'mocap': convert.pose_stamped(position, orientation, stamp, 'world')}
        msgs = {'joints': convert.joint_state(names, robot.joint_positions(),
                                              robot.joint_velocities(), None, stamp, 'mount'),
                'valve': convert.joint_state(('valve',), [robot.valve_angle()],
                                             [robot.valve_velocity()], None, stamp, 'valve')}
        if self.pixels:
            size = self.profile.image_size
            msgs['camera'] = convert.image(robot.render(size, size), stamp,
                                           self.profile.camera_frame)
        return msgs

    # Callbacks ------------------------------------------------------------------------------

    def on_command(self, msg: Float64MultiArray):
        """Take new joint targets; in lockstep, step once per fresh observation."""
        try:
            targets, label = convert.read_command(msg, len(self.profile.joint_names),
                                                  'position_controller/commands')
        except convert.MessageError as error:
            self.get_logger().error(f'command rejected: {error}', throttle_duration_sec=1.0)
            return
        hold = bool(msg.layout.dim) and msg.layout.dim[0].label == HOLD_LABEL
        if self.clock_mode == 'realtime' or hold:
            stamp = label.get(convert.STAMP_KEY)
            if stamp is not None and not hold:
                if stamp == self.answered:
                    return  # the published copy of a command handed over in-process
                self.answered = stamp
                self.latencies.append((self.get_clock().now().nanoseconds - stamp) / 1e6)
            self.targets = targets
            return
        if self.stamp is None:
            return  # no episode yet
        stamp, episode = label.get(convert.STAMP_KEY), label.get(convert.EPISODE_KEY)
        if (stamp is not None and stamp != self.stamp) or (
                episode is not None and episode != self.episode_id):
            self.dropped += 1  # answers an older observation (before a reset, or repeated)
            return
        self.targets = targets
        self._step()

    def take_local_command(self, msg: Float64MultiArray):
        """A command from a policy node in this process, handed over before it is published.

        Real time only (the policy checks ``clock_mode``): the targets are taken as from the
        topic, whose copy then comes as a repeat and is ignored.
        """
        self.on_command(msg)

    def on_tick(self):
        """Real time: one control period with the newest targets."""
        if len(self.published) == 2 and self.answered == self.published[0]:
            self.missed += 1  # the policy commands, but its answer to the last one is late
        self._step()

    def on_resend_check(self):
        """Lockstep: publish the newest observation again when the loop has gone quiet."""
        if self.stamp is not None and time.monotonic() - self._last_activity > self.resend_period:
            self.publish(self.stamp)

    def _missing_readers(self) -> list:
        by_topic = {topic: self.publishers_[key] for key, (topic, _) in
                    self.profile.sensors.items() if key in self.publishers_}
        if self.clock_publisher is not None:
            by_topic['/clock'] = self.clock_publisher
        missing = []
        for entry in self.wait_for_readers:
            topic, _, count = entry.partition('>=')
            publisher = by_topic.get(topic.strip())
            if publisher is not None and publisher.get_subscription_count() < int(count):
                missing.append(f'{topic.strip()} ({publisher.get_subscription_count()}/{count})')
        return missing

    def on_reset(self, request: Reset.Request, response: Reset.Response):
        """Start a new episode: reset the physics and publish its first observation."""
        if self.episode_id == 0 and self.wait_for_readers:
            missing = self._missing_readers()  # matched readers, as this writer sees them
            if missing:
                response.success = False
                response.message = f'waiting for readers: {", ".join(missing)}'
                return response
        if request.seed >= 0:
            self.rng = np.random.default_rng(request.seed)
        self._reset_robot()
        self.episode_id += 1
        stamp = self._next_stamp()
        self.publish(stamp)
        self.get_logger().debug(f'episode {self.episode_id} starts at {stamp} ns '
                                f'({request.reason or "no reason given"})')
        response.success, response.episode_id = True, self.episode_id
        response.stamp = convert.to_stamp(stamp)
        return response

    def close(self):
        """Write the latency log; release the renderer."""
        if self.latency_log:
            with open(self.latency_log, 'w', encoding='utf-8') as stream:
                stream.write(f'# steps {self.steps}, missed deadlines {self.missed}\n'
                             'latency_ms\n')
                stream.writelines(f'{value:.4f}\n' for value in self.latencies)
        close = getattr(self.robot, 'close', None)
        if close is not None:
            close()


def main(args=None) -> int:
    """Run the simulated driver node."""
    return run(SimDriver, args)
