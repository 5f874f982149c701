# SPDX-License-Identifier: Apache-2.0
"""How well an image encoder reads the valve's angle from the D'Claw's 32 x 32 camera.

A probe of what limits SAC from pixels on the valve task. Images of the valve at random angles
with the fingers at random poses (``--samples`` of them from random joint targets, and 2000
more held out, other seeds), and for each encoder a regression head (two layers of 256)
trained ``--iters`` Adam steps to predict the angle's cos and sin from the encoder's image
features:

- ``paper encoder, trained``: the paper's encoder trained with the head (what the encoder can
  learn when it is told the angle; with DrQ's random shift as in training);
- ``paper encoder, random, frozen``: the same at its initialisation, frozen (what a head gets
  without any learning in the encoder);
- ``--checkpoint DIR``: each given agent's critic encoder, frozen (what its training taught it),
  e.g. ``runs/train/checkpoint`` of ``sac-robot train --env sac_robot/DClawTurnPixels-v0``.

Prints each one's median angle error on the held-out images and the share within 0.1 rad (the
task's success threshold). ``--scene`` takes another valve scene (another camera), written
beside ``assets/dclaw/dclaw.xml``, which it includes.

    .venv/bin/python bench/pixel_probe.py [--samples 16000] [--iters 3000] [--checkpoint DIR]
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import describe  # noqa: E402

from sac_robot.algorithms.checkpoint import load_checkpoint  # noqa: E402
from sac_robot.algorithms.networks import PixelEncoder, random_shift  # noqa: E402
from sac_robot.algorithms.observations import spec_from_json  # noqa: E402
from sac_robot.robots.dclaw import RESET_POSE, DClawSim  # noqa: E402
from sac_robot.tasks.dclaw import ACTION_RANGE  # noqa: E402
from sac_robot.training import build_agent  # noqa: E402


def collect(samples: int, seed: int, scene: str | None, substeps: int = 40) -> tuple:
    """``(images [N, 32, 32, 3] uint8, valve angles [N])``: episodes of 8 random targets."""
    rng, sim = np.random.default_rng(seed), DClawSim(scene)
    images, angles = [], []
    while len(images) < samples:
        sim.reset(RESET_POSE, rng.uniform(-np.pi, np.pi))
        for _ in range(8):
            sim.command(rng.uniform(-1, 1, 9) * ACTION_RANGE)
            sim.step(substeps)
            images.append(sim.render(32, 32))
            angles.append(sim.valve_angle())
    return np.array(images[:samples]), np.array(angles[:samples])


class ImageFeatures(nn.Module):
    """A :class:`PixelEncoder`'s image features alone (no proprioceptive inputs)."""

    def __init__(self, encoder: PixelEncoder):
        super().__init__()
        self.encoder = encoder
        self.out_features = encoder.conv(torch.zeros(1, *encoder_input(encoder))).shape[-1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, features]`` of ``uint8 [B, 32, 32, 3]`` images."""
        return self.encoder.conv(images.permute(0, 3, 1, 2).float() / 255.0)


def encoder_input(encoder: PixelEncoder) -> tuple:
    """``(C, H, W)`` of the images ``encoder`` takes (32 x 32 RGB)."""
    return (encoder.conv[0].in_channels, 32, 32)


def probe(features: ImageFeatures, train: tuple, held_out: tuple, iters: int, frozen: bool,
          shift: int, seed: int = 0) -> dict:
    """Train a head (and the encoder unless ``frozen``); the held-out angle errors."""
    torch.manual_seed(seed)
    head = nn.Sequential(nn.Linear(features.out_features, 256), nn.ReLU(),
                         nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 2))
    features.requires_grad_(not frozen)
    params = list(head.parameters()) + ([] if frozen else list(features.parameters()))
    optimizer = torch.optim.Adam(params, 3e-4)
    images, angles = torch.as_tensor(train[0]), train[1]
    targets = torch.as_tensor(np.stack([np.cos(angles), np.sin(angles)], 1), dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(iters):
        index = torch.randint(len(images), (256,), generator=generator)
        batch = random_shift(images[index], shift, generator) if shift else images[index]
        loss = (head(features(batch)) - targets[index]).pow(2).sum(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        out = head(features(torch.as_tensor(held_out[0]))).numpy()
    error = np.abs((np.arctan2(out[:, 1], out[:, 0]) - held_out[1] + np.pi) % (2 * np.pi)
                   - np.pi)
    return {'median_error': float(np.median(error)), 'within_0.1': float(np.mean(error < 0.1))}


def checkpoint_encoder(directory: str) -> ImageFeatures:
    """The critics' image encoder of the SAC agent saved in ``directory``."""
    with open(os.path.join(directory, 'agent.json'), encoding='utf-8') as stream:
        meta = json.load(stream)
    spec = spec_from_json(json.dumps(meta['obs_spec']))
    agent = build_agent('sac', spec, int(meta['action_dim']),
                        {**meta['config'], 'compile': False}, 0)
    load_checkpoint(directory, agent, load_replay=False)
    return ImageFeatures(agent.critic.encoder.pixels)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--samples', type=int, default=16_000)
    parser.add_argument('--iters', type=int, default=3_000)
    parser.add_argument('--checkpoint', action='append', default=[], metavar='DIR')
    parser.add_argument('--scene', default=None, help='another valve scene (MJCF)')
    parser.add_argument('--threads', type=int, default=1, help='torch threads')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"Reading the valve's angle from the 32 x 32 camera: {describe()}; "
          f'{args.samples} images, {args.iters} steps a head'
          + (f', scene {args.scene}' if args.scene else ''), flush=True)
    start = time.monotonic()
    train, held_out = collect(args.samples, 0, args.scene), collect(2000, 1, args.scene)
    print(f'images rendered in {time.monotonic() - start:.0f} s', flush=True)
    encoders = [('paper encoder, trained', ImageFeatures(PixelEncoder((32, 32, 3), 0)), False),
                ('paper encoder, random, frozen', ImageFeatures(PixelEncoder((32, 32, 3), 0)),
                 True)]
    encoders += [(f'{directory}, frozen', checkpoint_encoder(directory), True)
                 for directory in args.checkpoint]
    for name, features, frozen in encoders:
        result = probe(features, train, held_out, args.iters, frozen, 0 if frozen else 2)
        print(f'{name:50s} median error {result["median_error"]:.3f} rad, within 0.1 rad '
              f'{result["within_0.1"]:6.1%}', flush=True)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
