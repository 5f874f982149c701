# SPDX-License-Identifier: Apache-2.0
"""A fault campaign: every fault we can make, against the graph as a user launches it.

Each trial starts the Minitaur's lockstep training graph (``sac-robot launch
minitaur_train.launch.py``, all random warm-up actions so that every transition is distinct)
from a clean run folder, makes one fault at a random moment, recovers as a user would
(``resume:=true``, relaunching the part that died) and reads what the run left: the trainer's
checkpoint must hold exactly ``max_steps`` transitions, none twice, and the fault must have
been said. The faults:

- ``kill trainer``: SIGKILL of the trainer process, then the workstation part resumed;
- ``kill robot side``: SIGKILL of every process of the robot part, then it is relaunched;
- ``kill all``: SIGKILL of every process of the graph at once, then the whole graph resumed;
- ``command flood``: 2 s of malformed commands (wrong length, NaN, foreign labels) on the
  robot's command topic mid-run;
- ``outside reset``: the driver's ``reset`` service called from outside mid-episode;
- ``corrupt checkpoint``: a byte of ``agent.safetensors`` or ``replay.safetensors`` flipped,
  then ``resume:=true``: it must be refused with the file named, the file left as it was;
- ``double SIGINT``: Ctrl-C twice, 0.1 s apart, to the whole launch mid-run (what ``ros2
  launch`` without a terminal sends each node), then ``resume:=true``: every node must exit 0
  with its shutdown finished (the last checkpoint), and the resumed run lose nothing;
- the bad messages of ``bench/inject.py``, each sent by a process of its own mid-run:
  poisoned copies of real policy steps, a NaN joint state stamped in the future, an implausible
  motion-capture pose, NaN rewards, malformed policy weights (version 2^62), a forged
  acknowledgement, a forged chunk claiming 10^6 lost transitions, a reset with seed -2^63, and
  ``fuzz``: 2 s of random values on every topic of the robot. Each must be refused and said
  (the line the campaign looks for is in ``SAID``) with the run going on to lose nothing;
- the hardware stand-ins' faults, ``hardware:=real`` against a stand-in that speaks the real
  protocol (``HARDWARE``): replies lost and corrupted on the D'Claw's emulated Protocol 2.0
  bus, a servo silent for 3 s, the Minitaur's tracker losing the body for 0.5 s. Each must be
  said, leave torque off on every servo at the end, and lose nothing.

Prints one row per trial, a table per fault (how often, each outcome) and a last line
``faults: <crashed> crashed, <lost> lost, <silent> silent`` (lost counts transitions, lost or
doubled). Outcomes: ``recovered`` (exactly max_steps distinct transitions), ``rejected with
message`` (a bad input or file refused, said), ``lost N`` / ``doubled N``, ``crashed`` (a
traceback, a stall past the timeout, a non-zero exit that was not asked for), ``silent`` (no
line said what happened), ``missed`` (the fault could not be made: the run ended first).
"""

import argparse
import collections
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import SAC_ROBOT, describe, fresh_folder, ros_environment  # noqa: E402

from sac_robot.algorithms.replay import ReplayBuffer  # noqa: E402

CONFIG = """
/**/trainer:
  ros__parameters:
    publish_every: 50
    checkpoint_period: 0.5
    agent:
      learning_starts: 100000
      batch_size: 64
      hidden: [64, 64]
"""

#: Publishes bad commands for 2 s once told to (a line on stdin); a process of its own, in the
#: graph's domain, as any foreign node on the network would.
FLOOD = r"""
import sys, time, rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Float64MultiArray, MultiArrayDimension
rclpy.init()
node = rclpy.create_node('flood')
pub = node.create_publisher(Float64MultiArray, '/minitaur/position_controller/commands',
                            QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
while pub.get_subscription_count() == 0:
    rclpy.spin_once(node, timeout_sec=0.1)
print('ready', flush=True)
sys.stdin.readline()
bad = [[1.0] * 3, [float('nan')] * 8, [1e300] * 8]
sent, end = 0, time.monotonic() + 2.0
while time.monotonic() < end:
    msg = Float64MultiArray(data=bad[sent % 3])
    if sent % 4 == 3:  # well-formed, answering an observation nobody made
        msg.data = [0.0] * 8
        msg.layout.dim = [MultiArrayDimension(label='stamp_ns=1;episode=999999', size=8)]
    pub.publish(msg)
    sent += 1
    time.sleep(0.002)
print(f'flood: {sent} commands', flush=True)
"""

#: bench/inject.py, the foreign process of the bad-message faults.
INJECT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'inject.py')

#: What the graph (or the answer to the forged call) must say for each bad message.
SAID = {'poisoned steps': 'step refused', 'future sensor': 'sensor message dropped',
        'implausible mocap': 'not plausible', 'nan reward': 'reward refused',
        'malformed weights': 'weights rejected', 'forged ack': 'acknowledgement refused',
        'forged chunk': 'chunk rejected', 'bad seed': 'a seed is >= 0',
        'fuzz': ('rejected', 'refused', 'dropped')}

#: Calls the driver's reset service once told to (a person's `ros2 service call`).
RESET = r"""
import rclpy
from sac_robot.srv import Reset
rclpy.init()
node = rclpy.create_node('person')
client = node.create_client(Reset, '/minitaur/reset')
while not client.wait_for_service(timeout_sec=1):
    pass
print('ready', flush=True)
input()
future = client.call_async(Reset.Request(seed=-1, reason='a person'))
rclpy.spin_until_future_complete(node, future, timeout_sec=20)
print('outside reset:', future.result(), flush=True)
"""


class Launch:
    """One ``sac-robot launch`` of (part of) the graph, or a stand-in, its output collected."""

    def __init__(self, arguments: list, environment: dict, command: str = 'launch'):
        self.process = subprocess.Popen([SAC_ROBOT, command, *arguments],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, env=environment, start_new_session=True)
        self.lines = []
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout),
                         daemon=True).start()

    def pids(self) -> list:
        """Every process the launcher started."""
        return [int(m.group(1)) for line in list(self.lines)
                if 'process started' in line and (m := re.search(r'pid \[(\d+)\]', line))]

    def pid_of(self, name: str):
        """The pid of the launcher's process ``name`` (None before it started)."""
        return next((int(re.search(r'pid \[(\d+)\]', line).group(1))
                     for line in list(self.lines) if 'process started' in line
                     and line.rstrip().endswith(f': {name}')), None)

    def kill_all(self):
        """SIGKILL to the launcher and each of its processes at once."""
        for pid in [self.process.pid, *self.pids()]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(30)

    def wait(self, timeout: float):
        """The exit status; None (and stopped) past ``timeout``."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            return None

    def stop(self):
        """Ctrl-C to the whole launch, as a user stops it."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(30)

    @property
    def text(self) -> str:
        """Everything it printed so far."""
        return ''.join(self.lines)


def checkpoint(run_dir: str):
    """``(meta, buffer)`` of the run's newest checkpoint; ``(None, None)`` without one."""
    try:
        with open(os.path.join(run_dir, 'checkpoint', 'agent.json')) as stream:
            meta = json.load(stream)
        buffer = ReplayBuffer.load(os.path.join(run_dir, 'checkpoint', 'replay.safetensors'))
    except (OSError, ValueError):
        return None, None
    return meta, buffer


def held(run_dir: str) -> int:
    meta, _ = checkpoint(run_dir)
    return 0 if meta is None else int(meta['extra']['env_steps'])


def distinct(buffer) -> int:
    n = len(buffer)
    rows = np.concatenate([buffer.storage['obs'][:n], buffer.storage['action'][:n]], axis=1)
    return len(np.unique(rows, axis=0))


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def judge(run_dir: str, steps: int, texts: list, said: str, statuses: list) -> tuple:
    """(outcome, lost or doubled transitions, why) from what the run left.

    Everything the trial's processes printed is kept in ``<run_dir>/output.log``.
    """
    text = '\n'.join(texts)
    with open(os.path.join(run_dir, 'output.log'), 'w') as stream:
        stream.write(text)
    if 'Traceback' in text:
        return 'crashed', 0, 'a traceback'
    if any(status is None for status in statuses):
        return 'crashed', 0, 'stalled past the timeout'
    if any(status != 0 for status in statuses):
        return 'crashed', 0, f'exit statuses {statuses}'
    meta, buffer = checkpoint(run_dir)
    if buffer is None:
        return 'crashed', 0, 'no checkpoint'
    unique = distinct(buffer)
    if len(buffer) - unique:
        return f'doubled {len(buffer) - unique}', len(buffer) - unique, ''
    if unique < steps:
        return f'lost {steps - unique}', steps - unique, ''
    said = (said,) if isinstance(said, str) else said
    if said and not any(phrase in text for phrase in said):
        return 'silent', 0, f'no line with {" or ".join(map(repr, said))}'
    return 'recovered', 0, ''


def trial(fault: str, rng: random.Random, args, number: int) -> tuple:
    """Run one trial of ``fault``; ``(outcome, lost, why)``."""
    run_dir = fresh_folder(os.path.join(args.out, f'{number:03d}'))
    config = os.path.join(run_dir, 'train.yaml')
    with open(config, 'w') as stream:
        stream.write(CONFIG)
    environment = ros_environment(args.domain)
    common = ['minitaur_train.launch.py', f'max_steps:={args.steps}', f'run_dir:={run_dir}',
              f'config:={config}', 'status:=false', 'record:=false', f'seed:={number}']
    at = rng.uniform(0.15, 0.75) * args.steps  # the random moment, in transitions held
    texts, statuses = [], []

    def finish(*launches):
        for each in launches:
            statuses.append(each.wait(args.timeout))
            texts.append(each.text)

    if fault in ('kill trainer', 'kill robot side'):
        robot = Launch([*common, 'part:=robot'], environment)
        workstation = Launch([*common, 'part:=workstation'], environment)
        if not wait_until(lambda: held(run_dir) >= at, args.timeout):
            robot.stop()
            workstation.stop()
            return 'crashed', 0, f'never reached {at:.0f} transitions'
        if fault == 'kill trainer':
            os.kill(workstation.pid_of('trainer'), signal.SIGKILL)
            workstation.wait(30)
            texts.append(workstation.text)
            workstation = Launch([*common, 'part:=workstation', 'resume:=true'], environment)
            finish(workstation)
            robot.stop()
            texts.append(robot.text)
        else:
            robot.kill_all()
            robot = Launch([*common, 'part:=robot'], environment)
            finish(workstation)
            robot.stop()
            texts.append(robot.text)
        return judge(run_dir, args.steps, texts, 'resumed from' if fault == 'kill trainer'
                     else 'this run continues at episode', statuses)
    if fault == 'kill all':
        first = Launch(common, environment)
        if not wait_until(lambda: held(run_dir) >= at, args.timeout):
            first.stop()
            return 'crashed', 0, f'never reached {at:.0f} transitions'
        first.kill_all()
        texts.append(first.text)
        finish(Launch([*common, 'resume:=true'], environment))
        return judge(run_dir, args.steps, texts, 'this run continues at episode', statuses)
    if fault in ('command flood', 'outside reset', *SAID):
        # The foreign process starts with the graph and is ready (its topics discovered)
        # before the random moment, early enough that the run is still going when it sends.
        script = (['-c', FLOOD] if fault == 'command flood' else ['-c', RESET]
                  if fault == 'outside reset' else [INJECT, fault, '--seed', str(number)])
        helper = subprocess.Popen([sys.executable, *script], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env=environment)
        ready = threading.Thread(target=lambda: next(
            (line for line in helper.stdout if line.strip() == 'ready'), None), daemon=True)
        ready.start()
        graph = Launch(common, environment)
        early = min(at, rng.uniform(0.15, 0.4) * args.steps)
        if not wait_until(lambda: held(run_dir) >= early and not ready.is_alive(),
                          args.timeout):
            graph.stop()
            helper.kill()
            return 'crashed', 0, f'never reached {early:.0f} transitions'
        sent_at = held(run_dir)
        try:
            out, _ = helper.communicate('go\n', timeout=60)
        except subprocess.TimeoutExpired:
            helper.kill()
            out, _ = helper.communicate()
        texts.append(out)
        finish(graph)
        if helper.returncode != 0 or ': no ' in out:
            return 'missed', 0, (out.strip().splitlines() or ['no output'])[-1]
        if held(run_dir) and sent_at >= args.steps:
            return 'missed', 0, 'the run had ended'
        said = {'command flood': 'command rejected', 'outside reset': 'reset from outside'}
        return judge(run_dir, args.steps, texts, said.get(fault, SAID.get(fault)), statuses)
    if fault == 'double SIGINT':
        first = Launch(common, environment)
        if not wait_until(lambda: held(run_dir) >= at, args.timeout):
            first.stop()
            return 'crashed', 0, f'never reached {at:.0f} transitions'
        os.killpg(first.process.pid, signal.SIGINT)
        time.sleep(0.1)
        os.killpg(first.process.pid, signal.SIGINT)
        finish(first)
        finish(Launch([*common, 'resume:=true'], environment))
        return judge(run_dir, args.steps, texts, 'resumed from', statuses)
    if fault in HARDWARE:
        return hardware_trial(fault, rng, args, number, run_dir, config, environment)
    if fault == 'corrupt checkpoint':
        half = [a if not a.startswith('max_steps:=') else f'max_steps:={args.steps // 2}'
                for a in common]
        finish(Launch(half, environment))
        if statuses[-1] != 0:
            return 'crashed', 0, 'the first half did not finish'
        name = rng.choice(['agent.safetensors', 'replay.safetensors'])
        path = os.path.join(run_dir, 'checkpoint', name)
        with open(path, 'r+b') as stream:
            size = stream.seek(0, 2)
            stream.seek(rng.randrange(size))
            byte = stream.read(1)
            stream.seek(-1, 1)
            stream.write(bytes([byte[0] ^ 0xFF]))
        before = hashlib.sha256(open(path, 'rb').read()).hexdigest()
        resumed = Launch([*common, 'resume:=true'], environment)
        status = resumed.wait(args.timeout)
        text = resumed.text
        after = hashlib.sha256(open(path, 'rb').read()).hexdigest()
        if status is None or 'Traceback' in text:
            return 'crashed', 0, 'a traceback' if status is not None else 'stalled'
        if before != after:
            return 'crashed', 0, f'{name} was rewritten'
        if status == 0:
            return 'silent', 0, f'the flipped {name} was taken'
        if name not in text:
            return 'silent', 0, f'refused without naming {name}'
        return 'rejected with message', 0, ''
    raise ValueError(f'no such fault {fault!r}')


#: The hardware stand-ins' faults: the robot, its max_steps, and the stand-in's options (the
#: moment, in seconds of the stand-in's time, is drawn for each trial).
HARDWARE = {
    # The D'Claw on its emulated Protocol 2.0 bus: replies lost and corrupted (bad CRC) at
    # random, absorbed by the retries or ending an episode as a fault; a servo (b_j1) silent for
    # 3 s (a loose cable, reseated): the episode ends as a fault naming it, resets fail until it
    # answers again, then the run goes on.
    'corrupt replies': ('dclaw', 200, lambda t: ['--corrupt', '0.01', '--drop', '0.01']),
    'silent servo': ('dclaw', 200, lambda t: ['--silent', f'21@{t:.1f}+3']),
    # The Minitaur behind its ros2_control stand-in: the tracker loses the body for 0.5 s; the
    # stand-in's operator places the robot and confirms each reset, as the lab's person would.
    'tracker dropout': ('minitaur', 1200, lambda t: ['--tracker-dropout', f'0.5@{t:.1f}',
                                                     '--operator', '0.3']),
}

#: What each says: the line that tells what happened.
HARDWARE_SAID = {'corrupt replies': 'retries', 'silent servo': 'b_j1',
                 'tracker dropout': 'fault: mocap: no message on'}


def hardware_trial(fault: str, rng: random.Random, args, number: int, run_dir: str,
                   config: str, environment: dict) -> tuple:
    """One trial against a hardware stand-in speaking the real protocol (hardware:=real)."""
    robot, steps, options = HARDWARE[fault]
    port_file = os.path.join(run_dir, 'port')
    # The moment, in the stand-in's seconds: after the graph's start-up (a few seconds) and
    # well inside the run (the Minitaur's 1,200 steps take some 15 s with its person's resets).
    standin = Launch([robot, *options(rng.uniform(5.0, 11.0)),
                      *(['--seed', str(number), '--port-file', port_file] if robot == 'dclaw'
                        else [])],
                     environment, command='emulate')
    texts, statuses = [], []
    if robot == 'dclaw':
        if not wait_until(lambda: os.path.exists(port_file) and open(port_file).read(), 60):
            standin.stop()
            return 'crashed', 0, 'the emulated bus never came up'
        port = [f'port:={open(port_file).read().strip()}']
    else:
        port = []
    graph = Launch([f'{robot}_train.launch.py', 'hardware:=real', *port, f'max_steps:={steps}',
                    f'run_dir:={run_dir}', f'config:={config}', 'status:=false',
                    'record:=false', f'seed:={number}'], environment)
    statuses.append(graph.wait(args.timeout))
    texts.append(graph.text)
    standin.stop()
    texts.append(standin.text)
    text = '\n'.join(texts)
    if 'torque ON' in standin.text:
        return 'crashed', 0, 'torque left on: ' + next(
            line for line in standin.text.splitlines() if 'torque ON' in line)
    outcome = judge(run_dir, steps, texts, HARDWARE_SAID[fault], statuses)
    if outcome[0] == 'silent' and fault != 'corrupt replies':
        return 'missed', 0, 'no fault during the run'  # (the run ended before the moment)
    if fault == 'corrupt replies':
        made = re.search(r'(\d+) replies dropped and (\d+) corrupted', standin.text)
        if not made or not int(made.group(1)) + int(made.group(2)):
            return 'missed', 0, 'no reply lost or corrupted'
        if outcome[0] == 'recovered' and not re.search(r'retries [1-9]', text):
            return 'silent', 0, 'no retry counted'
    return outcome


def main() -> int:
    """Run the campaign; print the rows, the table and the headline."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--kills', type=int, default=21,
                        help='kill -9 trials in all, shared among the three kinds')
    parser.add_argument('--others', type=int, default=2, help='trials of each other fault')
    parser.add_argument('--steps', type=int, default=3000, help='max_steps of each run')
    parser.add_argument('--timeout', type=float, default=240.0, help='seconds a launch may run')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--only', action='append', metavar='FAULT',
                        help='run only this fault (again for more)')
    parser.add_argument('--domain', type=int, default=105)
    parser.add_argument('--out', default=os.path.join('bench', 'out', 'faults'))
    args = parser.parse_args()
    kinds = ['kill trainer', 'kill robot side', 'kill all']
    others = ['command flood', 'outside reset', 'corrupt checkpoint', 'double SIGINT', *SAID,
              *HARDWARE]
    if set(args.only or ()) - {*kinds, *others}:
        parser.error(f'no such fault {sorted(set(args.only) - {*kinds, *others})}; the '
                     f'faults: {", ".join([*kinds, *others])}')
    args.out = fresh_folder(args.out)
    plan = [kinds[i % 3] for i in range(args.kills)] + [
        fault for fault in others for _ in range(args.others)]
    if args.only:
        plan = [fault for fault in plan if fault in args.only]
    rng = random.Random(args.seed)
    hardware = sorted({f'{HARDWARE[f][0]} {HARDWARE[f][1]}' for f in plan if f in HARDWARE})
    print(f'fault campaign: {describe()}; {len(plan)} trials of {args.steps} steps each'
          + (f" (the stand-ins' runs: {', '.join(hardware)})" if hardware else ''), flush=True)
    outcomes = collections.defaultdict(collections.Counter)
    lost = crashed = silent = missed = 0
    start = time.monotonic()
    for number, fault in enumerate(plan):
        outcome, missing, why = trial(fault, rng, args, number)
        outcomes[fault][outcome.split()[0] if outcome[0] in 'ld' else outcome] += 1
        lost += missing
        crashed += outcome == 'crashed'
        silent += outcome == 'silent'
        missed += outcome == 'missed'
        print(f'{number + 1:3d}/{len(plan)} {fault:18s} {outcome}{": " + why if why else ""} '
              f'({time.monotonic() - start:.0f} s)', flush=True)
    print(f'\n{"fault":18s} {"trials":>6s}  outcomes')
    for fault, counts in outcomes.items():
        print(f'{fault:18s} {sum(counts.values()):6d}  '
              + ', '.join(f'{outcome} {n}' for outcome, n in counts.most_common()))
    print(f'faults: {crashed} crashed, {lost} lost, {silent} silent'
          + (f' ({missed} not made: the run ended first)' if missed else ''))
    return int(bool(crashed or lost or silent) or missed == len(plan))


if __name__ == '__main__':
    raise SystemExit(main())
