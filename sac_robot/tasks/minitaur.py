# SPDX-License-Identifier: Apache-2.0
"""Minitaur walking (SAC paper Section 7.2): walk forward, from proprioception only.

``sac_robot/MinitaurWalk-v0``: control at 100 Hz (5 physics steps of 2 ms), at most 500 steps
(5 s). The robot starts standing at the origin facing +x.

Action (8 numbers in [-1, 1]): swing and extension residuals of each leg around the standing
pose, ``swing = swing_range * a``, ``extension = 1.3 + extension_range * a`` (rad; 0.5 and 0.5 by
default), mapped to the leg's two motors as ``a = e - s``, ``b = e + s``
(:func:`sac_robot.robots.minitaur.leg_to_motors`) and tracked by the PD servos:

=====  ===========================
index  value
=====  ===========================
0-3    swing of legs fl, bl, fr, br
4-7    extension of legs fl, bl, fr, br
=====  ===========================

Observation (112 numbers): the current observation ``o_t``, the past five observations
``o_{t-1} .. o_{t-5}`` and the past five actions ``a_{t-1} .. a_{t-5}``, in that order; at the
start of an episode the past is filled with ``o_0`` and zero (standing) actions. Each ``o`` is:

=====  =====================================================  =====
index  value                                                  unit
=====  =====================================================  =====
0-7    motor angles fl_a, fl_b, bl_a, bl_b, fr_a, fr_b, ...   rad
8, 9   base roll, pitch (IMU)                                 rad
10,11  base roll rate, pitch rate (gyro)                      rad/s
=====  =====================================================  =====

Yaw is left out: it drifts on the real IMU. Reward: the named terms of
:func:`sac_robot.rewards.minitaur_walk_reward` (forward velocity from consecutive motion-capture
positions, minus penalties for action acceleration, pitch and front legs under the body) in
``info['reward_terms']``. Termination: |roll| or |pitch| over 0.4 rad or the base below 0.13 m
(its centre, from the motion-capture marker's height, as the safety node measures it).

Options: ``latency`` (s) of the commands, ``randomize`` (domain randomisation at every reset:
``True`` for ROBOTS.md's ranges or a dict of keyword arguments to
:meth:`~sac_robot.robots.minitaur.MinitaurSim.randomize`, plus ``latency=(low, high)``), and
``pretraining`` for the SQL paper's pretraining reward (speed in any direction).
"""

import math

import gymnasium
import numpy as np
from gymnasium import spaces

from sac_robot.rewards import minitaur_safety, minitaur_walk_reward
from sac_robot.robots.minitaur import (MOCAP_HEIGHT, STANDING_EXTENSION, STANDING_SWING,
                                       MinitaurSim, front_feet_forward, leg_to_motors)

OBSERVATION_SIZE, ACTION_SIZE = 12, 8


def measurement(motor_angles, roll: float, pitch: float, roll_rate: float,
                pitch_rate: float) -> np.ndarray:
    """One observation ``o`` (12 numbers) from what the robot measures."""
    measured = np.empty(OBSERVATION_SIZE)
    measured[:8] = motor_angles
    measured[8:] = roll, pitch, roll_rate, pitch_rate
    return measured


def action_to_motors(action, swing_range: float = 0.5,
                     extension_range: float = 0.5) -> np.ndarray:
    """Map actions in [-1, 1]^8 (``[..., 8]``) to the eight motor targets (rad)."""
    action = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
    swing = STANDING_SWING + swing_range * action[..., :4]
    extension = STANDING_EXTENSION + extension_range * action[..., 4:]
    return leg_to_motors(swing, extension)


def clip_action(values: list) -> list:
    """An action's numbers clipped to [-1, 1], on floats."""
    return [1.0 if x > 1.0 else (-1.0 if x < -1.0 else x) for x in values]


def motor_targets(action: list, swing_range: float = 0.5, extension_range: float = 0.5) -> list:
    """:func:`action_to_motors` of one clipped action, on Python floats (the per-step path).

    At 100 Hz numpy's per-call cost on arrays of eight is more than the arithmetic.
    """
    motors = []
    for s, e in zip(action[:4], action[4:]):
        s, e = STANDING_SWING + swing_range * s, STANDING_EXTENSION + extension_range * e
        motors += (e - s, e + s)
    return motors


class HistoryStack:
    """The policy's input ``[o_t .. o_{t-h}, a_{t-1} .. a_{t-h}]``.

    A ring buffer: :meth:`push` writes one observation and one action in place, and
    :meth:`observation` gathers them in order with one precomputed index (``take``), cheaper
    than shifting the whole vector at every step. The environment and the policy node both
    build observations with this class, so the two cannot disagree.
    """

    def __init__(self, observation_size: int, action_size: int, history: int):
        if history < 0:
            raise ValueError(f'history must be >= 0, got {history}')
        self.observation_size, self.action_size, self.history = (
            observation_size, action_size, history)
        o, a, slots = observation_size, action_size, history + 1
        # Observation slots 0..history, then action slots 0..history-1, in the policy's float32
        # (values are only moved, never computed on, so rounding on the way in is the same).
        self._buffer = np.zeros(slots * o + history * a, np.float32)
        self._action_base = slots * o
        # The order of the slots depends only on the number of pushes modulo both ring
        # lengths: precompute the gathering index for each phase.
        period = math.lcm(slots, max(history, 1))
        self._orders = []
        for count in range(period):
            newest_o, newest_a = count % slots, count % max(history, 1)
            index = [((newest_o - k) % slots) * o + i for k in range(slots) for i in range(o)]
            index += [self._action_base + ((newest_a - k) % history) * a + i
                      for k in range(history) for i in range(a)]
            self._orders.append(np.array(index, np.intp))
        self._count = 0

    def reset(self, observation):
        """Start an episode: the past is ``observation`` repeated and zero actions."""
        slots = self.history + 1
        self._buffer[:self._action_base] = np.tile(
            np.asarray(observation, np.float32), slots)
        self._buffer[self._action_base:] = 0.0
        self._count = 0

    def push(self, observation, action):
        """Append ``observation`` ``o_t``, reached after ``action`` ``a_{t-1}``."""
        count = self._count = (self._count + 1) % len(self._orders)
        o = self.observation_size
        start = (count % (self.history + 1)) * o
        self._buffer[start:start + o] = observation
        if self.history:
            a = self.action_size
            start = self._action_base + (count % self.history) * a
            self._buffer[start:start + a] = action

    def observation(self) -> np.ndarray:
        """The stacked vector (float32, a new array)."""
        return self._buffer.take(self._orders[self._count])


class MinitaurWalkEnv(gymnasium.Env):
    """Walk forward as fast as possible without falling."""

    metadata = {'render_modes': ['rgb_array'], 'render_fps': 100}

    def __init__(self, control_dt: float = 0.01, swing_range: float = 0.5,
                 extension_range: float = 0.5, history: int = 5, latency: float = 0.0,
                 randomize: bool | dict = False, pretraining: bool = False,
                 reward_weights: dict | None = None, limits: dict | None = None,
                 render_mode: str | None = None):
        self.robot = MinitaurSim(latency=latency)
        self.substeps = int(round(control_dt / self.robot.timestep))
        if self.substeps < 1 or abs(self.substeps * self.robot.timestep - control_dt) > 1e-9:
            raise ValueError(f'control_dt {control_dt} s is not a whole number of physics steps '
                             f'of {self.robot.timestep} s')
        self.control_dt = control_dt
        self.swing_range, self.extension_range = swing_range, extension_range
        self.history, self.latency = history, latency
        self.randomization = ({} if randomize is True else dict(randomize)) if randomize else None
        self.pretraining, self.reward_weights, self.limits = pretraining, reward_weights, limits
        self.render_mode = render_mode
        self.action_space = spaces.Box(-1.0, 1.0, (ACTION_SIZE,), np.float32)
        size = (history + 1) * OBSERVATION_SIZE + history * ACTION_SIZE
        self.observation_space = spaces.Box(-np.inf, np.inf, (size,), np.float32)
        self._stack = HistoryStack(OBSERVATION_SIZE, ACTION_SIZE, history)
        self._recent = ([0.0] * ACTION_SIZE,) * 3  # a_t, a_{t-1}, a_{t-2}

    def action_to_motors(self, action) -> np.ndarray:
        """Map an action in [-1, 1]^8 to the eight motor targets (rad)."""
        return action_to_motors(action, self.swing_range, self.extension_range)

    def reset(self, *, seed=None, options=None):
        """Stand at the origin (after drawing new physics when randomising)."""
        super().reset(seed=seed)
        if self.randomization is not None:
            kwargs = dict(self.randomization)
            latency = kwargs.pop('latency', (0.0, 0.02))
            self.robot.randomize(self.np_random, **kwargs)
            self.robot.latency = (self.latency if latency is None
                                  else float(self.np_random.uniform(*latency)))
        self.robot.reset()
        measured, self._start = self.robot.readings()
        self._stack.reset(measured)
        self._recent = ([0.0] * ACTION_SIZE,) * 3
        self._position = self._start
        return self._stack.observation(), self._info({}, False)

    def step(self, action):
        """Send the motor targets, let the servos track them for one control period.

        The work around the physics is done on Python floats: at 100 Hz a control step is only
        five physics steps, and numpy's per-call cost on arrays of eight would be a large part
        of it (``bench/sim_speed.py`` measures the task layer's share).
        """
        values = action.tolist() if isinstance(action, np.ndarray) else list(action)
        if len(values) != ACTION_SIZE:
            raise ValueError(f'expected an action of {ACTION_SIZE} numbers, got {len(values)}')
        action = clip_action(values)
        self.robot.command(motor_targets(action, self.swing_range, self.extension_range))
        self.robot.step(self.substeps)
        previous = self._position
        measured, position = self.robot.readings()
        self._position = position
        recent = self._recent = (action, *self._recent[:2])  # for the acceleration penalty
        roll, pitch = measured[8], measured[9]
        terms = minitaur_walk_reward(previous, position, self.control_dt, recent, pitch,
                                     front_feet_forward(measured), self.reward_weights,
                                     self.pretraining)
        self._stack.push(measured, action)
        drift = math.hypot(position[0] - self._start[0], position[1] - self._start[1])
        # Height from motion capture, as the safety node on the robot measures it.
        safety = minitaur_safety(roll, pitch, position[2] - MOCAP_HEIGHT, drift, self.limits)
        terminated = bool(safety['tilted'] or safety['low'] or safety['drifted'])
        info = self._info(terms, terminated, safety)
        reward = float(sum(terms.values()))
        return self._stack.observation(), reward, terminated, False, info

    def _info(self, terms: dict, terminated: bool, safety: dict | None = None) -> dict:
        return {'reward_terms': terms, 'position': np.array(self._position), 'fell': terminated,
                **(safety or {})}

    def render(self):
        """Return a 480 x 640 view from the camera that follows the robot."""
        from sac_robot.robots.rendering import make_renderer
        if getattr(self, '_renderer', None) is None:
            self._renderer = make_renderer(self.robot.model, 480, 640)
        self._renderer.update_scene(self.robot.data, 'track')
        return self._renderer.render()

    def close(self):
        """Release the renderer."""
        if getattr(self, '_renderer', None) is not None:
            self._renderer.close()
            self._renderer = None
