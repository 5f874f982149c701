# SPDX-License-Identifier: Apache-2.0
"""``sac-robot emulate minitaur``: the Minitaur's lab stack, stood in for by MuJoCo in real time.

Nobody ships a ROS 2 driver for the Minitaur's motor boards: on a real robot the motors and the
IMU come from a ros2_control stack and the base's pose from a motion-capture driver. This
program publishes and subscribes exactly as those do, so that our real path
(``minitaur_train.launch.py hardware:=real``, the ``ros2_control`` backend) runs against it
unchanged:

- ``/joint_states`` (sensor_msgs/JointState; the URDF's joint names, not ours; reliable, as
  joint_state_broadcaster), at ``--state-rate``;
- ``/imu_sensor_broadcaster/imu`` (sensor_msgs/Imu, frame ``imu_link``; reliable), at the same
  rate;
- ``/vrpn_mocap/<tracker>/pose`` (geometry_msgs/PoseStamped, frame ``world``; best-effort
  sensor QoS, as vrpn_mocap: a reliable subscriber does not match it), at ``--mocap-rate``;
  or, with ``--mocap mocap4r2``, a MOCAP4ROS2 driver's ``/rigid_bodies``
  (mocap4r2_msgs/RigidBodies, frame ``world``, reliable): each frame numbered, holding the
  robot's body (named ``--tracker``) and a second, still one (``wand``), as a lab's capture
  volume holds more than the robot;
- ``/forward_position_controller/commands`` (std_msgs/Float64MultiArray in the controller's
  joint order, ``--command-joints``), taken as forward_command_controller does: a message of
  the wrong size is dropped, the last command is held with no timeout.

Behind them the MuJoCo Minitaur steps in real time (2 ms physics steps, a thread at SCHED_FIFO
where permitted, as hardware runs whatever the computer does). There is no reset service: a
fallen robot lies where it fell until a person puts it back. The person's hands are
``/standin/place_robot`` (std_srvs/Trigger: the robot standing at the origin again), for a
test's operator to call; ``--operator SECONDS`` runs one here: when a driver says on
/diagnostics that it waits for a person, it waits that long, places the robot, and confirms
through the driver's own ``confirm_reset`` service, as a person would.

Faults on purpose: ``--tracker-dropout S@T`` (the tracker loses the body for S seconds from T
on: vrpn_mocap publishes nothing, a rigid-body frame leaves the robot out), ``--imu-stall S@T``
(no IMU messages), ``--command-latency MS`` (commands reach the motors that much later).
"""

import argparse
import collections
import dataclasses
import os
import signal
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from sac_robot.nodes import qos
from sac_robot.robots.description import MINITAUR

#: What the lab's stack is called on the wire, by default.
STATE_TOPIC = '/joint_states'
IMU_TOPIC = '/imu_sensor_broadcaster/imu'
#: What the broadcaster's ``static_covariance_orientation``, ``..._angular_velocity`` and
#: ``..._linear_acceleration`` parameters put on its messages (example values of the order of
#: a MEMS IMU's: 1e-4 rad^2, 1e-5 (rad/s)^2, 1e-2 (m/s^2)^2); the driver passes them on.
IMU_COVARIANCES = tuple(
    [float(v) for v in np.diag([variance] * 3).ravel()] for variance in (1e-4, 1e-5, 1e-2))
COMMAND_TOPIC = '/forward_position_controller/commands'
TRACKER = 'minitaur'
RIGID_BODIES_TOPIC = '/rigid_bodies'
#: The second body of a mocap4r2 frame: where it stands (m), still.
WAND = ('wand', (1.5, -0.5, 0.8))
PLACE_SERVICE = '/standin/place_robot'


@dataclasses.dataclass
class Faults:
    """Faults on purpose; times are seconds since the stand-in started."""

    #: ``(start, end)`` spans with no motion-capture messages (the tracker lost the body).
    tracker_dropouts: list = dataclasses.field(default_factory=list)
    #: ``(start, end)`` spans with no IMU messages.
    imu_stalls: list = dataclasses.field(default_factory=list)
    #: Seconds between a command's arrival and the motors taking it.
    command_latency: float = 0.0

    @staticmethod
    def active(spans, t: float) -> bool:
        """Whether ``t`` falls in one of ``spans``."""
        return any(start <= t < end for start, end in spans)


def _span(text: str) -> tuple:
    """``S@T`` -> ``(T, T + S)``; ``S`` alone starts at once."""
    seconds, _, start = text.partition('@')
    start = float(start or 0.0)
    return start, start + float(seconds)


class MinitaurStandin:
    """The MuJoCo Minitaur behind the topics of a ros2_control stack and vrpn_mocap."""

    def __init__(self, node, tracker: str = TRACKER, state_rate: float = 250.0,
                 mocap_rate: float = 100.0, command_joints=None, faults: Faults | None = None,
                 priority: int = 60, mocap: str = 'vrpn'):
        from sac_robot.robots.minitaur import MinitaurSim
        self.node, self.faults = node, faults or Faults()
        self.sim = MinitaurSim()
        self.sim.reset()
        self.joint_names = MINITAUR.urdf_joints
        self.command_joints = tuple(command_joints or self.joint_names)
        unknown = set(self.command_joints) - set(self.joint_names)
        if unknown or len(self.command_joints) != len(self.joint_names):
            raise ValueError(f'--command-joints must name each of {", ".join(self.joint_names)}'
                             f' once; got {", ".join(self.command_joints)}')
        #: Our motor order from the controller's: motors[i] = command[order[i]].
        self.order = [self.command_joints.index(name) for name in self.joint_names]
        # The stack's QoS: the broadcasters' and the controller's system defaults (reliable
        # writers and readers, depth 10), vrpn_mocap's sensor data (best effort), a
        # MOCAP4ROS2 driver's rigid bodies reliable.
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.states = node.create_publisher(JointState, STATE_TOPIC, reliable)
        self.imus = node.create_publisher(Imu, IMU_TOPIC, reliable)
        self.tracker, self.mocap, self.frame_number = tracker, mocap, 0
        if mocap == 'vrpn':
            self.mocap_topic = f'/vrpn_mocap/{tracker}/pose'
            self.poses = node.create_publisher(PoseStamped, self.mocap_topic,
                                               qos_profile_sensor_data)
        elif mocap == 'mocap4r2':
            from mocap4r2_msgs.msg import RigidBodies, RigidBody
            self._rigid_types = RigidBodies, RigidBody
            self.mocap_topic = RIGID_BODIES_TOPIC
            self.poses = node.create_publisher(RigidBodies, self.mocap_topic, reliable)
        else:
            raise ValueError(f"--mocap must be 'vrpn' or 'mocap4r2', not {mocap!r}")
        node.create_subscription(Float64MultiArray, COMMAND_TOPIC, self.on_command, reliable)
        node.create_service(Trigger, PLACE_SERVICE, self.on_place)
        self.lock = threading.Lock()
        self.state_every = max(1, round(1.0 / (state_rate * self.sim.timestep)))
        self.mocap_every = max(1, round(1.0 / (mocap_rate * self.sim.timestep)))
        self.priority = int(priority)
        self.scheduling = 'not started'
        self.counts = collections.Counter()
        self.last_command = None  # monotonic time of the newest command taken
        self._pending = collections.deque()  # (time due, motor targets): command latency
        self._stop = threading.Event()
        self._thread = None
        self.started = time.monotonic()

    # The controller's side ------------------------------------------------------------------

    def on_command(self, msg):
        """forward_command_controller: the right size or dropped; held until the next one."""
        data = list(msg.data)
        if len(data) != len(self.command_joints):
            self.counts['commands_dropped'] += 1
            self.node.get_logger().warning(
                f'{COMMAND_TOPIC}: {len(data)} values for {len(self.command_joints)} joints: '
                'dropped (as forward_command_controller does)', throttle_duration_sec=1.0)
            return
        motors = [data[i] for i in self.order]
        self.counts['commands'] += 1
        self.last_command = time.monotonic()
        with self.lock:
            if self.faults.command_latency > 0:
                self._pending.append((time.monotonic() + self.faults.command_latency, motors))
            else:
                self.sim.command(motors)

    def on_place(self, request, response):
        """The person's hands: the robot standing at the origin, at rest."""
        del request
        with self.lock:
            self.sim.reset()
            self._pending.clear()
        self.counts['placed'] += 1
        response.success, response.message = True, 'the robot stands at the origin'
        return response

    # Time and the wire ----------------------------------------------------------------------

    def start(self):
        """Start the physics and publishing thread."""
        self._thread = threading.Thread(target=self._run, name='standin-physics', daemon=True)
        self._thread.start()

    def stop(self):
        """Stop the physics."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)

    def _real_time(self):
        if self.priority <= 0:
            self.scheduling = 'normal'
            return
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(self.priority))
            self.scheduling = f'SCHED_FIFO {self.priority}'
        except (OSError, AttributeError) as error:
            self.scheduling = f'normal (SCHED_FIFO not permitted: {error})'

    def _run(self):
        self._real_time()
        period = self.sim.timestep
        deadline, step = time.monotonic(), 0
        while not self._stop.is_set():
            with self.lock:
                now = time.monotonic()
                while self._pending and self._pending[0][0] <= now:
                    self.sim.command(self._pending.popleft()[1])
                self.sim.step(1)
                step += 1
                messages = self._messages_now(step)
            for publisher, msg in messages:
                publisher.publish(msg)
            deadline += period
            delay = deadline - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            elif delay < -0.1:  # far behind (a stalled machine): do not race to catch up
                deadline = time.monotonic()

    def _messages_now(self, step: int) -> list:
        """The messages due after physics step ``step`` (under the lock)."""
        sim, t = self.sim, time.monotonic() - self.started
        stamp = self.node.get_clock().now().to_msg()
        out = []
        if step % self.state_every == 0:
            state = JointState(name=list(self.joint_names))
            state.header.stamp, state.header.frame_id = stamp, 'base_link'
            state.position = sim.motor_angles().tolist()
            state.velocity = sim.motor_velocities().tolist()
            state.effort = sim.motor_torques().tolist()
            out.append((self.states, state))
            if not Faults.active(self.faults.imu_stalls, t):
                imu = Imu()
                imu.header.stamp, imu.header.frame_id = stamp, 'imu_link'
                o = imu.orientation
                o.w, o.x, o.y, o.z = (float(v) for v in sim.base_orientation())
                g = imu.angular_velocity
                g.x, g.y, g.z = (float(v) for v in sim.base_angular_velocity())
                a = imu.linear_acceleration
                a.x, a.y, a.z = (float(v) for v in sim.data.sensor('imu_accelerometer').data)
                (imu.orientation_covariance, imu.angular_velocity_covariance,
                 imu.linear_acceleration_covariance) = IMU_COVARIANCES
                out.append((self.imus, imu))
            else:
                self.counts['imu_withheld'] += 1
        if step % self.mocap_every == 0:
            seen = not Faults.active(self.faults.tracker_dropouts, t)
            if not seen:
                self.counts['mocap_withheld'] += 1
            if self.mocap == 'mocap4r2':
                out.append((self.poses, self._rigid_bodies(stamp, seen)))
            elif seen:
                pose = PoseStamped()
                pose.header.stamp, pose.header.frame_id = stamp, 'world'
                _set_pose(pose.pose, *sim.base_pose())
                out.append((self.poses, pose))
        return out

    def _rigid_bodies(self, stamp, robot_seen: bool):
        """One MOCAP4ROS2 frame: the wand, and the robot where the system sees it."""
        frames, body = self._rigid_types
        self.frame_number += 1
        msg = frames(frame_number=self.frame_number)
        msg.header.stamp, msg.header.frame_id = stamp, 'world'
        wand = body(rigid_body_name=WAND[0])
        _set_pose(wand.pose, WAND[1], (1.0, 0.0, 0.0, 0.0))
        msg.rigidbodies.append(wand)
        if robot_seen:
            robot = body(rigid_body_name=self.tracker)
            _set_pose(robot.pose, *self.sim.base_pose())
            msg.rigidbodies.append(robot)
        return msg


def _set_pose(pose, position, orientation):
    """A geometry_msgs/Pose from a position and a ``[w, x, y, z]`` quaternion."""
    p, o = pose.position, pose.orientation
    p.x, p.y, p.z = (float(v) for v in position)
    o.w, o.x, o.y, o.z = (float(v) for v in orientation)


class Operator:
    """A test's person: places the robot and confirms whenever a driver waits for one.

    Watches /diagnostics; for a driver whose status says it waits for a person, after
    ``delay`` seconds calls the stand-in's ``place_robot`` and then the driver's
    ``confirm_reset``, through ROS like anyone else.
    """

    def __init__(self, node, delay: float = 1.0):
        self.node, self.delay = node, float(delay)
        self.place = node.create_client(Trigger, PLACE_SERVICE)
        self.confirms = {}  # driver's namespace -> its confirm_reset client
        self.waiting_since = {}  # driver's namespace -> when it first said it waits
        self.busy = set()
        self.resets = 0
        node.create_subscription(DiagnosticArray, '/diagnostics', self.on_diagnostics,
                                 qos.DIAGNOSTICS)
        node.create_timer(0.1, self.on_timer)

    def on_diagnostics(self, msg):
        """Note each driver that waits for a person."""
        for status in msg.status:
            if not status.name.endswith('/driver'):
                continue
            namespace = status.name[:-len('/driver')]
            if 'waiting for a person' in status.message:
                self.waiting_since.setdefault(namespace, time.monotonic())
            else:
                self.waiting_since.pop(namespace, None)

    def on_timer(self):
        """Step in where a driver has waited ``delay`` seconds."""
        now = time.monotonic()
        for namespace, since in list(self.waiting_since.items()):
            if now - since < self.delay or namespace in self.busy:
                continue
            if not self.place.service_is_ready():
                continue
            self.busy.add(namespace)
            future = self.place.call_async(Trigger.Request())
            future.add_done_callback(lambda _, ns=namespace: self._confirm(ns))

    def _confirm(self, namespace: str):
        client = self.confirms.get(namespace)
        if client is None:
            client = self.confirms[namespace] = self.node.create_client(
                Trigger, f'{namespace}/confirm_reset')
        if not client.service_is_ready():
            self.busy.discard(namespace)
            return

        def done(future, ns=namespace):
            self.busy.discard(ns)
            self.waiting_since.pop(ns, None)
            result = future.result()
            if result is not None and result.success:
                self.resets += 1
                self.node.get_logger().info(f'operator: placed the robot and confirmed '
                                            f'{ns}/confirm_reset ({self.resets} resets)')

        client.call_async(Trigger.Request()).add_done_callback(done)


def main(argv=None) -> int:
    """``sac-robot emulate minitaur``: serve the stand-in until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog='sac-robot emulate minitaur', description=__doc__.split('\n\n')[0])
    parser.add_argument('--mocap', choices=('vrpn', 'mocap4r2'), default='vrpn',
                        help='the motion-capture driver it speaks as: vrpn_mocap (a '
                             'PoseStamped per tracker) or MOCAP4ROS2 (RigidBodies on '
                             f'{RIGID_BODIES_TOPIC})')
    parser.add_argument('--tracker', default=TRACKER, help="the name of the robot's tracker "
                        '(vrpn: its topic /vrpn_mocap/<tracker>/pose) or rigid body (mocap4r2)')
    parser.add_argument('--state-rate', type=float, default=250.0,
                        help='joint states and IMU per second')
    parser.add_argument('--mocap-rate', type=float, default=100.0, help='poses per second')
    parser.add_argument('--command-joints', nargs='+', metavar='JOINT',
                        help="the controller's joint order (default: the URDF's)")
    parser.add_argument('--tracker-dropout', action='append', default=[], metavar='S@T',
                        help='no motion capture for S seconds from T on')
    parser.add_argument('--imu-stall', action='append', default=[], metavar='S@T',
                        help='no IMU messages for S seconds from T on')
    parser.add_argument('--command-latency', type=float, default=0.0, metavar='MS',
                        help='commands reach the motors this much later')
    parser.add_argument('--operator', type=float, default=None, metavar='SECONDS',
                        help='also play the person: place the robot and confirm a waiting '
                             "driver's reset after SECONDS")
    parser.add_argument('--priority', type=int, default=60,
                        help='SCHED_FIFO priority of the physics thread (0: normal)')
    args = parser.parse_args(argv)
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    faults = Faults([_span(s) for s in args.tracker_dropout],
                    [_span(s) for s in args.imu_stall], args.command_latency / 1000)
    rclpy.init()
    node = Node('minitaur_standin')
    try:
        standin = MinitaurStandin(node, args.tracker, args.state_rate, args.mocap_rate,
                                  args.command_joints, faults, args.priority, args.mocap)
    except ValueError as error:
        print(f'sac-robot emulate minitaur: {error}', flush=True)
        return 2
    operator = Operator(node, args.operator) if args.operator is not None else None
    done = threading.Event()  # (before anyone learns of it: a signal from then on ends it)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    standin.start()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    done.wait(0.05)  # (the physics thread has set its scheduling)
    bodies = f" (rigid bodies '{args.tracker}', '{WAND[0]}')" if args.mocap == 'mocap4r2' else ''
    print(f'Minitaur stand-in: {STATE_TOPIC}, {IMU_TOPIC}, {standin.mocap_topic}{bodies} out; '
          f'{COMMAND_TOPIC} in (physics {standin.scheduling})'
          + (f'; operator after {args.operator:g} s' if operator else ''), flush=True)
    last = time.monotonic()
    try:
        while not done.is_set():
            executor.spin_once(timeout_sec=0.1)
            if time.monotonic() - last > 10.0:
                last = time.monotonic()
                print(f'{standin.sim.data.time:8.1f} s simulated, base at '
                      f'{np.round(standin.sim.base_position(), 2).tolist()}, '
                      + ', '.join(f'{k} {v}' for k, v in sorted(standin.counts.items())),
                      flush=True)
    finally:
        standin.stop()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
