# SPDX-License-Identifier: Apache-2.0
"""A robot learning through its real driver in real time, beside its MuJoCo backend in lockstep.

Two training graphs, one after the other (the real-time one alone on the machine, as a robot's
computer would run it), in a ROS domain of their own, as a user starts them:

- **real**: the robot's hardware stand-in and ``hardware:=real``, on the wall clock:
  ``--robot dclaw``: ``sac-robot emulate dclaw`` (the emulated servo bus: Protocol 2.0 on a
  pseudo-terminal, the MuJoCo hand behind it in real time) and the Dynamixel backend through
  dynamixel-sdk at 10 Hz, every episode after the scripted valve reset; ``--robot minitaur``:
  ``sac-robot emulate minitaur --operator 0.5`` (the MuJoCo Minitaur behind a ros2_control
  stack's and vrpn_mocap's topics, with a person who sets the robot up 0.5 s after being
  asked) and the ros2_control backend at 100 Hz. The stand-ins' threads run at SCHED_FIFO
  where permitted, as hardware answers whatever the computer does;
- **sim**: the same launch file with the MuJoCo backend in lockstep.

Both run SAC with the package's settings (config/<robot>_train.yaml: the warm-up steps, at
most one update per step; in real time the robot does not wait for the learner) for
``--steps`` steps and record a bag. The benchmark keeps a copy of each checkpoint the trainers
write (every ``--real-period`` / ``--sim-period`` seconds) and, when both runs are over,
evaluates every copy deterministically in the robot's gymnasium task: the D'Claw's success
(the valve within 0.1 rad of its goal at the end, ``--episodes`` episodes, as
bench/learn_dclaw.py counts), the Minitaur's forward speed over 500-step episodes (as
bench/learn_minitaur.py). It prints the metric against environment steps and wall-clock
minutes for both, the training returns from the bags, each reward term over the random warm-up
side by side (where the two paths measure differently, it shows), the real run's episodes,
faults and the time its resets took, and writes ``learn_real_<robot>.png`` into ``--out``.

    .venv/bin/python bench/learn_real.py --robot dclaw [--steps 20000] [--seed 0]
    .venv/bin/python bench/learn_real.py --robot minitaur [--steps 30000]

The last line is ``real_vs_sim_final_<metric>: R S`` (the last evaluation of each).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from learn_dclaw import success_rate  # noqa: E402
from learn_minitaur import walk  # noqa: E402
from machine import describe, fresh_folder, ros_environment  # noqa: E402

SAC_ROBOT = os.path.join(os.path.dirname(sys.executable), 'sac-robot')
EPISODE = re.compile(r'episode \d+ ended after (\d+) steps \(([^)]*)')


def dclaw_success(agent, episodes: int, seed: int) -> float:
    return success_rate(agent, 'sac_robot/DClawTurn-v0', episodes, 10_000 + seed)[0]


def minitaur_speed(agent, episodes: int, seed: int) -> float:
    return float(walk(agent, episodes, 20_000 + seed)['speed'].mean())


#: Robot -> its task, stand-in, control rate, warm-up steps and what its evaluation measures.
ROBOTS = {
    'dclaw': {'env': 'sac_robot/DClawTurn-v0', 'emulate': ['dclaw'], 'rate': 10.0,
              'learning_starts': 1000, 'metric': ('success', dclaw_success, '%'),
              'episodes': 20},
    'minitaur': {'env': 'sac_robot/MinitaurWalk-v0', 'emulate': ['minitaur', '--operator', '0.5'],
                 'rate': 100.0, 'learning_starts': 5000,
                 'metric': ('speed', minitaur_speed, 'm/s'), 'episodes': 5},
}


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


def run_graph(name: str, robot: str, arguments: list, domain: int, out: str,
              period: float, trainer: str = '', more: str = '') -> tuple:
    """One training graph to its end, its checkpoints copied; (seconds, snapshots).

    ``trainer``: more lines of the trainer's parameters (indented as under
    ``ros__parameters``); ``more``: further sections of the graph's parameter file.
    """
    run_dir = os.path.join(out, name)
    config = os.path.join(out, f'{name}.yaml')
    with open(config, 'w') as stream:
        stream.write(f'/**/trainer:\n  ros__parameters:\n    checkpoint_period: {period}\n'
                     f'{trainer}{more}')
    start = time.monotonic()
    snapshots = Snapshots(os.path.join(run_dir, 'checkpoint'),
                          os.path.join(out, f'{name}_snapshots'), start)
    snapshots.start()
    with open(os.path.join(out, f'{name}.log'), 'w') as log:
        process = subprocess.Popen(
            [SAC_ROBOT, 'launch', f'{robot}_train.launch.py', *arguments, f'run_dir:={run_dir}',
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


def evaluate(robot: str, snapshots: list, episodes: int, seed: int, metric=None) -> list:
    """(steps, minutes, metric) for each snapshot (``metric``: the robot's, or this one)."""
    import gymnasium

    from sac_robot.algorithms.checkpoint import load_checkpoint
    from sac_robot.algorithms.observations import spec_from_space
    from sac_robot.training import build_agent
    facts = ROBOTS[robot]
    probe = gymnasium.make(facts['env'])
    spec, action_dim = spec_from_space(probe.observation_space), probe.action_space.shape[0]
    probe.close()
    rows = []
    for steps, seconds, directory in snapshots:
        agent = build_agent('sac', spec, action_dim,
                            {'learning_starts': facts['learning_starts']}, seed)
        load_checkpoint(directory, agent, load_replay=False)
        rows.append((steps, seconds / 60, (metric or facts['metric'][1])(agent, episodes, seed)))
    return rows


def training_returns(run_dir: str) -> tuple:
    """Steps at each episode's end and its return, from the run's bag."""
    from sac_robot.bagtools import learning_data
    bags = sorted(d for d in os.listdir(run_dir) if d.startswith('bag_'))
    episodes = learning_data(os.path.join(run_dir, bags[-1]))['episodes']
    return (np.cumsum([s for _, s, _ in episodes]), np.array([r for _, _, r in episodes]))


def warmup_terms(run_dir: str, learning_starts: int) -> tuple:
    """Each reward term's mean sum over the episodes that ended within the warm-up.

    Random actions on both paths: the same robot and reward should give the same terms, so a
    term that differs points at what the real path measures differently. Also the episodes'
    mean length and how many there were.
    """
    from sac_robot.bagtools import learning_data
    bags = sorted(d for d in os.listdir(run_dir) if d.startswith('bag_'))
    data = learning_data(os.path.join(run_dir, bags[-1]))
    ended = np.cumsum([s for _, s, _ in data['episodes']])
    chosen = [(episode, length) for (episode, length, _), end in zip(data['episodes'], ended)
              if end <= learning_starts]
    names = sorted({name for episode, _ in chosen for name in data['terms'][episode]})
    terms = {name: float(np.mean([data['terms'][e].get(name, 0.0) for e, _ in chosen]))
             for name in names}
    return terms, float(np.mean([n for _, n in chosen])) if chosen else 0.0, len(chosen)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--robot', choices=sorted(ROBOTS), default='dclaw')
    parser.add_argument('--steps', type=int, default=None,
                        help='steps of each run (default: dclaw 20000, minitaur 30000)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--episodes', type=int, default=None,
                        help='evaluation episodes (default: dclaw 20, minitaur 5)')
    parser.add_argument('--real-period', type=float, default=120.0,
                        help="seconds between the real run's checkpoints")
    parser.add_argument('--sim-period', type=float, default=10.0,
                        help="seconds between the lockstep run's checkpoints")
    parser.add_argument('--domain', type=int, default=101,
                        help='ROS_DOMAIN_ID of both runs (one after the other; the tests take '
                             '1-100)')
    parser.add_argument('--out', default=None, help='default: bench/out/learn_real_<robot>')
    args = parser.parse_args()
    robot, facts = args.robot, ROBOTS[args.robot]
    steps = args.steps or {'dclaw': 20_000, 'minitaur': 30_000}[robot]
    episodes = args.episodes or facts['episodes']
    metric, _, unit = facts['metric']
    out = fresh_folder(args.out or os.path.join('bench', 'out', f'learn_real_{robot}'))
    print(f'{robot}: {describe()}; {steps} steps each, seed {args.seed}',
          flush=True)

    common = [f'max_steps:={steps}', f'seed:={args.seed}']
    seconds, snapshots, dirs = {}, {}, {name: os.path.join(out, name) for name in ('sim', 'real')}
    seconds['sim'], snapshots['sim'] = run_graph('sim', robot, common, args.domain, out,
                                                 args.sim_period)
    stand_in = subprocess.Popen([SAC_ROBOT, 'emulate', *facts['emulate']],
                                stdout=subprocess.PIPE, text=True,
                                env=ros_environment(args.domain))
    try:
        line = stand_in.stdout.readline()
        print(line.strip(), flush=True)
        real = [*common, 'hardware:=real']
        if robot == 'dclaw':  # the pseudo-terminal it serves
            port = re.search(r'port:=(\S+)', line)
            if port is None:
                raise SystemExit(f'the emulator did not say its port: {line!r}')
            real.append(f'port:={port.group(1)}')
        seconds['real'], snapshots['real'] = run_graph('real', robot, real, args.domain, out,
                                                       args.real_period)
    finally:
        stand_in.terminate()
        stand_in.wait(30)

    with open(os.path.join(out, 'real.log')) as stream:
        log = stream.read()
    ends = EPISODE.findall(log)
    faults = [reason for _, reason in ends if reason.startswith('fault')]
    acting = steps / facts['rate']  # seconds the real run spent stepping
    waited = [float(w) for w in re.findall(r'confirmed by a person after ([\d.]+) s', log)]
    print(f'real: {steps} steps in {seconds["real"]:.0f} s ({steps / seconds["real"]:.2f} '
          f'steps/s; at {facts["rate"]:g} Hz the steps alone take {acting:.0f} s), '
          f'{len(ends)} episodes, {len(faults)} ended by a fault'
          f'{": " + "; ".join(faults[:3]) if faults else ""}; resets and start-up '
          f'{seconds["real"] - acting:.0f} s in all, about '
          f'{(seconds["real"] - acting) / max(1, len(ends)):.2f} s an episode'
          + (f'; {len(waited)} set up by the person, who was waited for {sum(waited):.0f} s'
             if waited else ''), flush=True)
    print(f'sim (lockstep): {steps} steps in {seconds["sim"]:.0f} s', flush=True)
    for name, directory in dirs.items():  # updates per step after the warm-up
        with open(os.path.join(directory, 'checkpoint', 'agent.json')) as stream:
            meta = json.load(stream)
        learning = max(1, meta['extra']['env_steps'] - facts['learning_starts'])
        print(f'{name}: {meta["gradient_steps"]} updates for {learning} steps after the warm-up '
              f'({meta["gradient_steps"] / learning:.2f} a step), alpha {meta["alpha"]:.4f}',
              flush=True)

    results = {}
    for name in ('sim', 'real'):
        results[name] = evaluate(robot, snapshots[name], episodes, args.seed)
        for at, minutes, value in results[name]:
            print(f'{name:4s} {at:6d} steps at {minutes:5.1f} min: {metric} '
                  + (f'{value:4.0%}' if unit == '%' else f'{value:.2f} {unit}'), flush=True)
    curves = {name: training_returns(directory) for name, directory in dirs.items()}
    window_steps = steps // 8
    for mark in range(window_steps, steps + 1, window_steps):
        window = {name: r[(s > mark - window_steps) & (s <= mark)]
                  for name, (s, r) in curves.items()}
        print(f'training return, steps {mark - window_steps}-{mark}: ' + ', '.join(
            f'{name} {values.mean():7.1f}' for name, values in window.items() if values.size),
            flush=True)

    warmup = {name: warmup_terms(directory, facts['learning_starts'])
              for name, directory in dirs.items()}
    print(f'reward terms over the warm-up (random actions; mean sum an episode, '
          f'{warmup["sim"][2]} and {warmup["real"][2]} episodes of {warmup["sim"][1]:.0f} and '
          f'{warmup["real"][1]:.0f} steps):', flush=True)
    for term in sorted(set(warmup['sim'][0]) | set(warmup['real'][0])):
        print(f'  {term:20s} sim {warmup["sim"][0].get(term, 0.0):9.3f}  real '
              f'{warmup["real"][0].get(term, 0.0):9.3f}', flush=True)

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    labels = {'real': 'real driver + hardware stand-in (real time)',
              'sim': 'MuJoCo backend (lockstep)'}
    scale = 100 if unit == '%' else 1
    for name, rows in results.items():
        data = np.array(rows).reshape(-1, 3)
        axes[0].plot(data[:, 0], scale * data[:, 2], '-o', label=labels[name])
        axes[1].plot(data[:, 1], scale * data[:, 2], '-o', label=labels[name])
        at, returns = curves[name]
        window = np.array([returns[max(0, i - 19):i + 1].mean() for i in range(len(returns))])
        axes[2].plot(at, window, label=labels[name])
    ylabel = f'deterministic {metric} ({unit})'
    axes[0].set(xlabel='environment steps', ylabel=ylabel)
    axes[1].set(xlabel='wall-clock minutes', ylabel=ylabel)
    axes[2].set(xlabel='environment steps', ylabel='training return (mean of 20 episodes)')
    for axis in axes:
        axis.legend(fontsize=8)
    figure.suptitle(f'SAC learning {facts["env"]} through the real path and in simulation '
                    f'({describe()})', fontsize=10)
    figure.tight_layout()
    figure.savefig(os.path.join(out, f'learn_real_{robot}.png'), dpi=100)
    print(f'figure {out}/learn_real_{robot}.png')
    print(f'real_vs_sim_final_{metric}: {results["real"][-1][2]:.2f} '
          f'{results["sim"][-1][2]:.2f}')


if __name__ == '__main__':
    main()
