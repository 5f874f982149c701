# SPDX-License-Identifier: Apache-2.0
"""SAC's gradients in closed form, for its plain MLP networks: no autograd graph.

An update of SAC differentiates two small losses through two small MLPs. Autograd records a
graph node per operation and walks the graph back, and on a CPU that bookkeeping is a large part
of what the backward passes of such small networks take. For the networks of the paper (flat
observations, ReLU MLPs, critics without layer norm or dropout, float32) the gradients are a few
matrix products each, written out here: backpropagation by hand, with the same parameters, the
same random draws and the same formulas for every value (the networks' own layers compute the
forward passes), so the result is autograd's up to float rounding (tested against it, gradient by
gradient and over whole runs). :func:`applicable` says when an agent can use them; SAC falls back
to autograd otherwise, or when ``SACConfig.closed_form`` is False.

The public functions are pure (they read parameters and write nothing) and are meant to be
called under ``torch.no_grad()``. Notation: ``B`` the batch, ``E`` the critics, ``A`` the action's
dimension; gradients come out in the order of the optimizers' parameters.
"""

import warnings

import torch
from torch import nn

from sac_robot.algorithms import losses
from sac_robot.algorithms.networks import (LOG_STD_MAX, LOG_STD_MIN, EnsembleLinear,
                                           tanh_gaussian_log_prob)


def applicable(config, obs_spec) -> bool:
    """Whether an agent with ``config`` and ``obs_spec`` has the plain networks handled here."""
    return (config.closed_form and isinstance(obs_spec, int) and not config.bf16
            and config.critic_dropout == 0 and not config.critic_layer_norm)


def _relu_backward(grad: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """``grad`` where the ReLU's ``output`` is positive, else 0 (one kernel, as autograd's)."""
    return torch.ops.aten.threshold_backward(grad, output, 0)


def _policy_forward(actor, obs: torch.Tensor, eps: torch.Tensor):
    """``a = tanh(mean + std * eps)`` and ``log pi(a|s)`` (Eq. 26), with what backward needs."""
    layers = [m for m in actor.net if isinstance(m, nn.Linear)]
    inputs, x = [], obs
    for layer in layers[:-1]:
        inputs.append(x)
        x = torch.relu_(layer(x))
    inputs.append(x)
    mean, raw_log_std = layers[-1](x).chunk(2, dim=-1)
    log_std = raw_log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
    std = log_std.exp()
    u = mean + std * eps  # as TanhGaussianPolicy.forward
    action = torch.tanh(u)
    cache = (layers, inputs, raw_log_std, std, eps, action)
    return action, tanh_gaussian_log_prob(u, mean, log_std), cache


def _policy_backward(cache, grad_action: torch.Tensor, grad_log_prob) -> list:
    """Gradients of the policy's parameters given ``dL/da`` and a uniform ``dL/dlog_pi``.

    With ``u = mean + std eps``: ``dlog_pi/du = 2 tanh(u)`` (the squashing term of Eq. 26),
    ``da/du = 1 - a^2``, ``du/dlog_std = std eps``, and the Gaussian term contributes ``-1`` per
    log standard deviation (its dependence on ``u - mean = std eps`` cancels). The clamp of the
    log standard deviation passes gradients inside its bounds only.
    """
    layers, inputs, raw_log_std, std, eps, action = cache
    grad_u = grad_action * (1.0 - action * action) + (2.0 * grad_log_prob) * action
    grad_log_std = (grad_u * std * eps - grad_log_prob) * (
        (raw_log_std >= LOG_STD_MIN) & (raw_log_std <= LOG_STD_MAX))
    grad = torch.cat([grad_u, grad_log_std], dim=-1)
    grads = []
    for index in range(len(layers) - 1, -1, -1):
        x = inputs[index]
        grads += [grad.sum(0), grad.t() @ x]  # bias, weight ([out, in], as nn.Linear)
        if index:
            grad = _relu_backward(grad @ layers[index].weight, x)
    return grads[::-1]


def _critic_forward(critic, obs: torch.Tensor, action: torch.Tensor):
    """``[E, B]`` Q-values of the ensemble, with what backward needs."""
    layers = [m for m in critic.net if isinstance(m, EnsembleLinear)]
    x = torch.cat([obs, action], dim=-1)
    inputs = []
    for layer in layers[:-1]:
        inputs.append(x)
        x = torch.relu_(layer(x))
    inputs.append(x)
    return layers[-1](x).squeeze(-1), (layers, inputs)


def _critic_backward(cache, grad_q: torch.Tensor, params: bool = True, action_dim: int = 0):
    """Backpropagate ``dL/dQ`` (``[E, B]``) through the ensemble.

    ``params``: return the parameters' gradients (weight ``[E, in, out]``, bias ``[E, 1, out]``
    per layer); otherwise return ``dL/da`` (``[B, A]``, the last ``action_dim`` inputs, summed
    over the members), the parameters being constants.
    """
    layers, inputs = cache
    grad = grad_q.unsqueeze(-1)  # [E, B, 1]
    grads = []
    for index in range(len(layers) - 1, -1, -1):
        x, weight = inputs[index], layers[index].weight
        if params:
            if x.dim() == 2:  # the first layer's input, shared by the members
                x = x.unsqueeze(0).expand(weight.shape[0], -1, -1)
            grads += [grad.sum(1, keepdim=True),
                      torch.bmm(x.transpose(1, 2), grad) if grad.shape[-1] > 1
                      else (x * grad).sum(1).unsqueeze(-1)]
        if index:
            grad = _relu_backward(torch.bmm(grad, weight.transpose(1, 2)) if grad.shape[-1] > 1
                                  else grad * weight.transpose(1, 2), x)
        elif not params:
            return torch.bmm(grad, weight[:, -action_dim:].transpose(1, 2)).sum(0)
    return grads[::-1]


def critic_target(actor, critic_target, next_obs: torch.Tensor, eps: torch.Tensor,
                  reward: torch.Tensor, terminated: torch.Tensor, gamma: float,
                  alpha: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 6's target ``y`` (``[B]``) with ``a' = f(eps; s')`` and the target critics' minimum.

    ``members``: the critics whose minimum counts (REDQ's random subset); None for all.
    """
    next_action, next_log_prob, _ = _policy_forward(actor, next_obs, eps)
    next_q = _critic_forward(critic_target, next_obs, next_action)[0]
    if members is not None:
        next_q = next_q.index_select(0, members)
    return losses.soft_q_target(next_q.min(dim=0).values, next_log_prob, reward, terminated,
                                gamma, alpha)


def critic_gradients(critic, obs: torch.Tensor, action: torch.Tensor, target: torch.Tensor):
    """Eq. 5's loss, ``Q`` (``[E, B]``) and the loss's gradients for the critics' parameters."""
    q, cache = _critic_forward(critic, obs, action)
    return losses.q_loss(q, target), q, _critic_backward(cache, (q - target) / q.shape[1])


def policy_gradients(actor, critic, obs: torch.Tensor, eps: torch.Tensor,
                     alpha: torch.Tensor, reduce: str = 'min',
                     log_alpha: torch.Tensor | None = None, target_entropy: float = 0.0):
    """Eq. 9's policy loss at ``a = f(eps; s)`` and its gradients; Eq. 18's with ``log_alpha``.

    ``Q`` is the critics' minimum (``reduce='min'``, SAC's twins; the gradient goes to the
    smaller one, as torch's ``min`` sends it) or their mean (``'mean'``, REDQ); the critics are
    constants. Returns ``(actor_loss, log_prob, q, actor_grads, alpha_loss, alpha_grad)``, the
    last two None without ``log_alpha`` (a fixed temperature).
    """
    batch_size = obs.shape[0]
    action, log_prob, policy_cache = _policy_forward(actor, obs, eps)
    q_pi, critic_cache = _critic_forward(critic, obs, action)
    if reduce == 'min':
        q, members = q_pi.min(dim=0)
        grad_q = torch.zeros_like(q_pi).scatter_(0, members.unsqueeze(0), -1.0 / batch_size)
    else:
        q = q_pi.mean(dim=0)
        grad_q = torch.full_like(q_pi, -1.0 / (batch_size * q_pi.shape[0]))
    grad_action = _critic_backward(critic_cache, grad_q, params=False,
                                   action_dim=eps.shape[-1])
    grads = _policy_backward(policy_cache, grad_action, alpha / batch_size)
    actor_loss = losses.policy_loss(alpha, log_prob, q)
    if log_alpha is None:
        return actor_loss, log_prob, q, grads, None, None
    return (actor_loss, log_prob, q, grads,
            losses.temperature_loss(log_alpha, log_prob, target_entropy),
            losses.temperature_gradient(log_alpha, log_prob, target_entropy))


_COMPILED = None


def functions(compiled: bool = False):
    """``(critic_target, critic_gradients, policy_gradients)``, compiled or as written.

    Compiled with ``torch.compile`` (inductor: C++ kernels on the CPU), once per process and
    shared by every agent; the elementwise work of each function is fused into a few kernels
    around the same matrix products.
    """
    global _COMPILED
    if not compiled:
        return critic_target, critic_gradients, policy_gradients
    if _COMPILED is None:
        _COMPILED = tuple(torch.compile(f, dynamic=False)
                          for f in (critic_target, critic_gradients, policy_gradients))
    return _COMPILED


def compile_for(agent, batch_size: int) -> bool:
    """Compile the functions for ``agent``'s networks now, on a batch of zeros.

    They are pure (no parameter or generator is touched), so compiling ahead leaves the agent
    as it was; the first update then does not pay the compile time. Returns False, with a
    warning, when compiling fails (no C++ compiler, say): the agent then runs them as written.
    """
    target_fn, critic_fn, policy_fn = functions(compiled=True)
    obs = torch.zeros((batch_size, agent.obs_spec), device=agent.device)
    action = torch.zeros((batch_size, agent.action_dim), device=agent.device)
    zeros, alpha = obs.new_zeros(batch_size), agent.log_alpha.detach().exp()
    k, e = agent.config.num_target_critics, agent.config.num_critics
    members = torch.arange(k, device=agent.device) if k < e else None
    try:
        with torch.no_grad():
            target_fn(agent.actor, agent.critic_target, obs, action, zeros, zeros.clone(),
                      agent.config.gamma, alpha, members)
            critic_fn(agent.critic, obs, action, zeros)
            policy_fn(agent.actor, agent.critic, obs, action, alpha, agent._policy_reduce,
                      agent.log_alpha if agent.config.auto_alpha else None,
                      agent.target_entropy)
    except Exception as error:  # noqa: BLE001 - any compiler failure: run uncompiled
        warnings.warn(f'torch.compile of the closed-form gradients failed, running them '
                      f'uncompiled: {type(error).__name__}: {error}', stacklevel=3)
        return False
    return True
