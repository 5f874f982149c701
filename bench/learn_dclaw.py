# SPDX-License-Identifier: Apache-2.0
"""SAC learning the simulated D'Claw valve turning, from state or from the camera's pixels.

Trains as ``sac-robot train`` does (its defaults for the task: for pixels ``PIXEL_DEFAULTS``)
in chunks of ``--eval-every`` steps, and after each chunk runs ``--episodes`` evaluation
episodes with the mean action, counting an episode a success when the valve ends within
0.1 rad of the target. Several ``--seeds`` run one after the other; ``--set KEY=VALUE``
changes a setting (``--set shared_encoder=false --set image_shift=0``: the paper's pixel
networks; ``--set encoder_loss=privileged``: the encoder taught the valve's angle),
``--env-arg KEY=VALUE`` an argument of the task (``--env-arg frames=3``: the last three
images stacked), ``--label`` names the variant. Targets: from state >= 90 % within 50k steps;
from pixels >= 90 % within 100k steps (the paper: 300k). Prints each evaluation with the
training loop's wall-clock time (evaluations not counted), writes ``learn_dclaw.png``
(success against steps and against wall-clock minutes, a line per seed) and ``curves.json``
into ``--out``; ``--compare A/curves.json B/curves.json`` plots runs together.

    .venv/bin/python bench/learn_dclaw.py [--pixels] [--steps 50000] [--seeds 0 1 2]

The last line is ``steps_to_90pct_success: N`` (the mean over the seeds that reached it, and
how many did), or ``not reached``.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import describe  # noqa: E402

from sac_robot.algorithms.checkpoint import load_checkpoint  # noqa: E402
from sac_robot.algorithms.observations import spec_from_space  # noqa: E402
from sac_robot.training import (RunConfig, build_agent, make_env, train,  # noqa: E402
                                tool_settings)


def success_rate(agent, env_id: str, episodes: int, seed: int, env_args: dict) -> tuple:
    """Deterministic episodes: the share that ends at the target, and the mean return."""
    env = make_env(env_id, seed, env_args)
    successes, returns = [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done, total, info = False, 0.0, {}
        while not done:
            obs, reward, terminated, truncated, info = env.step(agent.act(obs, True))
            total += reward
            done = terminated or truncated
        successes.append(info['success'])
        returns.append(total)
    env.close()
    return float(np.mean(successes)), float(np.mean(returns))


def run_seed(args, env_id: str, settings: dict, seed: int, out: str) -> list:
    """One seed's curve: ``[(steps, success, return, training seconds)]``."""
    probe = make_env(env_id, seed, args.env_args)
    spec, action_dim = spec_from_space(probe.observation_space), probe.action_space.shape[0]
    probe.close()
    curve, training = [], 0.0
    for steps in range(args.eval_every, args.steps + 1, args.eval_every):
        start = time.monotonic()
        train(RunConfig(env=env_id, env_args=args.env_args, steps=steps, out=out, seed=seed,
                        eval_every=0, checkpoint_every=0, resume=steps > args.eval_every,
                        progress=False, tensorboard=False, threads=args.threads), dict(settings))
        training += time.monotonic() - start
        agent = build_agent('sac', spec, action_dim,
                            tool_settings('sac', spec, {**settings, 'compile': False}), seed)
        load_checkpoint(os.path.join(out, 'checkpoint'), agent, load_replay=False)
        rate, mean_return = success_rate(agent, env_id, args.episodes, 10_000 + steps,
                                         args.env_args)
        curve.append((steps, rate, mean_return, training))
        print(f'seed {seed} {steps:7d} steps: success {rate:4.0%}, return {mean_return:8.1f}, '
              f'{training / 60:5.1f} min training ({steps / training:5.1f} steps/s)',
              flush=True)
    return curve


def compare(paths: list, out: str) -> int:
    """Plot several runs' ``curves.json`` together: success against environment steps."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figure, axis = plt.subplots(figsize=(8, 4.5))
    for index, path in enumerate(paths):
        with open(path, encoding='utf-8') as stream:
            run = json.load(stream)
        label = run.get('label') or os.path.basename(os.path.dirname(path))
        for k, (seed, curve) in enumerate(sorted(run['curves'].items())):
            data = np.array(curve)
            axis.plot(data[:, 0], 100 * data[:, 1], marker='o', ms=3, color=f'C{index}',
                      alpha=1.0 if k == 0 else 0.6, ls='-' if k == 0 else '--',
                      label=f'{label}, seed {seed}')
    axis.axhline(90, color='gray', ls='--', lw=1)
    axis.set(xlabel='environment steps', ylabel='deterministic success (%)', ylim=(-5, 105),
             title=f"SAC from pixels on the D'Claw ({describe()})")
    axis.legend(fontsize=7)
    figure.tight_layout()
    os.makedirs(out, exist_ok=True)
    figure.savefig(os.path.join(out, 'learn_dclaw_compare.png'), dpi=100)
    print(f'figure {out}/learn_dclaw_compare.png')
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--steps', type=int, default=50_000)
    parser.add_argument('--eval-every', type=int, default=5_000)
    parser.add_argument('--episodes', type=int, default=20)
    parser.add_argument('--pixels', action='store_true', help='learn from 32 x 32 images')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                        help='an agent setting over the defaults (repeatable)')
    parser.add_argument('--env-arg', action='append', default=[], metavar='KEY=VALUE',
                        help='an argument of the environment, e.g. frames=3 (repeatable)')
    parser.add_argument('--learning-starts', type=int, default=1_000)
    parser.add_argument('--label', default='', help='name of the variant in the output')
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0: default)')
    parser.add_argument('--out', default=None)
    parser.add_argument('--compare', nargs='+', metavar='CURVES_JSON',
                        help="no training: plot these runs' curves.json together (success "
                             'against steps, a line per seed, a colour per variant) into '
                             '--out/learn_dclaw_compare.png')
    args = parser.parse_args()
    if args.compare:
        return compare(args.compare, args.out or os.path.join('bench', 'out'))
    env_id = 'sac_robot/DClawTurnPixels-v0' if args.pixels else 'sac_robot/DClawTurn-v0'
    name = 'learn_dclaw' + ('_pixels' * args.pixels) + (f'_{args.label}' if args.label else '')
    out = args.out or os.path.join('bench', 'out', name)
    args.env_args = {k: yaml.safe_load(v) for k, v in (s.split('=', 1) for s in args.env_arg)}
    settings = {'learning_starts': args.learning_starts,
                **{k: yaml.safe_load(v) for k, v in (s.split('=', 1) for s in args.set)}}
    print(f'SAC on {env_id} {args.env_args or ""}: {describe()}; seeds {args.seeds}, '
          f'settings {settings}'
          + (f' ({args.label})' if args.label else ''), flush=True)
    curves = {seed: run_seed(args, env_id, settings, seed, os.path.join(out, f'seed{seed}'))
              for seed in args.seeds}
    with open(os.path.join(out, 'curves.json'), 'w', encoding='utf-8') as stream:
        json.dump({'env': env_id, 'env_args': args.env_args, 'settings': settings,
                   'label': args.label, 'curves': curves}, stream, indent=1)

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for seed, curve in curves.items():
        data = np.array(curve)
        left.plot(data[:, 0], 100 * data[:, 1], '-o', label=f'seed {seed}')
        right.plot(data[:, 3] / 60, 100 * data[:, 1], '-o', label=f'seed {seed}')
    for axis in (left, right):
        axis.axhline(90, color='gray', ls='--', lw=1)
        axis.set(ylabel='deterministic success (%)', ylim=(-5, 105))
        axis.legend()
    left.set(xlabel='environment steps',
             title=f'SAC on {env_id}' + (f' ({args.label})' if args.label else ''))
    right.set(xlabel='training wall-clock (min, evaluations not counted)',
              title=describe())
    figure.tight_layout()
    figure.savefig(os.path.join(out, 'learn_dclaw.png'), dpi=100)
    reached = [next((s for s, rate, *_ in curve if rate >= 0.9), None)
               for curve in curves.values()]
    hits = [s for s in reached if s is not None]
    print(f'figure {out}/learn_dclaw.png; 90 % reached by {len(hits)} of {len(reached)} seeds')
    print('steps_to_90pct_success: '
          + (f'{np.mean(hits):.0f} ({len(hits)}/{len(reached)} seeds)' if hits
             else 'not reached'))


if __name__ == '__main__':
    raise SystemExit(main())
