# SPDX-License-Identifier: Apache-2.0
"""Task rewards as named terms, computed by pure functions that work on one step or a batch.

The environments, the reward-estimator node and offline relabelling of a replay buffer or a bag
all call these, so the reward is defined once. Each returns a dict ``term -> array`` whose
values sum to the reward (ROBEL's convention).
"""

import math

import numpy as np


def wrap_angle(angle):
    """Wrap angles to [-pi, pi)."""
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


def dclaw_turn_reward(joint_positions, joint_velocities, valve_angle, target_angle,
                      reset_pose) -> dict:
    """Valve-turning reward terms (public D'Claw convention, ROBOTS.md).

    ``-5 |error| - ||q - q_reset|| - ||joint velocities above 0.5 rad/s||
    + 10 [|error| < 0.25] + 50 [|error| < 0.10]``, ``error`` the valve angle's difference to the
    target wrapped to [-pi, pi]. Arrays may carry any leading batch shape (joints last).
    """
    q = np.asarray(joint_positions, np.float64)
    v = np.asarray(joint_velocities, np.float64)
    error = np.abs(wrap_angle(np.asarray(valve_angle) - np.asarray(target_angle)))
    fast = np.where(np.abs(v) >= 0.5, v, 0.0)
    return {
        'target_distance': -5.0 * error,
        'pose_difference': -1.0 * np.linalg.norm(q - reset_pose, axis=-1),
        'joint_velocity': -1.0 * np.linalg.norm(fast, axis=-1),
        'bonus_small': 10.0 * (error < 0.25),
        'bonus_big': 50.0 * (error < 0.10),
    }


def dclaw_safety(joint_positions, joint_velocities, joint_range, margin: float = np.radians(5),
                 max_velocity: float = 1.0) -> dict:
    """Per-joint safety flags of the D'Claw (ROBOTS.md).

    ``near_limit``: within ``margin`` of a joint limit; ``too_fast``: turning faster than
    ``max_velocity`` rad/s. Batched like :func:`dclaw_turn_reward`.
    """
    q = np.asarray(joint_positions)
    low, high = np.asarray(joint_range)[:, 0], np.asarray(joint_range)[:, 1]
    return {'near_limit': (q < low + margin) | (q > high - margin),
            'too_fast': np.abs(np.asarray(joint_velocities)) > max_velocity}


#: Default weights of the Minitaur walking reward's terms (see :func:`minitaur_walk_reward`).
MINITAUR_WEIGHTS = {'forward_velocity': 1.0, 'alive': 0.1, 'action_acceleration': 0.002,
                    'pitch': 1.0, 'front_legs_under': 10.0}


def minitaur_walk_reward(previous_position, position, dt, actions, pitch, front_feet_x,
                         weights: dict | None = None, pretraining: bool = False) -> dict:
    """Minitaur walking reward terms (SAC paper Section 7.2).

    - ``forward_velocity``: ``(x_t - x_{t-1}) / dt`` from consecutive motion-capture positions
      (``[..., 3]``, m); with ``pretraining`` the SQL paper's pretraining reward instead, the
      horizontal speed in any direction.
    - ``alive``: a constant per step, so that ending an episode early by falling never pays off
      against the penalties and the (negative) entropy target of automatic temperature tuning.
    - ``action_acceleration``: minus the squared finite-difference acceleration
      ``a_t - 2 a_{t-1} + a_{t-2}`` of the last three actions (``[..., 3, 8]``, newest first).
    - ``pitch``: minus the squared base pitch (rad).
    - ``front_legs_under``: minus how far (m) the front feet (``front_feet_x``, ``[..., 2]``,
      relative to their hips, base frame) reach more than 5 cm behind the hip, under the body.
    """
    w = MINITAUR_WEIGHTS if weights is None else {**MINITAUR_WEIGHTS, **weights}
    if type(pitch) is float or np.ndim(pitch) == 0:
        # One step (the environment at 100 Hz): the same terms on Python floats, which is
        # several times faster than numpy on arrays of eight.
        dx = float(position[0]) - float(previous_position[0])
        dy = float(position[1]) - float(previous_position[1])
        a_t, a_1, a_2 = actions
        if type(a_t) is not list:
            a_t, a_1, a_2 = np.asarray(actions, np.float64).tolist()
        squared = 0.0
        for x, y, z in zip(a_t, a_1, a_2):
            x += z - 2 * y
            squared += x * x
        f0, f1 = front_feet_x
        return {
            'forward_velocity': w['forward_velocity'] * float(
                math.hypot(dx, dy) if pretraining else dx) / dt,
            'alive': float(w['alive']),
            'action_acceleration': -w['action_acceleration'] * squared,
            'pitch': -w['pitch'] * float(pitch) ** 2,
            'front_legs_under': -w['front_legs_under'] * float(
                max(0.0, -f0 - 0.05) + max(0.0, -f1 - 0.05)),
        }
    displacement = np.subtract(position, previous_position)
    if pretraining:
        velocity = np.hypot(displacement[..., 0], displacement[..., 1]) / dt
    else:
        velocity = displacement[..., 0] / dt
    a = np.asarray(actions, np.float64)
    acceleration = a[..., 0, :] - 2 * a[..., 1, :] + a[..., 2, :]
    under = np.maximum(0.0, np.negative(front_feet_x) - 0.05).sum(axis=-1)
    return {
        'forward_velocity': w['forward_velocity'] * velocity,
        'alive': np.full(np.shape(velocity), w['alive']),
        'action_acceleration': -w['action_acceleration'] * np.square(acceleration).sum(axis=-1),
        'pitch': -w['pitch'] * np.square(pitch),
        'front_legs_under': -w['front_legs_under'] * under,
    }


#: Default limits of :func:`minitaur_safety`: rad, rad, m, m.
MINITAUR_LIMITS = {'roll': 0.4, 'pitch': 0.4, 'height': 0.13, 'drift': np.inf}


def minitaur_safety(roll, pitch, height, drift, limits: dict | None = None) -> dict:
    """Minitaur fall and drift flags (ROBOTS.md), batched like the rewards.

    ``tilted``: |roll| or |pitch| over the limit (rad); ``low``: base height under the limit (m);
    ``drifted``: horizontal distance from the start over the limit (m).
    """
    lim = MINITAUR_LIMITS if limits is None else {**MINITAUR_LIMITS, **limits}
    if type(roll) is float or np.ndim(roll) == 0:  # one step: plain comparisons
        return {'tilted': abs(roll) > lim['roll'] or abs(pitch) > lim['pitch'],
                'low': height < lim['height'], 'drifted': drift > lim['drift']}
    return {'tilted': (np.abs(roll) > lim['roll']) | (np.abs(pitch) > lim['pitch']),
            'low': np.asarray(height) < lim['height'],
            'drifted': np.asarray(drift) > lim['drift']}
