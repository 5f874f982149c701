# SPDX-License-Identifier: Apache-2.0
"""A replay buffer with preallocated storage that keeps ``terminated`` apart from ``truncated``.

A time limit or an operator reset (truncated) is not a terminal state: the target still
bootstraps from the next state's value. Only ``terminated`` zeroes it.
"""

import json
import os
from typing import NamedTuple

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

FIELDS = ('obs', 'action', 'reward', 'next_obs', 'terminated', 'truncated')


class Batch(NamedTuple):
    """A minibatch of transitions as float32 tensors (``terminated``/``truncated``: 0 or 1)."""

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor


class ReplayBufferError(ValueError):
    """Bad input to the buffer, or a buffer file that is corrupt or does not fit."""


class ReplayBuffer:
    """Fixed-capacity ring buffer of transitions, sampled uniformly without Python loops."""

    def __init__(self, obs_dim: int, action_dim: int, capacity: int = 1_000_000,
                 seed: int | None = None):
        if capacity <= 0:
            raise ReplayBufferError(f'capacity must be positive, got {capacity}')
        self.obs_dim, self.action_dim, self.capacity = obs_dim, action_dim, capacity
        self.storage = {
            'obs': np.zeros((capacity, obs_dim), np.float32),
            'action': np.zeros((capacity, action_dim), np.float32),
            'reward': np.zeros(capacity, np.float32),
            'next_obs': np.zeros((capacity, obs_dim), np.float32),
            'terminated': np.zeros(capacity, np.float32),
            'truncated': np.zeros(capacity, np.float32),
        }
        self.position = 0  # next row to write
        self.size = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def add(self, obs, action, reward, next_obs, terminated, truncated):
        """Add one transition (arrays of one row) or a batch (arrays of ``N`` rows)."""
        rows = {
            'obs': np.asarray(obs, np.float32).reshape(-1, self.obs_dim),
            'action': np.asarray(action, np.float32).reshape(-1, self.action_dim),
            'reward': np.asarray(reward, np.float32).reshape(-1),
            'next_obs': np.asarray(next_obs, np.float32).reshape(-1, self.obs_dim),
            'terminated': np.asarray(terminated, np.float32).reshape(-1),
            'truncated': np.asarray(truncated, np.float32).reshape(-1),
        } if _fits(obs, self.obs_dim) and _fits(action, self.action_dim) else None
        if rows is None:
            raise ReplayBufferError(
                f'transition does not fit the buffer: observation {np.shape(obs)} for '
                f'{self.obs_dim} values, action {np.shape(action)} for {self.action_dim}')
        count = rows['obs'].shape[0]
        if any(len(value) != count for value in rows.values()):
            raise ReplayBufferError(
                'fields of a batch of transitions differ in length: '
                + ', '.join(f'{k}={len(v)}' for k, v in rows.items()))
        for name in ('obs', 'action', 'reward', 'next_obs'):
            if not np.all(np.isfinite(rows[name])):
                raise ReplayBufferError(f'non-finite value in {name}; transition rejected')
        if count > self.capacity:  # only the newest rows would survive: skip the others
            skip = count - self.capacity
            rows = {k: v[skip:] for k, v in rows.items()}
            self.position = int((self.position + skip) % self.capacity)
            count = self.capacity
        index = (self.position + np.arange(count)) % self.capacity
        for name, value in rows.items():
            self.storage[name][index] = value
        self.position = int((self.position + count) % self.capacity)
        self.size = min(self.size + count, self.capacity)

    def sample(self, batch_size: int, device='cpu') -> Batch:
        """Return ``batch_size`` transitions drawn uniformly with replacement."""
        if self.size == 0:
            raise ReplayBufferError('cannot sample from an empty replay buffer')
        index = self.rng.integers(0, self.size, batch_size)
        return Batch(*(torch.from_numpy(self.storage[name][index]).to(device) for name in FIELDS))

    def state_dict(self) -> dict:
        """Return the arrays in use and the counters (for checkpoints)."""
        return {'arrays': {k: v[:self.size] for k, v in self.storage.items()},
                'meta': {'obs_dim': self.obs_dim, 'action_dim': self.action_dim,
                         'capacity': self.capacity, 'position': self.position,
                         'size': self.size, 'rng': self.rng.bit_generator.state}}

    def save(self, path: str):
        """Write the buffer to ``path`` (safetensors; the counters in its metadata)."""
        state = self.state_dict()
        tmp = path + '.tmp'
        save_file({k: np.ascontiguousarray(v) for k, v in state['arrays'].items()}, tmp,
                  metadata={'replay_buffer': json.dumps(state['meta'])})
        os.replace(tmp, path)  # a crash mid-write never leaves a half-written buffer

    @classmethod
    def load(cls, path: str, expect_obs_dim: int | None = None,
             expect_action_dim: int | None = None) -> 'ReplayBuffer':
        """Read a buffer written by :meth:`save`; raise :class:`ReplayBufferError` if bad."""
        try:
            arrays = load_file(path)
            from safetensors import safe_open
            with safe_open(path, 'np') as stream:
                meta = json.loads(stream.metadata()['replay_buffer'])
        except Exception as error:  # corrupt, truncated, or not a buffer at all
            raise ReplayBufferError(f'cannot read replay buffer {path}: {error}') from error
        for expected, key in ((expect_obs_dim, 'obs_dim'), (expect_action_dim, 'action_dim')):
            if expected is not None and meta[key] != expected:
                raise ReplayBufferError(
                    f'replay buffer {path} has {key} {meta[key]}, expected {expected}')
        buffer = cls(meta['obs_dim'], meta['action_dim'], meta['capacity'])
        size = meta['size']
        for name in FIELDS:
            if name not in arrays or arrays[name].shape[0] != size:
                raise ReplayBufferError(f'replay buffer {path}: field {name} missing or short')
            buffer.storage[name][:size] = arrays[name]
        buffer.size, buffer.position = size, meta['position']
        buffer.rng.bit_generator.state = meta['rng']
        return buffer


def _fits(array, width: int) -> bool:
    shape = np.shape(array)
    return len(shape) in (1, 2) and shape[-1] == width
