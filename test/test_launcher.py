# SPDX-License-Identifier: Apache-2.0
"""The launcher: arguments as ros2 launch takes them, and supervision of real node processes.

The nodes are small rclpy programs installed into a temporary ament prefix as
``lib/demo/<executable>``, found the way ``ros2 run`` finds executables.
"""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from sac_robot.bringup.graph import LaunchArgumentError, parse_launch_arguments
from sac_robot.bringup.launcher import LaunchError, Launcher, find_launch_file, load_graph

HERE = os.path.dirname(os.path.abspath(__file__))
DEMO_LAUNCH = os.path.join(HERE, 'fixtures', 'demo.launch.py')
SAC_ROBOT = os.path.join(os.path.dirname(sys.executable), 'sac-robot')


@pytest.fixture
def demo_prefix(tmp_path, monkeypatch, ros_domain):
    """An ament prefix holding the demo package's executables, first on AMENT_PREFIX_PATH."""
    lib = tmp_path / 'lib' / 'demo'
    lib.mkdir(parents=True)
    script = os.path.join(HERE, 'helpers', 'demo_nodes.py')
    for role in ('talker', 'listener', 'crasher', 'stubborn'):
        path = lib / role
        path.write_text(f'#!/bin/sh\nexec {sys.executable} {script} {role} "$@"\n')
        path.chmod(0o755)
    index = tmp_path / 'share' / 'ament_index' / 'resource_index' / 'packages'
    index.mkdir(parents=True)
    (index / 'demo').write_text('')
    monkeypatch.setenv('AMENT_PREFIX_PATH', os.pathsep.join(
        [str(tmp_path), os.environ.get('AMENT_PREFIX_PATH', sys.prefix)]))
    return tmp_path


def test_parse_launch_arguments():
    assert parse_launch_arguments(['a:=1', 'b:=x:=y', 'c:=']) == {'a': '1', 'b': 'x:=y', 'c': ''}
    with pytest.raises(LaunchArgumentError, match='malformed'):
        parse_launch_arguments(['a=1'])


def test_arguments_checked_against_declarations():
    graph = load_graph(DEMO_LAUNCH)
    assert graph.resolve({}) == {'scenario': 'chat', 'count': '3', 'robot': 'demo0'}
    with pytest.raises(LaunchArgumentError, match='unknown launch argument.*bogus'):
        graph.resolve({'bogus': '1'})
    with pytest.raises(LaunchArgumentError, match='not one of chat, crash, stubborn'):
        graph.resolve({'scenario': 'dance'})


def test_environment_defaults_do_not_override_the_user():
    graph = load_graph(DEMO_LAUNCH)
    assert graph.env({}, base={}) == {'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'}
    assert graph.env({}, base={'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SUBNET'}) == {}


def test_missing_launch_file_names_the_available_ones():
    with pytest.raises(LaunchError, match='status.launch.py'):
        find_launch_file('no_such.launch.py')


def test_package_launch_file_command_lines(tmp_path):
    """The installed status.launch.py resolves to the CMake-installed node executable."""
    graph = load_graph(find_launch_file('status.launch.py'))
    launcher = Launcher(graph, {'robot': 'claw1', 'period': '0.5'})
    [(spec, command)] = launcher.commands(str(tmp_path))
    assert command[0].endswith(os.path.join('lib', 'sac_robot', 'status_monitor'))
    assert os.access(command[0], os.X_OK)
    assert ['-r', '__node:=status_monitor'] == command[2:4]
    assert '__ns:=/claw1' in command
    params = [command[i + 1] for i, token in enumerate(command) if token == '--params-file']
    assert params[0].endswith(os.path.join('config', 'status_monitor.yaml'))
    with open(params[1]) as stream:
        assert 'period: 0.5' in stream.read()


def test_composed_and_niced_command_lines(tmp_path):
    """The robot container keeps its nodes' names; each gets its own values by name."""
    import yaml
    graph = load_graph(find_launch_file('minitaur_train.launch.py'))
    commands = {spec.name: command for spec, command in
                Launcher(graph, {'seed': '7'}).commands(str(tmp_path))}
    control = commands['robot']
    assert control[0].endswith(os.path.join('lib', 'sac_robot', 'container'))
    assert control[1:6] == ['policy', 'driver', 'safety', 'reward_estimator', 'collector']
    assert control[6] == '--ros-args'
    assert not any(token.startswith('__node:=') for token in control)  # would rename both
    files = [control[i + 1] for i, token in enumerate(control) if token == '--params-file']
    assert files[0].endswith(os.path.join('config', 'minitaur_train.yaml'))
    own = {}
    for path in files[1:]:
        with open(path) as stream:
            own.update(yaml.safe_load(stream))
    assert set(own) == {'/**/driver', '/**/policy', '/**/safety', '/**/reward_estimator',
                        '/**/collector'}
    assert own['/**/driver']['ros__parameters']['seed'] == 7
    assert own['/**/policy']['ros__parameters']['seed'] == 7
    assert commands['trainer'][:3] == ['nice', '-n', '10']
    assert set(commands) == {'robot', 'trainer', 'status_monitor'}


@pytest.mark.parametrize('compose', ['none', 'robot'])
def test_launch_values_reach_every_node_over_the_package_files(tmp_path, ros_context, compose):
    """What the launch gives a node wins over the package's file, as rcl reads the files.

    The package file opens with a ``/**`` section; values under ``/**`` after it lost to its
    ``/**/driver`` section, so ``compose:=none`` ran the real Minitaur's driver as lockstep and
    its real-time policy waiting for the trainer. Each node here is a real rclpy node given the
    launcher's own ``--ros-args``.
    """
    from rclpy.node import Node

    from sac_robot.bringup.graph import NodeParameters
    graph = load_graph(find_launch_file('minitaur_train.launch.py'))
    launcher = Launcher(graph, {'hardware': 'real', 'seed': '7', 'compose': compose})
    read = {}
    for spec, command in launcher.commands(str(tmp_path)):
        arguments = command[command.index('--ros-args'):]
        if '__node:=' + spec.name in arguments:  # the node below is given its name
            at = arguments.index('__node:=' + spec.name)
            arguments = arguments[:at - 1] + arguments[at + 1:]
        for parameters in spec.addressed_parameters():
            if not isinstance(parameters, NodeParameters):
                continue
            node = Node(parameters.node, namespace='/minitaur', context=ros_context,
                        cli_args=arguments,
                        automatically_declare_parameters_from_overrides=True)
            try:
                for name in parameters.values:
                    read[parameters.node, name] = node.get_parameter(name).value
            finally:
                node.destroy_node()
            for name, value in parameters.values.items():
                assert read[parameters.node, name] == value, (parameters.node, name)
    # Those where the package file says otherwise (it is written for lockstep).
    assert read['driver', 'clock'] == 'realtime'
    assert read['policy', 'min_utd'] == 0.0
    assert read['driver', 'seed'] == read['trainer', 'seed'] == 7


def test_a_fleets_robots_each_get_their_own_values(tmp_path, ros_context):
    """robots:=: each robot side's process reads its own seed.

    Parameter files of one name would have given every robot the last one's.
    """
    from rclpy.node import Node
    graph = load_graph(find_launch_file('dclaw_train.launch.py'))
    launcher = Launcher(graph, {'robots': 'dclaw0,dclaw1,dclaw2', 'seed': '4'})
    seeds = {}
    for spec, command in launcher.commands(str(tmp_path)):
        if spec.executable != 'container':
            continue
        node = Node('driver', namespace=f'/{spec.namespace}', context=ros_context,
                    cli_args=command[command.index('--ros-args'):],
                    automatically_declare_parameters_from_overrides=True)
        seeds[spec.namespace] = node.get_parameter('seed').value
        node.destroy_node()
    assert seeds == {'dclaw0': 4, 'dclaw1': 5, 'dclaw2': 6}


def test_ros2_launch_parameter_files_of_container_nodes(tmp_path):
    """Under ros2 launch a container node's own values go in a file that names the node."""
    import yaml

    from sac_robot.bringup.graph import NodeParameters
    from sac_robot.bringup.ros_launch import _parameters
    assert _parameters({'seed': 3}, str(tmp_path)) == {'seed': 3}  # a whole-process dict
    path = _parameters(NodeParameters('policy', {'seed': 3}), str(tmp_path))
    assert os.path.dirname(path) == str(tmp_path)
    with open(path) as stream:
        assert yaml.safe_load(stream) == {'/**/policy': {'ros__parameters': {'seed': 3}}}


def test_required_node_ends_the_graph_cleanly(demo_prefix, capfd):
    launcher = Launcher(load_graph(DEMO_LAUNCH), {'scenario': 'chat', 'count': '5'})
    assert launcher.run() == 0
    out = capfd.readouterr().out
    assert 'heard 5 messages, namespace /demo0' in out
    # Output is prefixed with the node name and pid, as ros2 launch does.
    assert any(line.startswith('[listener-') for line in out.splitlines())
    # The talker was stopped by SIGINT once the required listener had finished.
    assert 'talker stopping on SIGINT' in out
    assert all(p.popen.returncode is not None for p in launcher.processes)


def test_required_node_failure_is_the_exit_status(demo_prefix, capfd):
    launcher = Launcher(load_graph(DEMO_LAUNCH), {'scenario': 'crash'})
    assert launcher.run() == 3
    assert 'talker stopping on SIGINT' in capfd.readouterr().out


def test_shutdown_escalates_to_sigkill(demo_prefix):
    launcher = Launcher(load_graph(DEMO_LAUNCH), {'scenario': 'stubborn'},
                        sigterm_timeout=0.5, sigkill_timeout=0.5)
    start = time.monotonic()
    assert launcher.run() == 3
    stubborn = next(p for p in launcher.processes if p.spec.name == 'stubborn')
    assert stubborn.popen.returncode == -signal.SIGKILL
    assert time.monotonic() - start < 10


def _launch_demo() -> subprocess.Popen:
    """``sac-robot launch`` of the demo graph, talking long enough to be interrupted."""
    return subprocess.Popen(
        [SAC_ROBOT, 'launch', DEMO_LAUNCH, 'count:=1000000'], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, env=dict(os.environ))


def test_sigint_to_the_launcher_stops_every_node(demo_prefix):
    process = _launch_demo()
    lines = []
    for line in process.stdout:
        lines.append(line)
        if 'process started' in line and 'listener' in line:
            break
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=20)
    lines.append(out)
    text = ''.join(lines)
    assert process.returncode == 0, text
    assert 'talker stopping on SIGINT' in text
    assert 'SIGINT received' in text


def _ended(pid: int) -> bool:
    try:
        with open(f'/proc/{pid}/status') as stream:
            return any(line.startswith('State:') and 'Z' in line for line in stream)
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='PR_SET_PDEATHSIG is Linux')
def test_nodes_end_when_the_launcher_is_killed(demo_prefix):
    process = _launch_demo()
    pids = []
    for line in process.stdout:
        if 'process started' in line:
            pids.append(int(line.split('pid [')[1].split(']')[0]))
        if len(pids) == 2:
            break
    time.sleep(1.0)
    assert not any(_ended(pid) for pid in pids)
    process.kill()  # no chance to stop its nodes
    process.wait()
    deadline = time.monotonic() + 15
    while not all(_ended(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(_ended(pid) for pid in pids)


def test_cli_reports_bad_arguments():
    result = subprocess.run([SAC_ROBOT, 'launch', DEMO_LAUNCH, 'scenario:=dance'],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert 'not one of chat, crash, stubborn' in result.stderr


def test_a_stop_last_process_stops_after_the_others(demo_prefix, capfd):
    """The recorder's mark: it gets its SIGINT only once every other process has exited."""
    import threading

    from sac_robot.bringup.graph import Graph, NodeSpec
    graph = Graph(description='two talkers', arguments=[], build=lambda values: [
        NodeSpec('talker', 'last', package='demo', stop_last=True),
        NodeSpec('talker', 'first', package='demo'),
        NodeSpec('talker', 'second', package='demo')])
    launcher = Launcher(graph, {})
    threading.Timer(3.0, launcher.request_shutdown, ['the test']).start()
    assert launcher.run() == 0
    out = capfd.readouterr().out
    stopping = [line.split('-')[0].lstrip('[') for line in out.splitlines()
                if line.endswith('talker stopping on SIGINT')]
    assert sorted(stopping[:2]) == ['first', 'second'] and stopping[2:] == ['last'], out


@pytest.mark.parametrize('second', [signal.SIGINT, signal.SIGTERM])
def test_a_shutdown_finishes_whatever_signals_follow(tmp_path, ros_domain, second):
    """A shutdown begun runs to its end, and exits 0.

    SIGINT, then another signal during the node's close: the close still finishes (the
    trainer's last checkpoint).
    """
    out = tmp_path / 'closed'
    process = subprocess.Popen([sys.executable, os.path.join(HERE, 'helpers',
                                                            'slow_close_node.py'), str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == 'spinning'
    process.send_signal(signal.SIGINT)
    assert process.stdout.readline().strip() == 'closing'
    process.send_signal(second)  # (ros2 launch without a terminal sends SIGINT twice)
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    assert process.wait(10) == 0, process.stderr.read()[-2000:]
    assert out.read_text() == 'closed\n'
    assert 'during shutdown: finishing it first' in process.stderr.read()


def test_two_signals_at_any_moment_of_a_busy_node_end_it_cleanly(tmp_path, ros_domain):
    """SIGINT twice, at random moments, into a node that is always inside a callback.

    ``ros2 launch`` without a terminal sends every node SIGINT twice. With rclpy's own
    handlers the first shut the context down under a running callback (the EventsExecutor's
    ``RuntimeError`` out of ``spin_once``, exit 1) and a second one during the interpreter's
    exit ended the process by the signal: about half of such stops failed. Every one must
    close the node and exit 0.
    """
    rng = random.Random(ros_domain)
    failures = []
    for trial in range(12):
        out = tmp_path / f'closed{trial}'
        process = subprocess.Popen(
            [sys.executable, os.path.join(HERE, 'helpers', 'slow_close_node.py'), str(out),
             'busy'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert process.stdout.readline().strip() == 'spinning', process.stderr.read()
        time.sleep(rng.uniform(0.0, 0.2))
        process.send_signal(signal.SIGINT)
        time.sleep(rng.choice([0.0, rng.uniform(0.0, 0.1)]))
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            status = process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            status = 'hung'
        stderr = process.stderr.read()
        if status != 0 or not out.exists():
            failures.append(f'trial {trial}: exit {status}, closed {out.exists()}: '
                            f'{stderr[-600:]}')
    assert not failures, '\n'.join(failures)


def test_a_node_refusing_to_start_says_why_in_one_line(ros_domain):
    """A corrupt checkpoint (or port, or parameter) is one [FATAL] line and exit 1."""
    result = subprocess.run([sys.executable, os.path.join(HERE, 'helpers', 'slow_close_node.py'),
                             'refuse'], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert ('[FATAL] SlowClose: runs/x/checkpoint/agent.safetensors: sha256 differs'
            in result.stderr), result.stderr
    assert 'Traceback' not in result.stderr, result.stderr


def test_a_stopping_recorder_takes_what_is_still_on_its_way(tmp_path, ros_context, executor):
    """The recorder, at SIGINT, records on until its topics fall quiet, then closes the bag.

    What the graph said just before it stopped (the last experience chunk, queued behind a
    backlog of writes on a loaded machine) is in the bag: here a talker goes on for 0.3 s after
    the recorder's SIGINT, and every one of its messages is recorded.
    """
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosbags.rosbag2 import Reader
    from std_msgs.msg import UInt32

    from sac_robot.bagtools import typestore_with_package_types
    bag = tmp_path / 'bag'
    process = subprocess.Popen(
        [sys.executable, '-c', 'import sys; from sac_robot.nodes.recorder import main; '
         'sys.exit(main(sys.argv))', '--ros-args', '-p', f'bag:={bag}',
         '-p', 'discovery_period:=0.1'], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    node = rclpy_node(ros_context, 'talker')
    executor.add_node(node)
    publisher = node.create_publisher(UInt32, 'count', QoSProfile(
        depth=100, reliability=ReliabilityPolicy.RELIABLE))
    deadline = time.monotonic() + 60
    while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.1)
    assert publisher.get_subscription_count() == 1, 'the recorder never subscribed'
    for count in range(50):
        if count == 20:
            process.send_signal(signal.SIGINT)
        publisher.publish(UInt32(data=count))
        time.sleep(0.01)
    assert process.wait(30) == 0, process.stderr.read()[-2000:]
    stderr = process.stderr.read()
    typestore = typestore_with_package_types()
    with Reader(bag) as reader:
        received = [typestore.deserialize_cdr(raw, c.msgtype).data
                    for c, _, raw in reader.messages() if c.topic == '/count']
    assert received == list(range(50)), stderr
    assert 'taking what is still on its way' in stderr


def rclpy_node(context, name):
    """A node on the test's own context."""
    from rclpy.node import Node
    return Node(name, context=context)
