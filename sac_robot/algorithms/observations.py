# SPDX-License-Identifier: Apache-2.0
"""Observation specs: a flat vector, or a dict of named arrays (an image and vectors).

A spec is an ``int`` (the length of a flat float observation) or a dict ``name -> shape``:
3-dimensional shapes are images (``H x W x C`` uint8, e.g. the D'Claw camera), 1-dimensional
ones float vectors (e.g. joint positions and velocities).
"""

import json

import gymnasium
import numpy as np


def normalize_spec(spec):
    """Return ``spec`` as an ``int`` or a dict of shape tuples, checked."""
    if isinstance(spec, (int, np.integer)):
        if spec <= 0:
            raise ValueError(f'observation size must be positive, got {spec}')
        return int(spec)
    if not isinstance(spec, dict) or not spec:
        raise ValueError(f'observation spec must be an int or a non-empty dict, got {spec!r}')
    shapes = {str(k): tuple(int(d) for d in v) for k, v in sorted(spec.items())}
    if any(d <= 0 for shape in shapes.values() for d in shape):
        raise ValueError(f'observation shapes must be positive, got {shapes}')
    images = [k for k, shape in shapes.items() if len(shape) == 3]
    if len(images) > 1 or any(len(shape) not in (1, 3) for shape in shapes.values()):
        raise ValueError(f'a dict observation holds one image (H, W, C) and vectors (N,): '
                         f'got {shapes}')
    return shapes


def spec_from_space(space: gymnasium.Space):
    """Return the spec of a gymnasium ``Box`` (flat) or ``Dict`` observation space."""
    if isinstance(space, gymnasium.spaces.Box) and len(space.shape) == 1:
        return int(space.shape[0])
    if isinstance(space, gymnasium.spaces.Dict):
        return normalize_spec({k: s.shape for k, s in space.spaces.items()})
    raise ValueError(f'unsupported observation space {space}: a flat Box or a Dict of them')


def image_key(spec):
    """Return the name of the image in a dict spec, or None."""
    if isinstance(spec, int):
        return None
    return next((k for k, shape in spec.items() if len(shape) == 3), None)


def storage_dtype(shape) -> np.dtype:
    """Images are stored as uint8, vectors as float32."""
    return np.dtype(np.uint8) if len(shape) == 3 else np.dtype(np.float32)


def spec_to_json(spec) -> str:
    """Serialize a spec (for checkpoints and policy exports)."""
    return json.dumps(spec if isinstance(spec, int) else {k: list(v) for k, v in spec.items()})


def spec_from_json(text: str):
    """Parse :func:`spec_to_json`'s output."""
    return normalize_spec(json.loads(text))


def to_tensor(obs, spec, device):
    """Return ``(tensor or dict of tensors, batched)`` for one observation or a batch."""
    import torch  # here: the message helpers below serve nodes that need no torch
    if isinstance(spec, int):
        array = np.asarray(obs, np.float32)
        if array.shape[-1:] != (spec,) or array.ndim not in (1, 2):
            raise ValueError(f'observation of shape {array.shape}, expected ({spec},) or '
                             f'(batch, {spec})')
        batched = array.ndim == 2
        return torch.as_tensor(array if batched else array[None], device=device), batched
    if not isinstance(obs, dict) or set(obs) != set(spec):
        raise ValueError(f'observation must be a dict with keys {sorted(spec)}, got '
                         f'{sorted(obs) if isinstance(obs, dict) else type(obs).__name__}')
    tensors, batched = {}, None
    for key, shape in spec.items():
        array = np.asarray(obs[key], storage_dtype(shape))
        if array.shape[-len(shape):] != shape or array.ndim not in (len(shape), len(shape) + 1):
            raise ValueError(f'observation {key!r} of shape {array.shape}, expected {shape}')
        is_batch = array.ndim == len(shape) + 1
        if batched is not None and is_batch != batched:
            raise ValueError('observation mixes batched and single entries')
        batched = is_batch
        tensors[key] = torch.as_tensor(array if is_batch else array[None], device=device)
    return tensors, batched


# Messages ------------------------------------------------------------------------------------
# A dict observation travels in ROS messages (sac_robot/PolicyStep, sac_robot/Experience) as one
# flat float32 vector (its vectors concatenated in name order) and one image.

def wire_layout(spec) -> tuple:
    """``(flat size, image shape or None)``: how an observation of ``spec`` is sent."""
    if isinstance(spec, int):
        return spec, None
    key = image_key(spec)
    return (sum(shape[0] for name, shape in spec.items() if name != key),
            None if key is None else spec[key])


def to_wire(obs, spec) -> tuple:
    """``(flat float32 [..., F], image uint8 [..., H, W, C] or None)`` of one or a batch."""
    if isinstance(spec, int):
        return np.asarray(obs, np.float32), None
    key = image_key(spec)
    vectors = [np.asarray(obs[name], np.float32) for name in spec if name != key]
    return (np.concatenate(vectors, axis=-1),
            None if key is None else np.asarray(obs[key], np.uint8))


def from_wire(flat, image, spec):
    """The observation(s) of ``spec`` from :func:`to_wire`'s parts (leading batch dims kept)."""
    flat = np.asarray(flat, np.float32)
    if isinstance(spec, int):
        return flat
    key, out, start = image_key(spec), {}, 0
    for name, shape in spec.items():
        if name == key:
            out[name] = np.asarray(image, np.uint8)
        else:
            out[name] = flat[..., start:start + shape[0]]
            start += shape[0]
    return out
