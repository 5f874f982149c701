# SPDX-License-Identifier: Apache-2.0
"""Checkpoints: a round trip gives identical next updates; bad files are reported clearly."""

import json
import os

import numpy as np
import pytest
import torch

from sac_robot.algorithms.checkpoint import (CheckpointError, export_policy, import_policy,
                                             load_checkpoint, policy_layers, save_checkpoint)
from sac_robot.algorithms.replay import ReplayBuffer
from sac_robot.algorithms.sac import SAC, SACConfig
from sac_robot.algorithms.sql import SQL, SQLConfig

SMALL = {'sac': (SAC, SACConfig(hidden=(32, 32), batch_size=16)),
         'sql': (SQL, SQLConfig(hidden=(32, 32), batch_size=16, kernel_particles=4,
                                value_particles=4))}


def trained(algo, seed=0):
    agent_class, config = SMALL[algo]
    agent = agent_class(4, 2, config, seed=seed)
    buffer = ReplayBuffer(4, 2, 100, seed=seed)
    rng = np.random.default_rng(seed)
    buffer.add(rng.normal(size=(60, 4)), rng.uniform(-1, 1, (60, 2)), rng.normal(size=60),
               rng.normal(size=(60, 4)), rng.random(60) < 0.1, np.zeros(60))
    for _ in range(5):
        agent.update(buffer.sample(16))
    return agent, buffer


@pytest.mark.parametrize('algo', ['sac', 'sql'])
def test_resume_gives_identical_next_updates(tmp_path, algo):
    agent, buffer = trained(algo)
    save_checkpoint(str(tmp_path / 'ckpt'), agent, buffer, {'env_steps': 60})
    agent_class, config = SMALL[algo]
    restored = agent_class(4, 2, config, seed=123)  # different initial weights
    restored_buffer, extra = load_checkpoint(str(tmp_path / 'ckpt'), restored)
    assert extra == {'env_steps': 60}
    # Both continue: same batches, same random draws, so the same metrics and weights.
    for _ in range(3):
        a = agent.update(buffer.sample(16))
        b = restored.update(restored_buffer.sample(16))
        assert a == b
    for name, module in agent.modules().items():
        for p, q in zip(module.parameters(), restored.modules()[name].parameters()):
            assert torch.equal(p, q), name
    assert restored.gradient_steps == agent.gradient_steps == 8


def test_a_replacement_cut_short_keeps_the_previous_checkpoint(tmp_path):
    agent, buffer = trained('sac')
    directory = str(tmp_path / 'ckpt')
    save_checkpoint(directory, agent, buffer, {'env_steps': 60})
    agent.update(buffer.sample(16))
    save_checkpoint(directory, agent, buffer, {'env_steps': 61})
    # Killed between save_checkpoint's two renames: the previous one aside, the new one not in.
    os.replace(directory, directory + '.old')
    os.makedirs(directory + '.tmp')  # a half-written next one, never to be trusted
    restored = SAC(4, 2, SMALL['sac'][1], seed=9)
    _, extra = load_checkpoint(directory, restored)
    assert extra == {'env_steps': 61} and restored.gradient_steps == agent.gradient_steps
    assert not os.path.exists(directory + '.old')
    save_checkpoint(directory, agent, buffer, {'env_steps': 62})  # and saving goes on
    assert load_checkpoint(directory, restored)[1] == {'env_steps': 62}


def test_corrupt_tensor_file_is_rejected_and_agent_untouched(tmp_path):
    agent, buffer = trained('sac')
    directory = str(tmp_path / 'ckpt')
    save_checkpoint(directory, agent, buffer)
    path = os.path.join(directory, 'agent.safetensors')
    data = bytearray(open(path, 'rb').read())
    data[-10] ^= 0xFF
    open(path, 'wb').write(bytes(data))
    fresh = SAC(4, 2, SMALL['sac'][1], seed=5)
    before = [p.detach().clone() for p in fresh.actor.parameters()]
    with pytest.raises(CheckpointError, match='checksum'):
        load_checkpoint(directory, fresh)
    assert all(torch.equal(a, b) for a, b in zip(before, fresh.actor.parameters()))


def test_mismatched_checkpoints_are_rejected(tmp_path):
    agent, _ = trained('sac')
    directory = str(tmp_path / 'ckpt')
    save_checkpoint(directory, agent)
    with pytest.raises(CheckpointError, match="obs_spec '4', this agent '5'"):
        load_checkpoint(directory, SAC(5, 2, SMALL['sac'][1]))
    with pytest.raises(CheckpointError, match="algorithm 'sac', this agent 'sql'"):
        load_checkpoint(directory, SQL(4, 2, SMALL['sql'][1]))
    with pytest.raises(CheckpointError, match="network 'actor' does not match"):
        load_checkpoint(directory, SAC(4, 2, SACConfig(hidden=(16, 16))))
    with pytest.raises(CheckpointError, match='no checkpoint'):
        load_checkpoint(str(tmp_path / 'nothing'), agent)
    with open(os.path.join(directory, 'agent.json'), 'w') as stream:
        stream.write('{not json')
    with pytest.raises(CheckpointError, match='corrupt checkpoint metadata'):
        load_checkpoint(directory, agent)


def test_checkpoint_holds_no_pickle(tmp_path):
    agent, buffer = trained('sac')
    save_checkpoint(str(tmp_path / 'ckpt'), agent, buffer)
    names = sorted(os.listdir(tmp_path / 'ckpt'))
    assert names == ['agent.json', 'agent.safetensors', 'policy.safetensors',
                     'replay.safetensors']
    network, _ = import_policy(open(tmp_path / 'ckpt' / 'policy.safetensors', 'rb').read())
    obs = torch.zeros(1, agent.obs_spec)
    assert torch.equal(network(obs, True)[0], agent.actor(obs, True)[0])  # the agent's policy
    meta = json.load(open(tmp_path / 'ckpt' / 'agent.json'))
    assert meta['config']['hidden'] == [32, 32] and meta['algorithm'] == 'sac'


@pytest.mark.parametrize('algo', ['sac', 'sql'])
def test_policy_export_rebuilds_the_same_policy(algo):
    agent, _ = trained(algo)
    data = export_policy(agent, version=7)
    assert len(data) < 200_000
    network, meta = import_policy(data)
    assert meta['version'] == '7' and meta['algorithm'] == algo
    obs = torch.randn(3, 4)
    if algo == 'sac':
        assert torch.equal(network(obs, True)[0], agent.actor(obs, True)[0])
    else:
        noise = torch.randn(3, 1, 2)
        assert torch.equal(network(obs, noise=noise), agent.sampler(obs, noise=noise))


def test_policy_import_rejects_garbage():
    with pytest.raises(CheckpointError, match='not a valid safetensors'):
        import_policy(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a": 1}' + b'\x00' * 20)
    agent, _ = trained('sac')
    data = bytearray(export_policy(agent))
    with pytest.raises(CheckpointError):
        import_policy(bytes(data[:len(data) // 2]))


@pytest.mark.parametrize('algo', ['sac', 'sql'])
def test_policy_layers_are_the_networks_without_torch(algo):
    """The policy node's numpy layers equal the torch network's, and bad bytes are refused."""
    from safetensors.numpy import load as load_numpy
    from safetensors.numpy import save as save_numpy
    agent, _ = trained(algo)
    data = export_policy(agent, version=3)
    layers, meta = policy_layers(data)
    network, _ = import_policy(data)
    linear = [m for m in network.net if isinstance(m, torch.nn.Linear)]
    assert meta['algorithm'] == algo and len(layers) == len(linear)
    for (weight, bias), module in zip(layers, linear):
        assert weight.dtype == np.float32 and weight.flags['C_CONTIGUOUS']
        np.testing.assert_array_equal(weight, module.weight.detach().numpy().T)
        np.testing.assert_array_equal(bias, module.bias.detach().numpy())

    tensors, header = load_numpy(data), json.loads(
        data[8:8 + int.from_bytes(data[:8], 'little')])['__metadata__']

    def remade(change=None, **meta_changes):
        changed = {k: v.copy() for k, v in tensors.items()}
        if change:
            change(changed)
        return save_numpy(changed, metadata=dict(header, **meta_changes))

    with pytest.raises(CheckpointError, match='not a valid safetensors'):
        policy_layers(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match='format'):
        policy_layers(remade(format='something/else'))
    with pytest.raises(CheckpointError, match='unknown algorithm'):
        policy_layers(remade(algorithm='ppo'))
    with pytest.raises(CheckpointError, match='non-finite'):
        policy_layers(remade(lambda t: t['net.2.bias'].__setitem__(0, np.nan)))
    with pytest.raises(CheckpointError, match='policy layer 0: weight'):
        policy_layers(remade(obs_spec='5'))
    with pytest.raises(CheckpointError, match='outputs' if algo == 'sac' else 'policy layer 0'):
        policy_layers(remade(action_dim='3'))  # (SQL's sampler also takes noise of that size)
    with pytest.raises(CheckpointError, match="MLP's layers"):
        policy_layers(remade(lambda t: t.pop('net.0.bias')))
    with pytest.raises(CheckpointError, match='flat-observation'):
        policy_layers(remade(obs_spec='{"pixels": [32, 32, 3], "joints": [9]}'))


def _safetensors(header) -> bytes:
    """A safetensors file of just this JSON header (no tensor data)."""
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, 'little') + text


def test_malformed_policy_weights_are_refused_with_the_reason():
    """Every malformed part of the policy bytes is a CheckpointError naming it, never a crash.

    Both readers (numpy, for the policy node's flat policies; torch, for every policy).
    """
    from safetensors.torch import save
    agent, _ = trained('sac')
    tensors = {k: v.detach().contiguous()
               for k, v in agent.modules()['actor'].state_dict().items()}
    exported = export_policy(agent)
    good = json.loads(exported[8:8 + int.from_bytes(exported[:8], 'little')])['__metadata__']
    cases = {
        'a header that is a list': _safetensors([1, 2]),
        'metadata that is a string': _safetensors({'__metadata__': 'sac'}),
        'no length at all': b'\x05',
        'sizes of the wrong type': save(tensors, metadata={**good, 'obs_spec': '[4, 2]'}),
        'an action size that is a list': save(tensors, metadata={**good, 'action_dim': '[2]'}),
        'an action size that is negative': save(tensors, metadata={**good, 'action_dim': '-2'}),
        'an observation size that is negative': save(tensors, metadata={**good,
                                                                         'obs_spec': '-4'}),
        'an image of negative height': save(tensors, metadata={
            **good, 'obs_spec': '{"pixels": [-32, 32, 3], "joints": [9]}'}),
        'hidden sizes that are text': save(tensors, metadata={**good, 'hidden': '"32"'}),
        'hidden sizes that are not sizes': save(tensors, metadata={**good, 'hidden': '[32.5]'}),
        'a layer named net.x.weight': save(
            {**tensors, 'net.x.weight': tensors['net.0.weight'].clone()}, metadata=good),
    }
    wrong = []
    for what, data in cases.items():
        for reader in (policy_layers, import_policy):
            try:
                reader(data)
                wrong.append(f'{what}: {reader.__name__} took it')
            except CheckpointError:
                pass
            except Exception as error:  # noqa: BLE001 - the failure this test looks for
                wrong.append(f'{what}: {reader.__name__} raised {error!r}')
    assert not wrong, '\n'.join(wrong)


def test_every_file_of_a_checkpoint_is_bound_and_checked_before_anything_changes(tmp_path):
    """Corrupt, cut, deleted or swapped files and malformed fields: refused, agent untouched.

    The replay buffer is bound to agent.json (its checksum and size), so one deleted, or
    swapped in from another run, is refused rather than silently taken; agent.json's fields
    are checked by type before any of them is used.
    """
    import shutil
    agent, buffer = trained('sac')
    other_agent, other_buffer = trained('sac', seed=5)
    other = str(tmp_path / 'other')
    save_checkpoint(other, other_agent, other_buffer, {'env_steps': 60})
    good = str(tmp_path / 'good')
    save_checkpoint(good, agent, buffer, {'env_steps': 60})

    def flip(path):
        data = bytearray(open(path, 'rb').read())
        data[len(data) // 2] ^= 0xFF
        open(path, 'wb').write(bytes(data))

    def cut(path):
        data = open(path, 'rb').read()
        open(path, 'wb').write(data[:len(data) // 2])

    def drop(field):
        def mutate(directory):
            path = os.path.join(directory, 'agent.json')
            meta = json.load(open(path))
            meta.pop(field)
            json.dump(meta, open(path, 'w'))
        return mutate

    def cut_generator(directory):
        path = os.path.join(directory, 'agent.json')
        meta = json.load(open(path))
        meta['generator'] = meta['generator'][:10]
        json.dump(meta, open(path, 'w'))

    replay = 'replay.safetensors'
    cases = {
        'a bit flipped in the tensors': lambda d: flip(os.path.join(d, 'agent.safetensors')),
        'the replay buffer cut short': lambda d: cut(os.path.join(d, replay)),
        'a bit flipped in the replay buffer': lambda d: flip(os.path.join(d, replay)),
        'the replay buffer deleted': lambda d: os.remove(os.path.join(d, replay)),
        "another run's replay buffer": lambda d: shutil.copy(os.path.join(other, replay), d),
        'gradient_steps removed': drop('gradient_steps'),
        'the generator state cut': cut_generator,
    }
    for what, mutate in cases.items():
        directory = str(tmp_path / 'case')
        shutil.rmtree(directory, ignore_errors=True)
        shutil.copytree(good, directory)
        mutate(directory)
        target, _ = trained('sac', seed=1)
        before = {k: v.clone() for k, v in target.modules()['actor'].state_dict().items()}
        steps = target.gradient_steps
        with pytest.raises(CheckpointError):
            load_checkpoint(directory, target)
        after = target.modules()['actor'].state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before), what
        assert target.gradient_steps == steps, what
    restored, _ = load_checkpoint(good, trained('sac', seed=1)[0])  # the good one still loads
    assert len(restored) == len(buffer)


def test_a_replay_file_with_a_non_finite_value_is_refused(tmp_path):
    from sac_robot.algorithms.replay import ReplayBufferError
    _, buffer = trained('sac')
    buffer.storage['reward'][7] = np.nan
    path = str(tmp_path / 'replay.safetensors')
    buffer.save(path)
    with pytest.raises(ReplayBufferError, match='field reward holds a value that is not finite '
                                                r'\(transition 7\)'):
        ReplayBuffer.load(path, 4, 2)
