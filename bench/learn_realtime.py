# SPDX-License-Identifier: Apache-2.0
"""Learning on the robot's clock: success against wall-clock minutes, one hand or a fleet.

A real robot does not wait for the learner. This runs the D'Claw's training graph with
``clock:=realtime`` (the MuJoCo hand at its 10 Hz control rate, the trainer updating as fast as
it can on its own, up to ``--max-utd`` updates per received transition) for ``--minutes``
wall-clock minutes, as a lab would:

- **1 hand**: ``clock:=realtime``;
- **N hands** (``--fleet N``, default 3): ``robots:=dclaw0,...`` feeding one trainer, each hand
  at 10 Hz with its own seed;
- **lockstep** beside them: the same settings at the same environment steps as the one hand
  reached, the simulation waiting for the learner at the same updates per step (the policy's
  ``min_utd``), which is what the real-time runs cannot do.

Every run writes checkpoints every ``--period`` seconds; each copy is evaluated afterwards
deterministically in sac_robot/DClawTurn-v0 (the valve within 0.1 rad of its goal at the
end, ``--episodes`` episodes, as bench/learn_dclaw.py). It prints success against steps and
minutes, when 90 % was first reached, the updates per step each run got, the weights' age when
acted on and the trainer's idle time from its TensorBoard scalars, and writes
``learn_realtime.png`` into ``--out``. With ``--droq`` the critics use DroQ's dropout (0.01)
and layer norm, meant for high update-to-data ratios.

    .venv/bin/python bench/learn_realtime.py [--minutes 15] [--max-utd 10] [--fleet 3] [--droq]
        [--threads 1] [--skip one fleet lockstep]

The last line is ``minutes_to_90: ONE FLEET`` (nan where it was not reached).
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from learn_real import ROBOTS, evaluate, run_graph  # noqa: E402
from machine import describe, fresh_folder  # noqa: E402

RATE = ROBOTS['dclaw']['rate']


def settings(max_utd: float, droq: bool, lockstep: bool, threads: int) -> tuple:
    """The trainer's parameter lines (its update rate and critics), the policy's section.

    In lockstep the policy holds the simulation at the same updates per step.
    """
    trainer = (f'    max_utd: {max_utd}\n    min_utd: 0.0\n    threads: {threads}\n    agent:\n'
               f'      learning_starts: {ROBOTS["dclaw"]["learning_starts"]}\n')
    if droq:
        trainer += '      critic_dropout: 0.01\n      critic_layer_norm: true\n'
    policy = (f'/**/policy:\n  ros__parameters:\n    min_utd: {max_utd}\n' if lockstep
              else '')
    return trainer, policy


def trainer_scalars(run_dir: str) -> dict:
    """The trainer's time series from its TensorBoard scalars: {tag: (steps, values)}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(os.path.join(run_dir, 'tb'), size_guidance={'scalars': 0})
    events.Reload()
    return {tag: (np.array([e.step for e in events.Scalars(tag)]),
                  np.array([e.value for e in events.Scalars(tag)]))
            for tag in events.Tags()['scalars']}


def first_reaching(rows: list, level: float = 0.9) -> tuple:
    """(steps, minutes) of the first evaluation at ``level`` or above; NaNs if none."""
    return next(((s, m) for s, m, value in rows if value >= level), (np.nan, np.nan))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--minutes', type=float, default=15.0,
                        help='wall-clock minutes of robot time of each real-time run')
    parser.add_argument('--max-utd', type=float, default=10.0,
                        help='most updates per received transition')
    parser.add_argument('--fleet', type=int, default=3, help='hands of the fleet run (0: none)')
    parser.add_argument('--droq', action='store_true', help="DroQ's critics (dropout, norm)")
    parser.add_argument('--threads', type=int, default=1,
                        help="the trainer's torch threads (1: the package's setting)")
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--episodes', type=int, default=20, help='evaluation episodes')
    parser.add_argument('--period', type=float, default=60.0,
                        help='seconds between the checkpoints evaluated')
    parser.add_argument('--skip', nargs='*', default=(), choices=('one', 'fleet', 'lockstep'),
                        help='runs left out')
    parser.add_argument('--domain', type=int, default=102)
    parser.add_argument('--out', default=os.path.join('bench', 'out', 'learn_realtime'))
    args = parser.parse_args()
    out = fresh_folder(args.out)
    steps = int(args.minutes * 60 * RATE)
    print(f"D'Claw on the robot's clock: {describe()}; {args.minutes:g} min "
          f'each ({steps} steps a hand at {RATE:g} Hz), max_utd {args.max_utd:g}'
          f'{", DroQ critics" if args.droq else ""}, seed {args.seed}', flush=True)

    runs = {}  # name -> (launch arguments, steps, lockstep)
    if 'one' not in args.skip:
        runs['one'] = (['clock:=realtime'], steps, False)
    if args.fleet and 'fleet' not in args.skip:
        names = ','.join(f'dclaw{i}' for i in range(args.fleet))
        runs['fleet'] = (['clock:=realtime', f'robots:={names}'], steps * args.fleet, False)
    if 'lockstep' not in args.skip:
        runs['lockstep'] = (['clock:=lockstep'], steps, True)
    results, summary = {}, {}
    for name, (arguments, total, lockstep) in runs.items():
        trainer, policy = settings(args.max_utd, args.droq, lockstep, args.threads)
        seconds, snapshots = run_graph(
            name, 'dclaw', [*arguments, f'max_steps:={total}', f'seed:={args.seed}'],
            args.domain, out, args.period, trainer, policy)
        with open(os.path.join(out, name, 'checkpoint', 'agent.json')) as stream:
            meta = json.load(stream)
        learned = max(1, meta['extra']['env_steps'] - ROBOTS['dclaw']['learning_starts'])
        scalars = trainer_scalars(os.path.join(out, name))
        age = scalars.get('train/weights_age_steps', (None, np.zeros(0)))[1]
        idle = scalars.get('time/data_wait_fraction', (None, np.zeros(0)))[1]
        summary[name] = (seconds, meta['extra']['env_steps'], meta['gradient_steps'] / learned,
                         float(np.median(age)) if age.size else np.nan,
                         float(np.mean(idle)) if idle.size else np.nan)
        results[name] = evaluate('dclaw', snapshots, args.episodes, args.seed)
        for at, minutes, value in results[name]:
            print(f'{name:8s} {at:6d} steps at {minutes:5.1f} min: success {value:4.0%}',
                  flush=True)
        time.sleep(2.0)  # (the graph's processes gone before the next one's discovery)
    for name, (seconds, env_steps, utd, age, idle) in summary.items():
        at_steps, at_minutes = first_reaching(results[name])
        print(f'{name}: {env_steps} steps in {seconds / 60:.1f} min, {utd:.2f} updates a step '
              f'after the warm-up, weights {age:.0f} steps old when acted on (median), trainer '
              f'idle {idle:.0%}; 90 % first at {at_steps:.0f} steps, {at_minutes:.1f} min; '
              f'final {results[name][-1][2]:.0%}' if results[name] else '', flush=True)

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    labels = {'one': '1 hand, real time', 'fleet': f'{args.fleet} hands, real time',
              'lockstep': '1 hand, lockstep (the simulation waits)'}
    for name, rows in results.items():
        data = np.array(rows).reshape(-1, 3)
        axes[0].plot(data[:, 1], 100 * data[:, 2], '-o', label=labels[name])
        axes[1].plot(data[:, 0], 100 * data[:, 2], '-o', label=labels[name])
    axes[0].set(xlabel='wall-clock minutes', ylabel='deterministic success (%)')
    axes[1].set(xlabel='environment steps (all hands)', ylabel='deterministic success (%)')
    for axis in axes:
        axis.axhline(90, color='grey', lw=0.5)
        axis.legend(fontsize=8)
    figure.suptitle(f"SAC turning the D'Claw's valve on the robot's clock, max_utd "
                    f'{args.max_utd:g}{" DroQ" if args.droq else ""} ({describe()})', fontsize=10)
    figure.tight_layout()
    figure.savefig(os.path.join(out, 'learn_realtime.png'), dpi=100)
    print(f'figure {out}/learn_realtime.png')
    minutes = {name: first_reaching(rows)[1] for name, rows in results.items()}
    print(f'minutes_to_90: {minutes.get("one", np.nan):.1f} {minutes.get("fleet", np.nan):.1f}')


if __name__ == '__main__':
    main()
