# SPDX-License-Identifier: Apache-2.0
"""Checkpoints and policy exports in formats that cannot execute code when loaded.

A checkpoint is a directory:

- ``agent.safetensors``: every network (online and target), the optimizers' tensors (Adam's
  moments and step counts), log alpha, torch's global RNG state (dropout draws from it);
- ``agent.json``: algorithm, config, dimensions, counters, the optimizers' non-tensor state,
  the agent's own random generator and the exploration noise's, a sha256 of the tensor file,
  and anything the caller adds;
- ``replay.safetensors``: the replay buffer, when one is given.

Loading checks the format version, the algorithm, the dimensions and the checksum, and says
what is wrong and where. No pickle anywhere: ``safetensors`` holds only raw tensors, JSON only
data.

A policy export (:func:`export_policy`) is one small safetensors file with only the policy's
weights and the metadata to rebuild it, the payload of ``sac_robot/PolicyWeights``.
"""

import dataclasses
import hashlib
import json
import math
import os
import re
import shutil

import torch
from safetensors.torch import load, load_file, save, save_file

FORMAT = 'sac_robot.checkpoint/1'
POLICY_FORMAT = 'sac_robot.policy/1'
#: The largest size (an action, a hidden layer) policy bytes may claim.
MAX_SIZE = 65_536


class CheckpointError(ValueError):
    """A checkpoint or policy file that is missing, corrupt, or made for another agent."""


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as stream:
        for block in iter(lambda: stream.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def _optimizer_split(name: str, optimizer: torch.optim.Optimizer):
    """Split an optimizer's state into tensors (for safetensors) and JSON-able data."""
    state = optimizer.state_dict()
    tensors, entries = {}, {}
    for index, values in state['state'].items():
        entries[str(index)] = {}
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f'optimizer.{name}.{index}.{key}'] = value.detach().clone().contiguous()
                entries[str(index)][key] = 'tensor'
            else:
                entries[str(index)][key] = value
    return tensors, {'state': entries, 'param_groups': state['param_groups']}


def _optimizer_join(name: str, tensors: dict, data: dict) -> dict:
    state = {}
    for index, values in data['state'].items():
        state[int(index)] = {
            key: tensors[f'optimizer.{name}.{index}.{key}'] if value == 'tensor' else value
            for key, value in values.items()}
    return {'state': state, 'param_groups': data['param_groups']}


def save_checkpoint(directory: str, agent, replay_buffer=None, extra: dict | None = None):
    """Write ``agent`` (and ``replay_buffer``) into ``directory``, replacing it atomically."""
    tmp = directory.rstrip('/') + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    tensors = {}
    for name, module in agent.modules().items():
        for key, value in module.state_dict().items():
            tensors[f'module.{name}.{key}'] = value.detach().contiguous()
    optimizers = {}
    for name, optimizer in agent.optimizers().items():
        optimizer_tensors, optimizers[name] = _optimizer_split(name, optimizer)
        tensors.update(optimizer_tensors)
    for name, value in agent.extra_tensors().items():
        tensors[f'extra.{name}'] = value.detach().reshape(1).contiguous()
    tensors['rng.torch'] = torch.get_rng_state()
    tensor_path = os.path.join(tmp, 'agent.safetensors')
    save_file(tensors, tensor_path)
    meta = {
        'format': FORMAT,
        'algorithm': agent.algorithm,
        'obs_spec': agent.obs_spec,
        'action_dim': agent.action_dim,
        'config': dataclasses.asdict(agent.config),
        'gradient_steps': agent.gradient_steps,
        'alpha': float(agent.alpha),
        'optimizers': optimizers,
        'generator': agent.generator.get_state().tolist(),
        'exploration_rng': (agent.exploration.rng.bit_generator.state
                            if hasattr(agent, 'exploration') else None),
        'sha256': _sha256(tensor_path),
        'extra': extra or {},
    }
    if replay_buffer is not None:  # bound to agent.json: its checksum and size recorded there
        replay_path = os.path.join(tmp, 'replay.safetensors')
        replay_buffer.save(replay_path)
        meta['replay'] = {'sha256': _sha256(replay_path), 'size': len(replay_buffer)}
    with open(os.path.join(tmp, 'agent.json'), 'w', encoding='utf-8') as stream:
        json.dump(meta, stream, indent=1)
    # The policy alone, for evaluation and deployment (the policy node's ``checkpoint``).
    with open(os.path.join(tmp, 'policy.safetensors'), 'wb') as stream:
        stream.write(export_policy(agent))
    # Replace the previous checkpoint only once the new one is complete. A process killed
    # between the two renames leaves only ``.old``: recover_checkpoint puts it back.
    recover_checkpoint(directory)
    old = directory.rstrip('/') + '.old'
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(directory):
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def recover_checkpoint(directory: str) -> bool:
    """Finish a replacement cut short: restore ``directory`` from ``directory.old``.

    :func:`save_checkpoint` moves the previous checkpoint aside before moving the new one in;
    a process killed between the two renames leaves no ``directory``, only the complete
    previous checkpoint beside it. Returns whether ``directory`` now holds a checkpoint.
    """
    old = directory.rstrip('/') + '.old'
    if not os.path.exists(directory) and os.path.isfile(os.path.join(old, 'agent.json')):
        os.replace(old, directory)
    return os.path.isfile(os.path.join(directory, 'agent.json'))


def read_checkpoint_meta(directory: str) -> dict:
    """Return the JSON metadata of a checkpoint, checked for format."""
    recover_checkpoint(directory)
    path = os.path.join(directory, 'agent.json')
    try:
        with open(path, encoding='utf-8') as stream:
            meta = json.load(stream)
    except FileNotFoundError as error:
        raise CheckpointError(f'no checkpoint at {directory} (missing {path})') from error
    except (OSError, ValueError) as error:
        raise CheckpointError(f'corrupt checkpoint metadata {path}: {error}') from error
    if not isinstance(meta, dict) or meta.get('format') != FORMAT:
        raise CheckpointError(
            f'{path}: format {meta.get("format") if isinstance(meta, dict) else None!r}, '
            f'expected {FORMAT!r}')
    return meta


def load_checkpoint(directory: str, agent, load_replay: bool = True):
    """Restore ``agent`` in place from ``directory``; return ``(replay_buffer or None, extra)``.

    Raises :class:`CheckpointError` naming the file and the problem when the checkpoint is
    corrupt or belongs to another algorithm or other dimensions; ``agent`` is then untouched:
    every file is read and checked first (the tensors and the replay buffer against the
    checksums and size agent.json records for them, agent.json's fields by type), and only
    then is anything changed. A replay buffer recorded but missing, or one swapped in from
    another run, is refused.
    """
    meta = read_checkpoint_meta(directory)
    from sac_robot.algorithms.observations import spec_from_json, spec_to_json
    try:
        saved_spec = spec_from_json(json.dumps(meta.get('obs_spec')))
    except ValueError as error:
        raise CheckpointError(f'checkpoint {directory}: bad observation spec: {error}') from error
    for key, value, expected in (('algorithm', meta.get('algorithm'), agent.algorithm),
                                 ('obs_spec', spec_to_json(saved_spec),
                                  spec_to_json(agent.obs_spec)),
                                 ('action_dim', meta.get('action_dim'), agent.action_dim)):
        if value != expected:
            raise CheckpointError(
                f'checkpoint {directory} has {key} {value!r}, this agent {expected!r}')
    _check_meta_fields(directory, meta, agent)
    tensor_path = os.path.join(directory, 'agent.safetensors')
    if not os.path.isfile(tensor_path) or _sha256(tensor_path) != meta.get('sha256'):
        raise CheckpointError(f'{tensor_path} is missing or does not match its checksum')
    try:
        tensors = load_file(tensor_path)
        states = {name: {key[len(f'module.{name}.'):]: value for key, value in tensors.items()
                         if key.startswith(f'module.{name}.')} for name in agent.modules()}
        optimizer_states = {name: _optimizer_join(name, tensors, meta['optimizers'][name])
                            for name in agent.optimizers()}
        # Check every shape against the agent before changing anything.
        for name, module in agent.modules().items():
            own = module.state_dict()
            if set(own) != set(states[name]) or any(
                    own[k].shape != states[name][k].shape for k in own):
                raise CheckpointError(
                    f'{tensor_path}: network {name!r} does not match this agent '
                    '(different layer sizes or ensemble?)')
    except CheckpointError:
        raise
    except Exception as error:
        raise CheckpointError(f'cannot restore {tensor_path}: {error!r}') from error
    replay = None
    replay_path = os.path.join(directory, 'replay.safetensors')
    recorded = meta.get('replay')  # (checkpoints from before it was recorded: unbound)
    if load_replay and (recorded is not None or os.path.isfile(replay_path)):
        from sac_robot.algorithms.replay import ReplayBuffer, ReplayBufferError
        if recorded is not None and (not os.path.isfile(replay_path)
                                     or _sha256(replay_path) != recorded.get('sha256')):
            raise CheckpointError(f'{replay_path} is missing or does not match the checksum '
                                  'agent.json records for it (deleted, corrupt, or from '
                                  'another run)')
        try:
            replay = ReplayBuffer.load(replay_path, agent.obs_spec, agent.action_dim)
        except ReplayBufferError as error:
            raise CheckpointError(str(error)) from error
        if recorded is not None and len(replay) != recorded.get('size'):
            raise CheckpointError(f'{replay_path} holds {len(replay)} transitions, agent.json '
                                  f'records {recorded.get("size")}')
    for name, module in agent.modules().items():
        module.load_state_dict(states[name])
    for name, optimizer in agent.optimizers().items():
        optimizer.load_state_dict(optimizer_states[name])
    with torch.no_grad():
        for name, value in agent.extra_tensors().items():
            value.copy_(tensors[f'extra.{name}'].reshape(value.shape))
    agent.gradient_steps = meta['gradient_steps']
    agent.generator.set_state(torch.tensor(meta['generator'], dtype=torch.uint8))
    if meta.get('exploration_rng') is not None:
        agent.exploration.rng.bit_generator.state = meta['exploration_rng']
    if agent.algorithm == 'sql':
        agent.alpha = meta['alpha']
    torch.set_rng_state(tensors['rng.torch'])
    return replay, meta.get('extra', {})


def _check_meta_fields(directory: str, meta: dict, agent):
    """agent.json's fields, by type, before any of them is used: CheckpointError if not."""
    where = os.path.join(directory, 'agent.json')
    problems = []
    if type(meta.get('gradient_steps')) is not int or meta['gradient_steps'] < 0:
        problems.append(f'gradient_steps {meta.get("gradient_steps")!r}')
    generator = meta.get('generator')
    if (not isinstance(generator, list) or len(generator) != len(agent.generator.get_state())
            or not all(type(b) is int and 0 <= b < 256 for b in generator)):
        problems.append('generator (the random state, cut or malformed)')
    if not isinstance(meta.get('optimizers'), dict):
        problems.append('optimizers')
    if not isinstance(meta.get('extra', {}), dict):
        problems.append('extra')
    if agent.algorithm == 'sql' and not (isinstance(meta.get('alpha'), (int, float))
                                          and math.isfinite(meta['alpha'])):
        problems.append(f'alpha {meta.get("alpha")!r}')
    if hasattr(agent, 'exploration') and not isinstance(meta.get('exploration_rng'), dict):
        problems.append('exploration_rng')
    if meta.get('replay') is not None and not isinstance(meta['replay'], dict):
        problems.append('replay')
    if problems:
        raise CheckpointError(f'{where}: missing or malformed: {", ".join(problems)}')


def export_policy(agent, version: int = 0) -> bytes:
    """Return the policy's weights as safetensors bytes, with what is needed to rebuild it."""
    from sac_robot.algorithms.observations import spec_to_json

    actor = agent.modules()['actor']
    metadata = {
        'format': POLICY_FORMAT, 'algorithm': agent.algorithm, 'version': str(version),
        'obs_spec': spec_to_json(agent.obs_spec), 'action_dim': str(agent.action_dim),
        'hidden': json.dumps(list(agent.config.hidden)),
        # (observation keys the policy does not read: SACConfig.privileged)
        'ignore': json.dumps(list(getattr(agent.config, 'privileged', ()))),
    }
    return save({k: v.detach().contiguous() for k, v in actor.state_dict().items()},
                metadata=metadata)


def policy_metadata(data: bytes) -> dict:
    """The metadata in the header of :func:`export_policy` bytes (sizes, algorithm, version)."""
    size = int.from_bytes(bytes(data[:8]), 'little') if len(data) >= 8 else -1
    if not 0 < size <= len(data) - 8:
        raise CheckpointError(f'policy bytes ({len(data)}) have no safetensors header (its '
                              f'length says {size})')
    try:
        header = json.loads(bytes(data[8:8 + size]))
    except (ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f'policy bytes have no readable safetensors header: {error}'
                              ) from error
    if not isinstance(header, dict):
        raise CheckpointError(f'policy safetensors header is a {type(header).__name__}, not a '
                              'mapping')
    return header.get('__metadata__', {})


def policy_header(data: bytes) -> tuple[dict, object, int]:
    """The checked metadata of :func:`export_policy` bytes: ``(meta, obs_spec, action_dim)``.

    Refuses another format, an unknown algorithm, and missing or malformed sizes (the
    observation's, the action's, the hidden layers': positive whole numbers).
    """
    from sac_robot.algorithms.observations import spec_from_json
    meta = policy_metadata(data)
    if not isinstance(meta, dict):
        raise CheckpointError(f'policy metadata is a {type(meta).__name__}, not a mapping')
    if meta.get('format') != POLICY_FORMAT:
        raise CheckpointError(f'policy format {meta.get("format")!r}, expected {POLICY_FORMAT!r}')
    try:
        spec, action_dim = spec_from_json(meta['obs_spec']), int(meta['action_dim'])
        hidden = json.loads(meta['hidden'])
    except (KeyError, ValueError, TypeError) as error:
        raise CheckpointError(f'policy metadata incomplete or malformed: {error}') from error
    if not 0 < action_dim <= MAX_SIZE:
        raise CheckpointError(f'policy action_dim {action_dim}: not a size (1..{MAX_SIZE})')
    if (not isinstance(hidden, list) or not hidden
            or not all(type(h) is int and 0 < h <= MAX_SIZE for h in hidden)):
        raise CheckpointError(f'policy hidden {meta["hidden"]!r}: not a list of layer sizes '
                              f'(1..{MAX_SIZE})')
    if meta.get('algorithm') not in ('sac', 'sql'):
        raise CheckpointError(f'unknown algorithm {meta.get("algorithm")!r} in policy bytes')
    return meta, spec, action_dim


def policy_layers(data: bytes) -> tuple[list, dict]:
    """The fully connected layers of a flat-observation policy, as numpy, without torch.

    Returns ``([(weight [in, out], bias [out]) float32, ...], meta)`` from
    :func:`export_policy` bytes, checked as :func:`import_policy` checks them (format,
    algorithm, sizes chaining from the observation, plus SQL's noise, to the action outputs,
    finite values) at a tenth of its cost: the policy node rebuilds every published version
    beside its control loop, and a torch module's construction holds the interpreter for
    milliseconds. Pixel policies (an encoder before the layers) need :func:`import_policy`.
    """
    import numpy as np
    from safetensors.numpy import load as load_numpy
    try:
        tensors = load_numpy(bytes(data))
    except Exception as error:
        raise CheckpointError(f'policy bytes are not a valid safetensors file: {error}') from error
    meta, spec, action_dim = policy_header(data)
    if not isinstance(spec, int):
        raise CheckpointError('policy_layers takes flat-observation policies; this one takes '
                              f'{spec} (use import_policy)')
    indices = sorted(int(k.split('.')[1]) for k in tensors
                     if re.fullmatch(r'net\.\d{1,3}\.weight', k))
    expected = {f'net.{i}.{part}' for i in indices for part in ('weight', 'bias')}
    if not indices or set(tensors) != expected:
        raise CheckpointError(f"policy tensors {sorted(tensors)} are not an MLP's layers")
    width = spec + (action_dim if meta['algorithm'] == 'sql' else 0)
    outputs = 2 * action_dim if meta['algorithm'] == 'sac' else action_dim
    layers = []
    for i in indices:
        weight, bias = tensors[f'net.{i}.weight'], tensors[f'net.{i}.bias']
        if weight.ndim != 2 or weight.shape[1] != width or bias.shape != weight.shape[:1]:
            raise CheckpointError(f'policy layer {i}: weight {weight.shape}, bias {bias.shape} '
                                  f'after {width} features')
        if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
            raise CheckpointError(f'policy layer {i} holds non-finite values')
        layers.append((np.ascontiguousarray(weight.T, np.float32), bias.astype(np.float32)))
        width = weight.shape[0]
    if width != outputs:
        raise CheckpointError(f'policy outputs {width} values, {meta["algorithm"]} with '
                              f'{action_dim} actions needs {outputs}')
    return layers, meta


def import_policy(data: bytes):
    """Rebuild a policy network from :func:`export_policy` bytes; return ``(network, meta)``.

    The network maps observations to actions: ``network(obs, deterministic)`` for SAC's
    tanh-Gaussian policy, ``network(obs, num_samples)`` for SQL's sampler.
    """
    from safetensors import deserialize

    from sac_robot.algorithms.networks import SamplingNetwork, TanhGaussianPolicy

    try:
        deserialize(bytes(data))  # validates the whole layout
        tensors = load(bytes(data))
    except Exception as error:
        raise CheckpointError(f'policy bytes are not a valid safetensors file: {error}') from error
    metadata, obs_spec, action_dim = policy_header(data)
    hidden = tuple(json.loads(metadata['hidden']))  # (checked by policy_header)
    network_class = {'sac': TanhGaussianPolicy, 'sql': SamplingNetwork}[metadata['algorithm']]
    try:
        ignore = json.loads(metadata.get('ignore', '[]'))
        if not isinstance(ignore, list) or not all(isinstance(k, str) for k in ignore):
            raise ValueError(f'not a list of names: {ignore!r}')
        network = (network_class(obs_spec, action_dim, hidden, tuple(ignore)) if ignore
                   else network_class(obs_spec, action_dim, hidden))
    except ValueError as error:
        raise CheckpointError(f'policy metadata ignore: {error}') from error
    try:
        network.load_state_dict(tensors)
    except RuntimeError as error:
        raise CheckpointError(f'policy weights do not fit their metadata: {error}') from error
    return network.eval(), metadata
