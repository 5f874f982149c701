# SPDX-License-Identifier: Apache-2.0
"""SQL: the kernel, the SVGD direction, the soft value, the sampler density, the agent."""

import math

import numpy as np
import pytest
import torch

from sac_robot.algorithms.networks import SamplingNetwork
from sac_robot.algorithms.replay import Batch
from sac_robot.algorithms.sql import (SQL, FineTuneSchedule, OrnsteinUhlenbeckNoise, SQLConfig,
                                      rbf_kernel, rbf_kernel_grad, sampler_log_density,
                                      soft_value, svgd_direction)


def test_kernel_and_its_gradient_match_autograd():
    torch.manual_seed(0)
    xs = torch.randn(3, 6, 2, dtype=torch.float64, requires_grad=True)
    ys = torch.randn(3, 5, 2, dtype=torch.float64)
    kappa, h = rbf_kernel(xs, ys)
    assert kappa.shape == (3, 6, 5) and h.shape == (3,)
    direct = torch.exp(-((xs.unsqueeze(2) - ys.unsqueeze(1)) ** 2).sum(-1) / h[:, None, None])
    assert torch.allclose(kappa, direct)
    kappa_grad = rbf_kernel_grad(xs, ys, kappa, h)
    # d/dx_i sum_j kappa(x_i, y_j), the bandwidth held constant (it is detached).
    (auto,) = torch.autograd.grad(kappa.sum(), xs)
    assert torch.allclose(kappa_grad.sum(2), auto)


def test_kernel_median_heuristic_by_hand():
    xs = torch.tensor([[[0.0], [1.0], [3.0]]])
    kappa, h = rbf_kernel(xs, xs)
    # Squared distances {0,1,9,1,0,4,9,4,0}: median 1; h = 1 / (2 log 4).
    assert h.item() == pytest.approx(1.0 / (2 * math.log(4)))
    assert kappa[0, 0, 1].item() == pytest.approx(math.exp(-1.0 / h.item()))
    assert kappa[0, 1, 2].item() == pytest.approx(math.exp(-4.0 / h.item()))
    assert torch.allclose(torch.diagonal(kappa[0]), torch.ones(3))


def test_svgd_direction_matches_the_naive_sum():
    """The closed-form direction equals Eq. 13 summed term by term."""
    torch.manual_seed(2)
    fixed = torch.randn(4, 7, 3, dtype=torch.float64)
    updated = torch.randn(4, 5, 3, dtype=torch.float64)
    grad_q = torch.randn(4, 7, 3, dtype=torch.float64)
    kappa, h = rbf_kernel(fixed, updated)
    kappa_grad = rbf_kernel_grad(fixed, updated, kappa, h)
    alpha = 0.7
    naive = torch.zeros_like(updated)
    for j in range(5):
        for i in range(7):
            naive[:, j] += kappa[:, i, j, None] * grad_q[:, i] + alpha * kappa_grad[:, i, j]
    naive /= 7
    assert torch.allclose(svgd_direction(kappa, h, fixed, updated, grad_q, alpha), naive)


def test_soft_value_against_closed_form_on_a_quadratic():
    """V = alpha log int_{-1}^{1} exp(Q(a) / alpha) da for Q(a) = -c (a - mu)^2."""
    alpha, c, mu = 0.5, 2.0, 0.3
    a = torch.rand(1, 400_000, dtype=torch.float64) * 2 - 1
    q = -c * (a - mu) ** 2
    estimate = soft_value(q, torch.full_like(q, -math.log(2.0)), alpha).item()
    scale = math.sqrt(c / alpha)
    integral = (math.sqrt(math.pi) / (2 * scale)
                * (math.erf(scale * (1 - mu)) - math.erf(scale * (-1 - mu))))
    assert estimate == pytest.approx(alpha * math.log(integral), abs=2e-3)


def test_soft_value_is_stable_for_large_q():
    q = torch.tensor([[1e4, 1e4 - 1.0]])
    value = soft_value(q, torch.zeros_like(q), alpha=0.1)
    assert torch.isfinite(value).all() and value.item() == pytest.approx(1e4 - 0.1 * math.log(2),
                                                                        rel=1e-6)


def test_sampler_density_matches_the_closed_form():
    """For a = tanh(W_xi xi + c), u = W_xi xi + c is Gaussian, so q(a) is known exactly."""
    torch.manual_seed(1)
    sampler = SamplingNetwork(3, 2, hidden=())  # one linear layer, then tanh
    obs = torch.randn(1, 3)
    noise = torch.randn(1, 500, 2)
    actions, log_q = sampler_log_density(sampler, obs, noise)
    assert torch.allclose(actions, sampler(obs, noise=noise), atol=1e-6)
    layer = sampler.net[0]
    w_xi = layer.weight[:, 3:].detach()
    c = (layer.weight[:, :3] @ obs[0] + layer.bias).detach()
    u = noise[0] @ w_xi.T + c
    gaussian = torch.distributions.MultivariateNormal(c, w_xi @ w_xi.T)
    expected = gaussian.log_prob(u) - torch.log(1 - torch.tanh(u) ** 2).sum(-1)
    assert torch.allclose(log_q[0], expected, atol=1e-3)


def test_update_and_hard_target_copy():
    agent = SQL(4, 2, SQLConfig(hidden=(32, 32), kernel_particles=8, value_particles=8,
                                target_update_interval=3), seed=0)
    g = torch.Generator().manual_seed(0)
    batch = Batch(torch.randn(16, 4, generator=g), torch.rand(16, 2, generator=g) * 2 - 1,
                  torch.randn(16, generator=g), torch.randn(16, 4, generator=g),
                  torch.zeros(16), torch.zeros(16))
    sampler = [p.detach().clone() for p in agent.sampler.parameters()]
    for step in range(1, 4):
        metrics = agent.update(batch)
        assert all(math.isfinite(v) for v in metrics.values())
        same = all(torch.equal(a, b) for a, b in zip(agent.q.parameters(),
                                                      agent.q_target.parameters()))
        assert same == (step == 3), step  # copied every target_update_interval steps only
    assert any(not torch.equal(a, b) for a, b in zip(sampler, agent.sampler.parameters()))


def test_sampler_proposal_after_warm_up():
    agent = SQL(4, 2, SQLConfig(hidden=(16,), value_proposal='sampler',
                                sampler_proposal_after=1, kernel_particles=4,
                                value_particles=4), seed=0)
    value = agent._soft_value(torch.randn(5, 4))
    assert value.shape == (5,)
    agent.gradient_steps = 1
    assert torch.isfinite(agent._soft_value(torch.randn(5, 4))).all()


def test_svgd_sampler_matches_a_bimodal_target_density():
    """Amortized SVGD against a fixed two-mode Q matches the target density.

    The target is exp(Q / alpha) (1 - a^2), integrated numerically.
    """
    torch.manual_seed(0)
    agent = SQL(1, 1, SQLConfig(hidden=(32, 32), kernel_particles=32, sampler_lr=3e-3,
                                alpha=1.0), seed=0)

    class TwoModes(torch.nn.Module):
        def forward(self, obs, action):
            return (-4 * torch.minimum((action - 0.5) ** 2, (action + 0.5) ** 2)).T

    agent.q = TwoModes()
    for _ in range(300):
        agent.sampler_update(torch.zeros(8, 1))
    samples = agent.sampler(torch.zeros(1, 1), 4000)[0, :, 0].detach().numpy()

    a = np.linspace(-1, 1, 200_001)
    density = np.exp(-4 * np.minimum((a - 0.5) ** 2, (a + 0.5) ** 2)) * (1 - a ** 2)
    density /= np.trapezoid(density, a)
    right = np.trapezoid(density * (a > 0.2), a)
    assert (samples > 0.2).mean() == pytest.approx(right, abs=0.05)
    assert (samples < -0.2).mean() == pytest.approx(right, abs=0.05)
    assert samples.std() == pytest.approx(np.sqrt(np.trapezoid(density * a ** 2, a)), abs=0.05)


def test_ou_noise_is_mean_reverting_and_resets():
    noise = OrnsteinUhlenbeckNoise(3, theta=0.15, sigma=0.3, seed=0)
    samples = np.array([noise() for _ in range(20_000)])
    # Stationary std of the discrete OU process: sigma / sqrt(1 - (1 - theta)^2).
    assert samples[1000:].std() == pytest.approx(0.3 / math.sqrt(1 - 0.85 ** 2), rel=0.1)
    noise.reset()
    assert np.all(noise.state == 0)


def test_fine_tune_schedule():
    schedule = FineTuneSchedule(initial_alpha=10.0, final_alpha=1e-3, epochs=20,
                                initial_noise_samples=32)
    assert schedule.alpha(0) == pytest.approx(10.0)
    assert schedule.alpha(10) == pytest.approx(0.1)  # log-linear: halfway in log space
    assert schedule.alpha(40) == pytest.approx(1e-3)
    assert [schedule.noise_samples(e) for e in (0, 20, 30)] == [32, 1, 1]
