# SPDX-License-Identifier: Apache-2.0
"""``sac-robot launch``: run a launch file's graph where ``ros2 launch`` is not installed.

It takes the same arguments as ``ros2 launch sac_robot <file> name:=value ...``, starts the same
nodes with the same ``--ros-args`` (node name, namespace, parameter files, remappings), and
supervises them as ``ros2 launch`` does: each line of output prefixed with the node's name; on
Ctrl-C or SIGTERM every node gets SIGINT, then SIGTERM, then SIGKILL, each after a deadline; when
a required node exits the others are shut down, and the launcher exits non-zero if any node
failed.
"""

import importlib.util
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Mapping, Sequence

import yaml

from sac_robot.bringup.graph import (Graph, NodeParameters, NodeSpec, parse_launch_arguments,
                                     share_directory)
from sac_robot.entry_points import NODES

log = logging.getLogger('sac_robot.launch')

#: Deadlines of the shutdown escalation, in seconds, as ros2 launch's defaults.
SIGTERM_TIMEOUT = 5.0
SIGKILL_TIMEOUT = 5.0
#: Seconds the ``stop_last`` processes (the recorder) go on after the others have stopped.
LAST_DRAIN = 0.3


class LaunchError(RuntimeError):
    """A launch file that cannot be found or loaded, or an executable that does not exist."""


def find_launch_file(name: str, package: str = 'sac_robot') -> str:
    """Return the path of a launch file given as a path or as a name in ``share/<pkg>/launch``."""
    if os.path.isfile(name):
        return os.path.abspath(name)
    try:
        path = os.path.join(share_directory(package), 'launch', name)
    except FileNotFoundError as error:
        raise LaunchError(str(error)) from error
    if not os.path.isfile(path):
        available = sorted(f for f in os.listdir(os.path.dirname(path)) if f.endswith('.py'))
        raise LaunchError(
            f'no launch file {name!r} (looked for {path}); available: {", ".join(available)}')
    return path


def load_graph(path: str) -> Graph:
    """Load a launch file and return its module-level ``GRAPH`` description."""
    spec = importlib.util.spec_from_file_location(
        'sac_robot_launch_' + os.path.basename(path).split('.')[0], path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # a broken launch file: say which and why
        raise LaunchError(f'cannot load launch file {path}: {error!r}') from error
    graph = getattr(module, 'GRAPH', None)
    if not isinstance(graph, Graph):
        raise LaunchError(
            f'{path} has no GRAPH (a sac_robot.bringup.graph.Graph); sac-robot launch runs '
            'only launch files whose graph is described that way')
    return graph


def executable_command(spec: NodeSpec) -> list:
    """Return the command that starts ``spec``'s executable, as ``ros2 run`` would find it.

    ``lib/<package>/<executable>`` under each ``AMENT_PREFIX_PATH`` prefix and this Python's
    prefix; for sac_robot's own nodes, the entry point run by this interpreter when the
    package was installed without CMake (``pip install``).
    """
    prefixes = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    prefixes.append(sys.prefix)
    for prefix in prefixes:
        path = os.path.join(prefix, 'lib', spec.package, spec.executable)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return [path]
    if spec.package == 'sac_robot' and spec.executable in NODES:
        module, function = NODES[spec.executable].split(':')
        return [sys.executable, '-c',
                f'import sys; from {module} import {function}; sys.exit({function}())']
    raise LaunchError(
        f'executable {spec.executable!r} of package {spec.package!r} not found in lib/ of '
        f'{", ".join(prefixes)}')


def ros_arguments(spec: NodeSpec, scratch: str) -> list:
    """Return the ``--ros-args`` that give ``spec`` its name, namespace, parameters, remaps."""
    args = ['--ros-args'] + ([] if spec.members else ['-r', f'__node:={spec.name}'])
    if spec.namespace:
        args += ['-r', f'__ns:=/{spec.namespace.strip("/")}']
    for index, parameters in enumerate(spec.addressed_parameters()):
        if isinstance(parameters, NodeParameters):
            # As launch_ros does: the values become a temporary parameter file.
            # (one file per process and entry: a fleet has a robot side per namespace)
            label = f'{spec.namespace}_{spec.name}'.strip('/_').replace('/', '_')
            path = os.path.join(scratch, f'{label}_{index}.yaml')
            with open(path, 'w', encoding='utf-8') as stream:
                yaml.safe_dump(parameters.as_yaml_dict(), stream)
            parameters = path
        args += ['--params-file', str(parameters)]
    for source, target in spec.remappings:
        args += ['-r', f'{source}:={target}']
    return args


def _end_with_parent():
    """In the child before exec (Linux): SIGTERM when the launcher dies, even by SIGKILL.

    A node in a session of its own outlives a launcher killed without warning; this way it
    shuts down cleanly instead of running on unsupervised. Launched from the main thread, which
    lives as long as the launcher.
    """
    if sys.platform.startswith('linux'):
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class _Process:
    """One supervised node process and the thread that forwards its output."""

    def __init__(self, spec: NodeSpec, command: list, env: dict):
        self.spec = spec
        self.command = command
        # A session of its own: signals reach the node (and its children) only from us, so a
        # Ctrl-C in the terminal is not delivered twice.
        terminal = spec.interactive and sys.stdin is not None and sys.stdin.isatty()
        self.popen = subprocess.Popen(
            command, env=env, stdin=None if terminal else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_end_with_parent)
        self.label = f'{spec.name}-{self.popen.pid}'
        self.reader = threading.Thread(target=self._forward, daemon=True)
        self.reader.start()

    def _forward(self):
        for raw in iter(self.popen.stdout.readline, b''):
            line = raw.decode('utf-8', errors='replace').rstrip('\n')
            sys.stdout.write(f'[{self.label}] {line}\n')
            sys.stdout.flush()
        self.popen.stdout.close()

    def signal(self, signum):
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signum)
            except ProcessLookupError:
                pass


class Launcher:
    """Start a graph's nodes and supervise them until they end or a signal arrives."""

    def __init__(self, graph: Graph, arguments: Mapping[str, str],
                 sigterm_timeout: float = SIGTERM_TIMEOUT,
                 sigkill_timeout: float = SIGKILL_TIMEOUT):
        self.graph = graph
        self.values = graph.resolve(arguments)
        self.specs = graph.nodes(self.values)
        self.sigterm_timeout = sigterm_timeout
        self.sigkill_timeout = sigkill_timeout
        self.processes = []
        self._shutdown_reason = None

    def commands(self, scratch: str) -> list:
        """Return ``(spec, command)`` for every node, without starting anything."""
        return [(spec, (['nice', '-n', str(spec.nice)] if spec.nice else [])
                 + executable_command(spec) + list(spec.arguments)
                 + ros_arguments(spec, scratch)) for spec in self.specs]

    def request_shutdown(self, reason: str):
        """Ask the supervision loop to stop every node (safe to call from a signal handler)."""
        if self._shutdown_reason is None:
            self._shutdown_reason = reason

    def run(self) -> int:
        """Start every node, supervise, shut down; return the launcher's exit status."""
        env = dict(os.environ)
        env.update(self.graph.env(self.values, os.environ))
        env.setdefault('PYTHONUNBUFFERED', '1')
        status = 0
        with tempfile.TemporaryDirectory(prefix='sac_robot_launch_') as scratch:
            for spec, command in self.commands(scratch):
                node_env = dict(env)
                node_env.update(dict(spec.env))
                self.processes.append(_Process(spec, command, node_env))
                log.info('process started with pid [%d]: %s', self.processes[-1].popen.pid,
                         spec.name)
            status = self._supervise()
            self._stop_all()
        return status

    def _supervise(self) -> int:
        status = 0
        running = list(self.processes)
        while running and self._shutdown_reason is None:
            time.sleep(0.05)
            for process in list(running):
                code = process.popen.poll()
                if code is None:
                    continue
                running.remove(process)
                process.reader.join(timeout=1.0)
                if code == 0:
                    log.info('process has finished cleanly [pid %d]: %s',
                             process.popen.pid, process.spec.name)
                else:
                    log.error('process has died [pid %d, exit code %d]: %s',
                              process.popen.pid, code, process.spec.name)
                    status = status or _exit_status(code)
                if process.spec.required:
                    self.request_shutdown(f'required node {process.spec.name} exited')
        if self._shutdown_reason:
            log.info('shutting down: %s', self._shutdown_reason)
        return status

    def _stop_all(self):
        """SIGINT, then SIGTERM after a deadline, then SIGKILL after another, as ros2 launch.

        In two waves: the processes marked ``stop_last`` (the recorder) once the others have
        gone, after a moment to take what is still on its way to them.
        """
        first = [p for p in self.processes if not p.spec.stop_last]
        last = [p for p in self.processes if p.spec.stop_last]
        self._stop(first)
        if last and any(p.popen.poll() is None for p in last):
            time.sleep(LAST_DRAIN)
            self._stop(last)
        for process in self.processes:
            process.popen.wait()
            process.reader.join(timeout=1.0)

    def _stop(self, processes):
        for signum, timeout in ((signal.SIGINT, self.sigterm_timeout),
                                (signal.SIGTERM, self.sigkill_timeout),
                                (signal.SIGKILL, 5.0)):
            alive = [p for p in processes if p.popen.poll() is None]
            if not alive:
                break
            if signum != signal.SIGINT:
                log.warning('sending %s to %s', signal.Signals(signum).name,
                            ', '.join(p.spec.name for p in alive))
            for process in alive:
                process.signal(signum)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and any(p.popen.poll() is None for p in alive):
                time.sleep(0.05)


def _exit_status(code: int) -> int:
    """Map a child's return code to a shell exit status (a signal N becomes 128 + N)."""
    return 128 - code if code < 0 else code


def launch(name: str, tokens: Sequence[str], dry_run: bool = False,
           show_arguments: bool = False) -> int:
    """Run ``sac-robot launch <name> name:=value ...``; return the exit status."""
    path = find_launch_file(name)
    graph = load_graph(path)
    if show_arguments:
        print(f'Arguments of {os.path.basename(path)} ({graph.description}):')
        for argument in graph.arguments:
            choices = f" (one of: {', '.join(argument.choices)})" if argument.choices else ''
            print(f"    '{argument.name}':\n        {argument.description}{choices}\n"
                  f"        (default: '{argument.default}')")
        return 0
    launcher = Launcher(graph, parse_launch_arguments(tokens))
    if dry_run:
        with tempfile.TemporaryDirectory() as scratch:
            for spec, command in launcher.commands(scratch):
                print(f'{spec.name}: {" ".join(command)}')
        return 0

    def on_signal(signum, _frame):
        launcher.request_shutdown(f'{signal.Signals(signum).name} received')

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return launcher.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
