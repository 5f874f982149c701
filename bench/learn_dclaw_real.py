# SPDX-License-Identifier: Apache-2.0
"""The D'Claw learning the valve turn through its real driver in real time, beside MuJoCo.

Two training graphs, one after the other (the real-time one alone on the machine, as a robot's
computer would run it), in a ROS domain of their own, as a user starts them:

- **real**: ``sac-robot emulate dclaw`` (the emulated servo bus: Protocol 2.0 on a
  pseudo-terminal, the MuJoCo hand behind it stepping in real time) and ``sac-robot launch
  dclaw_train.launch.py hardware:=real port:=<pty>``: the Dynamixel backend through
  dynamixel-sdk, 10 Hz on the wall clock, every episode after the scripted valve reset (the
  emulator's threads at SCHED_FIFO where permitted, as servos answer whatever the computer
  does);
- **sim**: ``sac-robot launch dclaw_train.launch.py`` (the MuJoCo backend in lockstep).

Both run SAC with the package's settings (config/dclaw_train.yaml: 1000 random warm-up steps,
at most one update per step) for ``--steps`` steps and record a bag. The benchmark keeps a copy
of each checkpoint the trainers write (every ``--real-period`` / ``--sim-period`` seconds)
and, when both runs are over, evaluates every copy deterministically on
``sac_robot/DClawTurn-v0`` (``--episodes`` episodes; a success is the valve within 0.1 rad of
its goal at the end, as bench/learn_dclaw.py counts). It prints success against environment
steps and wall-clock minutes for both, the training returns from the bags, the real run's
episodes, faults and the time its resets took, and writes ``learn_dclaw_real.png`` into
``--out``.

    .venv/bin/python bench/learn_dclaw_real.py [--steps 15000] [--seed 0]

The last line is ``real_vs_sim_final_success: R S`` (the last evaluation of each).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from learn_dclaw import success_rate  # noqa: E402

SAC_ROBOT = os.path.join(os.path.dirname(sys.executable), 'sac-robot')
ENV_ID = 'sac_robot/DClawTurn-v0'
EPISODE = re.compile(r'episode \d+ ended after (\d+) steps \(([^)]*)')


def ros_environment(domain: int) -> dict:
    """The environment of one graph: loopback only, its own domain and log directory."""
    return {**os.environ, 'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
            'ROS_DOMAIN_ID': str(domain),
            'ROS_LOG_DIR': tempfile.mkdtemp(prefix='sac_robot_ros_log_')}


class Snapshots(threading.Thread):
    """Copy each checkpoint a trainer writes (the agent, not the replay) with its time."""

    def __init__(self, checkpoint: str, into: str, start: float):
        super().__init__(daemon=True)
        self.checkpoint, self.into, self.start_time = checkpoint, into, start
        self.taken = []  # (env_steps, seconds since start, directory)
        self.done = threading.Event()
        os.makedirs(into, exist_ok=True)

    def run(self):
        """Look every second until told to stop, then once more."""
        while not self.done.wait(1.0):
            self.take()
        self.take()

    def take(self):
        """Copy the checkpoint if it is new and complete (its sha256 checked)."""
        from sac_robot.algorithms.checkpoint import _sha256
        meta_path = os.path.join(self.checkpoint, 'agent.json')
        try:
            with open(meta_path, encoding='utf-8') as stream:
                meta = json.load(stream)
            steps = int(meta['extra']['env_steps'])
            if self.taken and self.taken[-1][0] == steps:
                return
            target = os.path.join(self.into, f'step_{steps:07d}')
            os.makedirs(target, exist_ok=True)
            for name in ('agent.json', 'agent.safetensors'):
                shutil.copy(os.path.join(self.checkpoint, name), target)
            if _sha256(os.path.join(target, 'agent.safetensors')) != meta['sha256']:
                shutil.rmtree(target)  # replaced while copied: the next look takes it
                return
        except (OSError, ValueError, KeyError):
            return  # none yet, or being replaced
        self.taken.append((steps, time.monotonic() - self.start_time, target))


def run_graph(name: str, arguments: list, domain: int, out: str, period: float) -> tuple:
    """One training graph to its end, its checkpoints copied; (seconds, snapshots)."""
    run_dir = os.path.join(out, name)
    config = os.path.join(out, f'{name}.yaml')
    with open(config, 'w') as stream:
        stream.write(f'/**/trainer:\n  ros__parameters:\n    checkpoint_period: {period}\n')
    start = time.monotonic()
    snapshots = Snapshots(os.path.join(run_dir, 'checkpoint'),
                          os.path.join(out, f'{name}_snapshots'), start)
    snapshots.start()
    with open(os.path.join(out, f'{name}.log'), 'w') as log:
        process = subprocess.Popen(
            [SAC_ROBOT, 'launch', 'dclaw_train.launch.py', *arguments, f'run_dir:={run_dir}',
             f'config:={config}', 'record:=true', 'status:=false'],
            stdout=log, stderr=subprocess.STDOUT, env=ros_environment(domain))
        report = start + 60.0
        try:
            while process.poll() is None:
                time.sleep(1.0)
                if time.monotonic() >= report:
                    report += 60.0
                    steps = snapshots.taken[-1][0] if snapshots.taken else 0
                    print(f'{name}: {time.monotonic() - start:5.0f} s, checkpoint at {steps} '
                          'steps', flush=True)
        finally:
            if process.poll() is None:
                process.terminate()
                process.wait(60)
            snapshots.done.set()
            snapshots.join()
    seconds = time.monotonic() - start
    print(f'{name}: finished (status {process.returncode}) after {seconds:.0f} s', flush=True)
    if process.returncode != 0:
        raise SystemExit(f'the {name} run failed: see {out}/{name}.log')
    return seconds, snapshots.taken


def evaluate(snapshots: list, episodes: int, seed: int) -> list:
    """(steps, minutes, success, return) for each snapshot."""
    import gymnasium

    from sac_robot.algorithms.checkpoint import load_checkpoint
    from sac_robot.algorithms.observations import spec_from_space
    from sac_robot.training import build_agent
    probe = gymnasium.make(ENV_ID)
    spec, action_dim = spec_from_space(probe.observation_space), probe.action_space.shape[0]
    probe.close()
    rows = []
    for steps, seconds, directory in snapshots:
        agent = build_agent('sac', spec, action_dim, {'learning_starts': 1000}, seed)
        load_checkpoint(directory, agent, load_replay=False)
        rate, mean_return = success_rate(agent, ENV_ID, episodes, 10_000 + seed)
        rows.append((steps, seconds / 60, rate, mean_return))
    return rows


def training_returns(run_dir: str) -> tuple:
    """Steps at each episode's end and its return, from the run's bag."""
    from sac_robot.bagtools import learning_data
    bags = sorted(d for d in os.listdir(run_dir) if d.startswith('bag_'))
    episodes = learning_data(os.path.join(run_dir, bags[-1]))['episodes']
    return (np.cumsum([s for _, s, _ in episodes]), np.array([r for _, _, r in episodes]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--steps', type=int, default=15_000)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--episodes', type=int, default=20, help='evaluation episodes')
    parser.add_argument('--real-period', type=float, default=120.0,
                        help="seconds between the real run's checkpoints")
    parser.add_argument('--sim-period', type=float, default=10.0,
                        help="seconds between the lockstep run's checkpoints")
    parser.add_argument('--domain', type=int, default=101,
                        help='ROS_DOMAIN_ID of both runs (one after the other; the tests take '
                             '1-100)')
    parser.add_argument('--out', default=os.path.join('bench', 'out', 'learn_dclaw_real'))
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    with open('/proc/cpuinfo') as stream:
        cpu = next((line.split(':', 1)[1].strip() for line in stream
                    if line.startswith('model name')), 'unknown CPU')
    print(f'{cpu}, {os.cpu_count()} cores; {args.steps} steps each, seed {args.seed}',
          flush=True)

    common = [f'max_steps:={args.steps}', f'seed:={args.seed}']
    seconds, snapshots, dirs = {}, {}, {name: os.path.join(out, name) for name in ('sim', 'real')}
    seconds['sim'], snapshots['sim'] = run_graph('sim', common, args.domain, out, args.sim_period)
    emulator = subprocess.Popen([SAC_ROBOT, 'emulate', 'dclaw'], stdout=subprocess.PIPE,
                                text=True)
    try:
        line = emulator.stdout.readline()
        port = re.search(r'port:=(\S+)', line)
        if port is None:
            raise SystemExit(f'the emulator did not say its port: {line!r}')
        print(line.strip(), emulator.stdout.readline().strip(), flush=True)  # (and its threads)
        seconds['real'], snapshots['real'] = run_graph(
            'real', [*common, 'hardware:=real', f'port:={port.group(1)}'], args.domain, out,
            args.real_period)
    finally:
        emulator.terminate()
        emulator.wait(30)

    with open(os.path.join(out, 'real.log')) as stream:
        episodes = EPISODE.findall(stream.read())
    faults = [reason for _, reason in episodes if reason.startswith('fault')]
    acting = args.steps / 10.0  # seconds the real run spent stepping at 10 Hz
    rate = args.steps / seconds['real']
    print(f'real: {args.steps} steps in {seconds["real"]:.0f} s ({rate:.2f} steps/s; 10 Hz '
          f'would be {acting:.0f} s), {len(episodes)} episodes, '
          f'{len(faults)} ended by a fault{": " + "; ".join(faults[:3]) if faults else ""}; '
          f'resets and start-up {seconds["real"] - acting:.0f} s in all, about '
          f'{(seconds["real"] - acting) / max(1, len(episodes)):.2f} s an episode', flush=True)
    print(f'sim (lockstep): {args.steps} steps in {seconds["sim"]:.0f} s', flush=True)

    results = {}
    for name in ('sim', 'real'):
        results[name] = evaluate(snapshots[name], args.episodes, args.seed)
        for steps, minutes, rate, mean_return in results[name]:
            print(f'{name:4s} {steps:6d} steps at {minutes:5.1f} min: success {rate:4.0%}, '
                  f'return {mean_return:7.1f}', flush=True)
    curves = {name: training_returns(directory) for name, directory in dirs.items()}
    for mark in range(2500, args.steps + 1, 2500):
        window = {name: r[(s > mark - 2500) & (s <= mark)] for name, (s, r) in curves.items()}
        print(f'training return, steps {mark - 2500}-{mark}: ' + ', '.join(
            f'{name} {values.mean():7.1f}' for name, values in window.items() if values.size),
            flush=True)

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    labels = {'real': 'real driver + emulated bus (real time)', 'sim': 'MuJoCo backend (lockstep)'}
    for name, rows in results.items():
        data = np.array(rows).reshape(-1, 4)
        axes[0].plot(data[:, 0], 100 * data[:, 2], '-o', label=labels[name])
        axes[1].plot(data[:, 1], 100 * data[:, 2], '-o', label=labels[name])
        steps, returns = curves[name]
        window = np.array([returns[max(0, i - 19):i + 1].mean() for i in range(len(returns))])
        axes[2].plot(steps, window, label=labels[name])
    axes[0].set(xlabel='environment steps', ylabel='deterministic success (%)', ylim=(-5, 105))
    axes[1].set(xlabel='wall-clock minutes', ylabel='deterministic success (%)', ylim=(-5, 105))
    axes[2].set(xlabel='environment steps', ylabel='training return (mean of 20 episodes)')
    for axis in axes:
        axis.legend(fontsize=8)
    figure.suptitle(f"SAC learning the D'Claw valve turn ({cpu})", fontsize=10)
    figure.tight_layout()
    figure.savefig(os.path.join(out, 'learn_dclaw_real.png'), dpi=100)
    print(f'figure {out}/learn_dclaw_real.png')
    print(f'real_vs_sim_final_success: {results["real"][-1][2]:.2f} {results["sim"][-1][2]:.2f}')


if __name__ == '__main__':
    main()
