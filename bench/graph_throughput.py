# SPDX-License-Identifier: Apache-2.0
"""Collection rate through the whole graph against the same SAC in one process, without ROS.

Both train SAC (paper defaults) on the simulated Minitaur for ``--steps`` environment steps,
``--learning-starts`` of them random warm-up, at one update per step:

- in-process: ``sac_robot.training.train`` (collect a step, update, repeat);
- graph: ``sac-robot launch minitaur_train.launch.py`` in lockstep (driver and policy in one
  process, safety, reward estimator, collector and trainer in their own, over Fast DDS; each
  variant's launch arguments on top), the trainer on
  its own thread with ``max_utd`` 1 and the policy's ``min_utd`` hold at 1. A probe node in this
  process counts ``policy/steps`` and reads ``training_stats``.

Rates are measured over the steady state (after the warm-up). Reported: environment steps per
second of each, the trainer's updates per second while collection runs, and the share of time
the trainer waited for experience. Goal: the graph >= 80 % of the in-process rate, and the
trainer (almost) never waiting.

    .venv/bin/python bench/graph_throughput.py [--steps 4000] [--learning-starts 1000]
        [--variants "compose:=robot" "compose:=none"]

The last line is ``graph_vs_inprocess_collection_ratio: X``.
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import threading
import time


def isolate_ros():
    """Keep a benchmark's ROS graph to itself (the caller's own settings are kept).

    Loopback discovery, a domain of its own, and logs in a temporary directory.
    """
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.setdefault('ROS_DOMAIN_ID', str(40 + os.getpid() % 50))
    if 'ROS_LOG_DIR' not in os.environ:  # (no directory made where one is given)
        os.environ['ROS_LOG_DIR'] = tempfile.mkdtemp(prefix='sac_robot_ros_log_')


isolate_ros()

SAC_ROBOT = os.path.join(os.path.dirname(sys.executable), 'sac-robot')


def add_variants_argument(parser: argparse.ArgumentParser):
    """``--variants``: graph layouts to measure side by side (also bench/control_latency.py)."""
    parser.add_argument('--variants', nargs='+', default=['compose:=robot'],
                        help='graph variants, each a space-separated set of launch arguments '
                             '(e.g. "compose:=robot" "compose:=none"); the last line reports '
                             'the first')


def in_process(steps: int, learning_starts: int, out: str) -> float:
    """Steady-state environment steps per second of in-process SAC."""
    from sac_robot.training import RunConfig, train
    train(RunConfig(env='sac_robot/MinitaurWalk-v0', steps=steps, out=out, eval_every=0,
                    checkpoint_every=0, progress=False, threads=1),
          {'learning_starts': learning_starts})
    with open(os.path.join(out, 'progress.csv')) as stream:
        rows = [(int(r['env_steps']), float(r['wall_time'])) for r in csv.DictReader(stream)
                if r['episode_return']]
    rows = [r for r in rows if r[0] > learning_starts]
    (s0, t0), (s1, t1) = rows[0], rows[-1]
    return (s1 - s0) / (t1 - t0)


def graph(steps: int, learning_starts: int, out: str, launch_args=()) -> dict:
    """Steady-state rates of the graph, measured by a probe node."""
    import rclpy
    from rclpy.node import Node

    from sac_robot.msg import PolicyStep, TrainingStats
    from sac_robot.nodes import qos

    os.makedirs(out, exist_ok=True)
    config = os.path.join(out, 'config.yaml')
    with open(config, 'w') as stream:
        stream.write('/**/trainer:\n  ros__parameters:\n    checkpoint_period: 0.0\n'
                     f'    agent:\n      learning_starts: {learning_starts}\n')
    rclpy.init(args=[sys.argv[0]])  # not our own arguments: they are no ROS arguments
    probe = Node('throughput_probe', namespace='/minitaur')
    marks, stats = [], []
    probe.create_subscription(PolicyStep, 'policy/steps',
                              lambda m: marks.append(time.monotonic()), qos.EXPERIENCE)
    probe.create_subscription(TrainingStats, 'training_stats',
                              lambda m: stats.append((time.monotonic(), m)), qos.EVENTS)
    process = subprocess.Popen(
        [SAC_ROBOT, 'launch', 'minitaur_train.launch.py', f'max_steps:={steps}',
         f'run_dir:={out}', f'config:={config}', 'status:=false', *launch_args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop = threading.Event()
    spinner = threading.Thread(target=lambda: [rclpy.spin_once(probe, timeout_sec=0.1)
                                               for _ in iter(stop.is_set, True)], daemon=True)
    spinner.start()
    status = process.wait()
    stop.set()
    spinner.join()
    probe.destroy_node()
    rclpy.shutdown()
    start = learning_starts + 500  # past the warm-up and the first episode of updates
    if status != 0 or len(marks) < start + 1000:
        raise RuntimeError(f'graph run failed (status {status}, {len(marks)} steps seen)')
    # (The probe may miss a few of the first steps, before discovery: it measures a rate.)
    rate = (len(marks) - 1 - start) / (marks[-1] - marks[start])
    window = [m for t, m in stats if marks[start] <= t <= marks[-1]]
    updates = sum(m.updates_per_second for m in window) / max(len(window), 1)
    waits = [dict(zip(m.names, m.values)).get('data_wait_fraction', 0.0) for m in window]
    return {'rate': rate, 'updates_per_second': updates,
            'data_wait': sum(waits) / max(len(waits), 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--steps', type=int, default=4000)
    parser.add_argument('--learning-starts', type=int, default=1000)
    add_variants_argument(parser)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix='graph_throughput_') as out:
        print('in-process SAC ...', flush=True)
        inside = in_process(args.steps, args.learning_starts, os.path.join(out, 'inprocess'))
        print(f'in-process: {inside:.1f} env steps/s (= updates/s)', flush=True)
        for index, variant in enumerate(args.variants):
            print(f'graph ({variant}) ...', flush=True)
            result = graph(args.steps, args.learning_starts, os.path.join(out, f'graph{index}'),
                           variant.split())
            results[variant] = result
            print(f'graph ({variant}): {result["rate"]:.1f} env steps/s = '
                  f'{result["rate"] / inside:.2f}x in-process, trainer '
                  f'{result["updates_per_second"]:.1f} updates/s, trainer waiting for '
                  f'experience {100 * result["data_wait"]:.1f} % of the time', flush=True)
    first = results[args.variants[0]]
    print(f'graph_vs_inprocess_collection_ratio: {first["rate"] / inside:.2f}')


if __name__ == '__main__':
    main()
