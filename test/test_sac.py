# SPDX-License-Identifier: Apache-2.0
"""SAC: the paper's equations against hand-computed values, and the agent's update."""

import copy
import math

import numpy as np
import pytest
import torch

from sac_robot.algorithms.networks import LOG_STD_MAX, tanh_gaussian_log_prob
from sac_robot.algorithms.replay import Batch
from sac_robot.algorithms.sac import (SAC, SACConfig, polyak_update, policy_loss, soft_q_target,
                                      temperature_loss)


def test_soft_q_target_by_hand():
    # r + gamma (1 - d) (Q' - alpha log pi'): 1 + 0.9 * (10 - 0.2 * -1) = 10.18; terminal: r.
    target = soft_q_target(next_q=torch.tensor([10.0, 5.0]),
                           next_log_prob=torch.tensor([-1.0, 0.5]),
                           reward=torch.tensor([1.0, 2.0]), terminated=torch.tensor([0.0, 1.0]),
                           gamma=0.9, alpha=0.2)
    assert torch.allclose(target, torch.tensor([10.18, 2.0]))


def test_soft_q_target_checks_shapes():
    with pytest.raises(AssertionError):
        soft_q_target(torch.zeros(3), torch.zeros(3), torch.zeros(3, 1), torch.zeros(3), 0.9, 1)


def test_policy_loss_by_hand():
    loss = policy_loss(0.5, torch.tensor([-2.0, 0.0]), torch.tensor([3.0, 1.0]))
    assert loss.item() == pytest.approx(((0.5 * -2 - 3) + (0 - 1)) / 2)


@pytest.mark.parametrize('mean_log_prob, alpha_direction', [(0.0, 1), (-4.0, -1), (-2.0, 0)])
def test_temperature_gradient_sign_and_fixed_point(mean_log_prob, alpha_direction):
    """The temperature gradient has the right sign and vanishes at the target.

    With target entropy 2 the fixed point is E[log pi] = -2. Entropy too low (log pi high):
    d loss / d log alpha < 0, so alpha grows under gradient descent; too high: alpha shrinks.
    """
    log_alpha = torch.tensor(math.log(0.3), requires_grad=True)
    log_prob = torch.full((8,), mean_log_prob)
    temperature_loss(log_alpha, log_prob, target_entropy=2.0).backward()
    grad = log_alpha.grad.item()
    assert grad == pytest.approx(-0.3 * (mean_log_prob + 2.0))
    assert np.sign(round(grad, 9)) == -alpha_direction  # descent moves against the gradient


def test_tanh_gaussian_density_integrates_to_one():
    mean, log_std = torch.tensor([[0.3]]), torch.tensor([[-0.2]])
    a = torch.linspace(-1 + 1e-6, 1 - 1e-6, 200_001, dtype=torch.float64)[:, None]
    u = torch.atanh(a)
    density = tanh_gaussian_log_prob(u, mean.double(), log_std.double()).exp()
    assert torch.trapezoid(density, a[:, 0]).item() == pytest.approx(1.0, abs=1e-4)


def test_tanh_gaussian_log_prob_matches_reference_and_is_stable():
    mean = torch.tensor([[0.1, -0.4, 1.0]])
    log_std = torch.tensor([[-0.5, 0.0, 0.3]])
    u = torch.tensor([[0.2, -1.0, 2.5]])
    reference = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()),
        [torch.distributions.TanhTransform()]).log_prob(torch.tanh(u)).sum(-1)
    assert torch.allclose(tanh_gaussian_log_prob(u, mean, log_std), reference, atol=1e-5)
    # Far in the tail tanh(u) rounds to 1 in float32; the naive log(1 - tanh^2) is -inf there.
    extreme = tanh_gaussian_log_prob(torch.tensor([[30.0]]), torch.tensor([[29.0]]),
                                     torch.tensor([[LOG_STD_MAX]]))
    assert torch.isfinite(extreme).all()


def test_polyak_update():
    target = [torch.zeros(3), torch.zeros(2, 2)]
    online = [torch.ones(3), torch.ones(2, 2)]
    polyak_update(target, online, 0.005)
    polyak_update(target, online, 0.005)
    for tensor in target:
        assert torch.allclose(tensor, torch.full_like(tensor, 1 - 0.995 ** 2))


def random_batch(n=32, obs_dim=5, action_dim=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(n, obs_dim, generator=g),
                 torch.rand(n, action_dim, generator=g) * 2 - 1,
                 torch.randn(n, generator=g), torch.randn(n, obs_dim, generator=g),
                 (torch.rand(n, generator=g) < 0.2).float(), torch.zeros(n))


def test_update_moves_every_network_as_the_paper_says():
    agent = SAC(5, 2, SACConfig(hidden=(32, 32)), seed=0)
    before = {name: [p.detach().clone() for p in m.parameters()]
              for name, m in agent.modules().items()}
    log_alpha = agent.log_alpha.item()
    metrics = agent.update(random_batch())
    assert all(math.isfinite(v) for v in metrics.values())
    assert set(metrics) >= {'loss/critic', 'loss/actor', 'loss/alpha', 'alpha', 'entropy'}
    for name in ('actor', 'critic'):
        assert any(not torch.equal(a, b) for a, b in
                   zip(before[name], agent.modules()[name].parameters())), name
    # The target moved by exactly tau towards the updated critic.
    for old_target, target, online in zip(before['critic_target'],
                                          agent.critic_target.parameters(),
                                          agent.critic.parameters()):
        assert torch.allclose(target, old_target + 0.005 * (online - old_target), atol=1e-6)
    assert agent.log_alpha.item() != log_alpha
    assert all(p.requires_grad for p in agent.critic.parameters())


def test_actor_step_leaves_the_critics_alone():
    agent = SAC(5, 2, SACConfig(hidden=(32, 32)), seed=0)
    batch = random_batch()
    agent.update(batch, update_actor=False)
    critic = [p.detach().clone() for p in agent.critic.parameters()]
    actor = [p.detach().clone() for p in agent.actor.parameters()]
    # Run only the policy part by zeroing the critic learning rate for one step.
    for group in agent.critic_optimizer.param_groups:
        group['lr'] = 0.0
    agent.update(batch)
    assert all(torch.equal(a, b) for a, b in zip(critic, agent.critic.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(actor, agent.actor.parameters()))


def test_fixed_temperature_mode():
    agent = SAC(5, 2, SACConfig(hidden=(16,), auto_alpha=False, alpha=0.05), seed=0)
    agent.update(random_batch())
    assert agent.alpha == pytest.approx(0.05)


def test_high_utd_variants_build_and_update():
    """REDQ (10 critics, min over 2 at random) and DroQ (dropout + layer norm)."""
    redq = SAC(5, 2, SACConfig(hidden=(16, 16), num_critics=10, num_target_critics=2), seed=0)
    assert redq.critic(torch.zeros(4, 5), torch.zeros(4, 2)).shape == (10, 4)
    droq = SAC(5, 2, SACConfig(hidden=(16, 16), critic_dropout=0.01, critic_layer_norm=True),
               seed=0)
    for agent in (redq, droq):
        for i in range(3):
            metrics = agent.update(random_batch(seed=i), update_actor=(i == 2))
        assert all(math.isfinite(v) for v in metrics.values())
    with pytest.raises(ValueError):
        SACConfig(num_critics=2, num_target_critics=3)


def test_act_shapes_and_bounds():
    agent = SAC(5, 2, SACConfig(hidden=(16,)), seed=0)
    single = agent.act(np.zeros(5))
    batch = agent.act(np.random.randn(7, 5) * 100)
    assert single.shape == (2,) and batch.shape == (7, 2)
    assert np.all(np.abs(batch) <= 1)
    assert np.array_equal(agent.act(np.ones(5), True), agent.act(np.ones(5), True))


def _textbook_update(agent: SAC, batch: Batch):
    """The update as torch.optim spells it: zero_grad, backward, step; one loss at a time."""
    alpha = agent.log_alpha.detach().exp()
    critic_loss, _ = agent._critic_loss(batch, alpha)
    if agent.config.joint_update:
        actor_loss, alpha_loss, _ = agent._policy_losses(batch, alpha)
        for optimizer in agent.optimizers().values():
            optimizer.zero_grad()
        (critic_loss + actor_loss + alpha_loss).backward()
        for optimizer in agent.optimizers().values():
            optimizer.step()
        polyak_update(agent.critic_target.parameters(), agent.critic.parameters(),
                      agent.config.tau)
        return
    agent.critic_optimizer.zero_grad()
    critic_loss.backward()
    agent.critic_optimizer.step()
    polyak_update(agent.critic_target.parameters(), agent.critic.parameters(),
                  agent.config.tau)
    actor_loss, alpha_loss, _ = agent._policy_losses(batch, alpha)
    agent.actor_optimizer.zero_grad()
    actor_loss.backward()
    agent.actor_optimizer.step()
    agent.alpha_optimizer.zero_grad()
    alpha_loss.backward()
    agent.alpha_optimizer.step()


@pytest.mark.parametrize('joint', [False, True])
def test_update_is_the_textbook_update_bit_for_bit(joint):
    """The fused optimizer step and the shared backward pass change no bit of the result.

    This is autograd's update; the closed-form gradients are compared with autograd's below.
    """
    agents = [SAC(5, 2, SACConfig(hidden=(32, 32), joint_update=joint, closed_form=False),
                  seed=3) for _ in '12']
    agents[1].alpha_optimizer.param_groups[0]['lr'] = 1e-3  # a second hyperparameter group
    agents[0].alpha_optimizer.param_groups[0]['lr'] = 1e-3
    for i in range(4):  # the first step builds Adam's state the ordinary way, then fused
        batch = random_batch(seed=i)
        agents[0].update(batch)
        _textbook_update(agents[1], batch)
        for name, module in agents[0].modules().items():
            for ours, reference in zip(module.parameters(),
                                       agents[1].modules()[name].parameters()):
                assert torch.equal(ours, reference), (i, name)
        assert torch.equal(agents[0].log_alpha, agents[1].log_alpha)
    for name, optimizer in agents[0].optimizers().items():
        reference = agents[1].optimizers()[name]
        for p, q in zip(optimizer.param_groups[0]['params'],
                        reference.param_groups[0]['params']):
            for key in ('step', 'exp_avg', 'exp_avg_sq'):
                assert torch.equal(optimizer.state[p][key], reference.state[q][key])
    assert all(p.grad is None for p in agents[0].actor.parameters())


@pytest.mark.parametrize('overrides', [
    {}, {'joint_update': True}, {'auto_alpha': False, 'alpha': 0.3},
    {'num_critics': 5, 'num_target_critics': 2, 'hidden': (32, 32, 32)},
    {'num_critics': 1, 'num_target_critics': 1, 'hidden': (24,)}])
def test_closed_form_gradients_are_autograds(overrides):
    """gradients.py's backpropagation gives autograd's gradients, loss by loss.

    And update by update: the same random draws, so whole runs stay together.
    """
    from sac_robot.algorithms import gradients
    config = {'hidden': (32, 32), **overrides}
    agent, twin = (SAC(5, 2, SACConfig(**config, closed_form=form), seed=4)
                   for form in (True, False))
    for i in range(6):
        batch = random_batch(seed=i)
        alpha = agent.log_alpha.detach().exp()
        twin.generator.manual_seed(i)
        target = twin._critic_target(batch, alpha)
        twin.generator.manual_seed(i)  # the same target inside the reference's loss
        loss = twin._critic_loss(batch, alpha)[0]
        closed_loss, q, grads = gradients.critic_gradients(agent.critic, batch.obs,
                                                           batch.action, target)
        torch.testing.assert_close(closed_loss, loss)
        twin.generator.manual_seed(i)  # the target in closed form, from the same draws
        eps = twin._policy_noise(32)
        torch.testing.assert_close(gradients.critic_target(
            agent.actor, agent.critic_target, batch.next_obs, eps, batch.reward,
            batch.terminated, agent.config.gamma, alpha, twin._target_members()), target)
        reference = torch.autograd.grad(loss, twin._critic_params)
        for ours, theirs in zip(grads, reference, strict=True):
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
        twin.generator.manual_seed(i)  # the reference's policy noise is eps
        eps = torch.randn((32, 2), generator=torch.Generator().manual_seed(i))
        actor_loss, alpha_loss, _ = twin._policy_losses(batch, alpha)
        closed = gradients.policy_gradients(
            agent.actor, agent.critic, batch.obs, eps, alpha, agent._policy_reduce,
            agent.log_alpha if agent.config.auto_alpha else None, agent.target_entropy)
        torch.testing.assert_close(closed[0], actor_loss)
        reference = torch.autograd.grad(actor_loss, list(twin.actor.parameters()))
        for ours, theirs in zip(closed[3], reference, strict=True):
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
        if alpha_loss is None:
            assert closed[4] is None and closed[5] is None
        else:
            torch.testing.assert_close(closed[4], alpha_loss)
            torch.testing.assert_close(
                closed[5], torch.autograd.grad(alpha_loss, twin.log_alpha)[0])
        for member in (agent, twin):  # whole updates, from the same stream
            member.generator.manual_seed(100 + i)
            member.update(batch)
        for name, module in agent.modules().items():
            for ours, theirs in zip(module.parameters(), twin.modules()[name].parameters()):
                torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(agent.log_alpha, twin.log_alpha)
    assert gradients.applicable(agent.config, agent.obs_spec)
    assert not gradients.applicable(twin.config, twin.obs_spec)
    assert not gradients.applicable(SACConfig(critic_dropout=0.01), 5)
    assert not gradients.applicable(SACConfig(), {'pos': (3,)})


def test_compiled_gradients_are_the_closed_form_ones():
    """compile=True gives the closed-form gradients' results, compiled once.

    Compiled on a thread of its own from ``start_compiling``, beside what the agent does
    meanwhile (acting), and not again as alpha, the parameters and the batch's memory layout
    change update by update; the first update waits for the compiler, so every update is a
    compiled one.
    """
    from torch._dynamo.utils import counters
    config = {'hidden': (32, 32), 'batch_size': 32}
    agent, twin = (SAC(5, 2, SACConfig(**config, compile=flag), seed=4)
                   for flag in (True, False))
    agent.start_compiling()
    twin.start_compiling()  # (not compiled: nothing)
    assert agent._compiling.ident is not None and twin._compiling is None
    np.testing.assert_array_equal(agent.act(np.zeros(5), deterministic=True),
                                  twin.act(np.zeros(5), deterministic=True))
    update = agent.update(random_batch(seed=9))  # (waits for the compiler)
    assert agent._compiled and agent._compiling is None and not twin.wait_compiled()
    twin_update = twin.update(random_batch(seed=9))
    assert update == pytest.approx(twin_update, rel=1e-4, abs=1e-5)
    graphs = counters['stats']['unique_graphs']
    for i in range(4):
        batch = random_batch(seed=i)
        if i % 2:  # the replay buffer's layout: columns of one block, not contiguous
            block = torch.cat([field.reshape(32, -1) for field in batch], 1)
            batch = Batch(*(f.squeeze(1) if f.shape[1] == 1 else f
                            for f in block.split([5, 2, 1, 5, 1, 1], 1)))
        metrics, reference = agent.update(batch), twin.update(batch)
        assert metrics.keys() == reference.keys()
        for name, module in agent.modules().items():
            for ours, theirs in zip(module.parameters(), twin.modules()[name].parameters()):
                torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(agent.log_alpha, twin.log_alpha)
    assert agent.alpha != 1.0 and counters['stats']['unique_graphs'] == graphs


def test_optimizer_step_checks_and_falls_back():
    from sac_robot.algorithms import optim
    params = [torch.nn.Parameter(torch.randn(3)), torch.nn.Parameter(torch.randn(2, 2))]
    twins = [torch.nn.Parameter(p.detach().clone()) for p in params]
    plain, reference = torch.optim.Adam(params, lr=0.1), torch.optim.Adam(twins, lr=0.1)
    for k in range(3):  # not fused: optim.step lets the optimizer step itself
        grads = [torch.full_like(p, k + 1.0) for p in params]
        optim.step([(plain, grads)])
        for q, g in zip(twins, grads):
            q.grad = g.clone()
        reference.step()
    assert all(torch.equal(p, q) for p, q in zip(params, twins))
    with pytest.raises(ValueError, match='1 gradients for 2 parameters'):
        optim.step([(plain, [torch.zeros(3)])])
    # A fused Adam with a step hook (an LR scheduler's, a logger's) steps itself: hooks run.
    fused = optim.adam([params[0]], 0.1)
    calls = []
    fused.register_step_post_hook(lambda *_: calls.append(1))
    for _ in range(3):
        optim.minimize(params[0].square().sum(), [fused])
    assert len(calls) == 3 and params[0].grad is None


def test_optimizer_step_takes_gradients_in_another_memory_layout():
    """A convolution's weight gradient (channels-last from oneDNN) steps each weight by its own.

    ``torch.autograd.grad`` returns it in the layout the backward kernel chose; the fused kernel
    reads memory flat, so each gradient is laid out as its parameter first (before the fix,
    every conv weight took another weight's gradient: SAC from pixels learned its encoder at a
    crawl). The same steps as ``backward()`` and ``Adam.step()``, bit for bit.
    """
    from sac_robot.algorithms import optim
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.MaxPool2d(3), torch.nn.Flatten(), torch.nn.Linear(400, 2))
    twin = copy.deepcopy(net)
    ours, reference = optim.adam(net.parameters(), 1e-2), optim.adam(twin.parameters(), 1e-2)
    for k in range(4):  # (the first step builds Adam's state, then the fused path)
        # (images stored H x W x C, permuted as PixelEncoder does: a channels-last input)
        x = torch.randn(8, 32, 32, 3, generator=torch.Generator().manual_seed(k))
        x = x.permute(0, 3, 1, 2)
        loss = net(x).square().mean()
        grads = torch.autograd.grad(loss, list(net.parameters()))
        optim.step([(ours, list(grads))])
        reference.zero_grad()
        twin(x).square().mean().backward()
        reference.step()
        for p, q in zip(net.parameters(), twin.parameters()):
            assert torch.equal(p, q), k
    assert not grads[0].is_contiguous()  # (what made the difference: a channels-last gradient)


def test_acting_draws_what_the_sampled_action_of_the_update_draws():
    agent = SAC(5, 2, SACConfig(hidden=(16,)), seed=0)
    obs = torch.randn(4, 5)
    with torch.no_grad():
        first, log_prob = agent.actor(obs, generator=torch.Generator().manual_seed(1))
        second, none = agent.actor(obs, generator=torch.Generator().manual_seed(1),
                                   log_prob=False)
    assert torch.equal(first, second) and log_prob.shape == (4,) and none is None


@pytest.mark.parametrize('out_features', [1, 3])
def test_ensemble_layer_is_each_members_own_linear_layer(out_features):
    """The batched layer (and its one-output form) against each member's plain product."""
    from sac_robot.algorithms.networks import EnsembleLinear
    layer = EnsembleLinear(3, 8, out_features)
    shared, separate = torch.randn(5, 8), torch.randn(3, 5, 8)
    for x in (shared, separate):
        x = x.clone().requires_grad_(True)
        out = layer(x)
        members = x if x.dim() == 3 else x.expand(3, -1, -1)
        reference = torch.stack([members[e] @ layer.weight[e] + layer.bias[e] for e in range(3)])
        assert out.shape == (3, 5, out_features)
        torch.testing.assert_close(out, reference)
        grads = torch.autograd.grad(out.square().sum(), (x, layer.weight, layer.bias))
        expected = torch.autograd.grad(reference.square().sum(), (x, layer.weight, layer.bias))
        for got, want in zip(grads, expected):
            torch.testing.assert_close(got, want)
