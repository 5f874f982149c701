# SPDX-License-Identifier: Apache-2.0
"""Each robot described once, as data: joints, ranges, rates, poses, sensors, safety limits.

A description is what every layer takes its robot facts from (the tasks, the graph's nodes, the
hardware backends and their emulators), so a fact is written in one place, and adding a robot
is adding a description, not a branch on its name. Plain data: no MuJoCo, no ROS, no vendor SDK.
Units are in the field names or their docstrings; angles are radians unless named ``_deg``.
"""

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Sensor:
    """One sensor stream of a robot and the standard message that carries it."""

    #: Topic relative to the robot's namespace.
    topic: str
    #: ROS message type, ``package/Type``.
    message: str
    #: ``header.frame_id`` of its messages.
    frame: str
    #: For joint states: the joints it reports, in order.
    joints: tuple = ()
    #: For an IMU: the diagonal variances of its orientation (rad^2), angular velocity
    #: ((rad/s)^2) and linear acceleration ((m/s^2)^2), as its datasheet gives them; -1 for a
    #: field it does not estimate (sensor_msgs/Imu); empty: unknown (all-zero covariances).
    #: The driver's ``imu_variances`` parameter sets them for a robot's own IMU.
    variances: tuple = ()
    #: For motion capture: the site on the robot whose pose it reports (its marker).
    tracked: str = ''


@dataclasses.dataclass(frozen=True)
class SafetyLimits:
    """Limits a reading is flagged against (ROBEL's convention: data with units)."""

    #: Flag a joint closer than this to either end of its range (degrees).
    limit_margin_deg: float = 5.0
    #: Flag a joint turning faster than this (rad/s).
    max_velocity: float = math.inf
    #: Flag a servo drawing more than this (mA).
    max_current_ma: float = math.inf
    #: Flag a servo hotter than this (degrees Celsius).
    max_temperature_c: float = math.inf

    @property
    def limit_margin(self) -> float:
        """:attr:`limit_margin_deg` in radians."""
        return math.radians(self.limit_margin_deg)


@dataclasses.dataclass(frozen=True)
class RobotDescription:
    """What a robot is, independent of how it is simulated or driven."""

    name: str
    #: Actuated joints in command order (the order of ``joint_states`` and of every command).
    joints: tuple
    #: ``[len(joints), 2]`` mechanical range of each joint (rad): ``low, high``.
    joint_range: np.ndarray
    #: Seconds between control steps.
    control_period: float
    #: Steps after which an episode is cut (the task's time limit).
    max_episode_steps: int
    #: Joint targets that hold the robot safe and still (a stale command stream gets these).
    hold_pose: np.ndarray
    #: Joint positions every episode starts from.
    reset_pose: np.ndarray
    #: Sensor key -> :class:`Sensor`.
    sensors: dict
    safety: SafetyLimits = SafetyLimits()
    #: Which sensors each node of the graph reads: node -> sensor keys (``policy_pixels``: the
    #: policy of the pixel task, where the robot has one).
    readers: dict = dataclasses.field(default_factory=dict)
    #: Joint targets of a safe rest while a person resets the robot (a crouch); None: the
    #: hold pose.
    rest_pose: np.ndarray | None = None
    #: The names a URDF of the robot gives its joints, in :attr:`joints` order (what a
    #: ros2_control stack's ``joint_states`` carries); empty where none is public.
    urdf_joints: tuple = ()
    #: Its MuJoCo scene, as parts of a path under ``sac_robot/robots/assets`` (the model its
    #: simulation runs and its URDF is generated from).
    scene: tuple = ()
    #: ``module:function`` giving the positions of the joints no sensor measures (a closed
    #: chain's passive joints) from the measured ones (joint name -> position); '': none.
    passive_joints: str = ''
    #: Sensors the pixel task's policy node reads for the learner only (their observation keys):
    #: no network acts on them (``SACConfig.privileged``).
    privileged: tuple = ()

    def sensor_readers(self, nodes, pixels: bool = False) -> dict:
        """Sensor topic -> how many of ``nodes`` read it.

        With ``pixels`` the policy reads as ``policy_pixels`` does.
        """
        counts = {}
        for node in nodes:
            role = 'policy_pixels' if pixels and node == 'policy' else node
            if role not in self.readers:
                raise KeyError(f'{self.name}: no node {role!r} reads sensors (readers: '
                               f'{", ".join(self.readers)})')
            for key in self.readers[role]:
                topic = self.sensors[key].topic
                counts[topic] = counts.get(topic, 0) + 1
        return counts

    @property
    def control_rate(self) -> float:
        """Control steps per second (Hz)."""
        return 1.0 / self.control_period

    def joint_index(self, name: str) -> int:
        """Position of joint ``name`` in :attr:`joints`."""
        try:
            return self.joints.index(name)
        except ValueError:
            raise KeyError(f'{self.name} has no joint {name!r}; its joints: '
                           f'{", ".join(self.joints)}') from None


def _frozen(array) -> np.ndarray:
    array = np.array(array, np.float64)
    array.flags.writeable = False
    return array


#: D'Claw (SAC paper 7.3, ROBOTS.md): fingers a, b, c; joints 0 (top, swings in/out), 1, 2
#: (bend), each a Dynamixel X-series servo; the valve encoder is the valve motor's servo.
DCLAW_JOINTS = tuple(f'{finger}_j{index}' for finger in 'abc' for index in range(3))
DCLAW = RobotDescription(
    name='dclaw',
    joints=DCLAW_JOINTS,
    # The mechanical limits, as in dclaw.xml: J0 -0.45..1.35, J1 and J2 -2..2.
    joint_range=_frozen(np.tile([[-0.45, 1.35], [-2.0, 2.0], [-2.0, 2.0]], (3, 1))),
    control_period=0.1,  # 10 Hz, the public task's rate
    max_episode_steps=40,  # 4 s
    # The public reset pose [0, -pi/3, pi/3] per finger, which also holds the hand.
    hold_pose=_frozen(np.tile([0.0, -np.pi / 3, np.pi / 3], 3)),
    reset_pose=_frozen(np.tile([0.0, -np.pi / 3, np.pi / 3], 3)),
    sensors={
        'joints': Sensor('joint_states', 'sensor_msgs/JointState', 'mount', DCLAW_JOINTS),
        'valve': Sensor('valve/joint_states', 'sensor_msgs/JointState', 'valve', ('valve',)),
        'camera': Sensor('camera/image_raw', 'sensor_msgs/Image', 'valve_camera'),
    },
    scene=('dclaw', 'scene_valve.xml'),
    # Logged per step in the public task: 5 degrees from a limit, 1 rad/s, 200 mA.
    safety=SafetyLimits(limit_margin_deg=5.0, max_velocity=1.0, max_current_ma=200.0,
                        max_temperature_c=70.0),
    # The state task's policy sees the valve; the pixel task's sees the camera instead (its
    # node reads the valve too, for the learner only: the agent's `privileged` keys).
    readers={'policy': ('joints', 'valve'), 'policy_pixels': ('joints', 'camera', 'valve'),
             'reward_estimator': ('joints', 'valve'), 'safety': ('joints',)},
    privileged=('valve',),
)

LEGS = ('fl', 'bl', 'fr', 'br')
MINITAUR_MOTORS = tuple(f'{leg}_{side}' for leg in LEGS for side in 'ab')
#: The standing pose: swing 0, extension 1.3 rad on every leg, so both motors of a leg at 1.3.
MINITAUR_STANDING_EXTENSION = 1.3
MINITAUR = RobotDescription(
    name='minitaur',
    joints=MINITAUR_MOTORS,
    # Motor angles from the upper leg pointing down (minitaur.xml's hinge ranges).
    joint_range=_frozen(np.tile([[-1.0, 3.14]], (8, 1))),
    control_period=0.01,  # 100 Hz
    max_episode_steps=500,  # the paper's episodes
    hold_pose=_frozen(np.full(8, MINITAUR_STANDING_EXTENSION)),
    reset_pose=_frozen(np.full(8, MINITAUR_STANDING_EXTENSION)),
    sensors={
        'joints': Sensor('joint_states', 'sensor_msgs/JointState', 'base_link',
                         MINITAUR_MOTORS),
        'imu': Sensor('imu/data', 'sensor_msgs/Imu', 'imu'),
        'mocap': Sensor('mocap/pose', 'geometry_msgs/PoseStamped', 'world', tracked='mocap'),
    },
    scene=('minitaur', 'scene_flat.xml'),
    # The knees close each leg's five-bar linkage: no encoder, computed from the motors.
    passive_joints='sac_robot.robots.minitaur:knee_positions',
    # Its falls end episodes (the task's roll, pitch and height limits); the motors' own limits.
    safety=SafetyLimits(limit_margin_deg=0.0, max_velocity=60.0),
    # Proprioception for the policy; the reward and the falls need the motion capture too.
    readers={'policy': ('joints', 'imu'), 'reward_estimator': ('joints', 'imu', 'mocap'),
             'safety': ('joints', 'imu', 'mocap')},
    # Both motors of every leg at extension 2.0: the base about 0.14 m up (0.20 standing).
    rest_pose=_frozen(np.full(8, 2.0)),
    # The public Minitaur URDF's motor joints (L and R: our a and b motors of a leg).
    urdf_joints=tuple(f'motor_{leg}{side}_joint' for leg in
                      ('front_left', 'back_left', 'front_right', 'back_right') for side in 'LR'),
)

#: Every robot, by name: the one registry line a new robot adds.
ROBOTS = {description.name: description for description in (DCLAW, MINITAUR)}


def describe(robot: str) -> RobotDescription:
    """The description of ``robot``, with the known names in the error."""
    try:
        return ROBOTS[robot]
    except KeyError:
        raise KeyError(f'unknown robot {robot!r}; known: {", ".join(ROBOTS)}') from None
