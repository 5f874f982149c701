# SPDX-License-Identifier: Apache-2.0
"""Learning on the robot's clock: a robot's skill against wall-clock minutes, one or a fleet.

A real robot does not wait for the learner. This runs a robot's training graph with
``clock:=realtime`` (the MuJoCo robot at its control rate: the D'Claw at 10 Hz, the Minitaur
at 100 Hz; the trainer updating as fast as it can on its own, up to ``--max-utd`` updates per
received transition) for ``--minutes`` wall-clock minutes, as a lab would:

- **1 robot**: ``clock:=realtime``;
- **N robots** (``--fleet N``, default 3 hands, none for the Minitaur): ``robots:=dclaw0,...``
  feeding one trainer, each at its control rate with its own seed;
- **lockstep** beside them: the same settings at the same environment steps as the one robot
  reached, the simulation waiting for the learner at the same updates per step (the policy's
  ``min_utd``), which is what the real-time runs cannot do.

Every run writes checkpoints every ``--period`` seconds; each copy is evaluated afterwards
deterministically in the robot's task (``--episodes`` episodes): the D'Claw's success (the
valve within 0.1 rad of its goal at the end, as bench/learn_dclaw.py), the Minitaur's forward
speed over its 500 steps (as bench/learn_minitaur.py), an episode that fell counting as 0 m/s.
It prints the skill against steps and minutes, when the target (90 % success, 0.3 m/s) was
first reached, the updates per step each run got, the weights' age when acted on and the
trainer's idle time from its TensorBoard scalars, and writes ``learn_realtime_<robot>.png``
into ``--out``. With ``--droq`` the critics use DroQ's dropout (0.01) and layer norm, meant for
high update-to-data ratios.

    .venv/bin/python bench/learn_realtime.py [--robot dclaw] [--minutes 15] [--max-utd 10]
        [--fleet 3] [--droq] [--threads 1] [--skip one fleet lockstep]

The last line is ``minutes_to_target: ONE FLEET`` (nan where it was not reached).
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from learn_minitaur import walk  # noqa: E402
from learn_real import ROBOTS, evaluate, run_graph  # noqa: E402
from machine import describe, fresh_folder  # noqa: E402

#: What each robot's run aims at (the issue's targets), in its metric's unit, and its defaults.
TARGET = {'dclaw': 0.9, 'minitaur': 0.3}
DEFAULTS = {'dclaw': {'max_utd': 10.0, 'fleet': 3, 'episodes': 20},
            'minitaur': {'max_utd': 1.0, 'fleet': 0, 'episodes': 5}}


def walking_speed(agent, episodes: int, seed: int) -> float:
    """The Minitaur's deterministic forward speed (m/s), an episode that fell counting as 0.

    The target is a speed *without falling*: bench/learn_minitaur.py's measure, with falls
    taken out rather than averaged in at the speed they had until they fell.
    """
    result = walk(agent, episodes, 20_000 + seed)
    return float(np.where(result['fell'], 0.0, result['speed']).mean())


#: The measure of each robot's skill (the D'Claw's is bench/learn_real.py's success rate).
METRIC = {'dclaw': None, 'minitaur': walking_speed}


def settings(robot: str, max_utd: float, droq: bool, lockstep: bool, threads: int) -> tuple:
    """The trainer's parameter lines (its update rate and critics), the policy's section.

    In lockstep the policy holds the simulation at the same updates per step.
    """
    trainer = (f'    max_utd: {max_utd}\n    min_utd: 0.0\n    threads: {threads}\n    agent:\n'
               f'      learning_starts: {ROBOTS[robot]["learning_starts"]}\n')
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


def first_reaching(rows: list, level: float) -> tuple:
    """(steps, minutes) of the first evaluation at ``level`` or above; NaNs if none."""
    return next(((s, m) for s, m, value in rows if value >= level), (np.nan, np.nan))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--robot', choices=sorted(TARGET), default='dclaw')
    parser.add_argument('--minutes', type=float, default=15.0,
                        help='wall-clock minutes of robot time of each real-time run')
    parser.add_argument('--max-utd', type=float,
                        help="most updates per received transition (the D'Claw's default 10, "
                             "the Minitaur's 1)")
    parser.add_argument('--fleet', type=int,
                        help="robots of the fleet run (0: none; the D'Claw's default 3)")
    parser.add_argument('--droq', action='store_true', help="DroQ's critics (dropout, norm)")
    parser.add_argument('--threads', type=int, default=1,
                        help="the trainer's torch threads (1: the package's setting)")
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--episodes', type=int, help='evaluation episodes (20 / 5)')
    parser.add_argument('--period', type=float, default=60.0,
                        help='seconds between the checkpoints evaluated')
    parser.add_argument('--skip', nargs='*', default=(), choices=('one', 'fleet', 'lockstep'),
                        help='runs left out')
    parser.add_argument('--domain', type=int, default=102)
    parser.add_argument('--out', help='(default bench/out/learn_realtime_<robot>)')
    args = parser.parse_args()
    robot, facts = args.robot, ROBOTS[args.robot]
    for name, value in DEFAULTS[robot].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    out = fresh_folder(args.out or os.path.join('bench', 'out', f'learn_realtime_{robot}'))
    rate, target = facts['rate'], TARGET[robot]
    metric, _, unit = facts['metric']
    steps = int(args.minutes * 60 * rate)
    print(f"{robot} on the robot's clock: {describe()}; {args.minutes:g} min "
          f'each ({steps} steps a robot at {rate:g} Hz), max_utd {args.max_utd:g}'
          f'{", DroQ critics" if args.droq else ""}, seed {args.seed}', flush=True)

    runs = {}  # name -> (launch arguments, steps, lockstep)
    if 'one' not in args.skip:
        runs['one'] = (['clock:=realtime'], steps, False)
    if args.fleet and 'fleet' not in args.skip:
        names = ','.join(f'{robot}{i}' for i in range(args.fleet))
        runs['fleet'] = (['clock:=realtime', f'robots:={names}'], steps * args.fleet, False)
    if 'lockstep' not in args.skip:
        runs['lockstep'] = (['clock:=lockstep'], steps, True)
    results, summary = {}, {}
    for name, (arguments, total, lockstep) in runs.items():
        trainer, policy = settings(robot, args.max_utd, args.droq, lockstep, args.threads)
        seconds, snapshots = run_graph(
            name, robot, [*arguments, f'max_steps:={total}', f'seed:={args.seed}'],
            args.domain, out, args.period, trainer, policy)
        with open(os.path.join(out, name, 'checkpoint', 'agent.json')) as stream:
            meta = json.load(stream)
        learned = max(1, meta['extra']['env_steps'] - facts['learning_starts'])
        scalars = trainer_scalars(os.path.join(out, name))
        age = scalars.get('train/weights_age_steps', (None, np.zeros(0)))[1]
        idle = scalars.get('time/data_wait_fraction', (None, np.zeros(0)))[1]
        summary[name] = (seconds, meta['extra']['env_steps'], meta['gradient_steps'] / learned,
                         float(np.median(age)) if age.size else np.nan,
                         float(np.mean(idle)) if idle.size else np.nan)
        results[name] = evaluate(robot, snapshots, args.episodes, args.seed, METRIC[robot])
        for at, minutes, value in results[name]:
            print(f'{name:8s} {at:6d} steps at {minutes:5.1f} min: {metric} '
                  f'{shown(value, unit)}', flush=True)
        time.sleep(2.0)  # (the graph's processes gone before the next one's discovery)
    for name, (seconds, env_steps, utd, age, idle) in summary.items():
        at_steps, at_minutes = first_reaching(results[name], target)
        print(f'{name}: {env_steps} steps in {seconds / 60:.1f} min, {utd:.2f} updates a step '
              f'after the warm-up, weights {age:.0f} steps old when acted on (median), trainer '
              f'idle {idle:.0%}; {shown(target, unit)} first at {at_steps:.0f} steps, '
              f'{at_minutes:.1f} min; final {shown(results[name][-1][2], unit)}'
              if results[name] else '', flush=True)

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    labels = {'one': f'1 {robot}, real time', 'fleet': f'{args.fleet} {robot}s, real time',
              'lockstep': f'1 {robot}, lockstep (the simulation waits)'}
    scale, ylabel = ((100, 'deterministic success (%)') if unit == '%'
                     else (1, f'deterministic {metric} ({unit})'))
    for name, rows in results.items():
        data = np.array(rows).reshape(-1, 3)
        axes[0].plot(data[:, 1], scale * data[:, 2], '-o', label=labels[name])
        axes[1].plot(data[:, 0], scale * data[:, 2], '-o', label=labels[name])
    axes[0].set(xlabel='wall-clock minutes', ylabel=ylabel)
    axes[1].set(xlabel=f'environment steps (all {robot}s)', ylabel=ylabel)
    for axis in axes:
        axis.axhline(scale * target, color='grey', lw=0.5)
        axis.legend(fontsize=8)
    task = {'dclaw': "turning the D'Claw's valve",
            'minitaur': "learning the Minitaur's walk"}[robot]
    figure.suptitle(f"SAC {task} on the robot's clock, max_utd {args.max_utd:g}"
                    f'{" DroQ" if args.droq else ""} ({describe()})', fontsize=10)
    figure.tight_layout()
    name = f'learn_realtime_{robot}.png'
    figure.savefig(os.path.join(out, name), dpi=100)
    print(f'figure {out}/{name}')
    minutes = {name: first_reaching(rows, target)[1] for name, rows in results.items()}
    print(f'minutes_to_target: {minutes.get("one", np.nan):.1f} '
          f'{minutes.get("fleet", np.nan):.1f}')


def shown(value: float, unit: str) -> str:
    """A metric's value with its unit."""
    return f'{value:4.0%}' if unit == '%' else f'{value:.2f} {unit}'


if __name__ == '__main__':
    main()
