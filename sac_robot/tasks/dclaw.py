# SPDX-License-Identifier: Apache-2.0
"""D'Claw valve turning (SAC paper Section 7.3), from state or from pixels.

``sac_robot/DClawTurn-v0``: control at 10 Hz (40 physics steps of 2.5 ms), 40-step episodes.
The valve starts at a random angle each episode; the target is fixed (default pi) or random.
Success: the valve within 0.1 rad of the target.

Action (9 numbers in [-1, 1]) mapped linearly onto each finger's joint ranges:

=====  ======================  ===============
index  joint                   range (rad)
=====  ======================  ===============
0      finger a, top (j0)      -0.48 .. 0.48
1      finger a, middle (j1)   -pi/3 .. pi/3
2      finger a, bottom (j2)   -pi/2 .. pi/2
3-5    finger b, j0..j2        as above
6-8    finger c, j0..j2        as above
=====  ======================  ===============

Observation (21 numbers):

=======  =====================================  =====
index    value                                  unit
=======  =====================================  =====
0-8      joint positions (a j0..j2, b, c)       rad
9, 10    cos, sin of the valve angle            -
11-19    the last action                        [-1, 1]
20       valve angle minus target, wrapped      rad
=======  =====================================  =====

``sac_robot/DClawTurnPixels-v0`` observes a dict instead: ``pixels`` (32 x 32 RGB from the
camera looking at the valve), ``joints`` (9 positions, rad), ``velocities`` (9, rad/s) and
``valve`` (cos and sin of the valve's angle, from its encoder). The policy must not act on
``valve``: it is there for learning (the reward uses it; the pixel task's agent settings list
it as ``privileged``, so no network reads it and the image features learn to predict it).
With ``frames=k`` the ``pixels`` are the last k images stacked along the channels (``32 x 32
x 3k``, the newest last; after a reset the first image repeated), so that the policy can see
the valve move.
"""

import gymnasium
import numpy as np
from gymnasium import spaces

from sac_robot.rewards import dclaw_safety, dclaw_turn_reward, wrap_angle
from sac_robot.robots.dclaw import RESET_POSE, DClawSim

#: Half-ranges of the action mapping, per finger joint: top, middle, bottom (ROBOTS.md).
ACTION_RANGE = np.tile([0.48, np.pi / 3, np.pi / 2], 3)
SUCCESS_THRESHOLD = 0.1
#: Length of the state observation (the table above).
STATE_SIZE = 21


def state_observation(joint_positions, valve_angle: float, last_action,
                      target_angle: float) -> np.ndarray:
    """The 21-number observation from what the hand measures (the table above)."""
    error = wrap_angle(valve_angle - target_angle)
    return np.concatenate([joint_positions, [np.cos(valve_angle), np.sin(valve_angle)],
                           last_action, [error]]).astype(np.float32)


def pixel_observation_space(image_size: int = 32, frames: int = 1) -> spaces.Dict:
    """The pixel task's observation: the camera image(s), joint positions and velocities."""
    return spaces.Dict({
        'pixels': spaces.Box(0, 255, (image_size, image_size, 3 * frames), np.uint8),
        'joints': spaces.Box(-np.inf, np.inf, (9,), np.float32),
        'velocities': spaces.Box(-np.inf, np.inf, (9,), np.float32),
        'valve': spaces.Box(-1.0, 1.0, (2,), np.float32)})


def pixel_observation(image, joint_positions, joint_velocities, valve_angle: float) -> dict:
    """The pixel task's observation from what the hand, its camera and the valve measure."""
    return {'pixels': image, 'joints': np.asarray(joint_positions, np.float32),
            'velocities': np.asarray(joint_velocities, np.float32),
            'valve': np.array([np.cos(valve_angle), np.sin(valve_angle)], np.float32)}


class DClawTurnEnv(gymnasium.Env):
    """Turn the valve so that its red spoke points at the target angle."""

    metadata = {'render_modes': ['rgb_array'], 'render_fps': 10}

    def __init__(self, target: str = 'fixed', target_angle: float = np.pi,
                 substeps: int = 40, pixels: bool = False, image_size: int = 32,
                 frames: int = 1, render_mode: str | None = None):
        if target not in ('fixed', 'random'):
            raise ValueError("target must be 'fixed' or 'random'")
        if int(frames) != frames or frames < 1:
            raise ValueError(f'frames must be a whole number >= 1, got {frames!r}')
        self.robot = DClawSim()
        self.target, self.fixed_target = target, float(target_angle)
        self.substeps, self.pixels, self.image_size = substeps, pixels, image_size
        self.frames, self.render_mode = int(frames), render_mode
        self._stack = None  # the last `frames` images, oldest first
        self.action_space = spaces.Box(-1.0, 1.0, (9,), np.float32)
        if pixels:
            self.observation_space = pixel_observation_space(image_size, self.frames)
        else:
            self.observation_space = spaces.Box(-np.inf, np.inf, (STATE_SIZE,), np.float32)
        self.target_angle = self.fixed_target
        self.last_action = np.zeros(9)

    @staticmethod
    def action_to_targets(action) -> np.ndarray:
        """Map actions in [-1, 1] to joint targets (rad), linearly onto ACTION_RANGE."""
        return np.clip(np.asarray(action, np.float64), -1.0, 1.0) * ACTION_RANGE

    def _observation(self, first: bool = False):
        q = self.robot.joint_positions()
        if self.pixels:
            image = self.robot.render(self.image_size, self.image_size)
            if self.frames > 1:
                if first:
                    self._stack = [image] * self.frames
                else:
                    self._stack = self._stack[1:] + [image]
                image = np.concatenate(self._stack, axis=-1)
            return pixel_observation(image, q, self.robot.joint_velocities(),
                                     self.robot.valve_angle())
        return state_observation(q, self.robot.valve_angle(), self.last_action,
                                 self.target_angle)

    def reset(self, *, seed=None, options=None):
        """Hand at the reset pose, valve at a random angle, target fixed or random."""
        super().reset(seed=seed)
        self.target_angle = (self.fixed_target if self.target == 'fixed'
                             else float(self.np_random.uniform(-np.pi, np.pi)))
        self.robot.reset(RESET_POSE, float(self.np_random.uniform(-np.pi, np.pi)))
        self.robot.show_target(self.target_angle)
        self.last_action = np.zeros(9)
        return self._observation(first=True), self._info()

    def step(self, action):
        """Send the joint targets and let the servos track them for one control period."""
        action = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        self.robot.command(self.action_to_targets(action))
        self.robot.step(self.substeps)
        self.last_action = action
        info = self._info()
        reward = float(sum(info['reward_terms'].values()))
        return self._observation(), reward, False, False, info

    def _info(self) -> dict:
        q, v = self.robot.joint_positions(), self.robot.joint_velocities()
        terms = dclaw_turn_reward(q, v, self.robot.valve_angle(), self.target_angle,
                                  RESET_POSE)
        error = float(wrap_angle(self.robot.valve_angle() - self.target_angle))
        safety = dclaw_safety(q, v, self.robot.joint_range)
        return {'reward_terms': {k: float(x) for k, x in terms.items()},
                'angle_error': error, 'success': abs(error) < SUCCESS_THRESHOLD,
                'unsafe_joints': int(np.sum(safety['near_limit'] | safety['too_fast']))}

    def render(self):
        """Return a 256 x 256 view of the valve camera (``render_mode='rgb_array'``)."""
        return self.robot.render(256, 256)

    def close(self):
        """Release the renderer."""
        self.robot.close()
