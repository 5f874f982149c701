# SPDX-License-Identifier: Apache-2.0
"""The Minitaur's real path: the ros2_control backend against stacks that speak its topics.

The stand-in (``sac-robot emulate minitaur``: the MuJoCo Minitaur behind a ros2_control
stack's and vrpn_mocap's topics and QoS), and a plain rclpy script that plays the stack without
any of the package's code.
"""

import contextlib
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import spin_until
from rclpy.parameter import Parameter

from sac_robot.backends.interface import BackendError
from sac_robot.robots.description import MINITAUR

HERE = os.path.dirname(os.path.abspath(__file__))
#: A controller whose `joints` parameter lists the motors in another order than the URDF.
SHUFFLED = tuple(MINITAUR.urdf_joints[i] for i in (7, 0, 6, 1, 5, 2, 4, 3))


def params(**values):
    return [Parameter(name, value=value) for name, value in values.items()]


@pytest.fixture
def standin(ros_context, executor):
    """The stand-in in this process, its node on the test's executor."""
    from rclpy.node import Node

    from sac_robot.nodes.standin import Faults, MinitaurStandin
    node = Node('minitaur_standin', context=ros_context)
    stack = MinitaurStandin(node, command_joints=SHUFFLED, faults=Faults())
    stack.start()
    executor.add_node(node)
    yield stack
    stack.stop()
    node.destroy_node()


def make_driver(ros_context, **settings):
    from sac_robot.nodes.driver import Driver
    return Driver(context=ros_context, namespace='/minitaur', parameter_overrides=params(
        robot='minitaur', backend='ros2_control', clock='realtime', thread_priority=0,
        diagnostics_period=0.2, **{f'ros2_control.{k}': v for k, v in settings.items()}))


def test_the_driver_runs_the_minitaur_through_its_stack(ros_context, executor, standin):
    """The driver on the ros2_control backend against the stand-in.

    Pre-flight, readings by name, commands in the controller's order, a person's resets (the
    robot resting meanwhile, commands ignored), and a stale sensor as a fault naming it.
    """
    from rclpy.node import Node
    from sensor_msgs.msg import Imu, JointState
    from std_msgs.msg import Float64MultiArray
    from std_srvs.srv import Trigger

    from sac_robot.nodes import convert, qos
    from sac_robot.srv import Reset
    driver = make_driver(ros_context, command_joints=list(SHUFFLED))
    assert driver.fault is None  # the pre-flight passed at start-up
    probe = Node('probe', namespace='/minitaur', context=ros_context)
    executor.add_node(driver)
    executor.add_node(probe)
    states, imus = [], []
    probe.create_subscription(JointState, 'joint_states', states.append, qos.SENSOR_DEEP)
    probe.create_subscription(Imu, 'imu/data', imus.append, qos.SENSOR_DEEP)
    commands = probe.create_publisher(Float64MultiArray, 'position_controller/commands',
                                      qos.COMMAND)
    reset = probe.create_client(Reset, 'reset')
    confirm = probe.create_client(Trigger, 'confirm_reset')
    assert spin_until(executor, lambda: len(states) >= 5 and imus)  # 100 Hz
    # Our joint order and names, the stack's values matched by name.
    assert list(states[-1].name) == list(MINITAUR.joints)
    np.testing.assert_allclose(states[-1].position, standin.sim.motor_angles(), atol=0.05)
    # The IMU's covariances (the broadcaster's parameters) passed on as they came.
    from sac_robot.nodes.standin import IMU_COVARIANCES
    for field, expected in zip(('orientation_covariance', 'angular_velocity_covariance',
                                'linear_acceleration_covariance'), IMU_COVARIANCES):
        assert list(getattr(imus[-1], field)) == expected, field

    # The first episode waits for a person: the robot rests meanwhile (its crouch).
    assert spin_until(executor, reset.service_is_ready)
    future = reset.call_async(Reset.Request(seed=0, reason='test'))
    assert spin_until(executor, future.done)
    assert not future.result().success and 'put it at its start' in future.result().message
    assert spin_until(executor, lambda: np.allclose(standin.sim.data.ctrl[standin.sim._actuators],
                                                    MINITAUR.rest_pose), timeout=3)
    assert spin_until(executor, lambda: standin.sim.base_height() < 0.16, timeout=5)
    commands.publish(convert.command(MINITAUR.hold_pose + 0.3))  # ignored: it rests
    spin_until(executor, lambda: False, timeout=0.3)
    assert np.allclose(standin.sim.data.ctrl[standin.sim._actuators], MINITAUR.rest_pose)
    # The test's person puts it back (the stand-in's hands), then confirms.
    place = probe.create_client(Trigger, '/standin/place_robot')
    for client in (place, confirm):
        assert spin_until(executor, client.service_is_ready)
        future = client.call_async(Trigger.Request())
        assert spin_until(executor, future.done) and future.result().success
    future = reset.call_async(Reset.Request(seed=0, reason='test'))
    assert spin_until(executor, future.done) and future.result().success, future.result()
    assert driver.operator_resets == 1 and driver.operator_seconds > 0

    # A command for one motor reaches that motor, through the controller's own order.
    targets = MINITAUR.hold_pose.copy()
    targets[MINITAUR.joint_index('br_b')] += 0.4
    commands.publish(convert.command(targets))
    motor = MINITAUR.joint_index('br_b')
    assert spin_until(executor, lambda: abs(standin.sim.motor_angles()[motor] - targets[motor])
                      < 0.1, timeout=5)
    others = np.delete(standin.sim.motor_angles() - MINITAUR.hold_pose, motor)
    assert np.abs(others).max() < 0.15

    # The tracker loses the body: a fault naming it, the hold pose commanded.
    now = time.monotonic() - standin.started
    standin.faults.tracker_dropouts.append((now, now + 1.0))
    assert spin_until(executor, lambda: driver.fault is not None, timeout=3)
    assert str(driver.fault).startswith('mocap: no message on /vrpn_mocap/minitaur/pose for')
    assert spin_until(executor, lambda: np.allclose(
        standin.sim.data.ctrl[standin.sim._actuators], MINITAUR.hold_pose), timeout=2)
    # Back: the next reset recovers (and asks the person again).
    assert spin_until(executor, lambda: time.monotonic() - standin.started > now + 1.2)
    future = reset.call_async(Reset.Request(seed=0, reason='test'))
    assert spin_until(executor, future.done)
    assert driver.fault is None and 'put it at its start' in future.result().message
    probe.destroy_node()
    driver.close()
    driver.destroy_node()


def test_the_emergency_stop_stops_commands_within_a_period(ros_context, executor, standin):
    """The safety node's emergency stop: no command reaches the stack one control period on.

    The running episode ends truncated ("emergency stop"), resets are refused until it is
    released, and a reset after the release asks for the person again.
    """
    from rclpy.node import Node
    from std_msgs.msg import Float64MultiArray
    from std_srvs.srv import Trigger

    from sac_robot.msg import EpisodeEvent
    from sac_robot.nodes import convert, qos
    from sac_robot.nodes.safety import SafetyNode
    from sac_robot.nodes.standin import Operator
    driver = make_driver(ros_context)
    safety = SafetyNode(context=ros_context, namespace='/minitaur', parameter_overrides=params(
        robot='minitaur', command_timeout=0.0))
    operator = Operator(standin.node, delay=0.1)  # the test's person
    probe = Node('probe', namespace='/minitaur', context=ros_context)
    for node in (driver, safety, probe):
        executor.add_node(node)
    events = []
    probe.create_subscription(EpisodeEvent, 'episode_events', events.append, qos.EVENTS)
    commands = probe.create_publisher(Float64MultiArray, 'position_controller/commands',
                                      qos.COMMAND)
    stop, release = (probe.create_client(Trigger, name)
                     for name in ('emergency_stop', 'release_emergency_stop'))

    def command_while(predicate, timeout=10.0):  # a policy at 100 Hz
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            commands.publish(convert.command(MINITAUR.hold_pose))
            spin_until(executor, lambda: False, timeout=0.01)
        return False

    def started():
        return [e for e in events if e.event == EpisodeEvent.START]

    assert command_while(lambda: len(started()) == 1 and driver.steps > 20)
    assert operator.resets == 1
    assert spin_until(executor, stop.service_is_ready)
    future = stop.call_async(Trigger.Request())
    assert spin_until(executor, future.done) and future.result().success
    stopped_at = time.monotonic()
    assert command_while(lambda: any(e.event == EpisodeEvent.END for e in events), timeout=3)
    sent = standin.counts['commands']
    command_while(lambda: False, timeout=0.5)  # the policy goes on commanding
    last = driver.backend.last_command - stopped_at  # the newest command that left
    assert last < MINITAUR.control_period, f'a command {last * 1000:.1f} ms after the stop'
    assert standin.counts['commands'] == sent  # and none reached the stack since
    end = next(e for e in events if e.event == EpisodeEvent.END)
    assert end.truncated and end.reason == 'emergency stop'
    assert len(started()) == 1 and driver.passive  # no episode, no command
    future = release.call_async(Trigger.Request())
    assert spin_until(executor, future.done) and future.result().success
    # Released: the next reset runs, and asks for the person (who sets it up again).
    assert command_while(lambda: len(started()) == 2, timeout=10)
    assert operator.resets == 2 and not driver.passive
    for node in (probe, safety):
        node.destroy_node()
    driver.close()
    driver.destroy_node()


def test_enter_in_the_status_monitor_confirms_a_reset(ros_context, executor, standin):
    """The status line says the robot waits for a person; Enter in its terminal confirms."""
    from sac_robot.nodes.status_monitor import StatusMonitor
    from sac_robot.srv import Reset
    driver = make_driver(ros_context)
    monitor = StatusMonitor(context=ros_context, namespace='/minitaur',
                            parameter_overrides=params(period=0.5, keyboard=False))
    read_end, write_end = os.pipe()
    keys = os.fdopen(write_end, 'w')
    monitor.start_keyboard(os.fdopen(read_end))
    for node in (driver, monitor):
        executor.add_node(node)
    client = monitor.create_client(Reset, 'reset')
    assert spin_until(executor, client.service_is_ready)
    future = client.call_async(Reset.Request(seed=0, reason='test'))
    assert spin_until(executor, future.done) and not future.result().success
    assert spin_until(executor, lambda: monitor.waiting is not None, timeout=3)
    line = monitor.status_line()
    assert 'WAITING FOR A PERSON: the minitaur rests: put it at its start' in line, line
    assert 'press Enter here to confirm' in line
    keys.write('\n')
    keys.flush()
    assert spin_until(executor, lambda: driver.awaiting_operator is None, timeout=3)
    assert spin_until(executor, lambda: monitor.waiting is None)
    assert driver.operator_resets == 1 and 'WAITING' not in monitor.status_line()
    keys.close()
    monitor.destroy_node()
    driver.close()
    driver.destroy_node()


def test_a_fault_while_a_person_is_asked_for_hides_no_request(ros_context, executor, standin):
    """A sensor stalling while the robot rests, waiting for a person, keeps the request shown.

    The driver's diagnostics said only the fault, so the operator (the stand-in's, or a person
    reading the status line) never learnt that a confirmation was wanted: the graph waited for
    good (an hour of bench/learn_real.py's real run). Now the request comes first, the fault
    after it; confirming lets the next reset recover from the fault too.
    """
    from diagnostic_msgs.msg import DiagnosticArray

    from sac_robot.nodes import qos
    from sac_robot.nodes.standin import Operator
    from sac_robot.srv import Reset
    driver = make_driver(ros_context)
    executor.add_node(driver)
    said = []
    driver.create_subscription(DiagnosticArray, '/diagnostics',
                               lambda msg: said.extend(msg.status), qos.DIAGNOSTICS)
    client = driver.create_client(Reset, 'reset')
    assert spin_until(executor, client.service_is_ready)
    future = client.call_async(Reset.Request(seed=0, reason='test'))
    assert spin_until(executor, future.done) and not future.result().success
    assert driver.awaiting_operator is not None
    now = time.monotonic() - standin.started
    standin.faults.imu_stalls.append((now, now + 0.5))  # while the robot rests
    assert spin_until(executor, lambda: driver.fault is not None, timeout=3)
    said.clear()
    assert spin_until(executor, lambda: said)
    assert said[-1].message.startswith('waiting for a person: the minitaur rests'), said[-1]
    assert 'then recovering from fault: imu: no message' in said[-1].message
    operator = Operator(standin.node, delay=0.1)  # a person reading it steps in
    assert spin_until(executor, lambda: operator.resets == 1, timeout=5)
    time.sleep(0.5)  # (the stall over)
    future = client.call_async(Reset.Request(seed=-1, reason='test'))
    assert spin_until(executor, future.done) and future.result().success, future.result()
    assert driver.fault is None and driver.awaiting_operator is None
    driver.close()
    driver.destroy_node()


def test_the_robot_stands_up_by_itself_a_bounded_number_of_times(ros_context, executor,
                                                                 standin):
    """auto_resets: after a person's set-up, the robot stands up by itself.

    From a crouch, by the scripted ramp, twice in a row, then the person again; never when it
    has walked out of the radius.
    """
    from std_msgs.msg import Float64MultiArray
    from std_srvs.srv import Trigger

    from sac_robot.nodes import convert, qos
    from sac_robot.srv import Reset
    driver = make_driver(ros_context, auto_resets=2, auto_reset_radius=0.3)
    executor.add_node(driver)
    commands = driver.create_publisher(Float64MultiArray, 'position_controller/commands',
                                       qos.COMMAND)
    client = driver.create_client(Reset, 'reset')
    confirm = driver.create_client(Trigger, 'confirm_reset')

    def reset():
        assert spin_until(executor, client.service_is_ready)
        future = client.call_async(Reset.Request(seed=0, reason='test'))
        assert spin_until(executor, future.done)
        return future.result()

    def person():
        future = confirm.call_async(Trigger.Request())
        assert spin_until(executor, future.done) and future.result().success

    first = reset()
    assert not first.success and 'a person sets up the first episode' in first.message
    person()
    assert reset().success
    for k in (1, 2):
        commands.publish(convert.command(MINITAUR.rest_pose))  # the episode ends crouched
        assert spin_until(executor, lambda: standin.sim.base_height() < 0.16, timeout=5)
        result = reset()
        assert result.success and f'stood up by itself ({k} of at most 2' in result.message
        # (The stand-in shares this test's executor, which the reset service held meanwhile.)
        assert spin_until(executor, lambda: standin.sim.base_height() > 0.18 and np.abs(
            standin.sim.motor_angles() - MINITAUR.hold_pose).max() < 0.1, timeout=3)
    bounded = reset()
    assert not bounded.success and '2 resets in a row by itself' in bounded.message
    person()
    assert reset().success
    with standin.lock:  # it walked away: 0.5 m along the track
        standin.sim.data.qpos[0] += 0.5
    assert spin_until(executor, lambda: driver.backend.streams['mocap'].reading[0][0] > 0.4)
    away = reset()
    assert not away.success and 'from its start, over auto_reset_radius 0.3 m' in away.message
    driver.close()
    driver.destroy_node()


def test_the_stand_in_delays_commands_and_stalls_its_imu(ros_context, executor, standin):
    """The stand-in's faults: commands reaching the motors late, and an IMU that stalls.

    A command of the wrong size is dropped, as the controller does; the stalled IMU is a
    fault of the driver naming its topic.
    """
    from std_msgs.msg import Float64MultiArray

    from sac_robot.nodes import qos
    standin.faults.command_latency = 0.3
    publisher = standin.node.create_publisher(Float64MultiArray,
                                              '/forward_position_controller/commands', qos.COMMAND)
    assert spin_until(executor, lambda: publisher.get_subscription_count() >= 1)
    ctrl = standin.sim.data.ctrl[standin.sim._actuators]
    sent = time.monotonic()
    publisher.publish(Float64MultiArray(data=[1.5] * 8))
    assert spin_until(executor, lambda: np.allclose(
        standin.sim.data.ctrl[standin.sim._actuators], 1.5), timeout=3)
    assert time.monotonic() - sent >= 0.3 and not np.allclose(ctrl, 1.5)
    standin.faults.command_latency = 0.0
    publisher.publish(Float64MultiArray(data=[1.5] * 3))  # the wrong size: dropped
    assert spin_until(executor, lambda: standin.counts['commands_dropped'] == 1)
    driver = make_driver(ros_context)
    executor.add_node(driver)
    now = time.monotonic() - standin.started
    standin.faults.imu_stalls.append((now, now + 0.5))
    assert spin_until(executor, lambda: driver.fault is not None, timeout=3)
    assert str(driver.fault).startswith('imu: no message on /imu_sensor_broadcaster/imu for')
    driver.close()
    driver.destroy_node()


def test_a_mocap4r2_driver_tracks_the_base_by_its_rigid_body(ros_context, executor):
    """MOCAP4ROS2's rigid bodies as the tracker: the base's body picked by name from frames.

    The pose the driver publishes is the robot's, not the other body's; a frame that leaves
    the robot out is no pose (a fault, the robot held); a wrong body name and a topic of
    another message type are named at the pre-flight, with what is there instead.
    """
    from geometry_msgs.msg import PoseStamped
    from rclpy.node import Node

    from sac_robot.nodes import qos
    from sac_robot.nodes.standin import Faults, MinitaurStandin
    node = Node('minitaur_standin', context=ros_context)
    standin = MinitaurStandin(node, tracker='minitaur', faults=Faults(), mocap='mocap4r2')
    standin.start()
    executor.add_node(node)
    rigid_bodies = {'mocap_source': 'mocap4r2', 'mocap.topic': '/rigid_bodies',
                    'mocap.qos': 'reliable'}
    try:
        driver = make_driver(ros_context, **rigid_bodies)
        assert driver.fault is None
        probe = Node('probe', namespace='/minitaur', context=ros_context)
        poses = []
        probe.create_subscription(PoseStamped, 'mocap/pose', poses.append, qos.SENSOR_DEEP)
        executor.add_node(driver)
        executor.add_node(probe)
        assert spin_until(executor, lambda: len(poses) >= 5)
        p = poses[-1].pose.position
        np.testing.assert_allclose([p.x, p.y, p.z], standin.sim.base_position(), atol=0.02)
        assert 0.1 < p.z < 0.5  # the robot's, not the wand's (0.8 m up)
        # A malformed frame (another publisher's): refused, named, and the robot runs on.
        from mocap4r2_msgs.msg import RigidBodies, RigidBody
        stray = probe.create_publisher(RigidBodies, '/rigid_bodies', qos.COMMAND)
        bad = RigidBody(rigid_body_name='minitaur')
        bad.pose.position.x = float('nan')
        stray.publish(RigidBodies(rigidbodies=[bad]))
        mocap = driver.backend.streams['mocap']
        assert spin_until(executor, lambda: mocap.errors == 1, timeout=3)
        assert mocap.last_error == ('/rigid_bodies: rigidbodies[0].pose.position[0] is nan '
                                    '(not finite)'), \
            mocap.last_error
        spin_until(executor, lambda: False, timeout=0.3)
        assert driver.fault is None

        now = time.monotonic() - standin.started  # the system loses the robot, not the wand
        standin.faults.tracker_dropouts.append((now, now + 1.0))
        assert spin_until(executor, lambda: driver.fault is not None, timeout=3)
        assert str(driver.fault).startswith(
            "mocap: no pose of rigid body 'minitaur' on /rigid_bodies for"), driver.fault
        assert driver.backend.streams['mocap'].absent > 0
        assert spin_until(executor, lambda: np.allclose(
            standin.sim.data.ctrl[standin.sim._actuators], MINITAUR.hold_pose), timeout=2)
        probe.destroy_node()
        driver.close()
        driver.destroy_node()

        with pytest.raises(BackendError, match=r"/rigid_bodies \(mocap\): \d+ frame\(s\), none "
                                               r"with rigid body '1' \(the last held 'minitaur', "
                                               r"'wand'\)"):
            make_driver(ros_context, preflight_timeout=1.0, rigid_body='1', **rigid_bodies)
    finally:
        standin.stop()
        node.destroy_node()


def test_mocap4r2_messages_are_upstreams():
    """The venv's mocap4r2_msgs (built from interfaces/) has upstream's type hashes.

    A driver built against MOCAP4ROS2's own package (version 0.0.3) talks to ours only if
    every definition hashes the same; these are the hashes of upstream's build.
    """
    import json
    upstream = {
        'RigidBodies': 'RIHS01_1f2d74f2a1706c59639a2349b7be91e9e4d751fad6fc3048c59d8f1f0576ea70',
        'RigidBody': 'RIHS01_7a1bca552c93a8da4f09083ef4327410b6687a95fe14db29292c4619166f5e66',
        'Marker': 'RIHS01_0cadb14b00eb93dfd5d1b774f04f13efc0c2e08a3bee1abbaef9f67f6b10b943'}
    share = os.path.join(sys.prefix, 'share', 'mocap4r2_msgs')  # (the venv's install)
    for name, expected in upstream.items():
        with open(os.path.join(share, 'msg', f'{name}.json')) as f:
            hashes = json.load(f)['type_hashes']
        ours = next(h['hash_string'] for h in hashes
                    if h['type_name'] == f'mocap4r2_msgs/msg/{name}')
        assert ours == expected, name


@contextlib.contextmanager
def emulate_minitaur(ros_context, *args):
    """``sac-robot emulate minitaur ARGS`` as a user runs it, in the test's domain."""
    env = {**os.environ, 'ROS_DOMAIN_ID': str(ros_context.get_domain_id())}
    process = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), 'sac-robot'),
                                'emulate', 'minitaur', *args], stdout=subprocess.PIPE,
                               text=True, env=env)
    try:
        line = process.stdout.readline()
        assert line.startswith('Minitaur stand-in: /joint_states'), line
        yield process
    finally:
        process.terminate()
        assert process.wait(10) == 0


@pytest.fixture
def standin_process(ros_context):
    with emulate_minitaur(ros_context) as process:
        yield process


def test_preflight_names_what_is_wrong(ros_context, standin_process):
    """Wrong joint names and a QoS that cannot match are refused at start-up, named.

    (Against the stand-in in a process of its own: within one process Fast DDS delivers
    across a reliability mismatch, between processes it does not. Each driver is a new node
    that must discover the stand-in's publishers first: 1.5 s was not always enough on a
    loaded machine, which gave "no publisher" for every topic instead.)
    """
    with pytest.raises(BackendError, match=r'refused: /joint_states: joint\(s\) '
                                           r'motor_front_left_a missing \(got motor_front_'):
        make_driver(ros_context, preflight_timeout=4.0, joint_names=[
            'motor_front_left_a', *MINITAUR.urdf_joints[1:]])
    with pytest.raises(BackendError, match='mocap\\): QoS mismatch: its publisher.* offer '
                                           'best_effort, ros2_control.mocap.qos is reliable'):
        make_driver(ros_context, preflight_timeout=4.0, **{'mocap.qos': 'reliable'})


def test_preflight_names_a_topic_of_another_type(ros_context):
    """A tracker topic carrying another message than mocap_source reads: both types named."""
    with emulate_minitaur(ros_context, '--mocap', 'mocap4r2'):
        with pytest.raises(BackendError, match=r'/rigid_bodies \(mocap\): its publisher\(s\) '
                                               r'minitaur_standin publish mocap4r2_msgs/msg/'
                                               r'RigidBodies, not geometry_msgs/msg/PoseStamped '
                                               r'\(ros2_control.mocap_source\?\)'):
            make_driver(ros_context, preflight_timeout=1.0, **{'mocap.topic': '/rigid_bodies',
                                                               'mocap.qos': 'reliable'})


def test_preflight_names_every_missing_topic(ros_context):
    """No stack at all: one message naming each topic, nothing started."""
    with pytest.raises(BackendError) as error:
        make_driver(ros_context, preflight_timeout=0.5)
    message = str(error.value)
    for topic in ('/joint_states', '/imu_sensor_broadcaster/imu', '/vrpn_mocap/minitaur/pose'):
        assert f'{topic} (' in message and 'no publisher' in message, message


def test_a_plain_rclpy_stack_drives_it(ros_context, executor):
    """A third party's stack: a plain rclpy script (none of our code) with the conventions.

    Its joint_states list the joints in its own order; our driver reports them in ours, by
    name, and its commands arrive in the controller's order the script was told.
    """
    from rclpy.node import Node
    from sensor_msgs.msg import JointState

    from sac_robot.nodes import qos
    env = {**os.environ, 'ROS_DOMAIN_ID': str(ros_context.get_domain_id())}
    script = subprocess.Popen([sys.executable, os.path.join(HERE, 'helpers', 'plain_stack.py'),
                               *SHUFFLED], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert script.stdout.readline().startswith('stack up')
        driver = make_driver(ros_context, command_joints=list(SHUFFLED))
        probe = Node('probe', namespace='/minitaur', context=ros_context)
        states = []
        probe.create_subscription(JointState, 'joint_states', states.append, qos.SENSOR_DEEP)
        executor.add_node(driver)
        executor.add_node(probe)
        assert spin_until(executor, lambda: len(states) >= 3)
        # The script's joint k (URDF order) stands at 1.0 + 0.1 k.
        np.testing.assert_allclose(states[-1].position, 1.0 + 0.1 * np.arange(8), atol=1e-9)
        # Its first command (the driver's activation: hold where the robot is), as the
        # controller took it: each joint's present position, in the controller's order.
        line = script.stdout.readline().split()
        assert line[0] == 'command', line
        expected = [1.0 + 0.1 * MINITAUR.urdf_joints.index(name) for name in SHUFFLED]
        np.testing.assert_allclose([float(v) for v in line[1:]], expected, atol=1e-12)
        probe.destroy_node()
        driver.close()
        driver.destroy_node()
    finally:
        script.terminate()
        script.wait(10)


def test_settings_are_checked_by_name():
    """Wrong settings are refused at start-up with the setting named."""
    from sac_robot.backends.ros2_control import Ros2ControlBackend, Ros2ControlSettings

    def declare_with(**given):
        def declare(name, default, description):
            assert description
            return given.get(name, default)
        return declare

    with pytest.raises(BackendError, match="ros2_control.imu.qos must be 'reliable' or "
                                           "'best_effort', not 'fast'"):
        Ros2ControlBackend.from_parameters(declare_with(**{'ros2_control.imu.qos': 'fast'}))
    with pytest.raises(BackendError, match='base_height needs two values'):
        Ros2ControlBackend.from_parameters(declare_with(**{'ros2_control.base_height': [0.1]}))
    with pytest.raises(BackendError, match='command_joints must name each of joint_names once'):
        Ros2ControlBackend(Ros2ControlSettings(  # one joint twice, one missing
            command_joints=MINITAUR.urdf_joints[:7] + MINITAUR.urdf_joints[:1]))
    with pytest.raises(BackendError, match='joint_names needs 8 names'):
        Ros2ControlBackend(Ros2ControlSettings(joint_names=('a', 'b')))
    with pytest.raises(BackendError, match="mocap_source must be 'vrpn' or 'mocap4r2', not "
                                           "'optitrack'"):
        Ros2ControlBackend(Ros2ControlSettings(mocap_source='optitrack'))
    backend = Ros2ControlBackend.from_parameters(declare_with())  # the defaults: the stand-in's
    assert backend.settings.sensors['mocap'].qos == 'best_effort'
    assert backend.command_joints == MINITAUR.urdf_joints



def test_a_failed_pre_flight_is_one_line_exit_1_and_leaves_no_thread(ros_context, ros_domain):
    """No stack behind the topics: the driver says what is missing and exits 1, cleanly.

    The backend's topics thread outlived the refusal, and the process aborted in rcl on its way
    out (``terminate called without an active exception``, exit -6, 1 launch in 5): refused,
    the driver leaves no thread behind.
    """
    import threading

    from sac_robot.nodes.driver import Driver
    config = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'config',
                          'minitaur_ros2_control.yaml')
    with pytest.raises(BackendError, match='pre-flight: /joint_states'):
        Driver(context=ros_context, namespace='/minitaur', parameter_overrides=params(
            backend='ros2_control', clock='realtime', **{'ros2_control.preflight_timeout': 0.3}))
    assert not [t for t in threading.enumerate() if t.name == 'ros2_control' and t.is_alive()]
    code = ('import sys; from sac_robot.nodes.driver import main; sys.exit(main(sys.argv))')
    result = subprocess.run(
        [sys.executable, '-c', code, '--ros-args', '-r', '__ns:=/minitaur',
         '--params-file', config, '-p', 'backend:=ros2_control', '-p', 'clock:=realtime',
         '-p', 'ros2_control.preflight_timeout:=0.5'],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr[-3000:]
    assert '[FATAL] Driver: pre-flight: /joint_states (joints): no publisher' in result.stderr
