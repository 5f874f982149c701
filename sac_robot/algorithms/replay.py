# SPDX-License-Identifier: Apache-2.0
"""A replay buffer with preallocated storage that keeps ``terminated`` apart from ``truncated``.

A time limit or an operator reset (truncated) is not a terminal state: the target still
bootstraps from the next state's value. Only ``terminated`` zeroes it. Observations are flat
float vectors or dicts of named arrays (images stored as uint8, see ``observations.py``).
"""

import json
import os
from typing import NamedTuple

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from sac_robot.algorithms.observations import (normalize_spec, spec_from_json, spec_to_json,
                                               storage_dtype)

SCALARS = ('reward', 'terminated', 'truncated')


class Batch(NamedTuple):
    """A minibatch of transitions (``terminated``/``truncated`` as float 0 or 1).

    ``obs`` and ``next_obs`` are ``[B, O]`` float tensors, or dicts of tensors for dict specs.
    """

    obs: object
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: object
    terminated: torch.Tensor
    truncated: torch.Tensor


class ReplayBufferError(ValueError):
    """Bad input to the buffer, or a buffer file that is corrupt or does not fit."""


class ReplayBuffer:
    """Fixed-capacity ring buffer of transitions, sampled uniformly without Python loops."""

    def __init__(self, obs_spec, action_dim: int, capacity: int = 1_000_000,
                 seed: int | None = None):
        if capacity <= 0:
            raise ReplayBufferError(f'capacity must be positive, got {capacity}')
        self.obs_spec = normalize_spec(obs_spec)
        self.action_dim, self.capacity = action_dim, capacity
        self.fields = {'action': ((action_dim,), np.dtype(np.float32))}
        self.fields.update({name: ((), np.dtype(np.float32)) for name in SCALARS})
        for prefix in ('obs', 'next_obs'):
            if isinstance(self.obs_spec, int):
                self.fields[prefix] = ((self.obs_spec,), np.dtype(np.float32))
            else:
                for key, shape in self.obs_spec.items():
                    self.fields[f'{prefix}.{key}'] = (shape, storage_dtype(shape))
        # The float scalars and vectors side by side in one block (``storage`` holds views of
        # its columns), so that a minibatch of them is one gather; images are arrays of their own.
        self.columns = {}  # field -> its column (a scalar) or slice of columns in the block
        width = 0
        for name, (shape, dtype) in self.fields.items():
            if dtype == np.float32 and len(shape) <= 1:
                self.columns[name] = slice(width, width + shape[0]) if shape else width
                width += shape[0] if shape else 1
        self.block = np.zeros((capacity, width), np.float32)
        self.storage = {name: self.block[:, column] for name, column in self.columns.items()}
        self.storage.update({name: np.zeros((capacity, *shape), dtype)
                             for name, (shape, dtype) in self.fields.items()
                             if name not in self.columns})
        self.position = 0  # next row to write
        self.size = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def _rows(self, obs, action, reward, next_obs, terminated, truncated) -> dict:
        """Return the fields as arrays with a leading row axis, checked; raise if bad."""
        values = {'action': action, 'reward': reward, 'terminated': terminated,
                  'truncated': truncated}
        for prefix, value in (('obs', obs), ('next_obs', next_obs)):
            if isinstance(self.obs_spec, int):
                values[prefix] = value
            elif not isinstance(value, dict) or set(value) != set(self.obs_spec):
                raise ReplayBufferError(
                    f'{prefix} must be a dict with keys {sorted(self.obs_spec)}')
            else:
                values.update({f'{prefix}.{k}': v for k, v in value.items()})
        rows = {}
        for name, (shape, dtype) in self.fields.items():
            array = np.asarray(values[name])
            if array.shape == shape:
                array = array[None]
            if array.shape[1:] != shape:
                raise ReplayBufferError(
                    f'transition does not fit the buffer: {name} of shape '
                    f'{np.shape(values[name])}, expected {shape} or {(-1, *shape)} (N rows)')
            if dtype == np.float32 and not np.all(np.isfinite(array)):
                raise ReplayBufferError(f'non-finite value in {name}; transition rejected')
            rows[name] = array.astype(dtype, copy=False)
        counts = {len(v) for v in rows.values()}
        if len(counts) != 1:
            raise ReplayBufferError('fields of a batch of transitions differ in length: '
                                    + ', '.join(f'{k}={len(v)}' for k, v in rows.items()))
        return rows

    def add(self, obs, action, reward, next_obs, terminated, truncated):
        """Add one transition or a batch of ``N`` (every field with a leading ``N`` axis)."""
        rows = self._rows(obs, action, reward, next_obs, terminated, truncated)
        count = len(rows['reward'])
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

    def transitions(self) -> tuple:
        """Every stored transition, oldest first: the arguments :meth:`add` takes."""
        index = (self.position - self.size + np.arange(self.size)) % self.capacity

        def observation(prefix):
            if isinstance(self.obs_spec, int):
                return self.storage[prefix][index]
            return {key: self.storage[f'{prefix}.{key}'][index] for key in self.obs_spec}

        return (observation('obs'), self.storage['action'][index],
                self.storage['reward'][index], observation('next_obs'),
                self.storage['terminated'][index], self.storage['truncated'][index])

    def sample(self, batch_size: int, device='cpu') -> Batch:
        """Return ``batch_size`` transitions drawn uniformly with replacement."""
        if self.size == 0:
            raise ReplayBufferError('cannot sample from an empty replay buffer')
        index = self.rng.integers(0, self.size, batch_size)
        block = torch.from_numpy(self.block[index]).to(device)

        def take(name):
            if name in self.columns:
                return block[:, self.columns[name]]
            return torch.from_numpy(self.storage[name][index]).to(device)

        def observation(prefix):
            if isinstance(self.obs_spec, int):
                return take(prefix)
            return {key: take(f'{prefix}.{key}') for key in self.obs_spec}

        return Batch(observation('obs'), take('action'), take('reward'),
                     observation('next_obs'), take('terminated'), take('truncated'))

    def save(self, path: str):
        """Write the buffer to ``path`` (safetensors; the counters in its metadata)."""
        meta = {'obs_spec': spec_to_json(self.obs_spec), 'action_dim': self.action_dim,
                'capacity': self.capacity, 'position': self.position, 'size': self.size,
                'rng': self.rng.bit_generator.state}
        tmp = path + '.tmp'
        save_file({k: np.ascontiguousarray(v[:self.size]) for k, v in self.storage.items()},
                  tmp, metadata={'replay_buffer': json.dumps(meta)})
        os.replace(tmp, path)  # a crash mid-write never leaves a half-written buffer

    @classmethod
    def load(cls, path: str, expect_obs_spec=None,
             expect_action_dim: int | None = None) -> 'ReplayBuffer':
        """Read a buffer written by :meth:`save`; raise :class:`ReplayBufferError` if bad."""
        try:
            from safetensors import safe_open
            arrays = load_file(path)
            with safe_open(path, 'np') as stream:
                meta = json.loads(stream.metadata()['replay_buffer'])
            spec = spec_from_json(meta['obs_spec'])
        except Exception as error:  # corrupt, truncated, or not a buffer at all
            raise ReplayBufferError(f'cannot read replay buffer {path}: {error}') from error
        if expect_obs_spec is not None and spec != normalize_spec(expect_obs_spec):
            raise ReplayBufferError(
                f'replay buffer {path} has observations {spec}, expected {expect_obs_spec}')
        if expect_action_dim is not None and meta['action_dim'] != expect_action_dim:
            raise ReplayBufferError(f'replay buffer {path} has action_dim '
                                    f'{meta["action_dim"]}, expected {expect_action_dim}')
        buffer = cls(spec, meta['action_dim'], meta['capacity'])
        size = meta['size']
        for name, (shape, _) in buffer.fields.items():
            if name not in arrays or arrays[name].shape != (size, *shape):
                raise ReplayBufferError(f'replay buffer {path}: field {name} missing or of '
                                        'the wrong shape')
            if arrays[name].dtype.kind == 'f' and not np.isfinite(arrays[name]).all():
                row = int(np.flatnonzero(~np.isfinite(arrays[name]).reshape(size, -1)
                                         .all(axis=1))[0])
                raise ReplayBufferError(f'replay buffer {path}: field {name} holds a value '
                                        f'that is not finite (transition {row})')
            buffer.storage[name][:size] = arrays[name]
        buffer.size, buffer.position = size, meta['position']
        buffer.rng.bit_generator.state = meta['rng']
        return buffer
