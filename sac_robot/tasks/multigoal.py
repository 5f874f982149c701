# SPDX-License-Identifier: Apache-2.0
"""The multi-goal didactic task of the SQL paper (Section 5.1, Figure 1).

A point mass on the plane starts at the origin and moves by its action, a velocity bounded to
``[-1, 1]^2``; four goals sit symmetrically at distance 5. The reward is the log of a mixture
of isotropic Gaussians centred on the goals, approximated by its largest component (the form of
the authors' softlearning code), minus an action cost; reaching a goal ends the episode with a
bonus. Episodes last at most 20 steps. The optimal maximum-entropy policy reaches all four
goals; a deterministic one commits to one.

========  =======================  =====
index     observation              unit
========  =======================  =====
0, 1      position x, y            m
========  =======================  =====

========  =======================  =====
index     action                   unit
========  =======================  =====
0, 1      velocity x, y in [-1, 1] m/step
========  =======================  =====
"""

import numpy as np
import gymnasium
from gymnasium import spaces

GOALS = np.array([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0], [0.0, -5.0]])


def multigoal_reward(position: np.ndarray, action: np.ndarray, distance_cost: float = 1.0,
                     action_cost: float = 30.0) -> dict:
    """Return the reward terms for ``position [..., 2]`` and ``action [..., 2]`` (batched).

    ``distance``: minus the squared distance to the nearest goal; ``action``: minus the action
    cost; the goal bonus is added by the environment on arrival.
    """
    squared = ((position[..., None, :] - GOALS) ** 2).sum(-1)
    return {'distance': -distance_cost * squared.min(-1),
            'action': -action_cost * (np.asarray(action) ** 2).sum(-1)}


class MultiGoalEnv(gymnasium.Env):
    """2D point mass with four goals (SQL paper Section 5.1)."""

    metadata = {'render_modes': []}

    def __init__(self, goal_reward: float = 10.0, goal_threshold: float = 1.0,
                 init_sigma: float = 0.1, bound: float = 7.0):
        self.goal_reward, self.goal_threshold = goal_reward, goal_threshold
        self.init_sigma, self.bound = init_sigma, bound
        self.observation_space = spaces.Box(-bound, bound, (2,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.position = np.zeros(2)

    def reset(self, *, seed=None, options=None):
        """Start near the origin."""
        super().reset(seed=seed)
        self.position = self.init_sigma * self.np_random.standard_normal(2)
        return self.position.astype(np.float32), {}

    def step(self, action):
        """Move by the (clipped) action and score the new position."""
        action = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        self.position = np.clip(self.position + action, -self.bound, self.bound)
        terms = multigoal_reward(self.position, action)
        distances = np.linalg.norm(GOALS - self.position, axis=-1)
        reached = bool(distances.min() < self.goal_threshold)
        reward = float(sum(terms.values())) + (self.goal_reward if reached else 0.0)
        info = {'reward_terms': {k: float(v) for k, v in terms.items()},
                'goal': int(distances.argmin()) if reached else -1}
        return self.position.astype(np.float32), reward, reached, False, info
