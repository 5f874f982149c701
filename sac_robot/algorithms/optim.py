# SPDX-License-Identifier: Apache-2.0
"""Adam for the agents' updates: ``torch.optim.Adam`` stepped without its per-call Python.

An update of SAC steps three optimizers (critics, policy, temperature) on every environment step.
``torch.optim.Adam(fused=True)`` does the arithmetic in one kernel per call, but each
``step()`` and ``zero_grad()`` also pays hooks, grouping and bookkeeping in Python, and every
gradient first lands in ``.grad`` through the autograd engine's accumulation nodes.
:func:`minimize` takes the gradients as :func:`torch.autograd.grad` returns them and
:func:`step` hands them, with the optimizers' own state, to the same fused kernel, once for all
the optimizers that share their hyperparameters. The arithmetic is ``optimizer.step()``'s, bit
for bit (tested); the optimizers stay ordinary ``torch.optim.Adam`` objects, so checkpoints keep
their format. Step hooks registered on an optimizer (or globally) are honoured: such an
optimizer takes ``optimizer.step()``.
"""

import torch
from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks


def adam(params, lr: float) -> torch.optim.Adam:
    """Return Adam, fused where this torch build supports it (one kernel for every step)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr)


def _fusable(optimizer: torch.optim.Optimizer) -> bool:
    """Whether one plain fused-kernel call does what ``optimizer.step()`` would."""
    if type(optimizer) is not torch.optim.Adam or len(optimizer.param_groups) != 1 \
            or optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks \
            or _global_optimizer_pre_hooks or _global_optimizer_post_hooks:
        return False
    group = optimizer.param_groups[0]
    return (bool(group.get('fused')) and isinstance(group['lr'], float)
            and not any(group.get(flag) for flag in (
                'amsgrad', 'maximize', 'capturable', 'differentiable',
                'decoupled_weight_decay'))
            and all(p in optimizer.state for p in group['params']))


def _laid_out_as(param: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``grad`` in ``param``'s memory layout.

    The fused kernel walks a parameter and its gradient as flat memory, element by element; a
    convolution's weight gradient comes from oneDNN channels-last (strides ``(27, 1, 9, 3)``
    for a contiguous ``(27, 9, 3, 1)`` weight), and fed as it is, every weight would take
    another weight's gradient. ``backward()`` never shows this: the autograd engine lays
    ``.grad`` out as its parameter (its "layout contract"); :func:`torch.autograd.grad` does not.
    """
    if grad.stride() == param.stride():
        return grad
    return torch.empty_like(param).copy_(grad)


def parameters(optimizer: torch.optim.Optimizer) -> list:
    """Every parameter ``optimizer`` steps, in order."""
    return [p for group in optimizer.param_groups for p in group['params']]


def minimize(loss: torch.Tensor, optimizers) -> None:
    """Differentiate ``loss`` for every parameter of ``optimizers`` and step them."""
    params = [parameters(optimizer) for optimizer in optimizers]
    grads = iter(torch.autograd.grad(loss, [p for group in params for p in group]))
    step([(optimizer, [next(grads) for _ in group])
          for optimizer, group in zip(optimizers, params)])


def step(updates) -> None:
    """Apply ``(optimizer, gradients)`` pairs, ``gradients`` in the order of the parameters.

    Each optimizer steps exactly as ``optimizer.step()`` would with ``p.grad = gradient``. An
    optimizer whose state is not built yet (its first step), that is not a plain fused Adam, or
    that has step hooks takes that path itself.
    """
    calls = {}
    for optimizer, grads in updates:
        params = parameters(optimizer)
        if len(grads) != len(params):
            raise ValueError(f'{len(grads)} gradients for {len(params)} parameters')
        grads = [_laid_out_as(param, grad) for param, grad in zip(params, grads)]
        if not _fusable(optimizer):
            for param, grad in zip(params, grads):
                param.grad = grad
            optimizer.step()
            for param in params:
                param.grad = None
            continue
        group = optimizer.param_groups[0]
        key = (group['lr'], *group['betas'], group['eps'], group['weight_decay'])
        lists = calls.setdefault(key, ([], [], [], [], []))
        lists[0].extend(params)
        lists[1].extend(grads)
        for param in params:
            state = optimizer.state[param]
            lists[2].append(state['exp_avg'])
            lists[3].append(state['exp_avg_sq'])
            lists[4].append(state['step'])
    for (lr, beta1, beta2, eps, weight_decay), (params, grads, avgs, avg_sqs, steps) \
            in calls.items():
        torch._foreach_add_(steps, 1)
        torch._fused_adam_(params, grads, avgs, avg_sqs, [], steps, amsgrad=False, lr=lr,
                           beta1=beta1, beta2=beta2, weight_decay=weight_decay, eps=eps,
                           maximize=False)
