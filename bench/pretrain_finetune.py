# SPDX-License-Identifier: Apache-2.0
"""Max-ent pretraining, then fine-tuning: the SQL paper's Section 5.3 on the Minitaur.

The SQL paper pretrains a quadruped with a reward for speed in any direction, so that the
maximum-entropy policy learns to move in every direction, and then fine-tunes it on one task;
it learns that task faster than from scratch. Here:

1. **pretrain**: ``--algo`` (SQL by default) on sac_robot/MinitaurPretrain-v0 for
   ``--pretrain-steps`` steps (``sac-robot pretrain``);
2. for each seed, **fine-tune** on sac_robot/MinitaurWalk-v0 from that checkpoint
   (``sac-robot train --init``; SQL with the paper's schedule over ``--finetune-epochs``
   epochs of 1000 steps: alpha annealed to 1e-3, the noise set shrinking to one draw) and
   **from scratch** with the same seed, settings and steps.

Every ``--eval-every`` steps each run's policy walks ``--episodes`` deterministic episodes
(bench/learn_minitaur.py's measure: forward speed over 500 steps, falls); the fine-tuned runs
are also measured at step 0 (the pretrained policy as it is). Prints the curves side by side
and writes ``pretrain_finetune.png`` into ``--out``.

    .venv/bin/python bench/pretrain_finetune.py [--algo sql] [--pretrain-steps 50000]
        [--steps 30000] [--seeds 0 1]

The last line is ``final_speed_finetune_vs_scratch: F S`` (means over the seeds, m/s).
"""

import argparse
import os
import sys
import time

import gymnasium
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from learn_minitaur import walk  # noqa: E402
from machine import describe, fresh_folder  # noqa: E402

from sac_robot.algorithms.checkpoint import load_checkpoint  # noqa: E402
from sac_robot.algorithms.observations import spec_from_space  # noqa: E402
from sac_robot.training import RunConfig, build_agent, train  # noqa: E402

PRETRAIN, WALK = 'sac_robot/MinitaurPretrain-v0', 'sac_robot/MinitaurWalk-v0'


def measured(algo: str, directory: str, settings: dict, episodes: int, seed: int) -> dict:
    """The walk of the agent in ``directory`` (a checkpoint)."""
    probe = gymnasium.make(WALK)
    spec, action_dim = spec_from_space(probe.observation_space), probe.action_space.shape[0]
    probe.close()
    agent = build_agent(algo, spec, action_dim, dict(settings), seed)
    load_checkpoint(directory, agent, load_replay=False)
    return walk(agent, episodes, seed)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--algo', choices=('sql', 'sac'), default='sql')
    parser.add_argument('--pretrain-steps', type=int, default=50_000)
    parser.add_argument('--steps', type=int, default=30_000, help='steps of each walking run')
    parser.add_argument('--eval-every', type=int, default=5_000)
    parser.add_argument('--episodes', type=int, default=3)
    parser.add_argument('--finetune-epochs', type=int, default=20,
                        help='SQL: epochs (1000 steps) of the fine-tuning schedule')
    parser.add_argument('--learning-starts', type=int, default=5_000)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                        help='an algorithm setting for every run, e.g. --set alpha=0.1')
    parser.add_argument('--out', default=os.path.join('bench', 'out', 'pretrain_finetune'))
    args = parser.parse_args()
    import yaml
    settings = {'learning_starts': args.learning_starts,
                **{k: yaml.safe_load(v) for k, v in (s.split('=', 1) for s in args.set)}}
    out = fresh_folder(args.out)
    print(f'{args.algo.upper()} pretraining then fine-tuning the Minitaur: {describe()}; '
          f'pretrain {args.pretrain_steps} steps, walk {args.steps} '
          f'steps a run, seeds {args.seeds}, settings {settings}', flush=True)
    start = time.monotonic()
    pretrained = os.path.join(out, 'pretrain')
    train(RunConfig(env=PRETRAIN, algo=args.algo, steps=args.pretrain_steps, out=pretrained,
                    seed=args.seeds[0], eval_every=0, checkpoint_every=0), dict(settings))
    pretrained = os.path.join(pretrained, 'checkpoint')
    print(f'pretrained in {time.monotonic() - start:.0f} s', flush=True)

    curves = {'finetune': {}, 'scratch': {}}  # name -> seed -> [(steps, speed, falls)]
    for seed in args.seeds:
        at_zero = measured(args.algo, pretrained, settings, args.episodes, 10_000 + seed)
        curves['finetune'][seed] = [(0, at_zero['speed'].mean(), at_zero['fell'].mean())]
        curves['scratch'][seed] = []
        for name, init in (('finetune', pretrained), ('scratch', '')):
            run_dir = os.path.join(out, f'{name}_{seed}')
            for steps in range(args.eval_every, args.steps + 1, args.eval_every):
                train(RunConfig(env=WALK, algo=args.algo, steps=steps, out=run_dir, seed=seed,
                                eval_every=0, checkpoint_every=0, resume=steps > args.eval_every,
                                progress=False, init=init,
                                finetune_epochs=args.finetune_epochs
                                if init and args.algo == 'sql' else 0), dict(settings))
                result = measured(args.algo, os.path.join(run_dir, 'checkpoint'), settings,
                                  args.episodes, 10_000 + seed + steps)
                curves[name][seed].append((steps, result['speed'].mean(),
                                           result['fell'].mean()))
                print(f'seed {seed} {name:8s} {steps:6d} steps: speed '
                      f'{result["speed"].mean():5.2f} m/s, fell {result["fell"].sum()}/'
                      f'{args.episodes}, {time.monotonic() - start:6.0f} s', flush=True)

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figure, axis = plt.subplots(figsize=(6.5, 4))
    finals = {}
    for name, colour, label in (('finetune', 'C0', 'fine-tuned from the pretrained policy'),
                                ('scratch', 'C1', 'from scratch')):
        rows = [np.array(curves[name][seed]) for seed in args.seeds]
        for data in rows:
            axis.plot(data[:, 0], data[:, 1], color=colour, alpha=0.3, lw=1)
        common = min(len(data) for data in rows)
        mean = np.mean([data[-common:, 1] for data in rows], axis=0)
        axis.plot(rows[0][-common:, 0], mean, '-o', color=colour, label=label)
        finals[name] = float(np.mean([data[-1, 1] for data in rows]))
    axis.set(xlabel='environment steps on the walking task', ylabel='forward speed (m/s)',
             title=f'{args.algo.upper()}: pretrained on speed in any direction, then walking')
    axis.legend(fontsize=8)
    figure.suptitle(describe(), fontsize=8)
    figure.tight_layout()
    figure.savefig(os.path.join(out, 'pretrain_finetune.png'), dpi=100)
    print(f'{time.monotonic() - start:.0f} s in all; figure {out}/pretrain_finetune.png')
    print(f'final_speed_finetune_vs_scratch: {finals["finetune"]:.2f} {finals["scratch"]:.2f}')


if __name__ == '__main__':
    main()
