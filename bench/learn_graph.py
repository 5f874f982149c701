# SPDX-License-Identifier: Apache-2.0
"""The Minitaur learning through the graph against the same SAC in one process.

Both learn ``sac_robot/MinitaurWalk-v0`` with SAC's paper defaults for ``--steps`` environment
steps (5000 random warm-up steps, one update per step): once in one process
(``sac_robot.training.train``), once through ``sac-robot launch minitaur_train.launch.py
record:=true`` (lockstep, the policy's min_utd hold at 1). The training returns per episode come
from ``progress.csv`` and from the bag's episode events; the final policies are both evaluated
deterministically for 5 episodes (forward speed, falls). It is the same algorithm, so the two
curves should lie on top of each other within seed noise. Writes ``learn_graph.png`` into
``--out``.

    .venv/bin/python bench/learn_graph.py [--steps 40000]

The last line is ``graph_vs_inprocess_final_speed_ratio: X``.
"""

import argparse
import csv
import os
import subprocess
import sys
import time

import numpy as np

os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
os.environ.setdefault('ROS_DOMAIN_ID', str(40 + os.getpid() % 50))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from learn_minitaur import walk  # noqa: E402

SAC_ROBOT = os.path.join(os.path.dirname(sys.executable), 'sac-robot')
SETTINGS = {'learning_starts': 5000}


def final_policy(checkpoint: str):
    from sac_robot.algorithms.checkpoint import load_checkpoint
    from sac_robot.training import build_agent
    agent = build_agent('sac', 112, 8, dict(SETTINGS), 0)
    load_checkpoint(checkpoint, agent, load_replay=False)
    return agent


def smooth(values, window: int = 10) -> np.ndarray:
    values = np.asarray(values, float)
    return np.array([values[max(0, i - window + 1):i + 1].mean() for i in range(len(values))])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--steps', type=int, default=40_000)
    parser.add_argument('--out', default=os.path.join('bench', 'out', 'learn_graph'))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    from sac_robot.bagtools import learning_data
    from sac_robot.training import RunConfig, train
    inprocess = os.path.join(args.out, 'inprocess')
    start = time.monotonic()
    train(RunConfig(env='sac_robot/MinitaurWalk-v0', steps=args.steps, out=inprocess,
                    eval_every=0, checkpoint_every=0, progress=True, threads=1), dict(SETTINGS))
    inprocess_seconds = time.monotonic() - start
    with open(os.path.join(inprocess, 'progress.csv')) as stream:
        rows = [r for r in csv.DictReader(stream) if r['episode_return']]
    curve_a = (np.array([int(r['env_steps']) for r in rows]),
               np.array([float(r['episode_return']) for r in rows]))
    print(f'in-process: {args.steps} steps in {inprocess_seconds:.0f} s', flush=True)

    graph_dir = os.path.join(args.out, 'graph')
    config = os.path.join(args.out, 'graph.yaml')
    with open(config, 'w') as stream:
        stream.write('/**/trainer:\n  ros__parameters:\n    agent:\n'
                     f'      learning_starts: {SETTINGS["learning_starts"]}\n')
    start = time.monotonic()
    status = subprocess.call(
        [SAC_ROBOT, 'launch', 'minitaur_train.launch.py', f'max_steps:={args.steps}',
         'record:=true', f'run_dir:={graph_dir}', f'config:={config}'])
    graph_seconds = time.monotonic() - start
    if status != 0:
        raise SystemExit(f'the graph run failed with status {status}')
    bag = sorted(d for d in os.listdir(graph_dir) if d.startswith('bag_'))[-1]
    episodes = learning_data(os.path.join(graph_dir, bag))['episodes']
    curve_b = (np.cumsum([s for _, s, _ in episodes]), np.array([r for _, _, r in episodes]))
    print(f'graph: {args.steps} steps in {graph_seconds:.0f} s', flush=True)

    results = {}
    for name, checkpoint in (('in-process', os.path.join(inprocess, 'checkpoint')),
                             ('graph', os.path.join(graph_dir, 'checkpoint'))):
        result = walk(final_policy(checkpoint), 5, 20_000)
        results[name] = result
        print(f'{name}: final policy {result["speed"].mean():.2f} m/s (min '
              f'{result["speed"].min():.2f}), fell {result["fell"].sum()}/5')
    for mark in range(10_000, args.steps + 1, 10_000):
        a = curve_a[1][(curve_a[0] > mark - 5000) & (curve_a[0] <= mark)]
        b = curve_b[1][(curve_b[0] > mark - 5000) & (curve_b[0] <= mark)]
        print(f'{mark:6d} steps: mean training return over the last 5k steps: in-process '
              f'{a.mean() if a.size else float("nan"):7.1f}, graph '
              f'{b.mean() if b.size else float("nan"):7.1f}')

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(curve_a[0], smooth(curve_a[1]), label=f'in-process ({inprocess_seconds:.0f} s)')
    axis.plot(curve_b[0], smooth(curve_b[1]), label=f'graph ({graph_seconds:.0f} s)')
    axis.set(xlabel='environment steps', ylabel='training return (10-episode mean)',
             title='SAC on MinitaurWalk-v0: graph vs in-process')
    axis.legend()
    figure.tight_layout()
    figure.savefig(os.path.join(args.out, 'learn_graph.png'), dpi=100)
    ratio = results['graph']['speed'].mean() / max(results['in-process']['speed'].mean(), 1e-9)
    print(f'figure {args.out}/learn_graph.png')
    print(f'graph_vs_inprocess_final_speed_ratio: {ratio:.2f}')


if __name__ == '__main__':
    main()
