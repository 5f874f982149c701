# SPDX-License-Identifier: Apache-2.0
"""The SQL paper's multi-goal benchmark: how many of the four goals each policy reaches.

Trains SQL (App. D.1 settings) and SAC on ``sac_robot/MultiGoal-v0``, runs 100 stochastic
rollouts of each from the origin and prints the share of rollouts ending at each goal. Goal:
SQL reaches all four, each in at least 10 % of the rollouts. Writes ``multigoal.png``
(trajectories over the reward's level sets, like the paper's Figure 1) into ``--out``.

    .venv/bin/python bench/multigoal.py [--steps 10000] [--out bench/out/multigoal]

The last line is ``sql_goals_reached_10pct: N`` (goals reached by at least 10 % of rollouts).
"""

import argparse
import time

from sac_robot import multigoal_experiment


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--steps', type=int, default=10_000, help='steps per algorithm')
    parser.add_argument('--rollouts', type=int, default=100)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default='bench/out/multigoal')
    args = parser.parse_args()
    start = time.monotonic()
    results = multigoal_experiment.run(args.out, args.steps, args.rollouts, args.seed,
                                       progress=False)
    print(f'{args.steps} steps per algorithm, {args.rollouts} rollouts each, '
          f'{time.monotonic() - start:.0f} s; figure: {args.out}/multigoal.png')
    for algo, fractions in results.items():
        shares = ', '.join(f'goal {g}: {f:.0%}' for g, f in enumerate(fractions))
        print(f'{algo}: {shares}; reached by >= 10 %: {int((fractions >= 0.1).sum())} goals; '
              f'no goal: {1 - fractions.sum():.0%}')
    print(f'sql_goals_reached_10pct: {int((results["sql"] >= 0.1).sum())}')


if __name__ == '__main__':
    main()
