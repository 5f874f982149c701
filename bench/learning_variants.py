# SPDX-License-Identifier: Apache-2.0
"""Learning curves of SAC's update variants side by side: does the faster one learn the same.

Trains SAC with Algorithm 1's sequential update (the default) and with the variants named by
``--variants`` (``joint``: ``joint_update=True``, all gradients from the same parameters, as
softlearning; ``autograd``: ``closed_form=False``, autograd's gradients instead of the closed
form; ``compiled``: ``compile=True``) on the same task with the same seeds, evaluating without
exploration every ``--eval-every`` steps, and plots the curves together
(``learning_variants.png``).

    .venv/bin/python bench/learning_variants.py [--env HalfCheetah-v5] [--steps 30000]
        [--variants default joint]

The last lines are ``<variant>_vs_default_final_return_ratio: X`` (mean over seeds of the last
evaluations; 1.0 means the same).
"""

import argparse
import csv
import os

import numpy as np

from sac_robot.training import RunConfig, train

VARIANTS = {'default': {}, 'joint': {'joint_update': True}, 'autograd': {'closed_form': False},
            'compiled': {'compile': True}}


def evaluations(csv_path):
    rows = [r for r in csv.DictReader(open(csv_path, encoding='utf-8')) if r['eval/return']]
    return np.array([[float(r['env_steps']), float(r['eval/return'])] for r in rows])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--env', default='HalfCheetah-v5')
    parser.add_argument('--steps', type=int, default=30_000)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--eval-every', type=int, default=5_000)
    parser.add_argument('--variants', nargs='+', default=['default', 'joint'],
                        choices=list(VARIANTS), help='the default is always run')
    parser.add_argument('--out', default='bench/out/learning_variants')
    args = parser.parse_args()
    names = ['default'] + [name for name in args.variants if name != 'default']
    curves = {name: [] for name in names}
    for seed in args.seeds:
        for name in names:
            overrides = VARIANTS[name]
            out = os.path.join(args.out, f'{name}_seed{seed}')
            final = train(RunConfig(env=args.env, steps=args.steps, out=out, seed=seed,
                                    eval_every=args.eval_every, eval_episodes=5,
                                    checkpoint_every=0, progress=False), dict(overrides))
            curve = evaluations(os.path.join(out, 'progress.csv'))
            curves[name].append(curve)
            print(f'{name:8s} seed {seed}: returns '
                  + ', '.join(f'{s:.0f}: {r:.0f}' for s, r in curve)
                  + f'; {final["wall_time"]:.0f} s', flush=True)

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figure, ax = plt.subplots(figsize=(7, 4.5))
    for name, runs in curves.items():
        steps = runs[0][:, 0]
        returns = np.stack([run[:, 1] for run in runs])
        ax.plot(steps, returns.mean(0), '-o', label=f'{name} ({len(runs)} seeds)')
        if len(runs) > 1:
            ax.fill_between(steps, returns.min(0), returns.max(0), alpha=0.2)
    ax.set(xlabel='environment steps', ylabel='evaluation return',
           title=f'SAC update variants on {args.env}')
    ax.legend()
    figure.tight_layout()
    figure.savefig(os.path.join(args.out, 'learning_variants.png'), dpi=100)
    finals = {name: np.mean([run[-1, 1] for run in runs]) for name, runs in curves.items()}
    print('final evaluation return: ' + ', '.join(f'{n} {r:.1f}' for n, r in finals.items())
          + f'; figure {args.out}/learning_variants.png')
    for name in names[1:]:
        print(f'{name}_vs_default_final_return_ratio: {finals[name] / finals["default"]:.2f}')


if __name__ == '__main__':
    main()
