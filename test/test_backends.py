# SPDX-License-Identifier: Apache-2.0
"""One driver over swappable backends.

The registry, the MuJoCo backends, the driver node on the D'Claw's Dynamixel backend against
the emulated servo bus.
"""

import time

import numpy as np
import pytest
from conftest import spin_until
from helpers.video import check_pattern, write_video
from rclpy.parameter import Parameter

from sac_robot.backends import BACKENDS, backend_class
from sac_robot.nodes import convert, qos
from sac_robot.robots.description import DCLAW, MINITAUR, ROBOTS


def params(**values):
    return [Parameter(name, value=value) for name, value in values.items()]


def test_the_registry_names_what_exists():
    assert backend_class('mujoco', 'minitaur').description is MINITAUR
    assert backend_class('dynamixel', 'dclaw').description is DCLAW
    with pytest.raises(ValueError, match="unknown backend 'ethercat'; known: mujoco, dynamixel"):
        backend_class('ethercat', 'dclaw')
    with pytest.raises(ValueError, match="drives no 'minitaur'.*the minitaur runs on: mujoco"):
        backend_class('dynamixel', 'minitaur')
    # Every robot has its simulation, and every backend drives a described robot.
    assert set(BACKENDS['mujoco']) == set(ROBOTS)
    assert all(set(robots) <= set(ROBOTS) for robots in BACKENDS.values())


def declare_defaults(values=None):
    """A ``declare`` as the driver gives backends, from a dict (defaults otherwise)."""
    values, declared = dict(values or {}), {}

    def declare(name, default, description):
        assert description  # every setting says what it is
        declared[name] = default
        return values.get(name, default)
    return declare, declared


@pytest.mark.parametrize('robot', ['minitaur', 'dclaw'])
def test_mujoco_backends_report_every_sensor_in_its_message_fields(robot):
    """read(): each sensor of the description as its message's fields.

    The messages built from them read back as the simulation's state; resets follow their seed.
    """
    from sac_robot.nodes.robots import profile as make_profile
    declare, declared = declare_defaults({'pixels': True})
    backend = backend_class('mujoco', robot).from_parameters(declare)
    assert backend.simulated and 'seed' in declared
    description = backend.description
    assert set(backend.sensors) == set(description.sensors)  # the hand with its camera
    assert backend.reset({'seed': 4}).success
    rng = np.random.default_rng(0)
    for _ in range(10):
        backend.write(description.reset_pose + rng.uniform(-0.2, 0.2, len(description.joints)))
        backend.advance()
    readings = backend.read()
    assert set(readings) == set(backend.sensors)
    joints = readings['joints']
    assert len(joints) == 3 and joints[0].shape == (len(description.joints),)
    assert np.abs(joints[1]).max() > 0  # moving
    profile = make_profile(robot)
    msgs = {key: convert.sensor_message(description.sensors[key], reading, 5)
            for key, reading in readings.items()}
    assert all(convert.stamp_ns(m.header.stamp) == 5 for m in msgs.values())
    assert msgs['joints'].header.frame_id == description.sensors['joints'].frame
    read = profile.read(msgs)
    for key, fields in read.items():
        for got, sent in zip(fields, readings[key]):
            np.testing.assert_allclose(got, sent, atol=1e-12, err_msg=key)
    if robot == 'dclaw':  # the seed decides the valve's start angle
        starts = []
        for seed in (4, 5, 4):
            backend.reset({'seed': seed})
            starts.append(backend.read()['valve'][0][0])
        assert starts[0] == starts[2] != starts[1]
    backend.close()


def test_lockstep_needs_a_simulation(ros_context):
    from sac_robot.nodes.driver import Driver
    with pytest.raises(ValueError, match='clock:=lockstep needs a simulation; the dynamixel '
                                         'backend runs on the wall clock'):
        Driver(context=ros_context, namespace='/dclaw', parameter_overrides=params(
            robot='dclaw', backend='dynamixel', clock='lockstep'))


@pytest.fixture
def emulated_hand():
    from sac_robot.backends.emulator import DClawEmulator
    emulator = DClawEmulator(valve_angle=0.7)
    port = emulator.start()
    yield emulator, port
    emulator.stop()


def test_the_driver_runs_the_hand_on_its_servos(ros_context, executor, emulated_hand):
    """backend:=dynamixel: the same driver node, on the real SDK, against the emulated bus.

    Its joint states are the servos' positions, calibrated; a command moves the fingers; the
    hold topic sets the targets; a bad command is refused and the node runs on; closing the
    node turns every servo's torque off (the emulator says so).
    """
    from rclpy.node import Node
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from sac_robot.nodes.driver import Driver
    from sac_robot.srv import Reset
    emulator, port = emulated_hand
    driver = Driver(context=ros_context, namespace='/dclaw', parameter_overrides=params(
        robot='dclaw', backend='dynamixel', clock='realtime', thread_priority=0,
        **{'dynamixel.port': port, 'dynamixel.retries': 2}))
    assert 'camera' not in driver.publishers_ and set(driver.publishers_) == {'joints', 'valve'}
    torque = emulator.torque_report()
    assert all(torque[i] for i in (10, 11, 12, 20, 21, 22, 30, 31, 32)) and not torque[50]
    probe = Node('probe', namespace='/dclaw', context=ros_context)
    executor.add_node(driver)
    executor.add_node(probe)
    states, valves = [], []
    probe.create_subscription(JointState, 'joint_states', states.append, qos.SENSOR_DEEP)
    probe.create_subscription(JointState, 'valve/joint_states', valves.append, qos.SENSOR_DEEP)
    commands = probe.create_publisher(Float64MultiArray, 'position_controller/commands',
                                      qos.COMMAND)
    hold = probe.create_publisher(Float64MultiArray, 'hold', qos.COMMAND)
    client = probe.create_client(Reset, 'reset')
    assert spin_until(executor, client.service_is_ready)
    future = client.call_async(Reset.Request(seed=0, reason='test'))
    assert spin_until(executor, future.done) and future.result().success
    assert spin_until(executor, lambda: len(states) >= 3 and valves)  # 10 Hz
    last = states[-1]
    assert list(last.name) == list(DCLAW.joints) and last.header.frame_id == 'mount'
    assert len(last.effort) == 9  # the servos' currents (mA)
    np.testing.assert_allclose(last.position, emulator.joint_positions(), atol=0.05)
    assert abs(valves[-1].position[0] - emulator.valve_angle()) < 0.01

    targets = DCLAW.reset_pose.copy()
    targets[0] += 0.5  # a_j0 swings out
    assert spin_until(executor, lambda: commands.get_subscription_count() >= 1)
    commands.publish(convert.command(targets))
    assert spin_until(executor, lambda: abs(emulator.joint_positions()[0] - targets[0]) < 0.1,
                      timeout=5)
    assert spin_until(executor, lambda: abs(states[-1].position[0] - targets[0]) < 0.1)
    bad = convert.command(targets)
    bad.data[2] = float('nan')
    commands.publish(bad)
    hold.publish(convert.command(DCLAW.hold_pose))  # the safety node's hold: the reset pose
    assert spin_until(executor, lambda: abs(emulator.joint_positions()[0]) < 0.1, timeout=5)
    count = len(states)
    assert spin_until(executor, lambda: len(states) >= count + 3)  # still stepping
    driver.close()
    torque = emulator.torque_report()
    assert not any(torque.values()), torque
    probe.destroy_node()
    driver.destroy_node()


def test_a_command_acts_before_the_next_measurement(ros_context, executor, emulated_hand):
    """Real time on hardware: the answer to a measurement acts before the next measurement.

    It is written at once, so the next measurement (a period later) shows its effect, as in
    lockstep. (Written at the start of the next period instead, right before that reading, it
    acted a whole period late: the hand's next measurement never saw it.)
    """
    from sac_robot.nodes.driver import Driver
    from sac_robot.srv import Reset
    emulator, port = emulated_hand
    driver = Driver(context=ros_context, namespace='/dclaw', parameter_overrides=params(
        robot='dclaw', backend='dynamixel', clock='realtime', thread_priority=0,
        **{'dynamixel.port': port}))
    seen = []  # a_j0 in each measurement after the reset
    moved_at = []

    def policy(stamp, readings):  # a local policy: after three measurements, a_j0 swings out
        seen.append(float(readings['joints'][0][0]))
        targets = DCLAW.reset_pose.copy()
        if len(seen) >= 3:
            targets[0] += 0.8
            moved_at.append(len(seen) - 1) if not moved_at else None
        driver.take_local_targets(targets, stamp)

    driver.add_local_reader(policy, ('joints',))
    executor.add_node(driver)
    client = driver.create_client(Reset, 'reset')
    assert spin_until(executor, client.service_is_ready)
    future = client.call_async(Reset.Request(seed=0, reason='test'))
    assert spin_until(executor, future.done) and future.result().success
    seen.clear()
    assert spin_until(executor, lambda: len(seen) >= 6, timeout=5)
    k = moved_at[0]  # the measurement the swing answered
    assert abs(seen[k] - seen[k - 1]) < 0.05  # still, until then
    assert seen[k + 1] - seen[k] > 0.1, seen  # a period later it is on its way (0.19 rad)
    driver.close()
    driver.destroy_node()


def test_the_emergency_stop_turns_the_hands_torque_off(ros_context, executor, emulated_hand):
    """The stop line on the hand: torque off on every servo.

    Commands are ignored and resets refused until it is released; then a reset brings torque
    back.
    """
    from rclpy.node import Node
    from std_msgs.msg import Bool, Float64MultiArray

    from sac_robot.nodes.driver import Driver
    from sac_robot.srv import Reset
    emulator, port = emulated_hand
    driver = Driver(context=ros_context, namespace='/dclaw', parameter_overrides=params(
        robot='dclaw', backend='dynamixel', clock='realtime', thread_priority=0,
        **{'dynamixel.port': port}))
    probe = Node('probe', namespace='/dclaw', context=ros_context)
    executor.add_node(driver)
    executor.add_node(probe)
    line = probe.create_publisher(Bool, 'emergency_stop', qos.LATCHED)
    commands = probe.create_publisher(Float64MultiArray, 'position_controller/commands',
                                      qos.COMMAND)
    client = probe.create_client(Reset, 'reset')
    assert spin_until(executor, client.service_is_ready)
    assert emulator.torque_report()[10]
    line.publish(Bool(data=True))
    assert spin_until(executor, lambda: not any(emulator.torque_report().values()), timeout=3)
    commands.publish(convert.command(DCLAW.reset_pose))
    spin_until(executor, lambda: False, timeout=0.5)
    assert not any(emulator.torque_report().values())  # commands do not bring it back
    future = client.call_async(Reset.Request(seed=0, reason='test'))
    assert spin_until(executor, future.done) and not future.result().success
    assert 'release_emergency_stop' in future.result().message
    line.publish(Bool(data=False))
    assert spin_until(executor, lambda: not driver.stopped)
    future = client.call_async(Reset.Request(seed=0, reason='test'))
    assert spin_until(executor, future.done) and future.result().success
    assert emulator.torque_report()[10] and not driver.passive
    probe.destroy_node()
    driver.close()
    driver.destroy_node()


def test_faults_end_the_episode_and_a_failed_reset_waits_for_a_person(ros_context, executor,
                                                                      emulated_hand):
    """The hand's driver and safety node against the emulated bus, faults on purpose.

    A servo that falls silent: the driver stops (torque off), says so on /diagnostics naming
    the joint, the safety node ends the episode truncated with that reason; resets fail while
    the servo is silent and recover once it answers. A valve that cannot turn: the reset asks
    for a person and is refused until one confirms on ``confirm_reset``; meanwhile nobody
    commands, and the driver turns torque off itself.
    """
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from rclpy.node import Node
    from std_msgs.msg import Float64MultiArray
    from std_srvs.srv import Trigger

    from sac_robot.msg import EpisodeEvent
    from sac_robot.nodes.driver import Driver
    from sac_robot.nodes.safety import SafetyNode
    emulator, port = emulated_hand
    driver = Driver(context=ros_context, namespace='/dclaw', parameter_overrides=params(
        robot='dclaw', backend='dynamixel', clock='realtime', thread_priority=0,
        torque_off_after=0.6, diagnostics_period=0.2,
        **{'dynamixel.port': port, 'dynamixel.reset_timeout': 1.0}))
    safety = SafetyNode(context=ros_context, namespace='/dclaw', parameter_overrides=params(
        robot='dclaw', command_timeout=0.0, max_episode_steps=1000))
    probe = Node('probe', namespace='/dclaw', context=ros_context)
    for node in (driver, safety, probe):
        executor.add_node(node)
    events, diagnostics = [], []
    probe.create_subscription(EpisodeEvent, 'episode_events', events.append, qos.EVENTS)
    probe.create_subscription(DiagnosticArray, '/diagnostics', diagnostics.append,
                              qos.DIAGNOSTICS)
    commands = probe.create_publisher(Float64MultiArray, 'position_controller/commands',
                                      qos.COMMAND)
    confirm = probe.create_client(Trigger, 'confirm_reset')

    def starts():
        return [e for e in events if e.event == EpisodeEvent.START]

    def command_while(predicate, timeout=10.0):  # a policy at 10 Hz
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            commands.publish(convert.command(DCLAW.reset_pose))
            spin_until(executor, lambda: False, timeout=0.1)
        return False

    assert command_while(lambda: len(starts()) == 1)
    assert command_while(lambda: driver.steps >= 5)
    emulator.bus.faults.silent[21] = 0.0  # b_j1 falls silent
    assert command_while(lambda: any(e.event == EpisodeEvent.END for e in events))
    end = next(e for e in events if e.event == EpisodeEvent.END)
    assert end.truncated and not end.terminated and 'b_j1' in end.reason, end.reason
    assert end.reason.startswith('fault: ')
    errors = [s for d in diagnostics for s in d.status if s.level == DiagnosticStatus.ERROR]
    assert errors and errors[0].name == '/dclaw/driver' and errors[0].hardware_id == (
        f'dynamixel {port}')
    assert {kv.key: kv.value for kv in errors[0].values}['faults'] == '1'
    assert not any(on for i, on in emulator.torque_report().items() if i != 21)
    spin_until(executor, lambda: False, timeout=0.5)  # resets fail: the servo is still silent
    assert len(starts()) == 1 and driver.fault is not None
    emulator.bus.faults.silent.clear()  # it answers again: the next reset recovers
    assert command_while(lambda: len(starts()) == 2)
    assert driver.fault is None and emulator.torque_report()[21]
    assert command_while(lambda: diagnostics[-1].status[0].level == DiagnosticStatus.OK)

    # A stuck valve: three attempts, then a person is asked for; no commands meanwhile.
    emulator.bus.faults.stuck_valve = True
    emulator.bus.faults.silent[21] = 0.0
    assert command_while(lambda: len([e for e in events if e.event == EpisodeEvent.END]) == 2)
    emulator.bus.faults.silent.clear()
    assert spin_until(executor, lambda: driver.awaiting_operator is not None, timeout=20)
    assert 'the valve reset failed 3 times' in driver.awaiting_operator
    # No command or hold for torque_off_after: the driver turns torque off.
    assert spin_until(executor, lambda: driver.torque_off, timeout=5)
    assert not any(emulator.torque_report().values())
    waiting = [s for d in diagnostics for s in d.status if 'waiting for a person' in s.message]
    assert waiting and waiting[-1].level == DiagnosticStatus.ERROR
    assert len(starts()) == 2  # resets refused until a person confirms
    emulator.bus.faults.stuck_valve = False
    assert spin_until(executor, confirm.service_is_ready)
    future = confirm.call_async(Trigger.Request())
    assert spin_until(executor, future.done) and future.result().success
    assert command_while(lambda: len(starts()) == 3)
    assert command_while(lambda: all(emulator.torque_report()[i] for i in (10, 21, 32)))
    assert not driver.torque_off
    for node in (probe, safety):
        node.destroy_node()
    driver.close()
    assert not any(emulator.torque_report().values())
    driver.destroy_node()


def test_the_hands_driver_sees_through_its_camera(ros_context, executor, emulated_hand,
                                                  tmp_path):
    """pixels: the Dynamixel backend owns the camera, read with the servos at every step.

    Each step's image is the frame's centre square at 32 x 32 (what lies outside it is cut),
    stamped as that step's joint states (the policy matches them by stamp); a camera that stops
    is a fault naming it; one that does not open is one clear line, the servo port closed again.
    """
    from rclpy.node import Node
    from sensor_msgs.msg import Image, JointState

    from sac_robot.backends.dynamixel import (CameraSettings, DClawDynamixel,
                                              DynamixelSettings)
    from sac_robot.backends.interface import BackendError
    from sac_robot.nodes.driver import Driver
    emulator, port = emulated_hand
    video = write_video(str(tmp_path / 'hand.avi'), 30, 10.0)  # 1.5 s at 20 frames a second
    driver = Driver(context=ros_context, namespace='/dclaw', parameter_overrides=params(
        robot='dclaw', backend='dynamixel', clock='realtime', thread_priority=0, pixels=True,
        **{'dynamixel.port': port, 'camera.source': video, 'camera.rate': 20.0,
           'camera.loop': False, 'camera.max_age': 0.3}))
    assert set(driver.publishers_) == {'joints', 'valve', 'camera'}
    probe = Node('probe', namespace='/dclaw', context=ros_context)
    executor.add_node(driver)
    executor.add_node(probe)
    states, images = [], []
    probe.create_subscription(JointState, 'joint_states', states.append, qos.SENSOR_DEEP)
    probe.create_subscription(Image, 'camera/image_raw', images.append, qos.SENSOR_DEEP)
    assert spin_until(executor, lambda: len(images) >= 4, timeout=5)
    assert images[1].header.frame_id == DCLAW.sensors['camera'].frame
    check_pattern(convert.read_image(images[1], (32, 32, 3), 'camera'))
    joint_stamps = {convert.stamp_ns(m.header.stamp) for m in states}
    assert all(convert.stamp_ns(m.header.stamp) in joint_stamps for m in images[:4])
    # The video ends (no loop): no new frame for camera.max_age is a fault, torque off.
    assert spin_until(executor, lambda: driver.fault is not None, timeout=5)
    assert f'camera {video!r}: no new frame for' in str(driver.fault)
    assert str(driver.fault).endswith('(the video ended)')
    assert not any(emulator.torque_report().values())
    driver.close()
    probe.destroy_node()
    driver.destroy_node()
    backend = DClawDynamixel(DynamixelSettings(port=port), camera=CameraSettings(
        source=str(tmp_path / 'nothing.avi')))
    with pytest.raises(BackendError, match="camera: cannot open '.*nothing.avi'"):
        backend.configure()
    assert backend.port is None  # released: the next program can open it
    backend = DClawDynamixel(DynamixelSettings(port=port))
    backend.configure()
    backend.close()


def test_the_camera_node_publishes_a_video_file_as_rgb8(ros_context, executor, tmp_path):
    """The OpenCV camera node on a video written by OpenCV.

    Frames in order, rgb8 (OpenCV's BGR turned round), with header and camera info; a source
    that does not open is one clear error.
    """
    import cv2
    from rclpy.node import Node
    from sensor_msgs.msg import CameraInfo, Image

    from sac_robot.backends.interface import BackendError
    from sac_robot.nodes.camera import Camera
    path = str(tmp_path / 'valve.avi')
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'MJPG'), 10, (64, 48))
    for k in range(6):  # frame k: red 40 k (BGR order in OpenCV), green 200, blue 10
        writer.write(np.full((48, 64, 3), (10, 200, 40 * k), np.uint8))
    writer.release()
    camera = Camera(context=ros_context, namespace='/dclaw', parameter_overrides=params(
        source=path, rate=50.0))
    probe = Node('probe', namespace='/dclaw', context=ros_context)
    images, infos = [], []
    probe.create_subscription(Image, 'camera/image_raw', images.append, qos.SENSOR_DEEP)
    probe.create_subscription(CameraInfo, 'camera/camera_info', infos.append, qos.SENSOR_DEEP)
    executor.add_node(camera)
    executor.add_node(probe)
    assert spin_until(executor, lambda: len(images) >= 9 and infos)
    first = images[0]
    assert (first.encoding, first.height, first.width) == ('rgb8', 48, 64)
    assert first.header.frame_id == DCLAW.sensors['camera'].frame
    assert (infos[0].width, infos[0].height) == (64, 48)
    reds = [int(convert.read_image(m, (48, 64, 3), 'camera')[10, 10, 0]) for m in images]
    pixel = convert.read_image(first, (48, 64, 3), 'camera')[10, 10]
    assert abs(int(pixel[1]) - 200) < 8 and abs(int(pixel[2]) - 10) < 8  # green, blue
    frames = [round(red / 40) for red in reds]
    assert all(abs(red - 40 * k) < 8 for red, k in zip(reds, frames))
    # The newest frame each time: in the file's order, round again at its end (a frame may be
    # passed over on a loaded machine, none comes twice).
    steps = [(b - a) % 6 for a, b in zip(frames, frames[1:])]
    assert all(step in (1, 2) for step in steps), frames
    assert steps.count(1) >= len(steps) - 2 and len(set(frames)) == 6, frames
    stamps = [convert.stamp_ns(m.header.stamp) for m in images]
    assert stamps == sorted(stamps)
    probe.destroy_node()
    camera.close()
    camera.destroy_node()
    with pytest.raises(BackendError, match="cannot open 'nothing.avi'"):
        Camera(context=ros_context, namespace='/dclaw', parameter_overrides=params(
            source='nothing.avi'))
