# SPDX-License-Identifier: Apache-2.0
"""SAC's objectives, one function per equation of the paper (Haarnoja et al. 2018, "SAC").

Shared by the agent's autograd update (``sac.py``, which imports the losses, so that
``sac_robot.algorithms.sac.soft_q_target`` and the like still name them) and the closed-form
gradients (``gradients.py``).
"""

import torch
from torch.nn import functional as F


def soft_q_target(next_q: torch.Tensor, next_log_prob: torch.Tensor, reward: torch.Tensor,
                  terminated: torch.Tensor, gamma: float, alpha) -> torch.Tensor:
    """Return the soft Bellman target ``r + gamma (1 - d) (Q(s', a') - alpha log pi(a'|s'))``.

    Eq. 5-6: ``V(s') = E_a'[Q(s', a') - alpha log pi(a'|s')]`` estimated with one sample
    ``a' ~ pi(.|s')``; ``next_q`` is already the minimum over the target critics (Section 5,
    "two Q-functions"). Only a true terminal state zeroes the bootstrap; a truncated episode
    does not.
    """
    assert next_q.shape == next_log_prob.shape == reward.shape == terminated.shape
    return reward + gamma * (1.0 - terminated) * (next_q - alpha * next_log_prob)


def q_loss(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Return Eq. 5's ``J_Q = 0.5 sum_i E[(Q_i(s, a) - y)^2]`` for ``[E, B]`` values ``q``."""
    return 0.5 * F.mse_loss(q, target.expand_as(q), reduction='none').mean(1).sum()


def policy_loss(alpha, log_prob: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Return ``E[alpha log pi(f(eps; s)|s) - Q(s, f(eps; s))]`` (Eq. 9), ``q`` the critic min."""
    assert log_prob.shape == q.shape
    return (alpha * log_prob - q).mean()


def temperature_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor,
                     target_entropy: float) -> torch.Tensor:
    """Return ``J(alpha) = E[-alpha log pi(a|s) - alpha H_bar]`` (Eq. 18), optimized in log alpha.

    Its gradient raises alpha while the policy's entropy ``-E[log pi]`` is below the target
    ``H_bar`` and lowers it above; it vanishes exactly at ``E[log pi] = -H_bar``.
    """
    return (-log_alpha.exp() * (log_prob.detach() + target_entropy)).mean()


def temperature_gradient(log_alpha: torch.Tensor, log_prob: torch.Tensor,
                         target_entropy: float) -> torch.Tensor:
    """Return ``dJ(alpha)/dlog alpha = -alpha E[log pi(a|s) + H_bar]`` (Eq. 18's gradient)."""
    return -log_alpha.detach().exp() * (log_prob.detach() + target_entropy).mean()
