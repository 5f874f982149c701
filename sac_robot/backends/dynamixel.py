# SPDX-License-Identifier: Apache-2.0
"""The D'Claw on its Dynamixel X-series servos, through the vendor's dynamixel-sdk.

Per control step one sync write of the nine goal positions (address 116) and one sync read of
present current, velocity and position (126..137) of the nine fingers' servos and the valve
motor, which is the valve's encoder (and, for resets, the motor that turns it). The step's bus
time is measured (:attr:`DClawDynamixel.bus_time`).

Units (e-Manual): 4096 ticks per turn, 0.229 rpm per velocity unit, the current unit of the
model (2.69 mA on the XM430, 1.34 mA on the XH430-V). Each joint's calibration is ROBEL's,
``q = raw * scale + offset`` with ``raw`` the servo's reading in radians; current and velocity
come from the group read unsigned and are converted to signed numbers here.

Safety lives here, below DDS and the policy: targets are clipped to the joint ranges and to a
velocity bound (no target further than ``max_target_speed * control_period`` from where the
joint is); every reading is flagged within the description's margin of a limit, faster than its
velocity limit, above its current limit; the hardware error status (address 70: overload,
overheating, electrical shock, input voltage, encoder) is polled and reported with the servo's
ID; torque is off on deactivate, on close, at interpreter exit, and after a fault. A servo that
does not answer, a corrupt reply or a timeout is retried ``retries`` times, then the backend
turns torque off and raises :class:`~sac_robot.backends.interface.BackendFault` naming the
joint and the error: a stale reading is never handed on as a new one.

For the pixel task (``pixels``) the backend owns the hand's camera too
(:class:`~sac_robot.backends.camera.VideoSource`, ``camera.*``): every read takes its newest
frame, so that a step's image and joint readings go out with one stamp (the policy
synchronises its sensors by stamp), as the 32 x 32 centre square of the frame; a camera that
stops delivering (no frame for ``camera.max_age``) is a fault as a silent servo is.
"""

import atexit
import dataclasses
import math
import time
import weakref

import numpy as np

from sac_robot.backends import protocol2 as p2
from sac_robot.backends.camera import VideoSource, square
from sac_robot.backends.interface import (Backend, BackendError, BackendFault,
                                          ResetResult)
from sac_robot.rewards import dclaw_safety
from sac_robot.robots.description import DCLAW

RAD_PER_TICK, RAD_S_PER_UNIT = p2.RAD_PER_TICK, p2.RAD_S_PER_UNIT
#: Seconds a read of the port may block for the bytes it asks (see configure()).
READ_WAIT = 0.002
#: Present current, velocity, position: one block the group read takes in one transaction.
READ_ADDRESS, READ_LENGTH = 126, 12
#: The public D'Claw's IDs (ROBOTS.md): fingers 10-12, 20-22, 30-32, the valve motor 50.
FINGER_IDS = (10, 11, 12, 20, 21, 22, 30, 31, 32)
VALVE_ID = 50
#: ROBEL's calibration (``q = raw * scale + offset``, raw in rad from the servo's zero): the
#: top joints' servos centred at a quarter turn, the others at half a turn.
DEFAULT_SCALE = (1.0,) * 9
DEFAULT_OFFSET = (-math.pi / 2, -math.pi, -math.pi) * 3
#: Each finger's bend joints raised and straightened: the fingertips 10 cm above the reset
#: pose's and outside the valve's handles (the MuJoCo model's geometry).
RELEASE_POSE = (0.0, -1.5, 0.0) * 3


#: What each setting means, as ``ros2 param describe`` shows it (the config file says more).
SETTING_HELP = {
    'port': 'Serial device of the servo bus (a U2D2: /dev/ttyUSB0, or a udev name).',
    'baud': "Bus baud rate (the D'Claw: 1000000).",
    'ids': 'Servo IDs of the nine joints, in joint order (a_j0 .. c_j2).',
    'valve_id': 'Servo ID of the valve motor (the valve encoder and its reset motor).',
    'model': 'Model number every servo must report (1020 XM430-W350, 1040 XH430-V350, ...).',
    'scale': 'Calibration per joint: q = raw * scale + offset (rad).',
    'offset': 'Calibration per joint: q = raw * scale + offset (rad).',
    'valve_scale': "The valve encoder's calibration scale.",
    'valve_offset': "The valve encoder's calibration offset (rad).",
    'retries': 'Extra attempts of a failed transaction before it is a fault.',
    'fast_sync_read': 'Read with FAST_SYNC_READ (X-series firmware 45 and later).',
    'max_target_speed': 'Velocity bound of the targets (rad/s from the present position).',
    'error_poll_period': 'Seconds between polls of the hardware error status (0: every read).',
    'release_pose': 'Reset: the joints (rad, joint order) that lift the fingers clear of the '
                    'valve while the valve motor turns it.',
    'reset_attempts': 'Reset: attempts of the scripted valve reset before a person is asked.',
    'reset_timeout': 'Reset: seconds each move of it (fingers, valve) may take.',
    'reset_tolerance_deg': 'Reset: every joint within this of the reset pose (degrees).',
    'valve_tolerance_deg': "Reset: the valve within this of the episode's start (degrees).",
}


@dataclasses.dataclass
class DynamixelSettings:
    """Where the hand's servos are and how they are calibrated.

    ``config/dclaw_dynamixel.yaml`` documents each field.
    """

    port: str = '/dev/ttyUSB0'
    baud: int = 1_000_000
    #: Servo IDs of the nine joints, in the description's joint order.
    ids: tuple = FINGER_IDS
    valve_id: int = VALVE_ID
    #: Model number the servos must report (1020 XM430-W350, 1040 XH430-V350, ...): it sets
    #: the current unit.
    model: int = 1020
    scale: tuple = DEFAULT_SCALE
    offset: tuple = DEFAULT_OFFSET
    valve_scale: float = 1.0
    valve_offset: float = 0.0
    #: Extra attempts of a failed transaction before it is a fault.
    retries: int = 2
    #: Read with FAST_SYNC_READ (one status packet for all; firmware 45 and later).
    fast_sync_read: bool = False
    #: Velocity bound of the targets (rad/s): no target further than this times the control
    #: period from the joint's present position.
    max_target_speed: float = 32.0
    #: Seconds between polls of the hardware error status (0: every read).
    error_poll_period: float = 1.0
    #: The scripted valve reset (:meth:`DClawDynamixel.reset`): the fingers lifted clear of
    #: the valve (rad, joint order), attempts before a person is asked, seconds a move may
    #: take, and how close the joints and the valve must end (degrees).
    release_pose: tuple = RELEASE_POSE
    reset_attempts: int = 3
    reset_timeout: float = 3.0
    reset_tolerance_deg: float = 5.0
    valve_tolerance_deg: float = 5.0

    @classmethod
    def from_mapping(cls, values: dict) -> 'DynamixelSettings':
        """Settings from a parameter mapping; unknown keys are refused by name."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise BackendError(f'unknown dynamixel setting(s) {", ".join(unknown)}; known: '
                               f'{", ".join(sorted(known))}')
        settings = cls(**{k: (tuple(v) if isinstance(v, list) else v)
                          for k, v in values.items()})
        for name in ('ids', 'scale', 'offset', 'release_pose'):
            if len(getattr(settings, name)) != len(DCLAW.joints):
                raise BackendError(f'dynamixel.{name} needs {len(DCLAW.joints)} values (one '
                                   f'per joint: {", ".join(DCLAW.joints)}), got '
                                   f'{len(getattr(settings, name))}')
        if len(set(settings.ids) | {settings.valve_id}) != len(settings.ids) + 1:
            raise BackendError(f'dynamixel.ids and valve_id must be distinct: {settings.ids}, '
                               f'{settings.valve_id}')
        if settings.model not in p2.MODELS:
            raise BackendError(f'dynamixel.model {settings.model} is not a known X-series '
                               f'model ({", ".join(f"{k} {v[0]}" for k, v in p2.MODELS.items())})')
        return settings

    @classmethod
    def from_yaml(cls, path: str, node: str = '/**/driver') -> 'DynamixelSettings':
        """Settings from a parameter file's ``<node>: ros__parameters: dynamixel:`` section."""
        import yaml
        with open(path, encoding='utf-8') as stream:
            document = yaml.safe_load(stream)
        try:
            values = document[node]['ros__parameters']['dynamixel']
        except (KeyError, TypeError):
            raise BackendError(f'{path} has no {node}: ros__parameters: dynamixel: section'
                               ) from None
        return cls.from_mapping(values)


#: What each camera setting means (``camera.*``, with ``pixels``).
CAMERA_HELP = {
    'source': 'What cv2.VideoCapture opens: a device index, a /dev/video* path, a URL or a '
              'video file.',
    'rate': 'Frames a second of a video file (a camera keeps its own pace).',
    'loop': 'A video file: from its start again at its end.',
    'max_age': 'Seconds: a newest frame older than this at a control step is a fault.',
}
#: The pixel task's image (sac_robot/DClawTurnPixels-v0): the frame's centre square, resized.
IMAGE_SIZE = 32


@dataclasses.dataclass
class CameraSettings:
    """The hand's camera for the pixel task (``camera.*``; config/dclaw_dynamixel.yaml)."""

    source: str = '0'
    rate: float = 30.0
    loop: bool = True
    max_age: float = 0.5


def _degrees(angle: float) -> float:
    """A valve angle (rad, whole turns counted) in degrees within (-180, 180]."""
    return -((-math.degrees(angle) + 180.0) % 360.0 - 180.0)


def _torque_off_at_exit(reference):
    backend = reference()
    if backend is not None:
        backend.deactivate()


class DClawDynamixel(Backend):
    """The hand's nine servos and the valve motor on one Protocol 2.0 bus."""

    description = DCLAW
    launch_arguments = {
        'port': ('dynamixel.port', "hardware:=real: the servo bus's serial device (default: "
                 "config/dclaw_dynamixel.yaml's; `sac-robot emulate dclaw` prints one)."),
        'camera': ('camera.source', 'hardware:=real pixels:=true: what the camera is to OpenCV '
                   '(a device index, a /dev/video* path, a URL or a video file; default: '
                   "config/dclaw_dynamixel.yaml's camera.source)."),
    }

    @classmethod
    def from_parameters(cls, declare, logger=None) -> 'DClawDynamixel':
        """Made from the driver's ``dynamixel.*`` parameters (config/dclaw_dynamixel.yaml).

        With ``pixels`` also its camera's, ``camera.*``.
        """
        values = {}
        for field in dataclasses.fields(DynamixelSettings):
            default = field.default
            values[field.name] = declare(f'dynamixel.{field.name}',
                                         list(default) if isinstance(default, tuple) else default,
                                         SETTING_HELP[field.name])
        seed = declare('seed', 0, "Seed of the resets (the valve's start angles).")
        camera = None
        if declare('pixels', False, 'Publish the 32 x 32 camera image (the pixel task).'):
            camera = CameraSettings(**{
                name: declare(f'camera.{name}', default, CAMERA_HELP[name])
                for name, default in dataclasses.asdict(CameraSettings()).items()})
        return cls(DynamixelSettings.from_mapping(values), logger, seed, camera)

    def __init__(self, settings: DynamixelSettings | None = None, logger=None, seed: int = 0,
                 camera: 'CameraSettings | None' = None):
        self.settings = settings or DynamixelSettings()
        self.logger = logger
        #: With a camera (the pixel task), every read() takes its newest frame.
        self.camera_settings, self.camera = camera, None
        s = self.settings
        self.scale, self.offset = np.asarray(s.scale, float), np.asarray(s.offset, float)
        self.ids = tuple(int(i) for i in s.ids)
        self.all_ids = (*self.ids, int(s.valve_id))
        self.current_unit = p2.MODELS[s.model][1]
        self.port = self.packets = None
        self._write_group = self._read_group = None
        self.active = False
        self.faulted = None  # the BackendFault that stopped it, until configure() again
        self.bus_time = 0.0  # s, the last step's write and read
        self.last_targets = None
        self.last_reading = None
        self.flags = {}
        self.hardware_errors = {}  # servo ID -> Hardware Error Status bits
        self.torque_unconfirmed = []  # servos that did not confirm the last torque off
        self._last_poll = -math.inf
        self.counts = {'reads': 0, 'writes': 0, 'retries': 0}
        self.rng = np.random.default_rng(seed)  # the valve's start angles
        atexit.register(_torque_off_at_exit, weakref.ref(self))

    @property
    def sensors(self) -> tuple:
        """The servos' joint states, the valve encoder, and the camera when it has one."""
        return ('joints', 'valve') + (('camera',) if self.camera_settings else ())

    @property
    def hardware_id(self) -> str:
        """The bus, for diagnostics."""
        return f'dynamixel {self.settings.port}'

    def status(self) -> dict:
        """The last step's bus time, the transaction counts, the flags and hardware errors."""
        figures = {'bus_time_ms': f'{1000 * self.bus_time:.2f}', **{
            name: str(count) for name, count in self.counts.items()}}
        for flag, values in self.flags.items():
            flagged = [self.description.joints[i] for i in np.flatnonzero(values)]
            figures[flag] = ' '.join(flagged) or '-'
        figures['hardware_errors'] = '; '.join(
            f'ID {i}: {p2.describe_hardware_error(bits)}'
            for i, bits in self.hardware_errors.items()) or '-'
        return figures

    @property
    def state_interfaces(self) -> tuple:
        """Position, velocity and effort (current, mA) per joint; the valve's encoder."""
        return tuple(f'{joint}/{interface}' for joint in self.description.joints
                     for interface in ('position', 'velocity', 'effort')
                     ) + ('valve/position', 'valve/velocity')

    # Life cycle -----------------------------------------------------------------------------

    def configure(self):
        """Open the port, find every servo, check the models, set the operating modes."""
        import serial
        from dynamixel_sdk import (GroupSyncRead, GroupSyncWrite, PacketHandler,
                                   PortHandler)
        s = self.settings
        self.port = PortHandler(s.port)
        try:
            opened = self.port.openPort() and self.port.setBaudRate(s.baud)
        except (serial.SerialException, OSError) as error:
            self.port = None
            raise BackendError(f'cannot open the servo port {s.port}: {error} (is the U2D2 '
                               'plugged in, the path right, the user in the dialout group, and '
                               'no other program using it?)') from None
        if not opened:
            self.port = None
            raise BackendError(f'the servo port {s.port} does not take {s.baud} baud')
        # The SDK reads the port without blocking and loops until a reply is whole or its
        # packet timeout passes: a spin that, at the control thread's SCHED_FIFO, holds a core
        # the kernel's tty work needs to deliver the reply (two such on two cores starve it).
        # A read that blocks up to READ_WAIT waits in select() instead; the SDK's packet
        # timeout still bounds every transaction.
        self.port.ser.timeout = READ_WAIT
        self.packets = PacketHandler(2.0)
        found, missing = {}, []
        for servo_id in self.all_ids:
            model = self._ping(servo_id)
            if model is None:
                missing.append(servo_id)
            else:
                found[servo_id] = model
        if not found:
            self._close_port()
            raise BackendError(f'no servo answers on {s.port} at {s.baud} baud (expected IDs '
                               f'{", ".join(map(str, self.all_ids))}): check the baud rate, '
                               'the power supply and the cable')
        if missing:
            self._close_port()
            names = [self._name(i) for i in missing]
            raise BackendError(f'servo(s) {", ".join(map(str, missing))} ({", ".join(names)}) '
                               f'do not answer on {s.port} at {s.baud} baud; the others do')
        wrong = {i: m for i, m in found.items() if m != s.model}
        if wrong:
            self._close_port()
            raise BackendError('servo model mismatch: ' + ', '.join(
                f'ID {i} is {p2.MODELS.get(m, (m,))[0]}' for i, m in wrong.items())
                + f', the settings say {p2.MODELS[s.model][0]} (dynamixel.model)')
        self._broadcast_torque(False)  # the operating mode is EEPROM: torque off first
        for servo_id in self.ids:
            self._write(servo_id, 'operating_mode', p2.POSITION_MODE)
        self._write(s.valve_id, 'operating_mode', p2.EXTENDED_POSITION_MODE)
        self.poll_hardware_errors(force=True)
        self._write_group = GroupSyncWrite(self.port, self.packets, 116, 4)
        self._read_group = GroupSyncRead(self.port, self.packets, READ_ADDRESS, READ_LENGTH)
        for servo_id in self.all_ids:
            self._read_group.addParam(servo_id)
        if self.camera_settings is not None:
            self._open_camera()
        self.faulted = None
        self._log('info', f'{len(found)} servos on {s.port} at {s.baud} baud '
                  f'({p2.MODELS[s.model][0]})' + (
                      f', camera {self.camera.source!r}' if self.camera else ''))

    def activate(self):
        """Torque on for the fingers, holding where they are (the valve motor stays free)."""
        self._require_port()
        reading = self.read()
        present = reading['joints'][0]
        self.last_targets = present.copy()
        self._sync_write(present)  # goal = present: nothing moves when torque comes on
        for servo_id in self.ids:
            self._write(servo_id, 'torque_enable', 1)
        self.active = True

    def deactivate(self):
        """Torque off on every servo, confirmed.

        A broadcast (it reaches every servo that listens, one that no longer answers too), then
        each servo is asked whether it took it; those that did not are logged and kept in
        :attr:`torque_unconfirmed`.
        """
        if self.port is None:
            return
        self._broadcast_torque(False)
        unconfirmed = []
        for servo_id in self.all_ids:
            value, result, _ = self.packets.read1ByteTxRx(self.port, servo_id, 64)
            if result != 0 or value:
                unconfirmed.append(servo_id)
        self.torque_unconfirmed = unconfirmed
        if unconfirmed:
            self._log('error', 'torque off not confirmed by servo(s) '
                      + ', '.join(f'{i} ({self._name(i)})' for i in unconfirmed))
        self.active = False

    def close(self):
        """Torque off, then release the port (and the camera)."""
        self.deactivate()
        self._close_port()
        if self.camera is not None:
            self.camera.close()
            self.camera = None

    # State and commands ---------------------------------------------------------------------

    def read(self) -> dict:
        """``{'joints': (q [9] rad, v [9] rad/s, current [9] mA), 'valve': (angle [1], v [1])}``.

        One sync read of 126..137 for all ten servos; the hardware error status polled every
        ``error_poll_period``. Raises :class:`BackendFault` (torque off) past the retries. With
        a camera also ``'camera': (image [32, 32, 3] rgb8,)``: its newest frame, centre-cropped
        and resized (a frame older than ``camera.max_age`` is a fault).
        """
        reading = self._read_bus()
        if self.camera is not None:
            try:
                frame = self.camera.newest(self.camera_settings.max_age)[0]
            except BackendFault as fault:
                self._fault(fault)
            reading['camera'] = (square(frame, IMAGE_SIZE),)
        return reading

    def _open_camera(self):
        c = self.camera_settings
        if self.camera is not None:
            self.camera.close()
        try:
            self.camera = VideoSource(c.source, c.rate, c.loop)
        except BackendError:
            self._close_port()
            raise
        if not self.camera.wait(c.max_age + 2.0):
            self.camera.close()
            self.camera = None
            self._close_port()
            raise BackendError(f'camera {c.source!r} opens but gives no frame (camera.source)')

    def _read_bus(self) -> dict:
        """The servos' part of :meth:`read` (the resets' moves read only this)."""
        self._require_port()
        start = time.perf_counter()
        group = self._read_group
        for attempt in range(self.settings.retries + 1):
            result = group.fastSyncRead() if self.settings.fast_sync_read else group.txRxPacket()
            if result == 0:
                break
            self.counts['retries'] += attempt < self.settings.retries
        else:
            self._fault(self._group_failure(result))
        raw = np.array([[group.getData(i, 126, 2), group.getData(i, 128, 4),
                         group.getData(i, 132, 4)] for i in self.all_ids], np.int64)
        current = np.where(raw[:, 0] >= 1 << 15, raw[:, 0] - (1 << 16), raw[:, 0])
        velocity = np.where(raw[:, 1] >= 1 << 31, raw[:, 1] - (1 << 32), raw[:, 1])
        position = np.where(raw[:, 2] >= 1 << 31, raw[:, 2] - (1 << 32), raw[:, 2])
        n = len(self.ids)
        q = position[:n] * RAD_PER_TICK * self.scale + self.offset
        v = velocity[:n] * RAD_S_PER_UNIT * self.scale
        amps = current[:n] * self.current_unit * np.sign(self.scale)
        s = self.settings
        valve = position[n] * RAD_PER_TICK * s.valve_scale + s.valve_offset
        valve_velocity = velocity[n] * RAD_S_PER_UNIT * s.valve_scale
        self.bus_time = time.perf_counter() - start
        self.counts['reads'] += 1
        reading = {'joints': (q, v, amps),
                   'valve': (np.array([valve]), np.array([valve_velocity]))}
        self.last_reading = reading
        self.flags = self.check(reading)
        if time.monotonic() - self._last_poll >= s.error_poll_period:
            self.poll_hardware_errors()
        return reading

    def check(self, reading: dict) -> dict:
        """Per-joint safety flags of a reading (the description's limits, with units)."""
        q, v, current = reading['joints']
        limits = self.description.safety
        flags = dclaw_safety(q, v, self.description.joint_range, limits.limit_margin,
                             limits.max_velocity)
        flags['over_current'] = np.abs(current) > limits.max_current_ma
        return flags

    def safe_targets(self, targets) -> np.ndarray:
        """``targets`` clipped to the joint ranges and the velocity bound (see module doc)."""
        targets = np.asarray(targets, np.float64)
        low, high = self.description.joint_range.T
        clipped = np.clip(targets, low, high)
        if self.last_reading is not None:
            present = self.last_reading['joints'][0]
            step = self.settings.max_target_speed * self.description.control_period
            clipped = np.clip(clipped, present - step, present + step)
        return clipped

    def write(self, targets):
        """Send joint targets (rad), made safe first, in one sync write of goal positions."""
        self._require_port()
        targets = np.asarray(targets, np.float64)
        if targets.shape != (len(self.ids),) or not np.isfinite(targets).all():
            raise ValueError(f'expected {len(self.ids)} finite joint targets, got '
                             f'{targets.tolist()}')
        safe = self.safe_targets(targets)
        start = time.perf_counter()
        self._sync_write(safe)
        self.bus_time += time.perf_counter() - start
        self.last_targets = safe
        self.counts['writes'] += 1
        return safe

    def reset(self, options: dict | None = None) -> ResetResult:
        """The scripted valve reset, on the valve motor (the hand resets itself, as ROBEL's).

        1. release: the fingers to ``release_pose``, clear of the valve;
        2. the valve motor, torque on, turns the valve to the episode's start angle
           (``options['valve_angle']``, else drawn uniformly from this backend's random
           stream, which ``options['seed']`` >= 0 starts again), the nearest way round;
        3. its torque off: the valve turns freely during the episode;
        4. the fingers to the reset pose;
        5. check: every joint within ``reset_tolerance_deg`` of the reset pose (the valve
           turned to within ``valve_tolerance_deg`` of the start in 2.; the fingers coming
           back may nudge it: the episode observes where it is).

        Each move may take ``reset_timeout`` s. A failed attempt (a move that does not arrive,
        a stuck valve) is tried again, ``reset_attempts`` in all; then the result asks for a
        person (``needs_operator``). A bus fault raises :class:`BackendFault` as anywhere.
        """
        options = options or {}
        seed = options.get('seed', -1)
        if seed is not None and seed >= 0:
            self.rng = np.random.default_rng(seed)
        start = options.get('valve_angle')
        if start is None:
            start = float(self.rng.uniform(-math.pi, math.pi))
        s = self.settings
        problems = []
        for attempt in range(1, s.reset_attempts + 1):
            problem = self._reset_once(float(start))
            if problem is None:
                angle = self.last_reading['valve'][0][0]
                return ResetResult(True, f'valve at {_degrees(angle):.0f} deg (start '
                                   f'{_degrees(start):.0f} deg)', attempts=attempt)
            problems.append(problem)
            self._log('warning', f'valve reset attempt {attempt} of {s.reset_attempts}: '
                      f'{problem}')
        return ResetResult(False, f'the valve reset failed {s.reset_attempts} times (last: '
                           f'{problems[-1]})', attempts=s.reset_attempts, needs_operator=True)

    def _reset_once(self, start: float) -> str | None:
        """One attempt of :meth:`reset`; what went wrong, or None."""
        s = self.settings
        release = np.asarray(s.release_pose, float)
        pose = self.description.reset_pose
        tolerance = math.radians(s.reset_tolerance_deg)
        if not self._move_fingers(release, tolerance):
            return self._off_pose(release, 'releasing the valve')
        # The valve, the nearest way round to the start (its position counts whole turns).
        present = self._read_bus()['valve'][0][0]
        goal = present + (start - present + math.pi) % (2 * math.pi) - math.pi
        ticks = (goal - s.valve_offset) / s.valve_scale / RAD_PER_TICK
        self._write(s.valve_id, 'torque_enable', 1)  # (holding where it is), then the goal
        self._write(s.valve_id, 'goal_position', int(round(ticks)))
        valve_tolerance = math.radians(s.valve_tolerance_deg)
        try:
            arrived = self._settle(
                lambda reading: abs(reading['valve'][0][0] - goal) < valve_tolerance)
        finally:
            self._write(s.valve_id, 'torque_enable', 0)  # free for the episode, on every path
        if not arrived:
            angle = self.last_reading['valve'][0][0]
            return (f'the valve motor did not turn the valve to {_degrees(goal):.0f} deg in '
                    f'{s.reset_timeout:.1f} s (it is at {_degrees(angle):.0f} deg: stuck, or '
                    'blocked by a finger?)')
        # (The fingers coming back may nudge the valve a few degrees: the episode observes
        # where it is.)
        if not self._move_fingers(pose, tolerance):
            return self._off_pose(pose, 'the reset pose')
        return None

    def _move_fingers(self, targets, tolerance: float) -> bool:
        """Command ``targets`` and wait until every joint is within ``tolerance`` (rad)."""
        self.write(targets)
        return self._settle(lambda reading: np.abs(reading['joints'][0] - targets).max()
                            < tolerance)

    def _settle(self, arrived) -> bool:
        """Read until ``arrived(reading)``; False after ``reset_timeout`` s."""
        deadline = time.monotonic() + self.settings.reset_timeout
        while True:
            if arrived(self._read_bus()):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    def _off_pose(self, targets, what: str) -> str:
        error = np.degrees(self.last_reading['joints'][0] - targets)
        worst = int(np.argmax(np.abs(error)))
        return (f'{self.description.joints[worst]} is {error[worst]:+.1f} deg from {what} after '
                f'{self.settings.reset_timeout:.1f} s')

    def poll_hardware_errors(self, force: bool = False) -> dict:
        """Read every servo's Hardware Error Status; a set bit is a fault (torque off)."""
        self._last_poll = time.monotonic()
        errors = {}
        for servo_id in self.all_ids:
            value = self._read_item(servo_id, 'hardware_error_status')
            if value:
                errors[servo_id] = value
        self.hardware_errors = errors
        if errors:
            servo_id, bits = next(iter(errors.items()))
            detail = '; '.join(f'ID {i} ({self._name(i)}): {p2.describe_hardware_error(b)}'
                               for i, b in errors.items())
            self._fault(BackendFault(
                f'hardware error: {detail} (the servo shut its torque off; only a reboot '
                're-enables it: check the hand first)', self._name(servo_id), servo_id))
        return errors

    # The bus --------------------------------------------------------------------------------

    def _name(self, servo_id: int) -> str:
        if servo_id == self.settings.valve_id:
            return 'valve'
        return self.description.joints[self.ids.index(servo_id)] if servo_id in self.ids else '?'

    def _log(self, level: str, message: str):
        # One call site per severity: rclpy's logger refuses a call site that changes it.
        logger = self.logger
        if logger is None:
            return
        if level == 'info':
            logger.info(message)
        elif level == 'warning':
            logger.warning(message)
        else:
            logger.error(message)

    def _require_port(self):
        if self.faulted is not None:
            raise BackendFault(f'stopped after a fault ({self.faulted}); configure again',
                               self.faulted.joint, self.faulted.servo)
        if self.port is None:
            raise BackendError('the backend is not configured (configure() first)')

    def _ping(self, servo_id: int):
        for _ in range(self.settings.retries + 1):
            model, result, _ = self.packets.ping(self.port, servo_id)
            if result == 0:
                return model
        return None

    def _transact(self, servo_id: int, call, what: str):
        for attempt in range(self.settings.retries + 1):
            *value, result, error = call()
            if result == 0 and not (error & 0x7F):
                return value[0] if value else None
            if attempt < self.settings.retries:
                self.counts['retries'] += 1
        reason = (self.packets.getTxRxResult(result) if result != 0
                  else self.packets.getRxPacketError(error))
        self._fault(BackendFault(f'{what} of servo {servo_id} ({self._name(servo_id)}) failed '
                                 f'after {self.settings.retries + 1} attempts: {reason}',
                                 self._name(servo_id), servo_id))

    def _write(self, servo_id: int, item: str, value: int):
        field = p2.CONTROL_TABLE[item]
        write = {1: self.packets.write1ByteTxRx, 2: self.packets.write2ByteTxRx,
                 4: self.packets.write4ByteTxRx}[field.size]
        self._transact(servo_id, lambda: write(self.port, servo_id, field.address,
                                               int(value) & ((1 << 8 * field.size) - 1)),
                       f'writing {item}')

    def _read_item(self, servo_id: int, item: str) -> int:
        field = p2.CONTROL_TABLE[item]
        read = {1: self.packets.read1ByteTxRx, 2: self.packets.read2ByteTxRx,
                4: self.packets.read4ByteTxRx}[field.size]
        value = self._transact(servo_id, lambda: read(self.port, servo_id, field.address),
                               f'reading {item}')
        return p2.signed(value, field.size) if field.signed else value

    def _broadcast_torque(self, on: bool):
        self.packets.write1ByteTxRx(self.port, p2.BROADCAST_ID, 64, int(on))

    def _sync_write(self, targets):
        ticks = np.round((np.asarray(targets) - self.offset) / self.scale / RAD_PER_TICK)
        group = self._write_group
        group.clearParam()
        for servo_id, tick in zip(self.ids, ticks.astype(np.int64).tolist()):
            group.addParam(servo_id, list(p2.u32(tick)))
        for _ in range(self.settings.retries + 1):
            result = group.txPacket()
            if result == 0:
                return
        self._fault(BackendFault(f'sync write of goal positions failed: '
                                 f'{self.packets.getTxRxResult(result)}'))

    def _group_failure(self, result: int) -> BackendFault:
        """Which servos stopped answering, after a group read failed ``result``."""
        silent = [i for i in self.all_ids if self._ping(i) is None]
        reason = self.packets.getTxRxResult(result)
        if silent:
            names = ', '.join(f'{i} ({self._name(i)})' for i in silent)
            return BackendFault(f'servo(s) {names} do not answer (sync read: {reason}, '
                                f'{self.settings.retries + 1} attempts)', self._name(silent[0]),
                                silent[0])
        return BackendFault(f'sync read failed {self.settings.retries + 1} times: {reason} '
                            '(every servo answers a ping: corrupt replies or noise on the bus)')

    def _fault(self, fault: BackendFault):
        """Torque off, remember the fault, raise it (its catcher reports it)."""
        self.deactivate()
        self.faulted = fault
        raise fault

    def _close_port(self):
        if self.port is not None:
            try:
                self.port.closePort()
            except OSError:
                pass
            self.port = None
