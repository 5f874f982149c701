# SPDX-License-Identifier: Apache-2.0
"""Messages <-> numpy, with validation.

Every reader checks sizes, names and finiteness and raises :class:`MessageError` naming the
topic and what is wrong, so a node can log it and drop the message without stopping.

Conventions: quaternions are ``[w, x, y, z]`` in numpy (MuJoCo's order) and ``x, y, z, w`` in
geometry_msgs; times are integer nanoseconds in numpy.
"""

import array
import functools
import hashlib
import math

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import Image, Imu, JointState
from std_msgs.msg import Float64MultiArray, MultiArrayDimension

from sac_robot.algorithms import observations
from sac_robot.msg import Experience, PolicyWeights

#: Keys of a command's layout label naming the observation the command answers (see
#: :func:`command`), e.g. ``stamp_ns=120000000;episode=3``.
STAMP_KEY, EPISODE_KEY = 'stamp_ns', 'episode'


class MessageError(ValueError):
    """A message that cannot be used; the text says which topic and what is wrong."""


def stamp_ns(stamp) -> int:
    """A ``builtin_interfaces/Time`` as integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def to_stamp(nanoseconds: int) -> Time:
    """Integer nanoseconds as a ``builtin_interfaces/Time``."""
    return Time(sec=int(nanoseconds // 1_000_000_000), nanosec=int(nanoseconds % 1_000_000_000))


#: The largest magnitude a sensor field may carry, by unit: beyond it a well-formed value is
#: still no measurement of a robot in a lab (a joint turned a thousand times, a tracker a
#: kilometre away, a joint turning at 10^4 rad/s), and it would become a reward of the same
#: size. The description's own limits are the safety node's; these bound what is believable.
PLAUSIBLE = {'rad': 1e3, 'm': 1e3, 'rad/s': 1e4}

#: The furthest an episode id may lie past a robot's newest one. Ids grow by one an episode
#: (the driver numbers them; a relaunched robot side continues after the trainer's newest), so
#: a million episodes ahead is a forged or random id, and taken as the newest it would number
#: every later episode after it, up to the uint64's end.
EPISODE_ID_JUMP = 10 ** 6


def _finite(values, topic: str, field: str, size: int | None = None,
            unit: str | None = None) -> np.ndarray:
    array = np.asarray(values, np.float64)
    if size is not None and array.shape != (size,):
        raise MessageError(f'{topic}: {field} has {array.size} values, expected {size}')
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise MessageError(f'{topic}: {field}[{bad[0]}] is {array[bad[0]]} (not finite)')
    if unit is not None:
        far = np.flatnonzero(np.abs(array) > PLAUSIBLE[unit])
        if far.size:
            raise MessageError(f'{topic}: {field}[{far[0]}] is {array[far[0]]:g} {unit}: not '
                               f'plausible (more than {PLAUSIBLE[unit]:g} {unit})')
    return array


# Joint states -------------------------------------------------------------------------------

def joint_state(names, positions, velocities=None, efforts=None, stamp: int = 0,
                frame_id: str = '') -> JointState:
    """A ``sensor_msgs/JointState``."""
    msg = JointState()
    msg.header.stamp, msg.header.frame_id = to_stamp(stamp), frame_id
    msg.name = list(names)
    msg.position = np.asarray(positions, np.float64).tolist()
    msg.velocity = [] if velocities is None else np.asarray(velocities, np.float64).tolist()
    msg.effort = [] if efforts is None else np.asarray(efforts, np.float64).tolist()
    return msg


def read_joint_state(msg: JointState, names, topic: str) -> tuple:
    """Positions and velocities (``None`` when absent) of ``names``, in that order."""
    index = {name: i for i, name in enumerate(msg.name)}
    missing = [name for name in names if name not in index]
    if missing:
        raise MessageError(f'{topic}: joint(s) {", ".join(missing)} missing '
                           f'(got {", ".join(msg.name) or "none"})')
    if len(msg.position) != len(msg.name):
        raise MessageError(f'{topic}: {len(msg.name)} names but {len(msg.position)} positions')
    order = [index[name] for name in names]
    positions = _finite(msg.position, topic, 'position', unit='rad')[order]
    velocities = None
    if len(msg.velocity):
        if len(msg.velocity) != len(msg.name):
            raise MessageError(f'{topic}: {len(msg.name)} names but {len(msg.velocity)} '
                               'velocities')
        velocities = _finite(msg.velocity, topic, 'velocity', unit='rad/s')[order]
    return positions, velocities


# IMU and motion capture ---------------------------------------------------------------------

@functools.lru_cache(maxsize=16)  # (a sensor's are constant: made once, not every step)
def imu_covariances(variances: tuple) -> tuple:
    """The three row-major 3 x 3 covariances of a ``sensor_msgs/Imu`` from diagonal variances.

    ``variances``: of the orientation (rad^2), the angular velocity ((rad/s)^2) and the linear
    acceleration ((m/s^2)^2), each a number (the same on the three axes) or three; -1 where the
    sensor gives no estimate of that field (sensor_msgs: element 0 set to -1). Empty: unknown,
    all zeros (as sensor_msgs reads them).
    """
    if not len(variances):
        return ((0.0,) * 9,) * 3
    if len(variances) != 3:
        raise ValueError(f'IMU variances: 3 (orientation, angular velocity, linear '
                         f'acceleration), not {len(variances)}')
    matrices = []
    for variance in variances:
        diagonal = np.broadcast_to(np.asarray(variance, np.float64), (3,))
        if not np.isfinite(diagonal).all():
            raise ValueError(f'IMU variances must be finite, not {variances!r}')
        if diagonal[0] == -1:  # (no estimate of this field)
            matrices.append((-1.0,) + (0.0,) * 8)
            continue
        if (diagonal < 0).any():
            raise ValueError(f'IMU variances are >= 0 or -1 (no estimate), not {variances!r}')
        matrices.append(tuple(float(v) for v in np.diag(diagonal).ravel()))
    return tuple(matrices)


def imu(quaternion, angular_velocity, linear_acceleration, stamp: int = 0,
        frame_id: str = 'imu', covariances=None) -> Imu:
    """A ``sensor_msgs/Imu`` from a ``[w, x, y, z]`` orientation and body-frame rates.

    ``covariances``: the orientation's, angular velocity's and acceleration's (each nine
    numbers, row-major; :func:`imu_covariances`); none: unknown (zeros).
    """
    msg = Imu()
    msg.header.stamp, msg.header.frame_id = to_stamp(stamp), frame_id
    w, x, y, z = (float(q) for q in quaternion)
    msg.orientation.w, msg.orientation.x, msg.orientation.y, msg.orientation.z = w, x, y, z
    (msg.angular_velocity.x, msg.angular_velocity.y,
     msg.angular_velocity.z) = (float(v) for v in angular_velocity)
    (msg.linear_acceleration.x, msg.linear_acceleration.y,
     msg.linear_acceleration.z) = (float(v) for v in linear_acceleration)
    if covariances is not None:
        (msg.orientation_covariance, msg.angular_velocity_covariance,
         msg.linear_acceleration_covariance) = (
            np.asarray(c, np.float64).reshape(9) for c in covariances)
    return msg


def read_imu_covariances(msg: Imu) -> tuple:
    """The three covariances of a ``sensor_msgs/Imu`` (each nine numbers), as they came."""
    return tuple(tuple(float(v) for v in c) for c in (
        msg.orientation_covariance, msg.angular_velocity_covariance,
        msg.linear_acceleration_covariance))


def _quaternion(q, topic: str, field: str) -> np.ndarray:
    quat = _finite([q.w, q.x, q.y, q.z], topic, field)
    norm = np.linalg.norm(quat)
    if abs(norm - 1.0) > 1e-3:
        raise MessageError(f'{topic}: {field} is not a unit quaternion (norm {norm:.4f})')
    return quat / norm


def read_imu(msg: Imu, topic: str) -> tuple:
    """``(quaternion [w, x, y, z], angular velocity [3])`` of a ``sensor_msgs/Imu``."""
    quat = _quaternion(msg.orientation, topic, 'orientation')
    av = msg.angular_velocity
    return quat, _finite([av.x, av.y, av.z], topic, 'angular_velocity', unit='rad/s')


def pose_stamped(position, quaternion, stamp: int = 0, frame_id: str = 'world') -> PoseStamped:
    """A ``geometry_msgs/PoseStamped``, as vrpn_mocap publishes a tracked rigid body."""
    msg = PoseStamped()
    msg.header.stamp, msg.header.frame_id = to_stamp(stamp), frame_id
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(p) for p in position)
    o = msg.pose.orientation
    o.w, o.x, o.y, o.z = (float(q) for q in quaternion)
    return msg


def read_reward(msg, topic: str) -> float:
    """A ``sac_robot/RewardTerms``' reward, checked: finite, its terms (if any) adding up to it."""
    values = list(msg.values)
    where = f'{topic}: step {msg.step} of episode {msg.episode_id}'
    if len(values) != len(msg.names):
        raise MessageError(f'{where}: {len(values)} term value(s) for {len(msg.names)} name(s)')
    if not math.isfinite(msg.reward) or not all(math.isfinite(v) for v in values):
        raise MessageError(f'{where}: reward {msg.reward!r}, terms {values!r}: not finite')
    if values and abs(sum(values) - msg.reward) > 1e-6 * max(1.0, abs(msg.reward)):
        raise MessageError(f'{where}: reward {msg.reward!r} but its terms add up to '
                           f'{sum(values)!r}')
    return float(msg.reward)


def read_policy_step(msg, observation_size: int, action_size: int, topic: str) -> tuple:
    """A ``sac_robot/PolicyStep``'s ``(observation, action)``, checked.

    The right sizes, finite, and every action in the policy's [-1, 1] (what a tanh-squashed
    policy can give): a step that fails is refused where it enters, so that no reward is
    computed from it and no chunk carries it (the trainer would refuse that chunk every time
    it came again).
    """
    where = f'{topic}: step {msg.step} of episode {msg.episode_id}'
    observation = _finite(msg.observation, where, 'observation', observation_size)
    action = _finite(msg.action, where, 'action', action_size)
    outside = np.flatnonzero(np.abs(action) > 1.0 + 1e-6)
    if outside.size:
        raise MessageError(f'{where}: action[{outside[0]}] is {action[outside[0]]:g}, outside '
                           "the policy's [-1, 1]")
    return observation, action


def _pose(pose, topic: str, field: str) -> tuple:
    p = pose.position
    return (_finite([p.x, p.y, p.z], topic, f'{field}.position', unit='m'),
            _quaternion(pose.orientation, topic, f'{field}.orientation'))


def read_pose(msg: PoseStamped, topic: str) -> tuple:
    """``(position [3], quaternion [w, x, y, z])`` of a ``geometry_msgs/PoseStamped``."""
    return _pose(msg.pose, topic, 'pose')


def read_rigid_body(msg, name: str, topic: str) -> tuple | None:
    """The pose of rigid body ``name`` in a ``mocap4r2_msgs/RigidBodies``, as :func:`read_pose`.

    None when the frame does not hold it (the motion-capture system does not see it now).
    """
    for i, body in enumerate(msg.rigidbodies):
        if body.rigid_body_name == name:
            return _pose(body.pose, topic, f'rigidbodies[{i}].pose')
    return None


# Images --------------------------------------------------------------------------------------

def image(rgb: np.ndarray, stamp: int = 0, frame_id: str = 'camera') -> Image:
    """A ``sensor_msgs/Image`` (rgb8) from an ``[H, W, 3]`` uint8 array."""
    msg = Image()
    msg.header.stamp, msg.header.frame_id = to_stamp(stamp), frame_id
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding, msg.is_bigendian, msg.step = 'rgb8', 0, int(rgb.shape[1]) * 3
    msg.data = array.array('B', np.ascontiguousarray(rgb, np.uint8).tobytes())
    return msg


def read_image(msg: Image, shape: tuple, topic: str) -> np.ndarray:
    """An ``[H, W, 3]`` uint8 array from an rgb8 ``sensor_msgs/Image`` of ``shape``."""
    if msg.encoding != 'rgb8':
        raise MessageError(f'{topic}: encoding {msg.encoding!r}, expected rgb8')
    if (msg.height, msg.width, 3) != tuple(shape):
        raise MessageError(f'{topic}: image {msg.height}x{msg.width}, expected '
                           f'{shape[0]}x{shape[1]}')
    if msg.step != msg.width * 3 or len(msg.data) != msg.height * msg.step:
        raise MessageError(f'{topic}: {len(msg.data)} bytes for {msg.height} rows of step '
                           f'{msg.step}')
    return np.frombuffer(msg.data, np.uint8).reshape(shape).copy()


# Sensors of a robot description -----------------------------------------------------------

#: Sensor message type -> (how a backend's reading of it becomes the message, how many of the
#: reading's fields its reader returns). A backend reads a sensor as the fields of its message,
#: in order: joint states ``(positions, velocities, efforts)`` (velocities or efforts ``None``
#: or left out when it has none), the IMU ``(orientation [w, x, y, z], body rates,
#: acceleration[, covariances])`` (covariances: the sensor's own, passed on; else the
#: description's :attr:`~sac_robot.robots.description.Sensor.variances`), a pose
#: ``(position, orientation)``, an image ``(rgb [H, W, 3],)``; the graph's readers
#: (:func:`read_joint_state`, ...) return the leading fields they use.
SENSOR_MESSAGES = {
    'sensor_msgs/JointState': (
        lambda sensor, r, stamp: joint_state(sensor.joints, r[0], r[1] if len(r) > 1 else None,
                                             r[2] if len(r) > 2 else None, stamp, sensor.frame),
        2),
    'sensor_msgs/Imu': (lambda sensor, r, stamp: imu(
        r[0], r[1], r[2], stamp, sensor.frame,
        r[3] if len(r) > 3 else imu_covariances(sensor.variances)), 2),
    'geometry_msgs/PoseStamped': (
        lambda sensor, r, stamp: pose_stamped(*r, stamp, sensor.frame), 2),
    'sensor_msgs/Image': (lambda sensor, r, stamp: image(r[0], stamp, sensor.frame), 1),
}


def sensor_message(sensor, reading: tuple, stamp: int):
    """The message of a description's ``sensor`` carrying a backend's ``reading`` of it.

    Stamped ``stamp`` (ns), in the sensor's frame (:class:`~sac_robot.robots.description.
    Sensor`).
    """
    return SENSOR_MESSAGES[sensor.message][0](sensor, reading, stamp)


def reader_fields(sensor, reading: tuple) -> tuple:
    """What the sensor's message reader would return for ``reading`` (its leading fields)."""
    return tuple(reading[:SENSOR_MESSAGES[sensor.message][1]])


# Commands ------------------------------------------------------------------------------------

def command(targets, stamp: int | None = None, episode: int | None = None,
            label: str = '') -> Float64MultiArray:
    """A joint position command in ros2_control's forward-command form.

    ``stamp`` (ns) and ``episode``, when given, name the observation the command answers; they
    ride in the label of the layout's one dimension (``stamp_ns=<ns>;episode=<id>``), which
    ros2_control's forward command controller ignores, so the same message drives a real
    controller unchanged. The simulated driver in lockstep uses them to step exactly once per
    observation and to drop stale commands. ``label`` replaces them (e.g. ``hold``).
    """
    msg = Float64MultiArray()
    values = np.asarray(targets, np.float64)
    if stamp is not None:
        label = f'{STAMP_KEY}={int(stamp)}'
        if episode is not None:
            label += f';{EPISODE_KEY}={int(episode)}'
    msg.layout.dim = [MultiArrayDimension(label=label, size=values.size, stride=values.size)]
    msg.data = values.tolist()
    return msg


def read_command(msg: Float64MultiArray, size: int, topic: str) -> tuple:
    """``(targets [size], label fields {key: int})`` of a command made by :func:`command`."""
    targets = _finite(msg.data, topic, 'data', size)
    fields = {}
    label = msg.layout.dim[0].label if msg.layout.dim else ''
    if label.startswith(STAMP_KEY + '='):
        try:
            fields = {key: int(value) for key, value in
                      (item.split('=', 1) for item in label.split(';'))}
        except ValueError:
            raise MessageError(f'{topic}: malformed label {label!r}') from None
    return targets, fields


# Experience ----------------------------------------------------------------------------------

#: Experience fields, their dtypes and per-transition shapes' names.
_ROWS = ('observations', 'actions', 'rewards', 'next_observations', 'terminated', 'truncated',
         'policy_versions')


def experience(robot_id: str, sequence: int, episode_id: int, first_step: int,
               transitions: dict | None, stamp: int = 0, dropped: int = 0,
               spec=None) -> Experience:
    """An ``Experience`` chunk from ``transitions`` (arrays with a leading N; see _ROWS).

    Observations are flat ``[N, O]`` arrays; with a dict observation ``spec`` (an image and
    vectors) they are its vectors concatenated (:func:`~sac_robot.algorithms.observations.
    to_wire`) and ``transitions`` also holds ``images`` and ``next_images`` ``[N, H, W, C]``.
    ``transitions`` may be ``None`` for a chunk that only reports ``dropped`` transitions.
    """
    msg = Experience()
    msg.header.stamp = to_stamp(stamp)
    msg.robot_id, msg.sequence, msg.episode_id = robot_id, int(sequence), int(episode_id)
    msg.dropped = int(dropped)
    if spec is not None and not isinstance(spec, int):
        msg.observation_spec = observations.spec_to_json(spec)
    if transitions is None:
        msg.first_step = int(first_step)
        return msg
    obs = np.asarray(transitions['observations'], np.float32)
    actions = np.asarray(transitions['actions'], np.float32)
    msg.first_step, msg.num_transitions = int(first_step), int(obs.shape[0])
    msg.observation_size, msg.action_size = int(obs.shape[1]), int(actions.shape[1])
    msg.observations = obs.ravel()
    msg.actions = actions.ravel()
    msg.rewards = np.asarray(transitions['rewards'], np.float32)
    msg.next_observations = np.asarray(transitions['next_observations'], np.float32).ravel()
    msg.terminated = [bool(x) for x in transitions['terminated']]
    msg.truncated = [bool(x) for x in transitions['truncated']]
    msg.policy_versions = np.asarray(transitions['policy_versions'], np.uint64)
    if 'images' in transitions:
        images = np.ascontiguousarray(transitions['images'], np.uint8)
        msg.image_height, msg.image_width, msg.image_channels = (int(d) for d in
                                                                 images.shape[1:])
        # array.array: rclpy takes it as is (a bytes or numpy value is checked element-wise).
        msg.images = array.array('B', images.tobytes())
        msg.next_images = array.array('B', np.ascontiguousarray(transitions['next_images'],
                                                                np.uint8).tobytes())
    return msg


def read_experience(msg: Experience, spec, action_size: int, topic: str) -> dict:
    """The transitions of an ``Experience`` chunk as arrays, checked against the task.

    ``spec``: the task's observation spec (:mod:`sac_robot.algorithms.observations`): the
    flat size, or a dict whose observations come back as dicts of arrays.
    """
    n = msg.num_transitions
    observation_size, image_shape = observations.wire_layout(spec)
    expected_spec = '' if isinstance(spec, int) else observations.spec_to_json(spec)
    if n and msg.observation_spec != expected_spec:
        raise MessageError(f'{topic}: chunk {msg.sequence} has observations '
                           f'{msg.observation_spec or "flat"}, expected '
                           f'{expected_spec or "flat"}')
    if n and (msg.observation_size, msg.action_size) != (observation_size, action_size):
        raise MessageError(f'{topic}: chunk {msg.sequence} has observations of '
                           f'{msg.observation_size} and actions of {msg.action_size}, expected '
                           f'{observation_size} and {action_size}')
    pixels = 0 if image_shape is None else int(np.prod(image_shape))
    if n and pixels and (msg.image_height, msg.image_width, msg.image_channels) != tuple(
            image_shape):
        raise MessageError(f'{topic}: chunk {msg.sequence} has images of '
                           f'{msg.image_height}x{msg.image_width}x{msg.image_channels}, '
                           f'expected {"x".join(map(str, image_shape))}')
    sizes = {'observations': n * observation_size, 'actions': n * action_size, 'rewards': n,
             'next_observations': n * observation_size, 'terminated': n, 'truncated': n,
             'policy_versions': n, 'images': n * pixels, 'next_images': n * pixels}
    for field, size in sizes.items():
        if len(getattr(msg, field)) != size:
            raise MessageError(f'{topic}: chunk {msg.sequence} field {field} has '
                               f'{len(getattr(msg, field))} values, expected {size}')
    out = {
        'observations': np.asarray(msg.observations, np.float32).reshape(n, observation_size),
        'actions': np.asarray(msg.actions, np.float32).reshape(n, action_size),
        'rewards': np.asarray(msg.rewards, np.float32),
        'next_observations': np.asarray(msg.next_observations, np.float32).reshape(
            n, observation_size),
        'terminated': np.asarray(msg.terminated, bool),
        'truncated': np.asarray(msg.truncated, bool),
        'policy_versions': np.asarray(msg.policy_versions, np.uint64)}
    for field in ('observations', 'actions', 'rewards', 'next_observations'):
        bad = np.argwhere(~np.isfinite(out[field]))
        if bad.size:
            raise MessageError(f'{topic}: chunk {msg.sequence} {field}{list(bad[0])} is not '
                               'finite')
    if np.any(np.abs(out['actions']) > 1.0 + 1e-6):
        raise MessageError(f'{topic}: chunk {msg.sequence} has actions outside [-1, 1]')
    if not isinstance(spec, int):
        for field, images in (('observations', 'images'), ('next_observations', 'next_images')):
            image = (np.frombuffer(getattr(msg, images), np.uint8).reshape(n, *image_shape)
                     if pixels else None)
            out[field] = observations.from_wire(out[field], image, spec)
    return out


# Policy weights ------------------------------------------------------------------------------

def policy_weights(data: bytes, version: int, algorithm: str, metadata_json: str,
                   gradient_steps: int, env_steps: int, stamp: int = 0,
                   run_id: str = '') -> PolicyWeights:
    """A ``PolicyWeights`` message carrying safetensors ``data`` and its SHA-256."""
    msg = PolicyWeights()
    msg.header.stamp = to_stamp(stamp)
    msg.version, msg.algorithm, msg.format = int(version), algorithm, 'safetensors'
    msg.run_id = run_id
    msg.metadata_json, msg.gradient_steps, msg.env_steps = (
        metadata_json, int(gradient_steps), int(env_steps))
    msg.sha256 = hashlib.sha256(data).hexdigest()
    msg.data = bytes(data)
    return msg


def read_policy_weights(msg: PolicyWeights, topic: str) -> bytes:
    """The checked safetensors bytes of a ``PolicyWeights`` message."""
    if msg.format != 'safetensors':
        raise MessageError(f'{topic}: weights v{msg.version} in format {msg.format!r}, only '
                           'safetensors is accepted')
    data = bytes(msg.data)
    digest = hashlib.sha256(data).hexdigest()
    if digest != msg.sha256:
        raise MessageError(f'{topic}: weights v{msg.version} fail their checksum '
                           f'({digest[:12]} != {msg.sha256[:12]})')
    return data
