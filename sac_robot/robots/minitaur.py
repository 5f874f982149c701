# SPDX-License-Identifier: Apache-2.0
"""The simulated Minitaur: physics and named accessors, no task logic.

Legs and motors, in the order every array here uses::

    legs:    fl (front left), bl (back left), fr (front right), br (back right)
    motors:  fl_a, fl_b, bl_a, bl_b, fr_a, fr_b, br_a, br_b

Motor angles are measured from the upper leg pointing straight down, motor ``b`` mirrored (see
``assets/minitaur/minitaur.xml``). A leg's swing ``s`` and extension ``e`` map to its motors as
``a = e - s``, ``b = e + s`` (:func:`leg_to_motors`): ``e`` is the half-angle between the two
upper legs, which sets the hip-to-foot distance (:func:`leg_length`), and ``s`` tilts the leg,
positive swinging the foot forward. This is the same for all four legs; a hardware backend whose
motors turn the other way maps its encoder signs onto this convention.
"""

import collections
import math
import operator

import numpy as np

from sac_robot.robots import asset_path, import_mujoco
from sac_robot.robots.description import (LEGS, MINITAUR, MINITAUR_MOTORS,
                                          MINITAUR_STANDING_EXTENSION)

MOTORS = MINITAUR_MOTORS
UPPER_LEG, LOWER_LEG, FOOT_RADIUS = 0.11, 0.20, 0.015
#: Height of the motion-capture marker (site ``mocap``) above the base's centre (m).
MOCAP_HEIGHT = 0.045
#: The standing pose: swing 0, extension 1.3 rad on every leg (hip 0.2 m above the ground).
STANDING_SWING, STANDING_EXTENSION = 0.0, MINITAUR_STANDING_EXTENSION


def leg_to_motors(swing, extension) -> np.ndarray:
    """Map per-leg swing and extension ``[..., 4]`` to the eight motor angles ``[..., 8]``."""
    swing, extension = np.broadcast_arrays(np.asarray(swing, np.float64),
                                           np.asarray(extension, np.float64))
    motors = np.empty((*swing.shape[:-1], 8))
    motors[..., 0::2] = extension - swing
    motors[..., 1::2] = extension + swing
    return motors


def motors_to_leg(motors) -> tuple:
    """Inverse of :func:`leg_to_motors`: ``(swing [..., 4], extension [..., 4])``."""
    motors = np.asarray(motors, np.float64)
    a, b = motors[..., 0::2], motors[..., 1::2]
    return (b - a) / 2, (a + b) / 2


def leg_length(extension):
    """Hip-to-foot distance (m, to the foot sphere's centre) at ``extension`` (rad)."""
    e = np.asarray(extension, np.float64)
    return UPPER_LEG * np.cos(e) + np.sqrt(LOWER_LEG ** 2 - (UPPER_LEG * np.sin(e)) ** 2)


def feet_forward(motors) -> np.ndarray:
    """How far (m) each foot is ahead of its hip along the base's x axis ``[..., 4]``.

    From the motor angles alone: what the hardware can compute, and what the reward uses.
    """
    swing, extension = motors_to_leg(motors)
    return leg_length(extension) * np.sin(swing)


def front_feet_forward(motors) -> tuple:
    """:func:`feet_forward` of the two front legs (fl, fr) of one reading, on floats (fast)."""
    sqrt, sin, cos, lower, upper = math.sqrt, math.sin, math.cos, LOWER_LEG ** 2, UPPER_LEG
    a, b, c, d = motors[0], motors[1], motors[4], motors[5]
    e, f = (a + b) / 2, (c + d) / 2  # extensions
    sin_e, sin_f = sin(e), sin(f)
    return ((upper * cos(e) + sqrt(lower - upper * upper * sin_e * sin_e)) * sin((b - a) / 2),
            (upper * cos(f) + sqrt(lower - upper * upper * sin_f * sin_f)) * sin((d - c) / 2))


def knee_angles(swing: float, extension: float) -> tuple:
    """The passive knee joints' angles ``(knee_a, knee_b)`` that close the linkage."""
    a_angle, b_angle = extension - swing, -(extension + swing)  # both about +y
    foot = leg_length(extension) * np.array([np.sin(swing), -np.cos(swing)])  # (x, z)
    knees = []
    for upper in (a_angle, b_angle):
        tip = UPPER_LEG * np.array([-np.sin(upper), -np.cos(upper)])
        dx, dz = foot - tip
        knees.append(np.arctan2(-dx, -dz) - upper)
    return knees[0], -knees[1]  # knee b turns about -y


def knee_positions(positions: dict) -> dict:
    """The passive knees' angles (joint name -> rad) from the motors' (joint name -> rad)."""
    knees = {}
    for leg in LEGS:
        a, b = positions[f'{leg}_a'], positions[f'{leg}_b']
        knee_a, knee_b = knee_angles((b - a) / 2, (a + b) / 2)
        knees[f'{leg}_knee_a'], knees[f'{leg}_knee_b'] = float(knee_a), float(knee_b)
    return knees


def roll_pitch(quat) -> tuple:
    """Roll and pitch (rad, ZYX convention) of a ``[w, x, y, z]`` quaternion, as floats."""
    w, x, y, z = quat  # numpy scalars work too; math returns floats
    return (math.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y)),
            math.asin(min(1.0, max(-1.0, 2 * (w * y - z * x)))))


def quat_to_rpy(quat) -> np.ndarray:
    """Roll, pitch, yaw (rad, ZYX convention) of a ``[w, x, y, z]`` quaternion."""
    w, x, y, z = (float(q) for q in quat)
    yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return np.array([*roll_pitch(quat), yaw])


#: MuJoCo, imported when the first simulation is made (:func:`import_mujoco`).
mujoco = None


class MinitaurSim:
    """MuJoCo Minitaur on flat ground (``assets/minitaur/scene_flat.xml``).

    ``latency`` (s) delays every command by that much simulated time before the servos see it,
    rounded to whole physics steps, as the measured ~20 ms on the hardware (ROBOTS.md).
    """

    def __init__(self, scene: str | None = None, latency: float = 0.0):
        global mujoco
        mujoco = import_mujoco()
        self.model = mujoco.MjModel.from_xml_path(
            scene or asset_path(*MINITAUR.scene))
        self.data = mujoco.MjData(self.model)
        model = self.model
        self._motor_qpos = np.array([model.joint(m).qposadr[0] for m in MOTORS])
        self._motor_qvel = np.array([model.joint(m).dofadr[0] for m in MOTORS])
        self._knee_qpos = np.array([[model.joint(f'{leg}_knee_{s}').qposadr[0] for s in 'ab']
                                    for leg in LEGS])
        self._actuators = np.array([model.actuator(m).id for m in MOTORS])
        self._base = model.body('base').id
        self._feet = np.array([model.site(f'{leg}_foot').id for leg in LEGS])
        self._hips = np.array([model.body(f'{leg}_hip').id for leg in LEGS])
        self._gyro = self._sensor('imu_gyro')
        self._orientation = self._sensor('imu_orientation')
        self._mocap_position = self._sensor('mocap_position')
        self._mocap_orientation = self._sensor('mocap_orientation')
        self.motor_range = model.jnt_range[[model.joint(m).id for m in MOTORS]].copy()
        self._motor_low, self._motor_high = self.motor_range.T.copy()
        # Plain-Python copies for the per-step fast paths (command, proprioception): on eight
        # numbers Python floats beat numpy's per-call overhead several times over.
        self._motor_bounds = list(zip(self._motor_low.tolist(), self._motor_high.tolist()))
        self._take_motors = operator.itemgetter(*self._motor_qpos.tolist())
        # Views of MjData's arrays (the memory never moves): a property access each is dearer.
        self._qpos, self._sensordata, self._ctrl_array = (self.data.qpos, self.data.sensordata,
                                                          self.data.ctrl)
        self._lowest, self._highest = float(self._motor_low.max()), float(self._motor_high.min())
        first = int(self._actuators[0])
        self._ctrl = (slice(first, first + 8) if np.array_equal(self._actuators,
                                                               np.arange(first, first + 8))
                      else self._actuators)
        #: Nominal values the domain randomisation scales (see :meth:`randomize`).
        self.nominal = {
            'body_mass': model.body_mass.copy(), 'body_inertia': model.body_inertia.copy(),
            'geom_friction': model.geom_friction.copy(),
            'actuator_gainprm': model.actuator_gainprm.copy(),
            'actuator_biasprm': model.actuator_biasprm.copy(),
            'actuator_forcerange': model.actuator_forcerange.copy(),
            'dof_damping': model.dof_damping.copy()}
        self._foot_geoms = np.array([model.geom(f'{leg}_foot').id for leg in LEGS])
        self.latency = latency
        self._pending = collections.deque()

    def _sensor(self, name: str) -> slice:
        sensor = self.model.sensor(name)
        return slice(int(sensor.adr[0]), int(sensor.adr[0] + sensor.dim[0]))

    @property
    def timestep(self) -> float:
        """Physics step in seconds (2 ms)."""
        return float(self.model.opt.timestep)

    @property
    def latency(self) -> float:
        """Command latency in seconds (a whole number of physics steps)."""
        return self._latency_steps * self.timestep

    @latency.setter
    def latency(self, seconds: float):
        if not seconds >= 0:
            raise ValueError(f'latency must be >= 0 s, got {seconds}')
        self._latency_steps = int(round(seconds / self.timestep))

    def reset(self, swing=STANDING_SWING, extension=STANDING_EXTENSION, yaw: float = 0.0):
        """Stand the robot at the origin, at rest, feet on the ground.

        The legs at ``swing``/``extension`` (scalars or one per leg), servo targets there too.
        """
        mujoco.mj_resetData(self.model, self.data)
        swing = np.broadcast_to(np.asarray(swing, np.float64), (4,))
        extension = np.broadcast_to(np.asarray(extension, np.float64), (4,))
        motors = leg_to_motors(swing, extension)
        self.data.qpos[self._motor_qpos] = motors
        for leg in range(4):
            self.data.qpos[self._knee_qpos[leg]] = knee_angles(swing[leg], extension[leg])
        height = np.max(leg_length(extension) * np.cos(swing)) + FOOT_RADIUS
        self.data.qpos[:7] = [0, 0, height, np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]
        self.data.ctrl[self._actuators] = motors
        self._pending.clear()
        mujoco.mj_forward(self.model, self.data)

    def command(self, motor_targets):
        """Set the eight servos' position targets (rad), clipped to the motor range.

        The servos see them ``latency`` seconds of simulated time from now.
        """
        if isinstance(motor_targets, np.ndarray):
            motor_targets = motor_targets.tolist()
        if len(motor_targets) != 8:
            raise ValueError(f'expected 8 motor targets, got {len(motor_targets)}')
        targets = motor_targets
        if min(targets) < self._lowest or max(targets) > self._highest:
            targets = [min(high, max(low, t)) for t, (low, high) in zip(targets,
                                                                          self._motor_bounds)]
        if self._latency_steps == 0:
            self._ctrl_array[self._ctrl] = targets
        else:
            self._pending.append((self.data.time + self.latency - 0.5 * self.timestep, targets))

    def step(self, substeps: int = 1):
        """Advance the physics by ``substeps`` steps (delayed commands land in between)."""
        if not self._pending:
            mujoco.mj_step(self.model, self.data, nstep=substeps)
            return
        for _ in range(substeps):
            while self._pending and self._pending[0][0] <= self.data.time:
                self._ctrl_array[self._ctrl] = self._pending.popleft()[1]
            mujoco.mj_step(self.model, self.data)

    # What the hardware measures -------------------------------------------------------------
    # The IMU and motion-capture readings are MuJoCo sensors, computed at the start of the last
    # physics step (2 ms old), as a real sensor pipeline's would be.

    def motor_angles(self) -> np.ndarray:
        """The eight motor angles (rad), as the encoders report them."""
        return self.data.qpos[self._motor_qpos]  # fancy indexing: already a copy

    def motor_velocities(self) -> np.ndarray:
        """The eight motor velocities (rad/s)."""
        return self.data.qvel[self._motor_qvel]

    def motor_torques(self) -> np.ndarray:
        """The eight motors' torques (N m), after saturation."""
        return self.data.actuator_force[self._actuators].copy()

    def base_orientation(self) -> np.ndarray:
        """The IMU's orientation quaternion ``[w, x, y, z]`` (world frame)."""
        return self.data.sensordata[self._orientation].copy()

    def base_rpy(self) -> np.ndarray:
        """Base roll, pitch, yaw (rad); yaw drifts on the real IMU, so tasks do not use it."""
        return quat_to_rpy(self.base_orientation())

    def base_roll_pitch(self) -> tuple:
        """Base roll and pitch (rad), as :meth:`base_rpy` without the yaw."""
        return roll_pitch(self.data.sensordata[self._orientation].tolist())

    def readings(self) -> tuple:
        """This step's measurements as floats, read at once (the task's per-step path).

        ``(o, position)``: ``o`` is what the robot itself measures, 12 numbers: the eight motor
        angles, base roll, pitch (rad), roll rate, pitch rate (rad/s), the same values as
        :meth:`motor_angles`, :meth:`base_roll_pitch` and :meth:`base_angular_velocity`;
        ``position`` is the motion-capture marker's (:meth:`base_position`, m).
        """
        sensors = self._sensordata.tolist()
        rates = sensors[self._gyro]
        return ([*self._take_motors(self._qpos.tolist()),
                 *roll_pitch(sensors[self._orientation]), rates[0], rates[1]],
                sensors[self._mocap_position])

    def base_angular_velocity(self) -> np.ndarray:
        """The IMU gyro's reading (rad/s, base frame): roll, pitch, yaw rates."""
        return self.data.sensordata[self._gyro].copy()

    def base_pose(self) -> tuple:
        """``(position [3], quaternion [w, x, y, z])`` of the motion-capture marker, world."""
        return (self.data.sensordata[self._mocap_position].copy(),
                self.data.sensordata[self._mocap_orientation].copy())

    def base_position(self) -> np.ndarray:
        """The motion-capture marker's position (m, world), without the orientation."""
        return self.data.sensordata[self._mocap_position].copy()

    def base_height(self) -> float:
        """Height of the base's centre above the ground (m)."""
        return float(self.data.xpos[self._base][2])

    def foot_positions(self) -> np.ndarray:
        """The four feet's centres ``[4, 3]`` (m, world frame)."""
        return self.data.site_xpos[self._feet].copy()

    def feet_relative_to_hips(self) -> np.ndarray:
        """Each foot's position relative to its hip in the base frame ``[4, 3]`` (m)."""
        rotation = self.data.xmat[self._base].reshape(3, 3)
        offsets = self.data.site_xpos[self._feet] - self.data.xpos[self._hips]
        return offsets @ rotation


    def total_mass(self) -> float:
        """The robot's mass (kg)."""
        return float(np.sum(self.model.body_mass))  # the scene's only moving bodies

    # Simulation only ------------------------------------------------------------------------

    def push(self, force, seconds: float = 0.1):
        """Apply ``force`` (N, world frame) to the base's centre for ``seconds``."""
        self.data.xfrc_applied[self._base, :3] = force
        self.step(max(1, int(round(seconds / self.timestep))))
        self.data.xfrc_applied[self._base, :3] = 0.0

    def randomize(self, rng: np.random.Generator, mass=(0.8, 1.2), friction=(0.8, 1.5),
                  strength=(0.88, 1.0), damping=(0.0, 0.01)):
        """Draw new physical parameters around the nominal ones (ROBOTS.md's sim-to-real ranges).

        Every body's mass (and inertia) scaled by ``U(mass)``, foot friction ``U(friction)``,
        motor strength (gain and torque limit; battery 14.8-16.8 V of 16.8 V) ``U(strength)``,
        motor damping ``U(damping)`` N m s/rad. ``None`` leaves a parameter nominal.
        """
        model, nominal = self.model, self.nominal
        for key, value in nominal.items():
            getattr(model, key)[:] = value
        if mass is not None:
            scale = rng.uniform(*mass, size=model.nbody)
            scale[0] = 1.0  # the world
            model.body_mass[:] *= scale
            model.body_inertia[:] *= scale[:, None]
        if friction is not None:
            model.geom_friction[self._foot_geoms, 0] = rng.uniform(*friction, size=4)
        if strength is not None:
            scale = rng.uniform(*strength, size=8)
            model.actuator_gainprm[self._actuators, 0] *= scale
            model.actuator_biasprm[self._actuators, 1] *= scale
            model.actuator_forcerange[self._actuators] *= scale[:, None]
        if damping is not None:
            model.dof_damping[self._motor_qvel] = rng.uniform(*damping, size=8)
