# SPDX-License-Identifier: Apache-2.0
"""Task rewards as named terms, computed by pure functions that work on one step or a batch.

The environments, the reward-estimator node and offline relabelling of a replay buffer or a bag
all call these, so the reward is defined once. Each returns a dict ``term -> array`` whose
values sum to the reward (ROBEL's convention).
"""

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
