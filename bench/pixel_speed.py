# SPDX-License-Identifier: Apache-2.0
"""Where a step of the D'Claw pixel task's training loop goes, against the state task's.

Each variant runs the loop of ``sac-robot train`` (an environment step, the policy's action,
the buffer's add, then one update on a sampled minibatch) for ``--steps`` steps after
``--warmup`` random ones, and the parts are timed on their own as well: the environment step
(physics and, for pixels, the 32 x 32 camera's rendering), acting, sampling a minibatch and
the update. Variants, measured side by side in one run:

- ``state``: sac_robot/DClawTurn-v0, the update compiled as ``sac-robot train`` runs it;
- ``pixels, paper``: sac_robot/DClawTurnPixels-v0 with the paper's networks, each its own
  encoder (five encoder passes and two backward passes through convolutions per update);
- ``pixels, default``: the pixel task's defaults in ``sac-robot train`` (``PIXEL_DEFAULTS``:
  one encoder, the critics', the policy on its features detached, three or four passes and one
  backward; DrQ's random shift).

    .venv/bin/python bench/pixel_speed.py [--steps 300] [--threads 0]

The last line is ``pixel_steps_per_s: X`` (the default pixel variant's training loop).
"""

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import describe  # noqa: E402

from sac_robot.algorithms.observations import spec_from_space  # noqa: E402
from sac_robot.algorithms.replay import ReplayBuffer  # noqa: E402
from sac_robot.training import build_agent, make_env, tool_settings  # noqa: E402


#: The paper's pixel networks (the valve stays privileged: no network reads it).
PAPER = {'shared_encoder': False, 'image_shift': 0, 'compile': False}


def timed(function, repeats: int) -> float:
    """Mean seconds of ``function()`` over ``repeats`` calls."""
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats


def measure(env_id: str, overrides: dict, steps: int, warmup: int, seed: int = 0) -> dict:
    """Seconds per training-loop step and per part, for one variant.

    Its settings: ``sac-robot train``'s for the task, then ``overrides``.
    """
    env = make_env(env_id, seed)
    spec, action_dim = spec_from_space(env.observation_space), env.action_space.shape[0]
    settings = tool_settings('sac', spec, {**overrides, 'learning_starts': warmup})
    agent = build_agent('sac', spec, action_dim, settings, seed)
    agent.start_compiling()
    buffer = ReplayBuffer(spec, action_dim, warmup + steps + 10, seed=seed)
    obs, _ = env.reset(seed=seed)
    for _ in range(warmup):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buffer.add(obs, action, reward, next_obs, terminated, truncated)
        obs = env.reset()[0] if terminated or truncated else next_obs
    agent.wait_compiled()
    batch_size = agent.config.batch_size
    for _ in range(5):  # (first calls: allocations, oneDNN's kernel choices)
        agent.update(buffer.sample(batch_size))

    def loop_step():
        nonlocal obs
        action = agent.act(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buffer.add(obs, action, reward, next_obs, terminated, truncated)
        obs = env.reset()[0] if terminated or truncated else next_obs
        agent.update(buffer.sample(batch_size))

    loop = timed(loop_step, steps)
    action = env.action_space.sample()
    parts = {
        'env step': timed(lambda: env.step(action), min(steps, 200)),
        'act': timed(lambda: agent.act(obs), min(steps, 200)),
        'sample': timed(lambda: buffer.sample(batch_size), min(steps, 200)),
    }
    batch = buffer.sample(batch_size)
    parts['update'] = timed(lambda: agent.update(batch), min(steps, 100))
    env.close()
    return {'loop': loop, **parts}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--steps', type=int, default=300, help='timed loop steps a variant')
    parser.add_argument('--warmup', type=int, default=1000, help='random steps first')
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0: default)')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"D'Claw training loop, pixels against state: {describe()}; torch threads "
          f'{torch.get_num_threads()}, {args.steps} steps a variant', flush=True)
    variants = [
        ('state', 'sac_robot/DClawTurn-v0', {}),
        ('pixels, paper', 'sac_robot/DClawTurnPixels-v0', PAPER),
        ('pixels, default', 'sac_robot/DClawTurnPixels-v0', {}),
    ]
    results = {}
    print(f'{"variant":18s} {"steps/s":>8s} {"loop ms":>8s} {"env ms":>7s} {"act ms":>7s} '
          f'{"sample ms":>9s} {"update ms":>9s}')
    for name, env_id, settings in variants:
        result = measure(env_id, settings, args.steps, args.warmup)
        results[name] = result
        print(f'{name:18s} {1 / result["loop"]:8.1f} {1e3 * result["loop"]:8.1f} '
              f'{1e3 * result["env step"]:7.2f} {1e3 * result["act"]:7.2f} '
              f'{1e3 * result["sample"]:9.2f} {1e3 * result["update"]:9.1f}', flush=True)
    pixels, paper, state = (1 / results[k]['loop'] for k in ('pixels, default',
                                                              'pixels, paper', 'state'))
    print(f'pixels default / paper: {pixels / paper:.2f}x; pixels / state: '
          f'{pixels / state:.2f}x ({np.round(results["pixels, default"]["update"] * 1e3, 1)} '
          'ms an update)')
    print(f'pixel_steps_per_s: {pixels:.1f}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
