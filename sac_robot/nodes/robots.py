# SPDX-License-Identifier: Apache-2.0
"""What each robot means to the graph: sensor topics, observation, command, reward, episode end.

The numbers come from the same core functions as the gymnasium tasks
(:mod:`sac_robot.tasks`, :mod:`sac_robot.rewards`), so the graph and the environments cannot
disagree: the policy node's observation is the environment's, the reward estimator's reward is
the environment's. A profile only reads messages and calls those.
"""

import numpy as np
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import Image, Imu, JointState

from sac_robot.algorithms.observations import spec_from_space
from sac_robot.nodes.convert import (MessageError, read_image, read_imu, read_joint_state,
                                     read_pose)
from sac_robot.rewards import (dclaw_safety, dclaw_turn_reward, minitaur_safety,
                               minitaur_walk_reward)
from sac_robot.robots import minitaur as minitaur_robot
from sac_robot.robots.description import DCLAW, MINITAUR
from sac_robot.tasks import dclaw as dclaw_task
from sac_robot.tasks import minitaur as minitaur_task


#: The message classes of the descriptions' sensor message names.
MESSAGE_TYPES = {'sensor_msgs/JointState': JointState, 'sensor_msgs/Imu': Imu,
                 'sensor_msgs/Image': Image, 'geometry_msgs/PoseStamped': PoseStamped}


def sensor_topics(description) -> dict:
    """Sensor key -> ``(topic, message class)`` of a robot description."""
    return {key: (sensor.topic, MESSAGE_TYPES[sensor.message])
            for key, sensor in description.sensors.items()}


class _Profile:
    """What every robot's profile does the same way; its facts come from its description."""

    #: Episode-ending limits the safety node takes as parameters ``limits.*``: name ->
    #: (default, unit).
    end_limits = {}

    def set_end_limits(self, values: dict) -> None:
        """Take the safety node's ``limits.*`` (:attr:`end_limits`)."""
        del values

    def measure(self, msgs: dict) -> dict:
        """A measurement from whichever of the sensor messages are present.

        The profile's ``read`` (checked readings), then its ``measurement``.
        """
        return self.measurement(self.read(msgs))


class MinitaurProfile(_Profile):
    """Minitaur walking: motor encoders, IMU, motion capture; 100 Hz, 500-step episodes."""

    description = MINITAUR
    name = description.name
    joint_names = description.joints
    control_period = description.control_period
    max_episode_steps = description.max_episode_steps
    action_size = minitaur_task.ACTION_SIZE
    #: Sensor topics (relative to the robot's namespace) and their message types.
    sensors = sensor_topics(description)
    policy_sensors = description.readers['policy']
    #: Its falls and drift (:func:`sac_robot.rewards.minitaur_safety`; drift 0: none).
    end_limits = {'roll': (0.4, 'rad'), 'pitch': (0.4, 'rad'), 'height': (0.13, 'm'),
                  'drift': (0.0, 'm; 0: none')}
    reward_sensors = description.readers['reward_estimator']
    safety_sensors = description.readers['safety']

    def __init__(self, history: int = 5, swing_range: float = 0.5,
                 extension_range: float = 0.5, reward_weights: dict | None = None,
                 limits: dict | None = None, pretraining: bool = False, pixels: bool = False,
                 **_):
        if pixels:
            raise MessageError("the Minitaur has no camera: pixels is for the D'Claw")
        self.env_settings = {'swing_range': swing_range, 'extension_range': extension_range,
                             'history': history}
        self.swing_range, self.extension_range = swing_range, extension_range
        self.history = history
        #: The policy's observation (an int: a flat vector; see sac_robot.algorithms.observations).
        self.observation_spec = ((history + 1) * minitaur_task.OBSERVATION_SIZE
                                 + history * self.action_size)
        self.reward_weights, self.limits, self.pretraining = reward_weights, limits, pretraining

    def set_end_limits(self, values: dict) -> None:
        """The fall and drift limits of :attr:`end_limits` (a drift of 0: no drift limit)."""
        self.limits = {**values, 'drift': values['drift'] if values['drift'] > 0 else np.inf}

    def read(self, msgs: dict) -> dict:
        """The readings of whichever sensor messages are present, checked.

        ``joints``: ``(angles [8], velocities [8])`` in :attr:`joint_names` order; ``imu``:
        ``(quaternion [w, x, y, z], body rates [3])``; ``mocap``: ``(position [3], quaternion)``.
        A driver in the reader's process hands over the same tuples directly (its
        ``readings``). Raises :class:`MessageError` for a message that cannot be used.
        """
        readings = {}
        if 'joints' in msgs:
            readings['joints'] = read_joint_state(msgs['joints'], self.joint_names,
                                                  self.sensors['joints'][0])
        if 'imu' in msgs:
            readings['imu'] = read_imu(msgs['imu'], self.sensors['imu'][0])
        if 'mocap' in msgs:
            readings['mocap'] = read_pose(msgs['mocap'], self.sensors['mocap'][0])
        return readings

    def measurement(self, readings: dict) -> dict:
        """A measurement from sensor readings (:meth:`read`)."""
        out = {}
        if 'joints' in readings:
            out['motors'], out['motor_velocities'] = readings['joints']
        if 'imu' in readings:
            quaternion, rates = readings['imu']
            out['roll'], out['pitch'] = minitaur_robot.roll_pitch(quaternion.tolist())
            out['roll_rate'], out['pitch_rate'] = float(rates[0]), float(rates[1])
        if 'mocap' in readings:
            out['position'], out['orientation'] = readings['mocap']
        return out

    def observer(self):
        """A fresh observation builder (history stacking as in the environment)."""
        return _MinitaurObserver(self.history)

    def action_to_command(self, action) -> np.ndarray:
        """The eight motor targets (rad) for an action in [-1, 1]^8."""
        values = np.asarray(action, np.float64).tolist()
        if len(values) != self.action_size:
            raise ValueError(f'expected {self.action_size} action values, got {len(values)}')
        values = minitaur_task.clip_action(values)
        return np.array(minitaur_task.motor_targets(values, self.swing_range,
                                                    self.extension_range))

    def hold_command(self) -> np.ndarray:
        """The standing pose's motor targets: what a stale command stream is replaced by."""
        return self.action_to_command(np.zeros(self.action_size))

    def reward_terms(self, before: dict, after: dict, actions) -> dict:
        """Reward terms of the step from measurement ``before`` to ``after``.

        ``actions``: ``[3, 8]``, the step's action then the two before it (zeros before the
        episode's start).
        """
        feet = minitaur_robot.feet_forward(after['motors'])[0::2]
        return minitaur_walk_reward(before['position'], after['position'],
                                    self.control_period, actions, after['pitch'], feet,
                                    self.reward_weights, self.pretraining)

    def end_reason(self, measurement: dict, start: dict) -> str | None:
        """Why the episode must end at ``measurement`` (a fall), or ``None``."""
        drift = float(np.linalg.norm(measurement['position'][:2] - start['position'][:2]))
        height = float(measurement['position'][2]) - minitaur_robot.MOCAP_HEIGHT
        flags = minitaur_safety(measurement['roll'], measurement['pitch'], height, drift,
                                self.limits)
        if flags['tilted']:
            return (f'fall: roll {measurement["roll"]:.2f} rad, pitch '
                    f'{measurement["pitch"]:.2f} rad')
        if flags['low']:
            return f'fall: base {height:.3f} m above the ground'
        if flags['drifted']:
            return f'drift: {drift:.2f} m from the start'
        return None


class _MinitaurObserver:
    def __init__(self, history: int):
        self.stack = minitaur_task.HistoryStack(minitaur_task.OBSERVATION_SIZE,
                                                minitaur_task.ACTION_SIZE, history)

    @staticmethod
    def _o(m: dict) -> np.ndarray:
        return minitaur_task.measurement(m['motors'], m['roll'], m['pitch'], m['roll_rate'],
                                         m['pitch_rate'])

    def reset(self, measurement: dict) -> np.ndarray:
        self.stack.reset(self._o(measurement))
        return self.stack.observation()

    def push(self, measurement: dict, action) -> np.ndarray:
        self.stack.push(self._o(measurement), action)
        return self.stack.observation()


class DClawProfile(_Profile):
    """D'Claw valve turning: nine servos, the valve encoder; 10 Hz, 40-step episodes.

    With ``pixels`` the policy sees what ``sac_robot/DClawTurnPixels-v0`` gives it: the 32 x 32
    camera image, joint positions and velocities, and the valve's angle as a privileged key
    (no network reads it; the learner's auxiliary loss and the reward use the encoder).
    """

    description = DCLAW
    name = description.name
    joint_names = description.joints
    control_period = description.control_period
    max_episode_steps = description.max_episode_steps
    action_size = len(description.joints)
    image_size = 32
    camera_frame = description.sensors['camera'].frame
    sensors = sensor_topics(description)
    reward_sensors = description.readers['reward_estimator']
    safety_sensors = description.readers['safety']


    def __init__(self, target_angle: float = np.pi, pixels: bool = False, **_):
        self.target_angle = float(target_angle)
        self.joint_range = self.description.joint_range
        self.pixels = bool(pixels)
        size = self.image_size
        #: The policy's observation: a flat vector, or with pixels the environment's dict.
        self.observation_spec = (spec_from_space(dclaw_task.pixel_observation_space(size))
                                 if self.pixels else dclaw_task.STATE_SIZE)
        self.policy_sensors = self.description.readers['policy_pixels' if self.pixels
                                                       else 'policy']

    def read(self, msgs: dict) -> dict:
        """The readings of whichever sensor messages are present, checked.

        ``joints``: ``(positions [9], velocities [9] or None)`` in :attr:`joint_names` order;
        ``valve``: ``(angle [1], velocity [1] or None)``; ``camera``: ``(image [H, W, 3],)``.
        """
        readings = {}
        if 'joints' in msgs:
            readings['joints'] = read_joint_state(msgs['joints'], self.joint_names,
                                                  self.sensors['joints'][0])
        if 'valve' in msgs:
            readings['valve'] = read_joint_state(msgs['valve'], ('valve',),
                                                 self.sensors['valve'][0])
        if 'camera' in msgs:
            readings['camera'] = (read_image(msgs['camera'], (self.image_size, self.image_size,
                                                              3), self.sensors['camera'][0]),)
        return readings

    def measurement(self, readings: dict) -> dict:
        """A measurement from sensor readings (:meth:`read`)."""
        out = {}
        if 'joints' in readings:
            out['joints'], velocities = readings['joints']
            out['velocities'] = np.zeros(9) if velocities is None else velocities
        if 'valve' in readings:
            out['valve'] = float(readings['valve'][0][0])
        if 'camera' in readings:
            out['image'] = readings['camera'][0]
        return out

    def observer(self):
        """A fresh observation builder."""
        return _DClawPixelObserver() if self.pixels else _DClawObserver(self.target_angle)

    def action_to_command(self, action) -> np.ndarray:
        """The nine joint targets (rad) for an action in [-1, 1]^9."""
        return dclaw_task.DClawTurnEnv.action_to_targets(action)

    def hold_command(self) -> np.ndarray:
        """The reset pose: what a stale command stream is replaced by."""
        return self.description.hold_pose.copy()

    def reward_terms(self, before: dict, after: dict, actions) -> dict:
        """Reward terms at measurement ``after`` (the valve-turning reward needs no history)."""
        return dclaw_turn_reward(after['joints'], after['velocities'], after['valve'],
                                 self.target_angle, self.description.reset_pose)

    def end_reason(self, measurement: dict, start: dict) -> str | None:
        """The hand has no terminal states; only the time limit ends its episodes."""
        del start
        limits = self.description.safety
        flags = dclaw_safety(measurement['joints'], measurement['velocities'], self.joint_range,
                             limits.limit_margin, limits.max_velocity)
        measurement['unsafe_joints'] = int(np.sum(flags['near_limit'] | flags['too_fast']))
        return None


class _DClawObserver:
    def __init__(self, target_angle: float):
        self.target_angle = target_angle

    def reset(self, measurement: dict) -> np.ndarray:
        return dclaw_task.state_observation(measurement['joints'], measurement['valve'],
                                            np.zeros(9), self.target_angle)

    def push(self, measurement: dict, action) -> np.ndarray:
        return dclaw_task.state_observation(measurement['joints'], measurement['valve'],
                                            action, self.target_angle)


class _DClawPixelObserver:
    """The pixel task's dict observation (as DClawTurnEnv's with pixels)."""

    @staticmethod
    def reset(measurement: dict) -> dict:
        return dclaw_task.pixel_observation(measurement['image'], measurement['joints'],
                                            measurement['velocities'], measurement['valve'])

    def push(self, measurement: dict, action) -> dict:
        del action
        return self.reset(measurement)


PROFILES = {'minitaur': MinitaurProfile, 'dclaw': DClawProfile}


def profile(robot: str, **settings):
    """The profile of ``robot`` ('minitaur' or 'dclaw')."""
    if robot not in PROFILES:
        raise MessageError(f'unknown robot {robot!r}; known: {", ".join(PROFILES)}')
    return PROFILES[robot](**settings)
