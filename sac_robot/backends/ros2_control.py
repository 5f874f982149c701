# SPDX-License-Identifier: Apache-2.0
"""The ``ros2_control`` backend: a robot driven through a ros2_control stack and motion capture.

ros2_control hardware interfaces are C++ plugins; a Python package talks to a running stack
through its controllers' topics. This backend does, with their names and QoS (all settings,
``ros2_control.*``, documented in ``config/minitaur_ros2_control.yaml``):

- joint_state_broadcaster's ``/joint_states`` (joints matched by name: the stack's names, a
  URDF's, mapped onto ours by ``joint_names``), imu_sensor_broadcaster's ``<name>/imu``, and
  the base's pose from motion capture (``mocap_source``): vrpn_mocap's
  ``/vrpn_mocap/<tracker>/pose`` (best-effort: a reliable subscriber would not match it), or
  a MOCAP4ROS2 driver's ``mocap4r2_msgs/RigidBodies`` (every body of a frame; ours picked by
  ``rigid_body``, its name there), each kept as its newest message with the time it came;
- forward_command_controller's ``<controller>/commands``: the targets, clipped to the joint
  ranges, in the controller's joint order (``command_joints``), with no label (the controller
  would not read one; it holds the last command with no timeout).

Each sensor arrives from its own publisher at its own rate; :meth:`read` (the driver's control
step) takes the newest complete set, and a sensor older than its ``max_age`` is a fault naming
it (the hold pose is commanded, and the episode ends truncated): the IMU stalling or the
tracker losing the body (vrpn_mocap goes quiet; a rigid-body frame leaves it out) never lets a
stale reading through.

Pre-flight (at start-up, and before every episode): every topic present and delivering at its
``min_rate``, the expected joint names, a finite and plausible state (unit quaternions, the base
height within ``base_height``, tilted less than ``max_tilt``). What fails is named in one
message: a topic with no publisher, a publisher of another message type or whose QoS does not
match ours (named), a missing joint, a rigid body not in the frames (with the names that are).
Nothing moves before it passes.

Resets are a person's (the SAC paper's Minitaur): at an episode's end the robot is commanded to
its rest pose (a crouch) and the reset asks for a person (``needs_operator``); when they
confirm (the driver's ``confirm_reset``), the next reset runs the pre-flight again and stands
the robot up (the hold pose).

It speaks ROS through the driver's node (:meth:`Ros2ControlBackend.attach`): rclpy and the
message readers are imported there, as a vendor SDK is by its backend, so that the launch
tooling can read this module without ROS.
"""

import collections
import dataclasses
import math
import threading
import time

import numpy as np

from sac_robot.backends.interface import Backend, BackendError, BackendFault, ResetResult
from sac_robot.robots.description import MINITAUR


@dataclasses.dataclass
class SensorSettings:
    """Where one sensor of the description comes from, and how fresh it must be."""

    topic: str
    #: ``reliable`` (the ros2_control broadcasters) or ``best_effort`` (vrpn_mocap).
    qos: str = 'reliable'
    #: Seconds: a newest message older than this at a control step is a fault.
    max_age: float = 0.05
    #: Messages a second the pre-flight requires.
    min_rate: float = 50.0


#: What each setting means (``ros2_control.*``; the config file says more).
SETTING_HELP = {
    'joint_names': "The stack's names of the joints (its URDF's), in our joint order.",
    'command_topic': "forward_command_controller's commands topic (<controller>/commands).",
    'command_joints': "The controller's joint order (its `joints` parameter; default: "
                      'joint_names).',
    'preflight_timeout': 'Seconds the start-up pre-flight waits for every topic.',
    'base_height': 'Pre-flight: the base height (m, motion capture) must lie in [low, high].',
    'max_tilt': 'Pre-flight: roll and pitch (rad, IMU) must be below this.',
    'auto_resets': 'Resets in a row the robot may do by itself (a scripted stand-up where it '
                   'is upright and near its start) before a person is asked (0: never).',
    'auto_reset_radius': 'A stand-up only within this distance (m) of where the person set it.',
    'stand_up_seconds': 'Seconds of the stand-up ramp to the hold pose.',
    'mocap_source': 'vrpn (mocap.topic carries geometry_msgs/PoseStamped of the base) or '
                    'mocap4r2 (mocap4r2_msgs/RigidBodies, the base the body rigid_body).',
    'rigid_body': "mocap4r2: the name of the base's rigid body in the frames.",
    'topic': 'Topic of the sensor (absolute: the stack is not in our namespace).',
    'qos': 'reliable or best_effort: what its publisher offers.',
    'max_age': 'Seconds: a newest message older than this at a control step is a fault.',
    'min_rate': 'Messages a second the pre-flight requires.',
}


@dataclasses.dataclass
class Ros2ControlSettings:
    """The stack's topics and names (``config/minitaur_ros2_control.yaml``)."""

    sensors: dict = dataclasses.field(default_factory=lambda: {
        'joints': SensorSettings('/joint_states'),
        'imu': SensorSettings('/imu_sensor_broadcaster/imu'),
        'mocap': SensorSettings('/vrpn_mocap/minitaur/pose', 'best_effort', 0.1, 50.0)})
    joint_names: tuple = MINITAUR.urdf_joints
    command_topic: str = '/forward_position_controller/commands'
    command_joints: tuple = ()
    preflight_timeout: float = 5.0
    base_height: tuple = (0.1, 0.5)
    max_tilt: float = 0.3
    #: Resets in a row the robot may do by itself (a scripted stand-up, where it is upright
    #: and near its start) before a person is asked again; 0: a person every time.
    auto_resets: int = 0
    #: A stand-up only within this distance (m, motion capture) of where the person set it.
    auto_reset_radius: float = 0.5
    #: Seconds of the stand-up ramp (the present joint positions to the hold pose).
    stand_up_seconds: float = 1.0
    #: The motion-capture driver: ``vrpn`` (vrpn_mocap: geometry_msgs/PoseStamped of one
    #: tracker) or ``mocap4r2`` (a MOCAP4ROS2 driver: mocap4r2_msgs/RigidBodies).
    mocap_source: str = 'vrpn'
    #: ``mocap4r2``: the base's body in the frames, by the name the driver gives it.
    rigid_body: str = 'minitaur'

    def message_type(self, key: str, description_type: str) -> str:
        """The message type of sensor ``key`` on the wire (``pkg/Name``)."""
        if key == 'mocap' and self.mocap_source == 'mocap4r2':
            return 'mocap4r2_msgs/RigidBodies'
        return description_type


class _Stream:
    """The newest message of one sensor, as read, with when it came and how often."""

    def __init__(self, key: str, settings: SensorSettings, message: str, body: str | None):
        self.key, self.settings = key, settings
        self.message = message  # its type on the wire, pkg/Name
        #: The rigid body it reads from each frame (mocap4r2), or None: the message is ours.
        self.body = body
        self.source = settings.topic if body is None else f'rigid body {body!r} on ' \
                                                          f'{settings.topic}'
        self.reading, self.received = None, -math.inf
        self.arrivals = collections.deque(maxlen=200)
        self.count = self.errors = 0
        self.last_error = None
        self.incompatible = None  # the QoS policy a publisher did not match on
        self.absent = 0  # frames without our rigid body, and the bodies the last one held
        self.bodies_seen = ()

    def rate(self, now: float, window: float = 1.0) -> float:
        """Messages a second over the last ``window`` seconds."""
        recent = [t for t in self.arrivals if now - t <= window]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)


class Ros2ControlBackend(Backend):
    """A robot through its ros2_control stack's topics and a motion-capture driver."""

    description = MINITAUR

    def __init__(self, settings: Ros2ControlSettings | None = None, logger=None):
        self.settings = settings or Ros2ControlSettings()
        self.logger = logger
        s = self.settings
        joints = self.description.joints
        if len(s.joint_names) != len(joints):
            raise BackendError(f'ros2_control.joint_names needs {len(joints)} names (one per '
                               f'joint: {", ".join(joints)}), got {len(s.joint_names)}')
        command_joints = tuple(s.command_joints) or tuple(s.joint_names)
        if sorted(command_joints) != sorted(s.joint_names):
            raise BackendError('ros2_control.command_joints must name each of joint_names '
                               f'once: {", ".join(s.joint_names)}; got '
                               f'{", ".join(command_joints)}')
        missing = set(self.description.sensors) - set(s.sensors)
        if missing:
            raise BackendError(f'ros2_control: no topic set for sensor(s) '
                               f'{", ".join(sorted(missing))}')
        if s.mocap_source not in ('vrpn', 'mocap4r2'):
            raise BackendError(f"ros2_control.mocap_source must be 'vrpn' or 'mocap4r2', not "
                               f'{s.mocap_source!r}')
        if s.mocap_source == 'mocap4r2' and not s.rigid_body:
            raise BackendError("ros2_control.rigid_body must name the base's rigid body "
                               '(mocap_source mocap4r2)')
        #: The controller's value i is our joint order[i].
        self.order = [tuple(s.joint_names).index(name) for name in command_joints]
        self.command_joints = command_joints
        self.node = None
        self.streams = {}
        for key, sensor in self.description.sensors.items():
            message = s.message_type(key, sensor.message)
            body = s.rigid_body if message == 'mocap4r2_msgs/RigidBodies' else None
            self.streams[key] = _Stream(key, s.sensors[key], message, body)
        self.lock = threading.Lock()
        self.active = False
        self.confirmed = False  # a person said the robot is ready (confirm_reset)
        self.resting = False  # in its rest pose, waiting for a person
        self.silent = False  # an emergency stop: nothing is published
        self.auto_in_row = 0  # resets the robot did by itself since a person's
        self.start_position = None  # where the person last set it (motion capture)
        self.last_command = None  # monotonic time of the newest command sent
        self.counts = collections.Counter()

    @classmethod
    def from_parameters(cls, declare, logger=None) -> 'Ros2ControlBackend':
        """Made from the driver's ``ros2_control.*`` parameters."""
        defaults = Ros2ControlSettings()
        values = {}
        for field in dataclasses.fields(Ros2ControlSettings):
            if field.name == 'sensors':
                continue
            default = getattr(defaults, field.name)
            if isinstance(default, tuple):  # (an empty list would be a parameter of bytes)
                default = list(default) or ['']
            value = declare(f'ros2_control.{field.name}', default, SETTING_HELP[field.name])
            values[field.name] = tuple(value) if isinstance(value, list) else value
        if values['command_joints'] == ('',):  # (an empty string list from a parameter file)
            values['command_joints'] = ()
        sensors = {}
        for key, sensor in defaults.sensors.items():
            sensors[key] = SensorSettings(**{
                name: declare(f'ros2_control.{key}.{name}', default, SETTING_HELP[name])
                for name, default in dataclasses.asdict(sensor).items()})
            if sensors[key].qos not in ('reliable', 'best_effort'):
                raise BackendError(f"ros2_control.{key}.qos must be 'reliable' or "
                                   f"'best_effort', not {sensors[key].qos!r}")
        if len(values['base_height']) != 2:
            raise BackendError('ros2_control.base_height needs two values: low, high (m)')
        return cls(Ros2ControlSettings(sensors=sensors, **values), logger)

    @property
    def hardware_id(self) -> str:
        """The stack, for diagnostics."""
        return f'ros2_control {self.settings.command_topic}'

    def status(self) -> dict:
        """Each sensor's rate and age, bad messages, commands sent."""
        now = time.monotonic()
        figures = {}
        with self.lock:  # (the topics' thread appends to the streams meanwhile)
            for key, stream in self.streams.items():
                figures[f'{key}_hz'] = f'{stream.rate(now):.0f}'
                figures[f'{key}_age_ms'] = f'{1000 * (now - stream.received):.0f}'
                if stream.errors:
                    figures[f'{key}_rejected'] = f'{stream.errors} ({stream.last_error})'
                if stream.absent:
                    figures[f'{key}_frames_without_{stream.body}'] = str(stream.absent)
        figures['commands'] = str(self.counts['commands'])
        return figures

    # Life cycle -----------------------------------------------------------------------------

    def attach(self, node):
        """Subscribe and publish beside the driver's node (once).

        The stack's topics are taken by a node of the backend's own (``<driver>_ros2_control``,
        in the driver's namespace and context) spun by a thread of its own, as a hardware
        interface reads in the background: the newest messages keep coming whatever the
        driver does (starting up, resetting, recovering), and :meth:`read` only looks.
        """
        if self.node is not None:
            return
        from geometry_msgs.msg import PoseStamped
        from rclpy.event_handler import SubscriptionEventCallbacks
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import Imu, JointState
        from std_msgs.msg import Float64MultiArray

        from sac_robot.nodes import convert
        self._convert = convert
        types = {'sensor_msgs/JointState': JointState, 'sensor_msgs/Imu': Imu,
                 'geometry_msgs/PoseStamped': PoseStamped}
        if any(stream.body is not None for stream in self.streams.values()):
            try:
                from mocap4r2_msgs.msg import RigidBodies
            except ImportError as error:
                raise BackendError(
                    'ros2_control.mocap_source mocap4r2 needs the mocap4r2_msgs package '
                    f'({error}): `make setup` builds it into the venv; a ROS 2 install has it '
                    'as ros-<distro>-mocap4r2-msgs') from error
            types['mocap4r2_msgs/RigidBodies'] = RigidBodies
        from rclpy.node import Node
        self.node = Node(f'{node.get_name()}_ros2_control', namespace=node.get_namespace(),
                         context=node.context)
        self._command_type = Float64MultiArray
        # The broadcasters' writers are reliable (depth 10), vrpn_mocap's best effort.
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for key, stream in self.streams.items():
            profile = reliable if stream.settings.qos == 'reliable' else qos_profile_sensor_data
            # (A publisher whose QoS cannot match: noted, for the pre-flight to name.)
            events = SubscriptionEventCallbacks(
                incompatible_qos=lambda info, stream=stream: setattr(
                    stream, 'incompatible', str(info.last_policy_kind)))
            self.node.create_subscription(
                types[stream.message], stream.settings.topic,
                lambda msg, key=key: self._on_message(key, msg), profile,
                event_callbacks=events)
        self.commands = self.node.create_publisher(
            Float64MultiArray, self.settings.command_topic, reliable)
        self._executor = SingleThreadedExecutor(context=node.context)
        self._executor.add_node(self.node)
        self._spinning = threading.Event()
        self._spinner = threading.Thread(target=self._spin, name='ros2_control', daemon=True)
        self._spinner.start()

    def _spin(self):
        while not self._spinning.is_set() and self.node.context.ok():
            try:
                self._executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - the context went down: the process is ending
                if self.node.context.ok():
                    raise
                break

    def detach(self):
        """Stop the topics' thread and its node (the process ends: no thread left in rcl)."""
        if self.node is None:
            return
        self._spinning.set()
        self._spinner.join(timeout=2.0)
        self._executor.shutdown(timeout_sec=0)
        self.node.destroy_node()
        self.node = None

    def configure(self):
        """The pre-flight: wait for every topic (at most ``preflight_timeout``), check it.

        Raises :class:`BackendError` naming what is missing or wrong; nothing moves.
        """
        if self.node is None:
            raise BackendError('the ros2_control backend needs the driver node (attach)')
        self._wait_for_topics(self.settings.preflight_timeout)
        problems = self.preflight()
        if problems:
            raise BackendError('pre-flight: ' + '; '.join(problems))
        with self.lock:
            rates = [f'{stream.settings.topic} {stream.rate(time.monotonic()):.0f} Hz'
                     for stream in self.streams.values()]
        self._log('info', 'pre-flight passed: ' + ', '.join(rates))

    def activate(self):
        """Hold where the robot is (its present joint positions), as the controller would."""
        reading = self.read()
        self._publish(reading['joints'][0])
        self.active = True

    def deactivate(self):
        """Hold the robot: its hold pose commanded (a forward command controller keeps it).

        While it waits for a person: its rest pose.
        """
        if self.node is not None and self.active:
            self._publish(self._rest_pose() if self.resting else self.description.hold_pose)
        self.active = False

    def _rest_pose(self) -> np.ndarray:
        rest = self.description.rest_pose
        return self.description.hold_pose if rest is None else rest

    def close(self):
        """Hold; the topics stay (a recovery configures again; the process's end stops them)."""
        self.deactivate()

    # State and commands ---------------------------------------------------------------------

    def read(self) -> dict:
        """The newest complete set of every sensor; BackendFault when one is stale."""
        now = time.monotonic()
        readings, stale = {}, None
        with self.lock:
            for key, stream in self.streams.items():
                age = now - stream.received
                if stream.reading is None or age > stream.settings.max_age:
                    stale = BackendFault(
                        f'{key}: no {"message on" if stream.body is None else "pose of"} '
                        f'{stream.source} for '
                        + ('ever' if stream.reading is None else f'{age:.3f} s')
                        + f' (max_age {stream.settings.max_age:g} s)')
                    break
                readings[key] = stream.reading
        if stale is not None:
            self.deactivate()  # the hold pose, before anyone hears of it
            raise stale
        return readings

    def write(self, targets):
        """Joint targets (rad), clipped to the joint ranges, to the controller in its order."""
        targets = np.asarray(targets, np.float64)
        if targets.shape != (len(self.description.joints),) or not np.isfinite(targets).all():
            raise ValueError(f'expected {len(self.description.joints)} finite joint targets, '
                             f'got {targets.tolist()}')
        low, high = self.description.joint_range.T
        self._publish(np.clip(targets, low, high))

    def emergency_stop(self):
        """Publish nothing more.

        The lab's own stop chain has the motors; a forward command controller holds the last
        command.
        """
        self.silent = True

    def release_emergency_stop(self):
        """Commands may go out again (the next reset's first)."""
        self.silent = False

    def operator_confirmed(self):
        """A person says the robot is ready: the next reset checks it and starts."""
        self.confirmed = True

    def reset(self, options: dict | None = None) -> ResetResult:
        """A person's reset, as the SAC paper's Minitaur had.

        Unconfirmed: the robot rests (its rest pose, a crouch) and a person is asked
        (``needs_operator``). Once they have confirmed: the pre-flight again, and the robot
        stands (the hold pose).
        """
        del options
        if not self.confirmed:
            why = self._stand_up_refused()
            if why is None:
                return self._stand_up()
            self.resting = True
            self._publish(self._rest_pose())
            return ResetResult(False, f'the {self.description.name} rests: put it at its start, '
                               f'standing, and confirm{why}', needs_operator=True)
        self.confirmed = False
        problems = self.preflight()
        if problems:
            return ResetResult(False, 'pre-flight after the reset: ' + '; '.join(problems),
                               needs_operator=True)
        self.resting = False
        self._publish(self.description.hold_pose)
        self.auto_in_row = 0
        self.start_position = self._position()
        return ResetResult(True, 'set up by a person; pre-flight passed')

    def _position(self):
        with self.lock:
            reading = self.streams['mocap'].reading if 'mocap' in self.streams else None
        return None if reading is None else np.array(reading[0])

    def _stand_up_refused(self) -> str | None:
        """Why the robot may not reset by itself now ('' when it may not at all), or None."""
        s = self.settings
        if not s.auto_resets:
            return ''
        if self.start_position is None:
            return ' (no start yet: a person sets up the first episode)'
        if self.auto_in_row >= s.auto_resets:
            return f' ({self.auto_in_row} resets in a row by itself: auto_resets)'
        problems = self.preflight()  # upright, in the tracking volume, every topic fresh
        if problems:
            return f' (it cannot stand up by itself: {problems[0]})'
        drift = float(np.linalg.norm((self._position() - self.start_position)[:2]))
        if drift > s.auto_reset_radius:
            return (f' ({drift:.2f} m from its start, over auto_reset_radius '
                    f'{s.auto_reset_radius:g} m)')
        return None

    def _stand_up(self) -> ResetResult:
        """The scripted stand-up: a ramp from where the joints are to the hold pose."""
        s = self.settings
        present = np.array(self.read()['joints'][0])
        hold = self.description.hold_pose
        steps = max(1, int(round(s.stand_up_seconds / 0.02)))
        for k in range(1, steps + 1):
            self._publish(present + (hold - present) * k / steps)
            time.sleep(0.02)
        time.sleep(0.2)  # (settled)
        problems = self.preflight()
        if problems:
            self.auto_in_row = s.auto_resets  # a person next
            return ResetResult(False, f'the stand-up failed: {problems[0]}; put it at its '
                               'start, standing, and confirm', needs_operator=True)
        self.auto_in_row += 1
        self.resting = False
        return ResetResult(True, f'stood up by itself ({self.auto_in_row} of at most '
                           f'{s.auto_resets} in a row)')

    # Pre-flight -----------------------------------------------------------------------------

    def preflight(self) -> list:
        """What is wrong with the topics and the state now (empty: nothing)."""
        now, problems = time.monotonic(), []
        with self.lock:
            streams = {key: (stream.reading, stream.received, stream.rate(now), stream.errors,
                             stream.last_error) for key, stream in self.streams.items()}
        for key, (reading, received, rate, errors, error) in streams.items():
            settings = self.streams[key].settings
            if reading is None:
                problems.append(self._silence(key, settings, errors, error))
            elif now - received > settings.max_age:
                problems.append(f'{self.streams[key].source}: last seen {now - received:.2f} s '
                                f'ago (max_age {settings.max_age:g} s)')
            elif rate < settings.min_rate:
                problems.append(f'{settings.topic}: {rate:.0f} Hz, below the '
                                f'{settings.min_rate:g} Hz it needs (min_rate)')
        if problems:
            return problems
        if 'mocap' in streams:
            height = float(streams['mocap'][0][0][2])
            low, high = self.settings.base_height
            if not low <= height <= high:
                problems.append(f'base height {height:.3f} m (motion capture) outside '
                                f'[{low:g}, {high:g}] m: is the robot standing, and the '
                                'tracker the robot?')
        if 'imu' in streams:
            w, x, y, z = streams['imu'][0][0]
            roll = math.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
            pitch = math.asin(max(-1.0, min(1.0, 2 * (w * y - z * x))))
            if max(abs(roll), abs(pitch)) > self.settings.max_tilt:
                problems.append(f'tilted: roll {roll:.2f}, pitch {pitch:.2f} rad (IMU; '
                                f'max_tilt {self.settings.max_tilt:g})')
        return problems

    def _silence(self, key: str, settings: SensorSettings, errors: int, error) -> str:
        """Why no message of ``key`` came: no publisher, a QoS mismatch, or bad messages."""
        where, stream = f'{settings.topic} ({key})', self.streams[key]
        if errors:
            return f'{where}: {errors} message(s) refused: {error}'
        if stream.absent:
            held = ', '.join(repr(name) for name in stream.bodies_seen) or 'none'
            return (f'{where}: {stream.absent} frame(s), none with rigid body {stream.body!r} '
                    f'(the last held {held}): is it tracked, and ros2_control.rigid_body its '
                    'name?')
        publishers = self.node.get_publishers_info_by_topic(settings.topic)
        if not publishers:
            return f'{where}: no publisher (is its controller or driver running, and the topic ' \
                   'name right?)'
        ours = stream.message.replace('/', '/msg/')
        others = sorted({p.topic_type for p in publishers if p.topic_type != ours})
        if others and len(others) == len({p.topic_type for p in publishers}):
            hint = ' (ros2_control.mocap_source?)' if key == 'mocap' else ''
            return (f'{where}: its publisher(s) {", ".join(p.node_name for p in publishers)} '
                    f'publish {", ".join(others)}, not {ours}{hint}')
        from rclpy.qos import ReliabilityPolicy
        offered = {p.node_name: p.qos_profile.reliability for p in publishers}
        if settings.qos == 'reliable' and all(r == ReliabilityPolicy.BEST_EFFORT
                                              for r in offered.values()):
            return (f'{where}: QoS mismatch: its publisher(s) {", ".join(offered)} offer '
                    f'best_effort, ros2_control.{key}.qos is reliable (set it to best_effort)')
        incompatible = self.streams[key].incompatible
        if incompatible:
            return (f'{where}: QoS mismatch with its publisher(s) {", ".join(offered)} '
                    f'({incompatible}): check ros2_control.{key}.qos')
        return f'{where}: {len(publishers)} publisher(s) but no message yet'

    def _wait_for_topics(self, timeout: float):
        """Until every topic delivers at its ``min_rate`` (a second of it), or ``timeout``."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            now = time.monotonic()
            with self.lock:
                ready = all(s.reading is not None and s.rate(now) >= s.settings.min_rate
                            for s in self.streams.values())
            if ready and now - start >= 1.0:
                return
            time.sleep(0.02)

    # The wire -------------------------------------------------------------------------------

    def _on_message(self, key: str, msg):
        stream = self.streams[key]
        try:
            reading = self._parse(key, msg)
        except self._convert.MessageError as error:
            with self.lock:
                stream.errors += 1
                stream.last_error = str(error)
            self._log('error', f'message refused: {error}')
            return
        if reading is None:  # a frame without our rigid body: the system does not see it now
            with self.lock:
                stream.absent += 1
                stream.bodies_seen = tuple(sorted(b.rigid_body_name for b in msg.rigidbodies))
            return
        now = time.monotonic()
        with self.lock:
            stream.reading, stream.received = reading, now
            stream.arrivals.append(now)
            stream.count += 1

    def _parse(self, key: str, msg) -> tuple | None:
        """A message of sensor ``key`` as a backend reading (the fields of our message).

        None: a motion-capture frame without our rigid body.
        """
        stream = self.streams[key]
        topic = stream.settings.topic
        if stream.body is not None:
            return self._convert.read_rigid_body(msg, stream.body, topic)
        message = self.description.sensors[key].message
        convert = self._convert
        if message == 'sensor_msgs/JointState':
            positions, velocities = convert.read_joint_state(msg, self.settings.joint_names,
                                                             topic)
            efforts = None
            if len(msg.effort) == len(msg.name):
                index = {name: i for i, name in enumerate(msg.name)}
                efforts = np.array([msg.effort[index[n]] for n in self.settings.joint_names])
                if not np.isfinite(efforts).all():
                    raise convert.MessageError(f'{topic}: an effort is not finite')
            return positions, velocities, efforts
        if message == 'sensor_msgs/Imu':
            quat, rates = convert.read_imu(msg, topic)
            a = msg.linear_acceleration
            acceleration = np.array([a.x, a.y, a.z], np.float64)
            if not np.isfinite(acceleration).all():
                raise convert.MessageError(f'{topic}: linear_acceleration is not finite')
            # (The broadcaster's covariances, passed on: the IMU's own, from its parameters.)
            covariances = np.array(convert.read_imu_covariances(msg), np.float64)
            if not np.isfinite(covariances).all():
                raise convert.MessageError(f'{topic}: a covariance is not finite')
            return quat, rates, acceleration, covariances
        return convert.read_pose(msg, topic)

    def _publish(self, targets):
        if self.silent or not self.node.context.ok():
            return  # an emergency stop, or the process is ending
        values = np.asarray(targets, np.float64)
        msg = self._command_type()
        msg.data = [float(values[i]) for i in self.order]
        self.commands.publish(msg)
        self.counts['commands'] += 1
        self.last_command = time.monotonic()

    def _log(self, level: str, message: str):
        # One call site per severity: rclpy's logger refuses a call site that changes it.
        if self.logger is None:
            return
        if level == 'info':
            self.logger.info(message)
        else:
            self.logger.error(message, throttle_duration_sec=1.0)
