# SPDX-License-Identifier: Apache-2.0
"""Observation-to-command latency through DDS, in real time at the Minitaur's 100 Hz.

Launches the Minitaur training graph with ``clock:=realtime`` (the simulated driver's control
thread ticking at 100 Hz, the trainer learning on the other core once its warm-up is collected)
for ``--seconds``. The driver logs every measurement it publishes and the time from its stamp
(taken after the physics step) to receiving the command that answers it (the command carries
the observation's stamp), and counts missed deadlines: answers that came after the next
measurement had gone out. Reports median, p99 and maximum latency, the missed deadlines, the
ticks without an answer (an episode's final measurement and those between episodes get none)
and the control period's spread (the driver's schedule; an overrun is a period missed whole).
Goal: p99 <= 2 ms and no missed deadline at 100 Hz.

Beside every variant runs a floor probe: a process at SCHED_FIFO 50 (the control thread's
default priority) that does a fixed ``--floor-work`` ms of pure computation every 10 ms and
times it. What stretches it (the other core's trainer sharing caches, the hypervisor taking the
CPU away) is what this machine does to any 1 ms of control work, compiled or not; the graph's
latency tail is read against it.

    .venv/bin/python bench/control_latency.py [--seconds 600] [--floor-work 1.0]
        [--variants "compose:=robot" "compose:=none" "SAC_ROBOT_EXECUTOR=single" "pin"
                    "set:policy.local_measurements=false" "set:driver.thread_priority=0"
                    "set:driver.spin_on_control_thread=false"]

``hardware:=real`` in a variant runs the Minitaur's real path: the driver on the
``ros2_control`` backend, reading the stack's three topics (joint states, IMU, motion capture)
from ``sac-robot emulate minitaur`` started beside it, whose operator sets up every episode
after 0.2 s; with ``compose:=none`` the policy also reads its three topics over DDS instead of
the in-process hand-over.

A variant is a set of launch arguments (``name:=value``), environment variables of the
launched processes (``NAME=value``, e.g. the executor choice of sac_robot/nodes/spin.py), node
parameters (``set:NODE.PARAMETER=VALUE``, e.g. ``set:policy.local_commands=false``) and
``pin`` (the trainer on CPU 1, the other nodes on CPU 0).

The last line is ``p99_latency_ms: X``.
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from graph_throughput import add_variants_argument, isolate_ros  # noqa: E402

isolate_ros()

SAC_ROBOT = os.path.join(os.path.dirname(sys.executable), 'sac-robot')


def pin(launcher: int):
    """Pin the trainer's process to CPU 1 and every other node process to CPU 0.

    Every thread, each time it is called (threads come and go). Variant token ``pin``: what
    ../shared/ROS2_FROM_PYPI.md advises for stable latency on two cores, tried here before it
    becomes a launch option.
    """
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as stream:
                ppid = int(stream.read().rsplit(')', 1)[1].split()[1])
            if ppid != launcher:
                continue
            with open(f'/proc/{entry}/cmdline', 'rb') as stream:
                argv = stream.read().split(b'\0')
            cpus = {1} if any(os.path.basename(a) == b'trainer' for a in argv) else {0}
            for task in os.listdir(f'/proc/{entry}/task'):
                os.sched_setaffinity(int(task), cpus)
        except (OSError, IndexError, ValueError):
            continue  # the process or thread has gone


def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def probe_main(seconds: float, work_ms: float, priority: int):
    """The floor probe's process: print how long ``work_ms`` of computation took, each time."""
    n, best = 1000, 0.0
    while best < work_ms / 2e3:  # calibrate: iterations that take work_ms at the fastest
        n *= 2
        times = []
        for _ in range(5):
            start = time.perf_counter()
            _spin(n)
            times.append(time.perf_counter() - start)
        best = min(times)
    n = int(n * work_ms / 1e3 / best)
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (OSError, AttributeError):
        pass
    durations, deadline = [], time.monotonic()
    end = deadline + seconds
    while deadline < end:
        deadline += 0.01
        time.sleep(max(deadline - time.monotonic(), 0.0))
        start = time.perf_counter()
        _spin(n)
        durations.append((time.perf_counter() - start) * 1e3)
    print(' '.join(f'{d:.4f}' for d in durations))


def floor_probe(seconds: float, work_ms: float, priority: int = 50) -> subprocess.Popen:
    """Start the floor probe for ``seconds``; ``.communicate()[0]`` holds its durations."""
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), '--probe',
                             f'{seconds},{work_ms},{priority}'], stdout=subprocess.PIPE,
                            text=True)


def run(seconds: float, learning_starts: int, launch_args=(), floor_ms: float = 0.0) -> dict:
    """Run the real-time graph for ``seconds``; return its latencies (ms) and missed deadlines."""
    with tempfile.TemporaryDirectory(prefix='control_latency_') as out:
        log = os.path.join(out, 'latency.csv')
        config = os.path.join(out, 'config.yaml')
        settings = [a[len('set:'):] for a in launch_args if a.startswith('set:')]
        launch_args = [a for a in launch_args if not a.startswith('set:')]
        with open(config, 'w') as stream:
            stream.write(f'/**/driver:\n  ros__parameters:\n    latency_log: {log}\n'
                         '/**/trainer:\n  ros__parameters:\n    checkpoint_period: 0.0\n'
                         f'    agent:\n      learning_starts: {learning_starts}\n')
            for setting in settings:  # set:NODE.PARAMETER=VALUE
                name, value = setting.split('=', 1)
                node, parameter = name.split('.', 1)
                stream.write(f'/**/{node}:\n  ros__parameters:\n    {parameter}: {value}\n')
        # NAME=value (no ':='): an environment variable of the launched processes.
        environment = dict(os.environ)
        environment.update(a.split('=', 1) for a in launch_args
                           if '=' in a and ':=' not in a)
        stack = None
        if 'hardware:=real' in launch_args:  # the stand-in of the lab's stack, and its person
            stack = subprocess.Popen([SAC_ROBOT, 'emulate', 'minitaur', '--operator', '0.2'],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, env=environment)
            print(stack.stdout.readline().strip(), flush=True)
        output = open(os.path.join(out, 'launch.log'), 'w+')
        process = subprocess.Popen(
            [SAC_ROBOT, 'launch', 'minitaur_train.launch.py', 'clock:=realtime',
             f'run_dir:={out}', f'config:={config}', 'status:=false',
             *(a for a in launch_args if ':=' in a)],
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True, env=environment)
        start = time.monotonic()
        probe = None
        while time.monotonic() - start < seconds and process.poll() is None:
            if probe is None and floor_ms > 0 and time.monotonic() - start > 0.25 * seconds:
                # Over the run's last three quarters: the trainer is learning by then.
                probe = floor_probe(0.7 * seconds, floor_ms)
            time.sleep(1.0)
            if 'pin' in launch_args:
                pin(process.pid)
            elapsed = time.monotonic() - start
            if int(elapsed) % 30 == 0:
                print(f'{elapsed:5.0f} s of {seconds:.0f}', flush=True)
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)
        if stack is not None:
            stack.terminate()
            stack.wait(timeout=30)
        floor = (np.array([float(x) for x in probe.communicate()[0].split()])
                 if probe is not None else np.zeros(0))
        if not os.path.exists(log):
            output.seek(0)
            sys.exit('the graph wrote no latency log; the end of its output:\n'
                     + ''.join(output.readlines()[-15:]))
        output.close()
        with open(log) as stream:
            header = stream.readline()
            table = np.loadtxt(stream, delimiter=',', skiprows=1, ndmin=2)
    # '# steps N, missed deadlines M, overruns K'
    steps, missed, overruns = (int(x) for x in re.findall(r'\d+', header))
    stamps, timer, latency = table[:, 0].astype(np.int64), table[:, 1] > 0, table[:, 2]
    # Control periods: between consecutive ticks of the control thread (a reset breaks them).
    periods = np.diff(stamps)[timer[1:] & timer[:-1]] / 1e6
    return {'steps': steps, 'missed': missed, 'overruns': overruns,
            'latencies': latency[~np.isnan(latency)],
            'unanswered': int(np.isnan(latency[timer]).sum()), 'periods': periods,
            'floor': floor}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seconds', type=float, default=600.0)
    parser.add_argument('--learning-starts', type=int, default=1000)
    parser.add_argument('--floor-work', type=float, default=1.0,
                        help='ms of pure computation the floor probe times (0: no probe)')
    parser.add_argument('--probe', help=argparse.SUPPRESS)  # SECONDS,WORK_MS,PRIORITY
    add_variants_argument(parser)
    args = parser.parse_args()
    if args.probe:
        seconds, work_ms, priority = args.probe.split(',')
        probe_main(float(seconds), float(work_ms), int(priority))
        return
    results = {}
    for variant in args.variants:
        print(f'{variant}:', flush=True)
        result = results[variant] = run(args.seconds, args.learning_starts, variant.split(),
                                        args.floor_work)
        latencies, periods = result['latencies'], result['periods']
        print(f'{variant}: {result["steps"]} control steps at 100 Hz over {args.seconds:.0f} s, '
              f'{len(latencies)} commands timed; latency ms: median {np.median(latencies):.3f}, '
              f'p99 {np.percentile(latencies, 99):.3f}, max {latencies.max():.3f}; missed '
              f'deadlines {result["missed"]} (answers later than the next tick), '
              f'{result["unanswered"]} ticks never answered; control period ms: median '
              f'{np.median(periods):.3f}, p1 {np.percentile(periods, 1):.3f}, p99 '
              f'{np.percentile(periods, 99):.3f}, max {periods.max():.3f}, '
              f'{int((periods > 15.0).sum())} over 15 ms, {result["overruns"]} overruns (a whole '
              'period late)', flush=True)
        floor = result['floor']
        if len(floor):
            print(f'{variant}: floor probe, {args.floor_work:g} ms of computation every 10 ms '
                  f'at the same priority ({len(floor)} times): median {np.median(floor):.3f}, '
                  f'p99 {np.percentile(floor, 99):.3f}, max {floor.max():.3f} ms; '
                  f'{int((floor > 10.0).sum())} over 10 ms', flush=True)
    first = results[args.variants[0]]['latencies']
    print(f'p99_latency_ms: {np.percentile(first, 99):.3f}')


if __name__ == '__main__':
    main()
