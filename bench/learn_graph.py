# SPDX-License-Identifier: Apache-2.0
"""The Minitaur learning through the graph against the same SAC in one process.

Both learn ``sac_robot/MinitaurWalk-v0`` with SAC's paper defaults for ``--steps`` environment
steps (5000 random warm-up steps, one update per step): once in one process
(``sac_robot.training.train``), once through ``sac-robot launch minitaur_train.launch.py
record:=true`` (lockstep, the policy's min_utd hold at 1). The training returns per episode come
from ``progress.csv`` and from the bag's episode events; the final policies are both evaluated
deterministically for 5 episodes (forward speed, falls). It is the same algorithm, so the two
curves should lie on top of each other within seed noise; the learner's own statistics (alpha,
policy entropy, mean Q, critic loss at each 10k mark) are printed side by side too, as they are
far less noisy than the returns. The graph is not deterministic (thread timing decides which
transitions each update samples), so one seed run twice through it shows its own spread.
Writes ``learn_graph.png`` into ``--out``.

    .venv/bin/python bench/learn_graph.py [--steps 40000] [--seeds 0 1 2] [--reuse-inprocess]

In-process training is deterministic for a seed (same seed, same run, bit for bit), so
``--reuse-inprocess`` takes an in-process run of the same seed and length already in ``--out``
instead of repeating it (half the time when only the graph changed).

The last line is ``graph_vs_inprocess_final_speed_ratio: X``.
"""

import argparse
import csv
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from graph_throughput import isolate_ros  # noqa: E402
from learn_minitaur import walk  # noqa: E402

isolate_ros()

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


def window_means(curve, steps: int) -> list:
    """Mean training return over the 5k steps before each 10k mark."""
    out = []
    for mark in range(10_000, steps + 1, 10_000):
        values = curve[1][(curve[0] > mark - 5000) & (curve[0] <= mark)]
        out.append(values.mean() if values.size else float('nan'))
    return out


def finished_run(directory: str, steps: int) -> float | None:
    """The wall-clock seconds of a finished in-process run of ``steps`` in ``directory``."""
    from sac_robot.algorithms.checkpoint import CheckpointError, read_checkpoint_meta
    try:
        meta = read_checkpoint_meta(os.path.join(directory, 'checkpoint'))
        with open(os.path.join(directory, 'progress.csv')) as stream:
            rows = list(csv.DictReader(stream))
    except (OSError, CheckpointError):
        return None
    if meta.get('extra', {}).get('env_steps') != steps or not rows:
        return None
    return float(rows[-1]['wall_time'])


LEARNER = ('alpha', 'entropy', 'q/mean', 'loss/critic')


def learner_marks(bag: str | None, progress_csv: str | None, steps: int) -> dict:
    """The learner's statistics nearest each 10k mark.

    From the bag's training_stats (the graph) or from progress.csv (in-process).
    """
    rows = []  # (env_steps, {name: value})
    if bag is not None:
        from rosbags.rosbag2 import Reader

        from sac_robot.bagtools import typestore_with_package_types
        typestore = typestore_with_package_types()
        with Reader(bag) as reader:
            connections = [c for c in reader.connections if c.topic.endswith('training_stats')]
            for connection, _, raw in reader.messages(connections):
                msg = typestore.deserialize_cdr(raw, connection.msgtype)
                rows.append((msg.env_steps, dict(zip(msg.names, msg.values))))
    else:
        with open(progress_csv) as stream:
            rows = [(int(r['env_steps']), {k: float(r[k]) for k in LEARNER if r.get(k)})
                    for r in csv.DictReader(stream)]
    rows = [(n, values) for n, values in rows if all(k in values for k in LEARNER)]
    return {mark: min(rows, key=lambda row: abs(row[0] - mark))[1] if rows else {}
            for mark in range(10_000, steps + 1, 10_000)}


def run_seed(seed: int, steps: int, out: str, reuse: bool = False) -> dict:
    """Both variants with ``seed``; their curves, final policies and wall-clock times."""
    from sac_robot.bagtools import learning_data
    from sac_robot.training import RunConfig, train
    inprocess = os.path.join(out, f'inprocess_seed{seed}')
    seconds = {'in-process': finished_run(inprocess, steps) if reuse else None}
    if seconds['in-process'] is None:
        start = time.monotonic()
        train(RunConfig(env='sac_robot/MinitaurWalk-v0', steps=steps, out=inprocess,
                        seed=seed, eval_every=0, checkpoint_every=0, progress=True, threads=1),
              dict(SETTINGS))
        seconds['in-process'] = time.monotonic() - start
    else:
        print(f'seed {seed} in-process: reusing the run in {inprocess}', flush=True)
    with open(os.path.join(inprocess, 'progress.csv')) as stream:
        rows = [r for r in csv.DictReader(stream) if r['episode_return']]
    curves = {'in-process': (np.array([int(r['env_steps']) for r in rows]),
                             np.array([float(r['episode_return']) for r in rows]))}
    print(f'seed {seed} in-process: {steps} steps in {seconds["in-process"]:.0f} s', flush=True)

    graph_dir = os.path.join(out, f'graph_seed{seed}')
    config = os.path.join(out, 'graph.yaml')
    with open(config, 'w') as stream:
        stream.write('/**/trainer:\n  ros__parameters:\n    agent:\n'
                     f'      learning_starts: {SETTINGS["learning_starts"]}\n')
    start = time.monotonic()
    status = subprocess.call(
        [SAC_ROBOT, 'launch', 'minitaur_train.launch.py', f'max_steps:={steps}',
         'record:=true', f'run_dir:={graph_dir}', f'config:={config}', f'seed:={seed}'])
    seconds['graph'] = time.monotonic() - start
    if status != 0:
        raise SystemExit(f'the graph run (seed {seed}) failed with status {status}')
    bag = os.path.join(graph_dir, sorted(d for d in os.listdir(graph_dir)
                                         if d.startswith('bag_'))[-1])
    episodes = learning_data(bag)['episodes']
    learner = {'in-process': learner_marks(None, os.path.join(inprocess, 'progress.csv'), steps),
               'graph': learner_marks(bag, None, steps)}
    for mark in learner['graph']:
        print(f'seed {seed} learner at {mark}: ' + '; '.join(
            f'{name} {learner["in-process"][mark].get(name, float("nan")):.4g} / '
            f'{learner["graph"][mark].get(name, float("nan")):.4g}' for name in LEARNER)
            + ' (in-process / graph)', flush=True)
    curves['graph'] = (np.cumsum([s for _, s, _ in episodes]),
                       np.array([r for _, _, r in episodes]))
    print(f'seed {seed} graph: {steps} steps in {seconds["graph"]:.0f} s', flush=True)

    speeds = {}
    for name, checkpoint in (('in-process', os.path.join(inprocess, 'checkpoint')),
                             ('graph', os.path.join(graph_dir, 'checkpoint'))):
        result = walk(final_policy(checkpoint), 5, 20_000)
        speeds[name] = result['speed'].mean()
        print(f'seed {seed} {name}: final policy {result["speed"].mean():.2f} m/s (min '
              f'{result["speed"].min():.2f}), fell {result["fell"].sum()}/5', flush=True)
    return {'curves': curves, 'seconds': seconds, 'speed': speeds,
            'windows': {name: window_means(curve, steps) for name, curve in curves.items()}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--steps', type=int, default=40_000)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0],
                        help='one run of each variant per seed (the spread between seeds is '
                             'what a difference between the variants is measured against)')
    parser.add_argument('--out', default=os.path.join('bench', 'out', 'learn_graph'))
    parser.add_argument('--reuse-inprocess', action='store_true',
                        help='take a finished in-process run of the same seed and steps in '
                             '--out instead of training it again (it would be identical)')
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    runs = {seed: run_seed(seed, args.steps, args.out, args.reuse_inprocess)
            for seed in args.seeds}
    names = ('in-process', 'graph')

    marks = list(range(10_000, args.steps + 1, 10_000))
    print('mean training return over the 5k steps before each mark, per seed '
          '(in-process / graph):')
    for i, mark in enumerate(marks):
        cells = '  '.join(f'seed {seed}: {run["windows"]["in-process"][i]:6.1f} / '
                          f'{run["windows"]["graph"][i]:6.1f}' for seed, run in runs.items())
        means = [np.nanmean([run['windows'][n][i] for run in runs.values()]) for n in names]
        print(f'{mark:6d} steps: {cells}  | mean {means[0]:6.1f} / {means[1]:6.1f}')
    speed = {n: np.array([run['speed'][n] for run in runs.values()]) for n in names}
    seconds = {n: np.mean([run['seconds'][n] for run in runs.values()]) for n in names}
    for n in names:
        print(f'{n}: final deterministic speed {speed[n].mean():.2f} m/s over {len(runs)} '
              f'seed(s) (per seed {np.round(speed[n], 2).tolist()}), {seconds[n]:.0f} s a run')

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figure, axis = plt.subplots(figsize=(7, 4))
    for n, color in zip(names, ('tab:blue', 'tab:orange')):
        for k, run in enumerate(runs.values()):
            x, y = run['curves'][n]
            axis.plot(x, smooth(y), color=color, alpha=0.8, lw=1.2,
                      label=f'{n} ({seconds[n]:.0f} s a run)' if k == 0 else None)
    axis.set(xlabel='environment steps', ylabel='training return (10-episode mean)',
             title=f'SAC on MinitaurWalk-v0: graph vs in-process, seeds {args.seeds}')
    axis.legend()
    figure.tight_layout()
    figure.savefig(os.path.join(args.out, 'learn_graph.png'), dpi=100)
    ratio = speed['graph'].mean() / max(speed['in-process'].mean(), 1e-9)
    print(f'figure {args.out}/learn_graph.png')
    print(f'graph_vs_inprocess_final_speed_ratio: {ratio:.2f}')


if __name__ == '__main__':
    main()
