# SPDX-License-Identifier: Apache-2.0
"""Soft Q-Learning with an amortized SVGD sampler (Haarnoja et al. 2017, "SQL").

Equation and appendix numbers refer to the paper
(../shared/papers/soft_q_learning_haarnoja2017.txt). Defaults are Appendix D.1's.
"""

import copy
import dataclasses
import math

import numpy as np
import torch
from torch.nn import functional as F

from sac_robot.algorithms import optim
from sac_robot.algorithms.networks import QEnsemble, SamplingNetwork
from sac_robot.algorithms.replay import Batch

#: Smallest kernel bandwidth, so that coincident particles do not divide by zero
#: (softlearning's h_min).
MIN_BANDWIDTH = 1e-3
#: Keeps log(1 - a^2) finite at the action bounds.
SQUASH_EPS = 1e-6


@dataclasses.dataclass
class SQLConfig:
    """Hyperparameters; defaults from Appendix D.1 unless noted."""

    hidden: tuple = (200, 200)
    """Hidden layers of the Q-function and the sampler (two layers of 200, ReLU)."""
    q_lr: float = 1e-3
    """Adam learning rate of the soft Q-function."""
    sampler_lr: float = 1e-4
    """Adam learning rate of the sampling network."""
    gamma: float = 0.99
    """Discount."""
    alpha: float = 1.0
    """Entropy coefficient (App. D.1: 10 for multi-goal, 0.1 for the locomotion tasks)."""
    batch_size: int = 64
    """Minibatch size."""
    buffer_size: int = 1_000_000
    """Replay pool size."""
    learning_starts: int = 10_000
    """No training until the pool holds this many samples."""
    target_update_interval: int = 1000
    """Gradient steps between hard copies of the Q-function to its target (tau = 1)."""
    value_particles: int = 50
    """K_V: action samples of the importance-sampled soft value (Eq. 10)."""
    kernel_particles: int = 32
    """K = M: particles per state of the SVGD update (App. C.1); the multi-goal task uses 100."""
    value_proposal: str = 'uniform'
    """Proposal of Eq. 10: 'uniform' over the action box, or 'sampler' (App. C.2: the sampler's
    density from its Jacobian, Eq. 33) once ``sampler_proposal_after`` steps have passed."""
    sampler_proposal_after: int = 0
    """Gradient steps with the uniform proposal before the sampler is used (App. C.2)."""
    ou_theta: float = 0.15
    """Ornstein-Uhlenbeck exploration noise, mean reversion (App. D.1)."""
    ou_sigma: float = 0.3
    """Ornstein-Uhlenbeck exploration noise scale (App. D.1); 0 disables it."""

    def __post_init__(self):
        if self.value_proposal not in ('uniform', 'sampler'):
            raise ValueError("value_proposal must be 'uniform' or 'sampler'")
        if self.alpha <= 0 or self.kernel_particles < 2 or self.value_particles < 1:
            raise ValueError('need alpha > 0, kernel_particles >= 2, value_particles >= 1')
        self.hidden = tuple(self.hidden)


def rbf_kernel(xs: torch.Tensor, ys: torch.Tensor):
    """Return ``kappa(x, y) = exp(-||x - y||^2 / h)`` ``[B, Kx, Ky]`` and ``h`` ``[B]`` (App. D.1).

    ``xs``: ``[B, Kx, A]``, ``ys``: ``[B, Ky, A]``. The bandwidth is the median heuristic per
    state, ``h = d / (2 log(Kx + 1))``, with ``d`` the median of the *squared* pairwise
    distances (squared, as in the authors' softlearning code, so that ``h`` has the units of
    the exponent's numerator); it is treated as a constant.
    """
    # ||x - y||^2 = ||x||^2 + ||y||^2 - 2 x.y, without a [B, Kx, Ky, A] difference tensor.
    dist_sq = torch.baddbmm((xs ** 2).sum(-1, keepdim=True) + (ys ** 2).sum(-1).unsqueeze(1),
                            xs, ys.transpose(1, 2), alpha=-2.0).clamp_min_(0.0)
    median = dist_sq.flatten(1).median(dim=1).values
    h = (median / (2.0 * math.log(xs.shape[1] + 1))).clamp_min(MIN_BANDWIDTH).detach()
    return torch.exp(-dist_sq / h[:, None, None]), h


def rbf_kernel_grad(xs: torch.Tensor, ys: torch.Tensor, kappa: torch.Tensor,
                    h: torch.Tensor) -> torch.Tensor:
    """Return ``d kappa(x_i, y_j) / d x_i`` ``[B, Kx, Ky, A]`` (``-2 (x_i - y_j) / h kappa_ij``).

    :func:`svgd_direction` never builds this tensor; it is the reference it is tested against.
    """
    diff = xs.unsqueeze(2) - ys.unsqueeze(1)
    return -2.0 * diff / h[:, None, None, None] * kappa.unsqueeze(-1)


def svgd_direction(kappa: torch.Tensor, h: torch.Tensor, fixed: torch.Tensor,
                   updated: torch.Tensor, grad_q: torch.Tensor, alpha: float) -> torch.Tensor:
    """Return Eq. 13's ``Delta f`` at each updated particle ``a~_j``: ``[B, K, A]``.

    ``Delta f(a~_j) = mean_i [kappa(a_i, a~_j) grad_a Q(s, a_i) + alpha grad_a kappa(a_i, a~_j)]``
    with the fixed particles ``a_i`` ``[B, M, A]``, ``kappa [B, M, K]`` and ``grad_q [B, M, A]``.
    For the RBF kernel the repulsion sums in closed form,
    ``sum_i grad kappa_ij = -(2 / h) (sum_i kappa_ij a_i - a~_j sum_i kappa_ij)``,
    so the whole direction is one batched product.
    """
    scale = (2.0 * alpha / h)[:, None, None]
    weighted = grad_q - scale * fixed
    direction = kappa.transpose(1, 2) @ weighted + scale * updated * kappa.sum(1).unsqueeze(-1)
    return direction / kappa.shape[1]


def soft_value(q: torch.Tensor, log_proposal: torch.Tensor, alpha: float) -> torch.Tensor:
    """Return Eq. 10's ``alpha log E_q[exp(Q / alpha) / q(a)]`` from ``K_V`` samples ``[B, K_V]``.

    Computed as a log-sum-exp, stable for any scale of Q / alpha.
    """
    assert q.shape == log_proposal.shape
    k = q.shape[-1]
    return alpha * (torch.logsumexp(q / alpha - log_proposal, dim=-1) - math.log(k))


def sampler_log_density(sampler: SamplingNetwork, obs: torch.Tensor, noise: torch.Tensor):
    """Return actions ``[B, K, A]`` and their density ``log q(a) [B, K]`` (App. C.2, Eq. 33).

    ``q(a) = p(xi) / |det(da/dxi)|``; the Jacobian of each sample is taken with autograd.
    Where it is singular (an untrained sampler) the log-density is ``+inf``: such a sample adds
    nothing to the value estimate.
    """
    from torch.func import jacrev, vmap

    def one(o, xi):
        return torch.tanh(sampler.net(torch.cat([o, xi])))

    batch, k, dim = noise.shape
    flat_obs = obs.unsqueeze(1).expand(-1, k, -1).reshape(batch * k, -1)
    flat_noise = noise.reshape(batch * k, dim)
    actions = vmap(one)(flat_obs, flat_noise)
    jacobians = vmap(jacrev(one, argnums=1))(flat_obs, flat_noise)
    _, log_abs_det = torch.linalg.slogdet(jacobians)
    log_p_noise = -0.5 * (flat_noise ** 2).sum(-1) - 0.5 * dim * math.log(2 * math.pi)
    return actions.reshape(batch, k, dim), (log_p_noise - log_abs_det).reshape(batch, k)


class OrnsteinUhlenbeckNoise:
    """Temporally correlated exploration noise ``dx = theta (-x) dt + sigma dW`` (App. D.1)."""

    def __init__(self, action_dim: int, theta: float = 0.15, sigma: float = 0.3,
                 dt: float = 1.0, seed: int | None = None):
        self.theta, self.sigma, self.dt = theta, sigma, dt
        self.state = np.zeros(action_dim)
        self.rng = np.random.default_rng(seed)

    def reset(self):
        """Start a new episode at zero noise."""
        self.state[:] = 0.0

    def __call__(self) -> np.ndarray:
        """Advance one step and return the noise."""
        self.state += (-self.theta * self.state * self.dt
                       + self.sigma * math.sqrt(self.dt) * self.rng.standard_normal(
                           self.state.shape))
        return self.state.copy()


@dataclasses.dataclass
class FineTuneSchedule:
    """Fine-tuning a pretrained SQL policy (App. D.1).

    Alpha is annealed log-linearly from its pretraining value to ``final_alpha`` and the fixed
    noise set ``{xi_i}`` shrinks linearly from ``initial_noise_samples`` to 1, both within
    ``epochs`` epochs.
    """

    initial_alpha: float
    final_alpha: float = 1e-3
    epochs: int = 20
    initial_noise_samples: int = 32

    def alpha(self, epoch: float) -> float:
        """Return alpha after ``epoch`` epochs of fine-tuning."""
        fraction = min(max(epoch / self.epochs, 0.0), 1.0)
        return float(np.exp((1 - fraction) * np.log(self.initial_alpha)
                            + fraction * np.log(self.final_alpha)))

    def noise_samples(self, epoch: float) -> int:
        """Return the size of the fixed noise set after ``epoch`` epochs."""
        fraction = min(max(epoch / self.epochs, 0.0), 1.0)
        return max(1, int(round(self.initial_noise_samples
                                + fraction * (1 - self.initial_noise_samples))))


class SQL:
    """The SQL agent: soft Q-function and its target, sampling network, optimizers."""

    algorithm = 'sql'

    def __init__(self, obs_dim: int, action_dim: int, config: SQLConfig | None = None,
                 device='cpu', seed: int | None = None):
        self.config = config = config or SQLConfig()
        if not isinstance(obs_dim, (int, np.integer)):
            raise ValueError("SQL takes flat observations only (the paper's SQL experiments "
                             'are state-based); use SAC for dict/pixel observations')
        self.obs_spec = int(obs_dim)
        self.action_dim, self.device = action_dim, torch.device(device)
        if seed is not None:
            torch.manual_seed(seed)
        self.q = QEnsemble(obs_dim, action_dim, config.hidden, ensemble=1).to(self.device)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.sampler = SamplingNetwork(obs_dim, action_dim, config.hidden).to(self.device)
        self.q_optimizer = optim.adam(self.q.parameters(), config.q_lr)
        self.sampler_optimizer = optim.adam(self.sampler.parameters(), config.sampler_lr)
        self.alpha = config.alpha
        #: The agent's own random stream (sampler noise, proposals), checkpointed with it.
        self.generator = torch.Generator(device=self.device).manual_seed(
            seed if seed is not None else int(torch.randint(2**31, ())))
        #: A fixed noise set ``[K_xi, A]`` for fine-tuning (None: fresh noise every sample).
        self.fixed_noise = None
        self.exploration = OrnsteinUhlenbeckNoise(action_dim, config.ou_theta, config.ou_sigma,
                                                  seed=seed)
        self.gradient_steps = 0

    @torch.no_grad()
    def act(self, obs, deterministic: bool = False) -> np.ndarray:
        """Sample actions in [-1, 1] for ``[O]`` or ``[B, O]``, with OU noise unless evaluating.

        SQL's policy has no mean action; ``deterministic`` only drops the exploration noise.
        """
        tensor = torch.as_tensor(np.asarray(obs, np.float32), device=self.device)
        flat = tensor.reshape(-1, self.obs_spec)
        noise = None
        if self.fixed_noise is not None:
            pick = torch.randint(0, self.fixed_noise.shape[0], (flat.shape[0],),
                                 generator=self.generator)
            noise = self.fixed_noise[pick].unsqueeze(1)
        action = self.sampler(flat, 1, noise, self.generator)[:, 0].cpu().numpy()
        if not deterministic and self.config.ou_sigma > 0:
            action = np.clip(action + self.exploration(), -1.0, 1.0)
        return action.reshape(*tensor.shape[:-1], self.action_dim)

    def _soft_value(self, obs: torch.Tensor) -> torch.Tensor:
        """Eq. 10 with the target Q-function, ``K_V`` samples from the proposal."""
        config, batch = self.config, obs.shape[0]
        k = config.value_particles
        use_sampler = (config.value_proposal == 'sampler'
                       and self.gradient_steps >= config.sampler_proposal_after)
        if use_sampler:
            noise = torch.randn(batch, k, self.action_dim, device=obs.device,
                                generator=self.generator)
            with torch.no_grad():
                actions, log_q = sampler_log_density(self.sampler, obs, noise)
        else:  # uniform over [-1, 1]^A: density 2^-A
            actions = torch.rand(batch, k, self.action_dim, device=obs.device,
                                 generator=self.generator) * 2 - 1
            log_q = torch.full((batch, k), -self.action_dim * math.log(2.0), device=obs.device)
        states = obs.unsqueeze(1).expand(-1, k, -1).reshape(batch * k, -1)
        q = self.q_target(states, actions.reshape(batch * k, -1))[0].reshape(batch, k)
        return soft_value(q, log_q, self.alpha)

    def q_update(self, batch: Batch) -> dict:
        """One gradient step of the soft Bellman objective (Eq. 11) with Eq. 10's target."""
        with torch.no_grad():
            next_value = self._soft_value(batch.next_obs)
            target = batch.reward + self.config.gamma * (1.0 - batch.terminated) * next_value
        q = self.q(batch.obs, batch.action)[0]
        q_loss = 0.5 * F.mse_loss(q, target)
        optim.minimize(q_loss, [self.q_optimizer])
        return {'loss/critic': float(q_loss.detach()), 'q/mean': float(q.detach().mean()),
                'value/next': float(next_value.mean())}

    def sampler_update(self, obs: torch.Tensor) -> dict:
        """One amortized SVGD step of the sampler (Eq. 13-14, App. C.1) at states ``obs``.

        ``kernel_particles`` actions are sampled per state. App. C.1 allows the particles that
        are moved (``a~_j``) and those that move them (``a_i``) to be the same samples; they
        are here, which halves the sampler's work against drawing two sets.
        """
        k = self.config.kernel_particles
        n = obs.shape[0]
        updated = self.sampler(obs, k, generator=self.generator)
        fixed = updated.detach().requires_grad_(True)
        states = obs.unsqueeze(1).expand(-1, k, -1).reshape(n * k, -1)
        self.q.requires_grad_(False)
        q_fixed = self.q(states, fixed.reshape(n * k, -1))[0].reshape(n, k)
        # The sampler squashes with tanh; as softlearning does, the target density includes
        # the change of variables log(1 - a^2), which keeps particles off the bounds.
        log_target = q_fixed + self.alpha * torch.log(1 - fixed ** 2 + SQUASH_EPS).sum(-1)
        (grad_q,) = torch.autograd.grad(log_target.sum(), fixed)
        self.q.requires_grad_(True)
        kappa, h = rbf_kernel(fixed.detach(), updated.detach())
        direction = svgd_direction(kappa, h, fixed.detach(), updated.detach(), grad_q,
                                   self.alpha)
        # Eq. 14: backpropagate Delta f through the sampler (ascent along Delta f).
        sampler_loss = -(direction.detach() * updated).sum(-1).mean()
        optim.minimize(sampler_loss, [self.sampler_optimizer])
        return {'loss/actor': float(sampler_loss.detach())}

    def update(self, batch: Batch) -> dict:
        """One step of the Q-function and of the sampler; the hard target copy when due."""
        metrics = self.q_update(batch)
        metrics.update(self.sampler_update(batch.obs))
        self.gradient_steps += 1
        if self.gradient_steps % self.config.target_update_interval == 0:
            self.q_target.load_state_dict(self.q.state_dict())
        metrics['alpha'] = self.alpha
        return metrics

    def modules(self) -> dict:
        """Return the networks by name."""
        return {'actor': self.sampler, 'critic': self.q, 'critic_target': self.q_target}

    def optimizers(self) -> dict:
        """Return the optimizers by name."""
        return {'critic': self.q_optimizer, 'actor': self.sampler_optimizer}

    def extra_tensors(self) -> dict:
        """Return tensors outside the modules."""
        return {}
