# SPDX-License-Identifier: Apache-2.0
"""The replay buffer: wrap-around, terminated vs truncated, bad input, save and load."""

import numpy as np
import pytest

from sac_robot.algorithms.replay import ReplayBuffer, ReplayBufferError


def fill(buffer, start, count):
    for i in range(start, start + count):
        buffer.add(np.full(3, i), np.full(2, -i / 100), i, np.full(3, i + 1), i % 5 == 0,
                   i % 7 == 0)


def test_wrap_around_keeps_the_newest():
    buffer = ReplayBuffer(3, 2, capacity=10, seed=0)
    fill(buffer, 0, 25)
    assert len(buffer) == 10 and buffer.position == 5
    assert sorted(buffer.storage['reward']) == list(range(15, 25))
    # Rows stay whole: each row's fields come from the same transition.
    rows = buffer.storage
    assert np.all(rows['obs'][:, 0] == rows['reward'])
    assert np.all(rows['next_obs'][:, 0] == rows['reward'] + 1)
    assert np.all(rows['terminated'] == (rows['reward'] % 5 == 0))
    assert np.all(rows['truncated'] == (rows['reward'] % 7 == 0))


def test_batch_add_wraps_like_single_adds():
    single, batched = ReplayBuffer(3, 2, 8), ReplayBuffer(3, 2, 8)
    fill(single, 0, 13)
    ids = np.arange(13)
    batched.add(np.repeat(ids[:, None], 3, 1), np.repeat(-ids[:, None] / 100, 2, 1), ids,
                np.repeat(ids[:, None] + 1, 3, 1), ids % 5 == 0, ids % 7 == 0)
    for name in single.storage:
        assert np.array_equal(single.storage[name], batched.storage[name]), name
    assert single.position == batched.position and len(single) == len(batched)


def test_sample_shapes_and_terminated_apart_from_truncated():
    buffer = ReplayBuffer(3, 2, 100, seed=1)
    fill(buffer, 0, 50)
    batch = buffer.sample(256)
    assert batch.obs.shape == (256, 3) and batch.action.shape == (256, 2)
    assert batch.reward.shape == batch.terminated.shape == batch.truncated.shape == (256,)
    reward = batch.reward.numpy()
    assert np.array_equal(batch.terminated.numpy(), (reward % 5 == 0).astype(np.float32))
    assert np.array_equal(batch.truncated.numpy(), (reward % 7 == 0).astype(np.float32))
    assert set(reward) <= set(range(50))


def test_sample_gathers_the_rows_it_draws():
    """One gather of the float block gives each field's rows, as indexing each field would."""
    buffer = ReplayBuffer(3, 2, 100, seed=4)
    fill(buffer, 0, 60)
    index = np.random.default_rng(4).integers(0, 60, 32)  # the draw sample() makes
    batch = buffer.sample(32)
    for name in ('obs', 'action', 'reward', 'next_obs', 'terminated', 'truncated'):
        assert np.array_equal(getattr(batch, name).numpy(), buffer.storage[name][index]), name
    assert np.shares_memory(buffer.storage['obs'], buffer.block)


@pytest.mark.parametrize('obs, action, message', [
    (np.zeros(4), np.zeros(2), 'does not fit'),
    (np.zeros(3), np.zeros(3), 'does not fit'),
    (np.array([0, np.nan, 0]), np.zeros(2), 'non-finite value in obs'),
])
def test_bad_transitions_are_rejected_and_nothing_is_lost(obs, action, message):
    buffer = ReplayBuffer(3, 2, 10)
    fill(buffer, 0, 4)
    with pytest.raises(ReplayBufferError, match=message):
        buffer.add(obs, action, 0.0, np.zeros(3), False, False)
    assert len(buffer) == 4 and buffer.position == 4


def test_empty_buffer_cannot_be_sampled():
    with pytest.raises(ReplayBufferError, match='empty'):
        ReplayBuffer(3, 2, 10).sample(4)


def test_save_load_round_trip(tmp_path):
    buffer = ReplayBuffer(3, 2, 10, seed=3)
    fill(buffer, 0, 14)
    buffer.sample(5)
    path = str(tmp_path / 'replay.safetensors')
    buffer.save(path)
    loaded = ReplayBuffer.load(path, 3, 2)
    for name in buffer.storage:
        assert np.array_equal(buffer.storage[name], loaded.storage[name])
    assert (loaded.position, len(loaded)) == (buffer.position, len(buffer))
    # The sampling stream continues where it was.
    assert np.array_equal(buffer.sample(8).reward.numpy(), loaded.sample(8).reward.numpy())


def test_corrupt_or_mismatched_files_are_reported(tmp_path):
    buffer = ReplayBuffer(3, 2, 10)
    fill(buffer, 0, 3)
    path = tmp_path / 'replay.safetensors'
    buffer.save(str(path))
    with pytest.raises(ReplayBufferError, match='has observations 3, expected 4'):
        ReplayBuffer.load(str(path), 4, 2)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ReplayBufferError, match='cannot read replay buffer'):
        ReplayBuffer.load(str(path))
