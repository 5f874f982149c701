# SPDX-License-Identifier: Apache-2.0
"""The graph's nodes in-process, each against its neighbours, in a context of the test's own.

Lockstep stepping, the command watchdog, bad input rejected with the node still running,
exactly-once experience delivery.
"""

import math
import re

import numpy as np
import pytest
from conftest import spin_until
from rclpy.parameter import Parameter

from sac_robot.msg import (EpisodeEvent, Experience, ExperienceAck, PolicyStep, PolicyWeights,
                           TrainingProgress)
from sac_robot.nodes import convert, qos


def params(**values):
    return [Parameter(name, value=value) for name, value in values.items()]


@pytest.fixture
def probe(ros_context, executor):
    """A plain node of the test's context for publishing and listening."""
    from rclpy.node import Node
    node = Node('probe', namespace='/minitaur', context=ros_context)
    executor.add_node(node)
    yield node
    node.destroy_node()


def listen(node, msg_type, topic, profile):
    received = []
    node.create_subscription(msg_type, topic, received.append, profile)
    return received


def test_driver_steps_once_per_fresh_command_and_rejects_bad_ones(ros_context, executor, probe,
                                                                 capfd):
    """Lockstep: a step per answer to the newest observation; the others ignored, and said."""
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from sac_robot.nodes.driver import Driver
    from sac_robot.srv import Reset
    driver = Driver(context=ros_context, namespace='/minitaur')
    # Started alone, it says what it is doing.
    assert ('minitaur on the mujoco backend (mujoco minitaur), clock lockstep: one control step '
            'per command, /clock published; publishes /minitaur/joint_states, /minitaur/imu/'
            'data, /minitaur/mocap/pose; takes /minitaur/position_controller/commands'
            ) in capfd.readouterr().err
    executor.add_node(driver)
    states = listen(probe, JointState, 'joint_states', qos.SENSOR_DEEP)
    commands = probe.create_publisher(Float64MultiArray, 'position_controller/commands',
                                      qos.COMMAND)
    client = probe.create_client(Reset, 'reset')
    assert spin_until(executor, client.service_is_ready)
    future = client.call_async(Reset.Request(seed=-2**63, reason='test'))  # no such seed
    assert spin_until(executor, future.done) and not future.result().success
    assert future.result().message.startswith(f'seed {-2**63}: a seed is >= 0')
    future = client.call_async(Reset.Request(seed=3, reason='test'))
    assert spin_until(executor, future.done)
    start = convert.stamp_ns(future.result().stamp)
    episode = future.result().episode_id
    assert spin_until(executor, lambda: states and convert.stamp_ns(
        states[-1].header.stamp) == start)
    assert spin_until(executor, lambda: commands.get_subscription_count() >= 1)
    targets = np.full(8, 1.4)

    commands.publish(convert.command(targets, start, episode))
    assert spin_until(executor, lambda: driver.steps == 1)
    assert spin_until(executor, lambda: convert.stamp_ns(states[-1].header.stamp) > start)
    assert convert.stamp_ns(states[-1].header.stamp) - start == 10_000_000  # one 10 ms period

    # (Commands are depth 1, newest only: one at a time.)
    commands.publish(convert.command(targets, start, episode))  # answers an old observation
    assert spin_until(executor, lambda: driver.dropped == 1)
    commands.publish(convert.command(targets, driver.stamp, episode + 1))  # another episode
    assert spin_until(executor, lambda: driver.dropped == 2)
    said = capfd.readouterr().err  # why, once (then at most every 10 s, counted)
    assert said.count('command ignored: it answers an older observation than the newest') == 1
    bad = convert.command(targets, driver.stamp, episode)
    bad.data[3] = float('nan')
    commands.publish(bad)
    spin_until(executor, lambda: False, timeout=0.3)
    commands.publish(convert.command(targets[:5], driver.stamp, episode))
    spin_until(executor, lambda: False, timeout=0.3)
    assert driver.steps == 1  # neither stepped
    said = capfd.readouterr().err  # two kinds 0.3 s apart: both said, and counted
    assert 'command rejected: position_controller/commands: ' in said
    assert said.count('command rejected') == 2, said
    assert driver.rejections.by_topic() == {'position_controller/commands': 2}
    commands.publish(convert.command(targets, driver.stamp, episode))
    assert spin_until(executor, lambda: driver.steps == 2)  # and the node runs on
    # A burst of bad commands right behind a good one, before the driver reads any: the good
    # one still steps (at depth 1 the last bad one displaced it, and a flood stalled lockstep).
    commands.publish(convert.command(targets, driver.stamp, episode))
    for _ in range(6):
        commands.publish(convert.command(targets[:3], driver.stamp, episode))
    assert spin_until(executor, lambda: driver.steps == 3)
    assert spin_until(executor, lambda: driver.rejections.by_topic() == {
        'position_controller/commands': 8})
    driver.destroy_node()


def test_stale_commands_bring_the_hold_and_end_the_episode(ros_context, executor, probe):
    from std_msgs.msg import Float64MultiArray

    from sac_robot.nodes.driver import Driver
    from sac_robot.nodes.safety import SafetyNode
    driver = Driver(context=ros_context, namespace='/minitaur',
                       parameter_overrides=params(clock='realtime'))
    safety = SafetyNode(context=ros_context, namespace='/minitaur',
                        parameter_overrides=params(command_timeout=0.1))
    executor.add_node(driver)
    executor.add_node(safety)
    holds = listen(probe, Float64MultiArray, 'hold', qos.COMMAND)
    events = listen(probe, EpisodeEvent, 'episode_events', qos.EVENTS)
    checks = listen(probe, EpisodeEvent, 'episode_checks', qos.EXPERIENCE)
    commands = probe.create_publisher(Float64MultiArray, 'position_controller/commands',
                                      qos.COMMAND)
    assert spin_until(executor, lambda: safety.state == 'running')
    for _ in range(10):  # a policy commanding at 100 Hz for a moment, then gone
        commands.publish(convert.command(np.full(8, 1.5)))
        spin_until(executor, lambda: False, timeout=0.01)
    assert not safety.holding and not holds
    for _ in range(50):  # commands the driver would refuse keep no stream alive
        commands.publish(convert.command(np.full(3, 1.5)))
        spin_until(executor, lambda: False, timeout=0.01)
    assert holds and safety.holding  # (within the 0.5 s of bad commands)
    assert safety.rejections.by_topic() == {'position_controller/commands': 50}
    assert spin_until(executor, lambda: holds, timeout=5)  # its own topic, not a command
    assert np.allclose(holds[0].data, safety.profile.hold_command())
    assert spin_until(executor, lambda: np.allclose(driver.targets,
                                                    safety.profile.hold_command()))
    assert spin_until(executor, lambda: any(e.event == EpisodeEvent.END for e in events))
    end = next(e for e in events if e.event == EpisodeEvent.END)
    assert end.truncated and not end.terminated and end.reason == 'stale commands'
    # Every 10 steps that passed, the safety node said so (the collector streams on these); a
    # stale END comes without a new measurement, so it may name a confirmed step.
    expected = list(range(10, end.steps + 1, 10))
    mine = lambda: [c for c in checks if c.episode_id == end.episode_id]  # noqa: E731
    assert spin_until(executor, lambda: len(mine()) >= len(expected))
    assert [(c.event, c.episode_id, c.steps) for c in mine()] == [
        (EpisodeEvent.CHECKED, end.episode_id, n) for n in expected]
    commands.publish(convert.command(np.full(8, 1.5)))
    assert spin_until(executor, lambda: not safety.holding)
    safety.destroy_node()
    driver.destroy_node()


def test_a_reset_from_outside_ends_the_episode_before_it_and_lockstep_goes_on(
        ros_context, executor, probe, capfd):
    """Someone calls the driver's reset mid-episode: no hang, no transition across the reset.

    The safety node sees the driver's new episode in its diagnostics, ends its own at the last
    measurement before that reset and resets for an episode of its own; the policy's commands
    for the old episode, which the lockstep driver drops, stop mattering.
    """
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from sac_robot.nodes.driver import Driver
    from sac_robot.nodes.safety import SafetyNode
    from sac_robot.srv import Reset
    driver = Driver(context=ros_context, namespace='/minitaur')
    safety = SafetyNode(context=ros_context, namespace='/minitaur',
                        parameter_overrides=params(command_timeout=0.0))
    executor.add_node(driver)
    executor.add_node(safety)
    events = listen(probe, EpisodeEvent, 'episode_events', qos.EVENTS)
    commands = probe.create_publisher(Float64MultiArray, 'position_controller/commands',
                                      qos.COMMAND)
    policy = {'episode': None}

    def on_event(msg):  # a policy's view of episodes: the safety node's events
        policy['episode'] = msg.episode_id if msg.event == EpisodeEvent.START else None

    def on_state(msg):  # ... and its answer to every measurement, labelled
        if policy['episode'] is not None:
            commands.publish(convert.command(np.full(8, 1.5), convert.stamp_ns(msg.header.stamp),
                                             policy['episode']))

    probe.create_subscription(EpisodeEvent, 'episode_events', on_event, qos.EVENTS)
    probe.create_subscription(JointState, 'joint_states', on_state, qos.SENSOR)
    assert spin_until(executor, lambda: driver.steps >= 30, timeout=20)
    first = next(e for e in events if e.event == EpisodeEvent.START)
    client = probe.create_client(Reset, 'reset')
    assert spin_until(executor, client.service_is_ready)
    future = client.call_async(Reset.Request(seed=-1, reason='a person'))
    assert spin_until(executor, future.done) and future.result().success
    outside, outside_start = future.result().episode_id, convert.stamp_ns(future.result().stamp)
    ended = lambda: [e for e in events if e.event == EpisodeEvent.END]  # noqa: E731
    assert spin_until(executor, ended)
    end = ended()[0]
    assert (end.episode_id, end.truncated, end.terminated) == (first.episode_id, True, False)
    assert end.reason.startswith(f'reset from outside: the driver began episode {outside}')
    # It ends at its last measurement before the reset; its steps are those up to there (one
    # 10 ms period each in lockstep): none past the reset.
    end_stamp, start_stamp = convert.stamp_ns(end.header.stamp), convert.stamp_ns(
        first.header.stamp)
    assert start_stamp < end_stamp < outside_start
    assert end.steps == (end_stamp - start_stamp) // 10_000_000 >= 30
    # The next episode is the safety node's own, after the outside one, and lockstep steps on.
    started = lambda: [e for e in events if e.event == EpisodeEvent.START][1:]  # noqa: E731
    assert spin_until(executor, started)
    assert started()[0].episode_id > outside
    steps = driver.steps
    assert spin_until(executor, lambda: driver.steps >= steps + 20, timeout=20)
    assert 'reset from outside' in capfd.readouterr().err
    for node in (safety, driver):
        executor.remove_node(node)
        node.destroy_node()


def test_a_restarted_robot_side_numbers_its_episodes_after_the_trainers(
        ros_context, executor, probe, capfd):
    """number_after_trainer: the first episode waits for the trainer's acknowledgement.

    It follows the trainer's newest episode, on a random stream of its own: a resumed run
    collects none of its episodes again.
    """
    from sensor_msgs.msg import JointState

    from sac_robot.nodes.driver import Driver
    from sac_robot.nodes.safety import SafetyNode
    from sac_robot.srv import Reset

    def robot_side(seed):
        driver = Driver(context=ros_context, namespace='/dclaw',
                        parameter_overrides=params(robot='dclaw'))
        safety = SafetyNode(context=ros_context, namespace='/dclaw', parameter_overrides=params(
            robot='dclaw', number_after_trainer=True, seed=seed, command_timeout=0.0))
        executor.add_node(driver)
        executor.add_node(safety)
        return driver, safety

    starts = listen(probe, EpisodeEvent, '/dclaw/episode_events', qos.EVENTS)
    valve = listen(probe, JointState, '/dclaw/valve/joint_states', qos.SENSOR)  # (random)
    acks = probe.create_publisher(ExperienceAck, '/dclaw/experience/ack', qos.LATCHED)
    driver, safety = robot_side(5)
    spin_until(executor, lambda: False, timeout=0.5)
    assert safety.state == 'starting' and driver.episode_id == 0  # no trainer, no episode
    assert "waiting for the trainer's acknowledgement on /dclaw/experience/ack" in (
        capfd.readouterr().err)
    acks.publish(ExperienceAck(robot_id='someone else', episode_id=99))  # not this robot's
    acks.publish(ExperienceAck(robot_id='dclaw', next_sequence=17, episode_id=41,
                               env_steps=900))
    assert spin_until(executor, lambda: safety.state == 'running')
    assert safety.episode_id == driver.episode_id == 42 and safety.total_steps == 900
    assert spin_until(executor, lambda: starts and valve)
    assert (starts[-1].event, starts[-1].episode_id) == (EpisodeEvent.START, 42)
    assert 'the trainer holds episodes up to 41 (900 steps): this run continues at episode 42' in (
        capfd.readouterr().err)
    # Episode ids only grow.
    response = driver.on_reset(Reset.Request(seed=-1, episode_id=3), Reset.Response())
    assert not response.success and 'has begun episode 42 already' in response.message
    first = np.array(valve[-1].position)
    for node in (safety, driver):
        executor.remove_node(node)
        node.destroy_node()
    # The same run restarted at the same place starts the same episode the same way; another
    # seed, another start.
    again = []
    for seed in (5, 6):
        valve.clear()
        driver, safety = robot_side(seed)
        assert spin_until(executor, lambda s=safety: s.state == 'running' and valve)
        assert driver.episode_id == 42
        again.append(np.array(valve[-1].position))
        for node in (safety, driver):
            executor.remove_node(node)
            node.destroy_node()
    np.testing.assert_array_equal(again[0], first)
    assert not np.array_equal(again[1], first)


def test_policy_and_realtime_driver_in_one_process_bypass_dds(ros_context, executor, probe,
                                                              tmp_path):
    """A policy composed with a real-time driver skips DDS both ways.

    It takes each measurement from the driver directly (and stops subscribing to the sensor
    topics; the driver counts it as a reader) and hands the command back directly: every
    period of the driver's control thread is answered within that period, once. A lockstep
    driver, another robot's driver, or the parameters off: no link.
    """
    from std_msgs.msg import Float64MultiArray

    from sac_robot.nodes.policy import PolicyNode
    from sac_robot.nodes.driver import Driver
    from sac_robot.srv import Reset
    log = tmp_path / 'latency.csv'
    driver = Driver(context=ros_context, namespace='/minitaur', parameter_overrides=params(
        clock='realtime', latency_log=str(log)))
    lockstep = Driver(context=ros_context, namespace='/minitaur')
    elsewhere = Driver(context=ros_context, namespace='/other',
                          parameter_overrides=params(clock='realtime'))
    policy = PolicyNode(context=ros_context, namespace='/minitaur')
    policy.connect_local([lockstep, elsewhere, policy, driver])
    assert policy.local_drivers == [driver.take_local_targets]
    assert driver.local_readers == [policy.on_readings]
    assert not lockstep.local_readers and not elsewhere.local_readers
    assert not policy.sync.subscriptions and driver.local_counts == {
        'joint_states': 1, 'imu/data': 1}
    driver.wait_for_readers = ['joint_states>=1', 'imu/data>=1', 'mocap/pose>=1']
    assert driver._missing_readers() == ['mocap/pose (0/1)']
    driver.wait_for_readers = []
    off = PolicyNode(context=ros_context, namespace='/minitaur', parameter_overrides=params(
        local_commands=False, local_measurements=False))
    off.connect_local([driver])
    assert not off.local_drivers and driver.local_readers == [policy.on_readings]
    elsewhere.destroy_node()
    executor.add_node(driver)
    executor.add_node(policy)
    seen = listen(probe, Float64MultiArray, 'position_controller/commands', qos.COMMAND)
    assert spin_until(executor, lambda: policy.command_publisher.get_subscription_count() >= 2)

    # A reset, as the safety node asks for it: its measurement reaches the policy at once.
    response = driver.on_reset(Reset.Request(seed=1, reason='test'), Reset.Response())
    stamp = convert.stamp_ns(response.stamp)
    assert response.success and stamp in policy.recent and driver.answered != stamp
    start = EpisodeEvent(event=EpisodeEvent.START, episode_id=response.episode_id,
                         robot_id='minitaur')
    start.header.stamp = convert.to_stamp(stamp)
    policy.on_event(start)  # the policy acts on it, and the driver has the command already
    started = driver.stamp  # ticks up to this one came before the policy had its episode
    assert driver.answered == stamp and stamp in driver.latencies
    np.testing.assert_allclose(driver.targets, policy.profile.action_to_command(
        policy.last_action))
    # The control thread ticks on while the executor delivers the published copies.
    assert spin_until(executor, lambda: policy.step >= 30)
    driver.close()  # stops the thread, writes the log
    assert not driver._thread.is_alive()
    spin_until(executor, lambda: False, timeout=0.3)
    with open(log) as stream:
        header = stream.readline()
        rows = np.loadtxt(stream, delimiter=',', skiprows=1, ndmin=2)
    # The control thread answers its own ticks synchronously, so they cannot miss; the reset's
    # measurement is answered from this test's thread (as an episode's START event is from the
    # executor's), which a stall of this VM can hold past the next period: that one at most.
    assert f'missed deadlines {driver.missed},' in header and driver.missed <= 1
    rows = rows[rows[:, 0] >= stamp]  # (before the reset the thread ticked with no episode)
    ticks = rows[rows[:, 1] == 1]
    assert rows[0, 0] == stamp and rows[0, 1] == 0
    # Every period from the episode's start on answered, in its own period (a stall of this
    # test's thread between the reset and the START event leaves the ticks between unanswered:
    # the policy acts on none before its episode starts).
    assert not np.isnan(ticks[ticks[:, 0] > started, 2]).any()
    answered = ticks[~np.isnan(ticks[:, 2])]
    assert len(answered) >= 30 and policy.step == len(answered)
    assert policy.commands == len(answered) + 1  # once each (and the reset's measurement)
    labels = [m.layout.dim[0].label for m in seen]
    assert len(seen) > 0 and len(set(labels)) == len(seen)  # none published twice
    for node in (policy, off, driver, lockstep):
        node.destroy_node()


@pytest.mark.parametrize('robot', ['minitaur', 'dclaw'])
def test_local_readings_and_targets_are_what_the_topics_carry(ros_context, robot):
    """What a driver hands a reader of its process is what its messages read as.

    In a moving state, the profile's measurement of the driver's readings equals its
    measurement of the driver's messages (one image rendered for both); targets handed over
    directly are checked as a command's are: wrong size or not finite, refused, kept as were.
    A measurement that is not finite is not handed over.
    """
    from sac_robot.nodes.driver import Driver
    driver = Driver(context=ros_context, namespace=f'/{robot}', parameter_overrides=params(
        robot=robot, pixels=robot == 'dclaw'))
    profile = driver.profile
    rng = np.random.default_rng(3)
    for _ in range(3):
        driver.targets = profile.action_to_command(rng.uniform(-1, 1, profile.action_size))
        for _ in range(20):
            driver.backend.write(driver.targets)
            driver.backend.advance()
        readings = driver.backend.read()
        driver.local_keys = set(profile.sensors)
        direct = profile.measurement(driver.local_readings(readings))
        via_messages = profile.measure(driver.measurements(7, readings))
        assert direct.keys() == via_messages.keys() and len(direct) >= 4
        for key, value in direct.items():
            np.testing.assert_allclose(value, via_messages[key], rtol=0, atol=1e-12,
                                       err_msg=key)
        assert np.abs(direct['joints' if robot == 'dclaw' else 'motor_velocities']).max() > 0

    size = len(profile.joint_names)
    before = driver.targets.copy()
    assert not driver.take_local_targets(np.full(size - 1, 0.1), 5)
    assert not driver.take_local_targets(np.r_[np.full(size - 1, 0.1), np.nan], 5)
    np.testing.assert_array_equal(driver.targets, before)
    assert driver.answered is None
    assert driver.take_local_targets(np.full(size, 0.1), 5) and driver.answered == 5
    np.testing.assert_array_equal(driver.targets, np.full(size, 0.1))

    seen = []
    driver.local_keys = set()
    driver.add_local_reader(lambda stamp, readings: seen.append(stamp), ['joints'])
    driver.publish(10, driver.backend.read())
    driver.backend.sim.data.qvel[:] = np.nan
    driver.publish(20, driver.backend.read())
    assert seen == [10]
    driver.destroy_node()


def test_realtime_driver_control_thread_stops_the_run_when_a_step_fails(ros_context):
    """A control step that raises ends the node's run with status 1 (not a silent thread)."""
    import time

    from sac_robot.nodes.driver import Driver
    driver = Driver(context=ros_context, namespace='/minitaur',
                       parameter_overrides=params(clock='realtime'))

    def broken(stamp, msgs):
        raise RuntimeError('reader failed')
    driver.add_local_reader(broken, ['joints'])
    deadline = time.monotonic() + 5.0
    while getattr(driver, 'exit_status', None) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert driver.exit_status == 1
    driver._thread.join(timeout=1.0)
    assert not driver._thread.is_alive()
    driver.destroy_node()


def test_policy_takes_good_weights_and_rejects_bad_ones(ros_context, executor, probe):
    from sac_robot.algorithms.checkpoint import export_policy
    from sac_robot.algorithms.sac import SAC, SACConfig
    from sac_robot.nodes.policy import PolicyNode
    policy = PolicyNode(context=ros_context, namespace='/minitaur')
    executor.add_node(policy)
    weights = probe.create_publisher(PolicyWeights, 'policy/weights', qos.LATCHED)

    data = export_policy(SAC(112, 8, SACConfig(hidden=(32, 32)), seed=0), 1)
    corrupt = convert.policy_weights(data, 1, 'sac', '{}', 10, 100)
    corrupt.sha256 = '0' * 64
    weights.publish(corrupt)
    wrong_size = convert.policy_weights(export_policy(SAC(21, 9, SACConfig(hidden=(8,))), 2),
                                        2, 'sac', '{}', 10, 100)
    weights.publish(wrong_size)
    spin_until(executor, lambda: False, timeout=1.0)
    assert policy.policy is None  # both rejected (checksum; observation size)
    weights.publish(convert.policy_weights(data, 3, 'sac', '{}', 10, 100))
    assert spin_until(executor, lambda: policy.policy is not None)
    assert policy.policy.version == 3
    action = policy.policy.act(np.zeros(112, np.float32), deterministic=True)
    assert action.shape == (8,) and np.all(np.abs(action) <= 1)
    assert policy.rejections.by_topic()['policy/weights'] >= 1  # (latched: depth 1)

    # Versions grow within a trainer's run: an older one of the same run is ignored; a version
    # however high (2^62, forged or from an old run) does not make a new run's weights old.
    def send(version, run_id):
        weights.publish(convert.policy_weights(data, version, 'sac', '{}', 10, 100,
                                               run_id=run_id))
    send(7, 'aaaa')
    assert spin_until(executor, lambda: policy.policy.run_id == 'aaaa')
    send(6, 'aaaa')
    spin_until(executor, lambda: False, timeout=0.5)
    assert (policy.policy.run_id, policy.policy.version) == ('aaaa', 7)
    send(2**62, 'forged')
    assert spin_until(executor, lambda: policy.policy.version == 2**62)
    send(8, 'aaaa')  # the real trainer's next weights are taken all the same
    assert spin_until(executor, lambda: (policy.policy.run_id, policy.policy.version) == (
        'aaaa', 8))
    send(1, 'bbbb')  # a trainer started afresh
    assert spin_until(executor, lambda: (policy.policy.run_id, policy.policy.version) == (
        'bbbb', 1))
    policy.destroy_node()


@pytest.mark.parametrize('algorithm', ['sac', 'sql'])
def test_loaded_policy_acts_as_the_trained_network(algorithm):
    """The numpy inference path computes the torch network's function."""
    import torch

    from sac_robot.algorithms.checkpoint import export_policy
    from sac_robot.algorithms.sac import SAC, SACConfig
    from sac_robot.algorithms.sql import SQL, SQLConfig
    from sac_robot.nodes.policy import LoadedPolicy
    agent = (SAC(112, 8, SACConfig(hidden=(32, 32)), seed=1) if algorithm == 'sac' else
             SQL(112, 8, SQLConfig(hidden=(32, 32)), seed=1))
    policy = LoadedPolicy(export_policy(agent, 1), 1, 112, 8)
    assert policy.layers is not None
    observations = np.random.default_rng(0).normal(size=(5, 112)).astype(np.float32)
    with torch.no_grad():
        if algorithm == 'sac':
            expected = torch.tanh(agent.actor.distribution(torch.as_tensor(observations))[0])
            got = np.stack([policy.act(o, deterministic=True) for o in observations])
            np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)
        noise = np.random.default_rng(1).normal(size=8).astype(np.float32)
        policy.rng = np.random.default_rng(1)
        action = policy.act(observations[0], deterministic=False)
        if algorithm == 'sql':
            expected = agent.sampler(torch.as_tensor(observations[:1]), noise=torch.as_tensor(
                noise[None]))[0, 0]
        else:
            mean, log_std = agent.actor.distribution(torch.as_tensor(observations[:1]))
            expected = torch.tanh(mean + log_std.exp() * torch.as_tensor(noise))[0]
        np.testing.assert_allclose(action, expected.numpy(), atol=1e-5)
    samples = np.stack([policy.act(observations[0], deterministic=False) for _ in range(50)])
    assert np.all(np.abs(samples) <= 1) and samples.std(axis=0).min() > 0


def _experience(sequence, n, obs_size=112, action_size=8, first=0, value=0.0):
    rows = {'observations': np.full((n, obs_size), value + np.arange(n)[:, None], np.float32),
            'actions': np.zeros((n, action_size), np.float32),
            'rewards': np.ones(n, np.float32),
            'next_observations': np.zeros((n, obs_size), np.float32),
            'terminated': np.zeros(n, bool), 'truncated': np.zeros(n, bool),
            'policy_versions': np.zeros(n, np.uint64)}
    return convert.experience('minitaur', sequence, 1, first, rows)


def test_pixel_experience_round_trips_and_is_checked():
    """Dict observations (image + vectors) travel as a flat vector plus images, and back."""
    import array

    from sac_robot.algorithms.observations import from_wire, to_wire
    from sac_robot.nodes.robots import profile
    spec = profile('dclaw', pixels=True).observation_spec
    rng = np.random.default_rng(0)

    def observations(n):
        return {'pixels': rng.integers(0, 256, (n, 32, 32, 3), np.uint8),
                'joints': rng.normal(size=(n, 9)).astype(np.float32),
                'velocities': rng.normal(size=(n, 9)).astype(np.float32),
                'valve': rng.normal(size=(n, 2)).astype(np.float32)}

    obs, next_obs = observations(3), observations(3)
    flat, image = to_wire(obs, spec)
    assert flat.shape == (3, 20) and image.shape == (3, 32, 32, 3)
    # name order: joints, valve, velocities
    np.testing.assert_array_equal(flat[:, :9], obs['joints'])
    np.testing.assert_array_equal(flat[:, 9:11], obs['valve'])
    single = from_wire(flat[1], image[1], spec)
    np.testing.assert_array_equal(single['pixels'], obs['pixels'][1])
    next_flat, next_image = to_wire(next_obs, spec)
    rows = {'observations': flat, 'next_observations': next_flat, 'images': image,
            'next_images': next_image, 'actions': np.zeros((3, 9), np.float32),
            'rewards': np.ones(3, np.float32), 'terminated': np.zeros(3, bool),
            'truncated': np.zeros(3, bool), 'policy_versions': np.zeros(3, np.uint64)}
    msg = convert.experience('dclaw', 0, 1, 0, rows, spec=spec)
    back = convert.read_experience(msg, spec, 9, 'experience')
    for key in spec:
        np.testing.assert_array_equal(back['observations'][key], obs[key], err_msg=key)
        np.testing.assert_array_equal(back['next_observations'][key], next_obs[key])
    # A state trainer refuses pixel chunks, a pixel trainer state ones, saying what and where.
    with pytest.raises(convert.MessageError, match='chunk 0 has observations .*pixels.*'
                                                   'expected flat'):
        convert.read_experience(msg, 18, 9, 'experience')
    state = _experience(5, 2, obs_size=18, action_size=9)
    with pytest.raises(convert.MessageError, match='chunk 5 has observations flat'):
        convert.read_experience(state, spec, 9, 'experience')
    msg.image_height = 16
    with pytest.raises(convert.MessageError, match='images of 16x32x3, expected 32x32x3'):
        convert.read_experience(msg, spec, 9, 'experience')
    msg.image_height, msg.next_images = 32, array.array('B', bytes(100))
    with pytest.raises(convert.MessageError, match='next_images has 100 values, expected 9216'):
        convert.read_experience(msg, spec, 9, 'experience')


def test_trainer_adds_chunks_in_order_once_and_rejects_bad_ones(ros_context, executor, probe,
                                                                tmp_path):
    from sac_robot.nodes.trainer import Trainer
    trainer = Trainer(context=ros_context, namespace='/minitaur', parameter_overrides=params(
        checkpoint_dir=str(tmp_path / 'checkpoint'), checkpoint_period=0.0,
        **{'agent.learning_starts': 10_000, 'agent.hidden': [16, 16]}))
    executor.add_node(trainer)
    acks = listen(probe, ExperienceAck, 'experience/ack', qos.LATCHED)
    experience = probe.create_publisher(Experience, 'experience', qos.CHUNKS)
    assert spin_until(executor, lambda: experience.get_subscription_count() >= 1)
    progress = listen(probe, TrainingProgress, 'training/progress', qos.LATCHED)
    experience.publish(_experience(1, 5, value=100, first=3))  # before 0: waits for the gap
    spin_until(executor, lambda: False, timeout=0.3)
    assert len(trainer.buffer) == 0
    experience.publish(_experience(0, 3))
    assert spin_until(executor, lambda: len(trainer.buffer) == 8)
    experience.publish(_experience(0, 3))  # a resend: ignored
    bad = _experience(2, 4)
    bad.rewards = [1.0, float('nan'), 1.0, 1.0]
    experience.publish(bad)
    experience.publish(_experience(3, 2, obs_size=21))  # another robot's size
    spin_until(executor, lambda: False, timeout=0.5)
    assert len(trainer.buffer) == 8 and trainer.next_sequence == 2
    assert acks[-1].next_sequence == 2
    obs = trainer.buffer.storage['obs'][:8, 0]
    assert list(obs) == [0, 1, 2, 100, 101, 102, 103, 104]  # in sequence order
    # The policy's min_utd gate learns what it has of the running episode, and that it cannot
    # update before learning_starts (so holding the policy would not help).
    assert spin_until(executor, lambda: progress and progress[-1].env_steps == 8)
    assert (progress[-1].episode_id, progress[-1].episode_steps) == (1, 8)
    assert progress[-1].waiting_for_experience and progress[-1].gradient_steps == 0
    # A count no episode can hold (the sender's word is bounded): refused, nothing counted.
    experience.publish(convert.experience('minitaur', 2, 1, 8, None, dropped=10**6))
    spin_until(executor, lambda: False, timeout=0.3)
    assert trainer.next_sequence == 2 and trainer.dropped == 0
    # An episode a million ids past the newest (forged, or random values): refused, so that
    # it never becomes the newest a relaunched robot side numbers its episodes after.
    experience.publish(convert.experience('minitaur', 2, 2 + 10**6, 0, None, dropped=1))
    spin_until(executor, lambda: False, timeout=0.3)
    assert trainer.next_sequence == 2 and trainer.dropped == 0
    assert trainer.rejections.by_topic() == {'experience': 4}  # with the NaN and the size
    # A chunk that only reports transitions lost after a gap ends its episode.
    experience.publish(convert.experience('minitaur', 2, 1, 8, None, dropped=4))
    assert spin_until(executor, lambda: trainer.next_sequence == 3)
    assert trainer.episodes == 1 and trainer.dropped == 4 and len(trainer.buffer) == 8
    # The chunk the stream waits for, refused as often as it is resent: passed over as lost
    # (its 2 transitions), and the one after it taken.
    poison = _experience(3, 2)
    poison.rewards = [float('nan'), 1.0]
    experience.publish(_experience(4, 1))  # (waits for 3)
    for forged in range(3):  # different bad chunks with its number (forged): none taken, none
        bad = _experience(3, 2)  # (skipping: the real one may still come)
        bad.rewards = [float('nan'), float(forged)]
        experience.publish(bad)
        spin_until(executor, lambda: False, timeout=0.1)
    assert trainer.next_sequence == 3 and trainer.dropped == 4
    for _ in range(3):
        experience.publish(poison)
        spin_until(executor, lambda: False, timeout=0.1)
    assert spin_until(executor, lambda: trainer.next_sequence == 5)
    assert trainer.dropped == 4 + 2 and len(trainer.buffer) == 9
    trainer.checkpoint()
    assert spin_until(executor, lambda: acks[-1].checkpointed_sequence == 5)
    # A forged progress (2^64 - 1 transitions, no update: the lockstep policy's gate would
    # hold for good) is replaced by the trainer's own within a statistics period.
    forged = probe.create_publisher(TrainingProgress, 'training/progress', qos.LATCHED)
    forged.publish(TrainingProgress(env_steps=2**64 - 1))
    assert spin_until(executor, lambda: progress[-1].env_steps == 2**64 - 1)
    assert spin_until(executor, lambda: progress[-1].env_steps == 9, timeout=3.0)
    trainer.close()
    trainer.destroy_node()


def test_a_compiling_trainer_compiles_during_the_warm_up_and_takes_experience_meanwhile(
        ros_context, executor, probe, tmp_path):
    """With agent.compile the updates are compiled, beside the warm-up.

    The compiler starts half-way through learning_starts, on a thread of its own; chunks are
    taken and acknowledged meanwhile, and every update is a compiled one.
    """
    from sac_robot.nodes.trainer import Trainer
    trainer = Trainer(context=ros_context, namespace='/minitaur', parameter_overrides=params(
        checkpoint_dir=str(tmp_path / 'checkpoint'), checkpoint_period=0.0, max_utd=1.0,
        **{'agent.learning_starts': 64, 'agent.batch_size': 32, 'agent.hidden': [16, 16],
           'agent.compile': True}))
    executor.add_node(trainer)
    acks = listen(probe, ExperienceAck, 'experience/ack', qos.LATCHED)
    experience = probe.create_publisher(Experience, 'experience', qos.CHUNKS)
    assert spin_until(executor, lambda: experience.get_subscription_count() >= 1)
    experience.publish(_experience(0, 20))
    assert spin_until(executor, lambda: acks and acks[-1].next_sequence == 1)
    assert trainer.agent._compiling.ident is None  # (not yet half-way: nothing compiled)
    experience.publish(_experience(1, 20, first=20))
    assert spin_until(executor, lambda: trainer.agent._compiling is None
                      or trainer.agent._compiling.ident is not None)
    for sequence in (2, 3):  # taken while the compiler works
        experience.publish(_experience(sequence, 20, first=20 * sequence))
        assert spin_until(executor, lambda n=sequence + 1: acks[-1].next_sequence == n)
    assert spin_until(executor, lambda: trainer.agent.gradient_steps > 0, timeout=120)
    assert trainer.agent._compiled and trainer.agent._compiling is None
    trainer.close()
    trainer.destroy_node()


def test_a_fleet_trainer_keeps_each_robots_stream_and_feeds_every_robot(
        ros_context, executor, probe, tmp_path):
    """robots: one stream per robot (numbering, gaps, acks, checkpointed place), one policy."""
    import hashlib

    from sac_robot.msg import TrainingStats
    from sac_robot.nodes.trainer import Trainer
    fleet = ['minitaur0', 'minitaur1']

    def start(robots, **more):
        trainer = Trainer(context=ros_context, parameter_overrides=params(
            robot='minitaur', robots=robots, checkpoint_dir=str(tmp_path / 'checkpoint'),
            checkpoint_period=0.0, **{'agent.learning_starts': 10_000, 'agent.hidden': [16, 16]},
            **more))
        executor.add_node(trainer)
        return trainer

    trainer = start(fleet)
    acks = {r: listen(probe, ExperienceAck, f'/{r}/experience/ack', qos.LATCHED) for r in fleet}
    weights = {r: listen(probe, PolicyWeights, f'/{r}/policy/weights', qos.LATCHED)
               for r in fleet}
    stats = {r: listen(probe, TrainingStats, f'/{r}/training_stats'.replace('//', '/'),
                       qos.EVENTS) for r in ('', *fleet)}
    send = {r: probe.create_publisher(Experience, f'/{r}/experience', qos.CHUNKS) for r in fleet}
    assert spin_until(executor, lambda: all(p.get_subscription_count() >= 1
                                            for p in send.values()))

    def chunk(robot, sequence, n, value, ended=False):
        msg = _experience(sequence, n, value=value)
        msg.robot_id = robot
        if ended:
            msg.truncated[-1] = True
        return msg

    send['minitaur1'].publish(chunk('minitaur1', 1, 2, 200))  # before its 0: waits
    send['minitaur0'].publish(chunk('minitaur0', 0, 3, 0))
    assert spin_until(executor, lambda: len(trainer.buffer) == 3)  # robot 1's gap stalls no one
    send['minitaur1'].publish(chunk('minitaur1', 0, 1, 100))
    send['minitaur0'].publish(chunk('minitaur0', 0, 3, 0))  # a resend: ignored
    send['minitaur0'].publish(chunk('minitaur1', 2, 1, 999))  # robot 1's chunk on robot 0's topic
    send['minitaur0'].publish(chunk('minitaur0', 1, 2, 10, ended=True))
    assert spin_until(executor, lambda: len(trainer.buffer) == 8)
    spin_until(executor, lambda: False, timeout=0.3)
    assert len(trainer.buffer) == 8
    assert sorted(trainer.buffer.storage['obs'][:8, 0]) == [0, 1, 2, 10, 11, 100, 200, 201]
    positions = {r: trainer.streams[r].position() for r in fleet}
    assert positions == {
        'minitaur0': {'next_sequence': 2, 'env_steps': 5, 'episodes': 1, 'dropped': 0,
                      'episode_id': 1},
        'minitaur1': {'next_sequence': 2, 'env_steps': 3, 'episodes': 0, 'dropped': 0,
                      'episode_id': 1}}
    assert spin_until(executor, lambda: all(a and a[-1].next_sequence == 2
                                            for a in acks.values()))
    assert {a[-1].robot_id for a in acks.values()} == set(fleet)
    # Every robot gets the same policy.
    trainer.publish_policy()
    assert spin_until(executor, lambda: all(w and w[-1].version == 1 for w in weights.values()))
    assert len({hashlib.sha256(bytes(w[-1].data)).hexdigest() for w in weights.values()}) == 1
    run_id = weights['minitaur0'][-1].run_id
    assert len(run_id) == 16 and weights['minitaur1'][-1].run_id == run_id
    # Three steps taken with those weights (published at 8 transitions): 0, 1 and 2 steps old.
    acted = chunk('minitaur0', 2, 3, 20)
    acted.policy_versions, acted.episode_id = [1, 1, 1], 2  # (its next episode)
    send['minitaur0'].publish(acted)
    assert spin_until(executor, lambda: len(trainer.buffer) == 11)
    # The statistics: the whole fleet's with each robot's part; each robot's own line.
    trainer.publish_stats()
    assert spin_until(executor, lambda: all(stats.values()))
    fleet_stats = dict(zip(stats[''][-1].names, stats[''][-1].values))
    assert stats[''][-1].env_steps == 11 and fleet_stats['weights_age_steps'] == 1.0
    assert (fleet_stats['minitaur0/env_steps'], fleet_stats['minitaur1/env_steps']) == (8, 3)
    assert fleet_stats['minitaur0/return'] == 5.0 and fleet_stats['minitaur0/episodes'] == 1
    assert fleet_stats['minitaur0/version_lag'] == 0 and fleet_stats['minitaur1/version_lag'] == 1
    assert (stats['minitaur0'][-1].env_steps, stats['minitaur1'][-1].env_steps) == (8, 3)
    positions = {r: trainer.streams[r].position() for r in fleet}
    # The checkpoint keeps each robot's place; a run with another fleet takes its robots'
    # places back (a new one starts at 0) and keeps the absent robot's for later.
    trainer.checkpoint()
    assert spin_until(executor, lambda: [a[-1].checkpointed_sequence for a in acks.values()]
                      == [3, 2])
    # Each acknowledgement names the robot's newest episode held (a restarted robot side
    # numbers its episodes after it).
    assert [a[-1].episode_id for a in acks.values()] == [2, 1]
    trainer.close()
    executor.remove_node(trainer)
    trainer.destroy_node()
    trainer = start(['minitaur1', 'minitaur2'], resume=True)
    # The resumed run is the same run: its weights go on from v1 under the same identity.
    assert spin_until(executor, lambda: weights['minitaur1'][-1].version == 2)
    assert weights['minitaur1'][-1].run_id == run_id == trainer.run_id
    assert trainer.streams['minitaur1'].position() == positions['minitaur1']
    assert trainer.streams['minitaur2'].next_sequence == 0
    assert trainer.env_steps == 11 and len(trainer.buffer) == 11
    trainer.checkpoint()
    trainer.close()
    executor.remove_node(trainer)
    trainer.destroy_node()
    for each in acks.values():
        each.clear()
    trainer = start(fleet, resume=True)
    assert {r: trainer.streams[r].position() for r in fleet} == positions
    assert spin_until(executor, lambda: all(acks.values()))  # the resumed trainer's
    assert [a[-1].episode_id for a in acks.values()] == [2, 1]
    trainer.close()
    trainer.destroy_node()
    with pytest.raises(ValueError, match='names a robot twice'):
        start(['minitaur0', 'minitaur0'])
    fresh = Trainer(context=ros_context, parameter_overrides=params(
        robot='minitaur', checkpoint_dir=str(tmp_path / 'another'), checkpoint_period=0.0,
        **{'agent.hidden': [16, 16]}))
    assert fresh.run_id != run_id  # a run started afresh has an identity of its own
    fresh.close()
    fresh.destroy_node()


def _collector_rig(ros_context, executor, probe, **overrides):
    """A Minitaur collector, what it delivers, and publishers of everything it listens to."""
    from sac_robot.msg import RewardTerms
    from sac_robot.nodes.collector import DataCollector
    collector = DataCollector(context=ros_context, namespace='/minitaur',
                              parameter_overrides=params(**overrides))
    executor.add_node(collector)
    delivered = listen(probe, Experience, 'experience', qos.CHUNKS)
    publishers = (probe.create_publisher(PolicyStep, 'policy/steps', qos.EXPERIENCE),
                  probe.create_publisher(RewardTerms, 'reward', qos.EXPERIENCE),
                  probe.create_publisher(EpisodeEvent, 'episode_events', qos.EVENTS),
                  probe.create_publisher(EpisodeEvent, 'episode_checks', qos.EXPERIENCE),
                  probe.create_publisher(ExperienceAck, 'experience/ack', qos.LATCHED))
    assert spin_until(executor, lambda: all(p.get_subscription_count() >= 1
                                            for p in publishers))
    return collector, delivered, publishers


def test_collector_delivers_each_episode_once_and_resends_until_acknowledged(
        ros_context, executor, probe):
    from sac_robot.msg import RewardTerms
    collector, delivered, (steps, rewards, events, _, acks) = _collector_rig(
        ros_context, executor, probe, resend_period=0.3)
    for k in range(5):  # four transitions; the policy ran one step past the end
        step = PolicyStep(robot_id='minitaur', episode_id=7, step=k, policy_version=2)
        step.observation = np.full(112, k, np.float32)
        step.action = np.full(8, 0.1 * k, np.float32)
        steps.publish(step)
        rewards.publish(RewardTerms(robot_id='minitaur', episode_id=7, step=k,
                                    reward=float(k)))
    end = EpisodeEvent(robot_id='minitaur', episode_id=7, event=EpisodeEvent.END, steps=3,
                       terminated=True)
    events.publish(end)
    spin_until(executor, lambda: False, timeout=0.5)
    assert not delivered  # no trainer has acknowledged yet: nothing numbered, nothing sent
    acks.publish(ExperienceAck(robot_id='minitaur', next_sequence=40))
    assert spin_until(executor, lambda: delivered)
    chunk = convert.read_experience(delivered[0], 112, 8, 'experience')
    assert delivered[0].observation_spec == '' and not delivered[0].images  # flat
    assert delivered[0].sequence == 40 and delivered[0].num_transitions == 3
    assert list(chunk['rewards']) == [0, 1, 2]
    assert list(chunk['next_observations'][:, 0]) == [1, 2, 3]
    assert list(chunk['terminated']) == [False, False, True]
    assert spin_until(executor, lambda: len(delivered) >= 2, timeout=3)  # resent: no ack
    assert delivered[1].sequence == 40
    # An acknowledgement ahead of anything sent (a forged one) is refused: chunk 40 is kept.
    acks.publish(ExperienceAck(robot_id='minitaur', next_sequence=10**9,
                               checkpointed_sequence=10**9))
    assert spin_until(executor, lambda: collector.rejections.total == 1, timeout=3)
    assert 40 in collector.unacked and collector.delivered == 0
    acks.publish(ExperienceAck(robot_id='minitaur', next_sequence=41, checkpointed_sequence=41))
    assert spin_until(executor, lambda: collector.delivered == 3)
    count = len(delivered)
    spin_until(executor, lambda: False, timeout=1.0)
    assert len(delivered) == count and not collector.unacked  # acknowledged: quiet, forgotten
    collector.destroy_node()


def test_collector_streams_confirmed_steps_and_flags_the_end(ros_context, executor, probe):
    """Transitions go out while the episode runs, as the safety node confirms its steps.

    Transition k is sent once step k + 2 is confirmed; the rest at the END, with its flags
    (also an END that comes without a new measurement: stale commands); a gap stops the
    stream, and what lies after it is reported dropped.
    """
    from sac_robot.msg import RewardTerms
    collector, delivered, (steps, rewards, events, checks, acks) = _collector_rig(
        ros_context, executor, probe, complete_wait=0.3, resend_period=60.0)
    acks.publish(ExperienceAck(robot_id='minitaur', next_sequence=0))
    assert spin_until(executor, lambda: collector.next_sequence == 0)

    def take(episode, first, last, skip=()):
        for k in range(first, last):
            if k in skip:
                continue
            step = PolicyStep(robot_id='minitaur', episode_id=episode, step=k)
            step.observation = np.full(112, 100 * episode + k, np.float32)
            step.action = np.zeros(8, np.float32)
            steps.publish(step)
            rewards.publish(RewardTerms(robot_id='minitaur', episode_id=episode, step=k,
                                        reward=float(k)))

    def event(kind, episode, n, **flags):
        (checks if kind == EpisodeEvent.CHECKED else events).publish(EpisodeEvent(
            robot_id='minitaur', episode_id=episode, event=kind, steps=n, **flags))

    def streamed(episode, n):  # (before the END, which could overtake on its topic)
        assert spin_until(executor, lambda: episode in collector.episodes
                          and collector.episodes[episode].sent == n)

    def rows(chunks):
        out = [convert.read_experience(c, 112, 8, 'experience') for c in chunks]
        return {key: np.concatenate([r[key] for r in out]) for key in out[0]}

    take(1, 0, 15)
    event(EpisodeEvent.CHECKED, 1, 10)
    assert spin_until(executor, lambda: delivered)
    assert [(c.first_step, c.num_transitions) for c in delivered] == [(0, 9)]
    take(1, 15, 24)  # the policy also acts past the end, which will come at step 20
    event(EpisodeEvent.CHECKED, 1, 20)
    assert spin_until(executor, lambda: len(delivered) == 2)
    streamed(1, 19)
    event(EpisodeEvent.END, 1, 20, truncated=True)  # stale commands: no new measurement
    assert spin_until(executor, lambda: len(delivered) == 3)
    assert [(c.first_step, c.num_transitions) for c in delivered] == [(0, 9), (9, 10), (19, 1)]
    got = rows(delivered)
    assert list(got['observations'][:, 0]) == list(range(100, 120))
    assert list(got['next_observations'][:, 0]) == list(range(101, 121))
    assert list(got['rewards']) == list(range(20))
    assert not got['terminated'].any() and list(np.flatnonzero(got['truncated'])) == [19]

    take(2, 0, 14)  # a fall: the last transition is terminal
    event(EpisodeEvent.CHECKED, 2, 10)
    streamed(2, 9)
    event(EpisodeEvent.END, 2, 13, terminated=True)
    assert spin_until(executor, lambda: sum(c.episode_id == 2 for c in delivered) == 2)
    got = rows([c for c in delivered if c.episode_id == 2])
    assert list(got['observations'][:, 0]) == list(range(200, 213))
    assert list(np.flatnonzero(got['terminated'])) == [12] and not got['truncated'].any()

    take(3, 0, 14, skip=(5,))  # step 5 lost: streaming stops before it, the rest is dropped
    event(EpisodeEvent.CHECKED, 3, 10)
    streamed(3, 4)
    event(EpisodeEvent.END, 3, 13, truncated=True)
    assert spin_until(executor, lambda: sum(c.episode_id == 3 for c in delivered) == 2)
    third = [c for c in delivered if c.episode_id == 3]
    assert [(c.first_step, c.num_transitions, c.dropped) for c in third] == [(0, 4, 0),
                                                                           (4, 0, 9)]
    assert collector.transitions == 20 + 13 + 4 and collector.dropped == 9
    assert [c.sequence for c in delivered] == list(range(len(delivered)))
    assert not collector.episodes  # everything finished and forgotten
    collector.destroy_node()


def test_pixel_collector_keeps_steps_with_their_image_and_refuses_the_rest(
        ros_context, executor):
    from rclpy.node import Node

    from sac_robot.nodes.collector import DataCollector
    collector = DataCollector(context=ros_context, namespace='/dclaw', parameter_overrides=params(
        robot='dclaw', pixels=True))
    executor.add_node(collector)
    probe = Node('probe', namespace='/dclaw', context=ros_context)
    executor.add_node(probe)
    steps = probe.create_publisher(PolicyStep, 'policy/steps', qos.EXPERIENCE)
    assert spin_until(executor, lambda: steps.get_subscription_count() >= 1)
    frame = np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8)
    for k, image in enumerate((None, frame[:16], frame)):  # none, wrong size, right
        step = PolicyStep(robot_id='dclaw', episode_id=1, step=k)
        step.observation = np.zeros(20, np.float32)  # joints, valve (cos, sin), velocities
        step.action = np.zeros(9, np.float32)
        if image is not None:
            step.image = convert.image(image, 0, 'valve_camera')
        steps.publish(step)
    assert spin_until(executor, lambda: 1 in collector.episodes
                      and 2 in collector.episodes[1].steps)
    episode = collector.episodes[1]
    assert sorted(episode.steps) == [2]  # the two without a proper image were refused
    np.testing.assert_array_equal(episode.images[2], frame)
    collector.destroy_node()
    probe.destroy_node()


def test_trainer_starts_from_a_replay_file(ros_context, tmp_path):
    from sac_robot.algorithms.replay import ReplayBuffer
    from sac_robot.nodes.trainer import Trainer
    recorded = ReplayBuffer(112, 8, 50)
    rows = convert.read_experience(_experience(0, 50, value=7), 112, 8, 'test')
    recorded.add(rows['observations'], rows['actions'], rows['rewards'],
                 rows['next_observations'], rows['terminated'], rows['truncated'])
    recorded.save(str(tmp_path / 'replay.safetensors'))
    trainer = Trainer(context=ros_context, parameter_overrides=params(
        checkpoint_dir=str(tmp_path / 'checkpoint'), checkpoint_period=0.0,
        replay_file=str(tmp_path / 'replay.safetensors'),
        **{'agent.learning_starts': 10_000, 'agent.hidden': [16, 16]}))
    assert len(trainer.buffer) == 50 and trainer.buffer.storage['obs'][3, 0] == 10
    trainer.close()
    trainer.destroy_node()
    with pytest.raises(Exception, match='replay buffer'):  # a corrupt file: a clear error
        (tmp_path / 'bad.safetensors').write_bytes(b'not a buffer')
        Trainer(context=ros_context, parameter_overrides=params(
            checkpoint_dir=str(tmp_path / 'checkpoint'),
            replay_file=str(tmp_path / 'bad.safetensors')))


def test_trainer_starts_from_a_given_agent_and_sends_it_to_the_robot_at_once(
        ros_context, executor, probe, tmp_path):
    """init_checkpoint (init:=): a pretrained agent, acted with before any experience."""
    import torch

    from sac_robot.algorithms.checkpoint import CheckpointError, save_checkpoint
    from sac_robot.nodes.trainer import Trainer
    from sac_robot.training import build_agent
    pretrained = build_agent('sac', 112, 8, {'hidden': [16, 16]}, seed=3)
    save_checkpoint(str(tmp_path / 'pretrained'), pretrained, None, {'env_steps': 7})
    weights = listen(probe, PolicyWeights, 'policy/weights', qos.LATCHED)
    trainer = Trainer(context=ros_context, namespace='/minitaur', parameter_overrides=params(
        checkpoint_dir=str(tmp_path / 'checkpoint'), checkpoint_period=0.0,
        init_checkpoint=str(tmp_path / 'pretrained'),
        **{'agent.learning_starts': 10_000, 'agent.hidden': [16, 16]}))
    executor.add_node(trainer)
    assert spin_until(executor, lambda: weights)  # before any experience
    assert weights[-1].version == 1 and len(trainer.buffer) == 0
    for a, b in zip(pretrained.actor.parameters(), trainer.agent.actor.parameters()):
        assert torch.equal(a, b)
    trainer.close()
    executor.remove_node(trainer)
    trainer.destroy_node()
    # Another network: said, not loaded.
    with pytest.raises(CheckpointError, match="'actor' does not match this agent"):
        Trainer(context=ros_context, namespace='/minitaur', parameter_overrides=params(
            checkpoint_dir=str(tmp_path / 'other'), init_checkpoint=str(tmp_path / 'pretrained'),
            **{'agent.hidden': [32, 32]}))


def test_policy_min_utd_gate_never_holds_the_data_the_trainer_waits_for(ros_context):

    from sac_robot.nodes.policy import PolicyNode
    policy = PolicyNode(context=ros_context, parameter_overrides=params(min_utd=1.0,
                                                                       utd_slack=20))
    policy.commands, policy.step, policy.episode_id = 19, 19, 1
    assert not policy._behind_trainer(0)  # no trainer yet: utd_slack steps are free
    policy.commands = 20
    assert policy._behind_trainer(0)

    def progress(updates, steps, episode=0, episode_steps=0, waiting=False):
        policy.progress = TrainingProgress(
            gradient_steps=updates, env_steps=steps, learning_starts=5000, episode_id=episode,
            episode_steps=episode_steps, waiting_for_experience=waiting)

    # A trainer waiting for experience (before learning_starts, or at its max_utd) is never
    # held, however far ahead the steps are: only more steps can move it on.
    progress(0, 4500, waiting=True)
    policy.commands, policy.episode_id = 5501, 10
    for step in range(0, 501):
        policy.step = step
        assert not policy._behind_trainer(0), step
    # Learning: steps (received + this episode's not yet received) at most utd_slack ahead of
    # one update per transition beyond learning_starts.
    policy.step = 100
    progress(1000, 7000, episode=9, episode_steps=500)  # nothing of episode 10 received yet
    assert policy._behind_trainer(0)  # 7000 + 100 - 5000 - 20 = 2080 > 1000 updates
    progress(2080, 7000, episode=9, episode_steps=500)
    assert not policy._behind_trainer(0)
    progress(2080, 7090, episode=10, episode_steps=90)  # streamed: counted once
    assert not policy._behind_trainer(0)
    progress(2079, 7090, episode=10, episode_steps=90)
    assert policy._behind_trainer(0)
    policy.starts[5] = 11  # a measurement that begins an episode is its step 0
    progress(2075, 7090, episode=10, episode_steps=90)
    assert policy._behind_trainer(0) and not policy._behind_trainer(5)  # 2080, 2070 vs 2075
    policy.destroy_node()


def test_policy_acts_once_on_a_held_measurement_that_begins_an_episode(ros_context):
    """A held first measurement of an episode is acted on once, as step 0, in time.

    Held for the trainer before its START came, it is acted on exactly once, when the trainer
    catches up: not at the START (which must not bypass the hold), and not again after.
    """
    from sac_robot.nodes.policy import PolicyNode
    from sac_robot.robots.minitaur import STANDING_EXTENSION
    policy = PolicyNode(context=ros_context, parameter_overrides=params(min_utd=1.0,
                                                                       utd_slack=500))
    names = policy.profile.joint_names

    def measurement(stamp):  # (its readings, as SensorSync hands them over)
        return policy.profile.read({
            'joints': convert.joint_state(names, [STANDING_EXTENSION] * 8, [0.0] * 8, None,
                                          stamp),
            'imu': convert.imu([1, 0, 0, 0], [0, 0, 0], [0, 0, 9.81], stamp)})

    def start(episode, stamp):
        event = EpisodeEvent(event=EpisodeEvent.START, episode_id=episode, robot_id='minitaur')
        event.header.stamp = convert.to_stamp(stamp)
        return event

    steps = []
    policy._publish_step = lambda stamp, obs, action, version: steps.append(
        (policy.episode_id, policy.step, stamp))
    policy.progress = TrainingProgress(gradient_steps=0, env_steps=2000, learning_starts=300)
    policy.on_readings(100, measurement(100))  # before its START: held (the trainer is behind)
    assert policy.held is not None and not steps
    policy.on_event(start(1, 100))
    assert policy.held is not None and not steps  # still behind: the START does not bypass it
    policy.on_progress(TrainingProgress(gradient_steps=1200, env_steps=2000,
                                        learning_starts=300))
    assert steps == [(1, 0, 100)] and policy.held is None and policy.commands == 1
    policy.on_progress(TrainingProgress(gradient_steps=1300, env_steps=2000,
                                        learning_starts=300))
    policy.on_event(start(1, 100))  # the event again (a late copy): no restart
    policy.on_readings(100, measurement(100))  # the measurement again: nothing
    assert steps == [(1, 0, 100)]
    policy.on_readings(110, measurement(110))
    assert steps == [(1, 0, 100), (1, 1, 110)] and policy.commands == 2
    policy.destroy_node()


def test_realtime_dclaw_resets_and_renders_in_its_control_thread(ros_context, executor, probe):
    """In real time the control thread owns the robot.

    A reset asked for through the service happens there, in place of a period's step, and the
    camera (whose GL context works in one thread only) renders there, at reset and at every
    period.
    """
    from sensor_msgs.msg import CameraInfo, Image

    from sac_robot.nodes.driver import Driver
    from sac_robot.srv import Reset
    driver = Driver(context=ros_context, namespace='/dclaw', parameter_overrides=params(
        robot='dclaw', clock='realtime', pixels=True))
    executor.add_node(driver)
    images = listen(probe, Image, '/dclaw/camera/image_raw', qos.SENSOR_DEEP)
    infos = listen(probe, CameraInfo, '/dclaw/camera/camera_info', qos.SENSOR)
    client = probe.create_client(Reset, '/dclaw/reset')
    assert spin_until(executor, client.service_is_ready)
    future = client.call_async(Reset.Request(seed=4, reason='test'))
    assert spin_until(executor, future.done) and future.result().success
    first = convert.stamp_ns(future.result().stamp)
    assert spin_until(executor, lambda: sum(
        convert.stamp_ns(m.header.stamp) > first for m in images) >= 2)
    mine = [m for m in images if convert.stamp_ns(m.header.stamp) >= first]
    assert convert.stamp_ns(mine[0].header.stamp) == first
    assert all((m.height, m.width, m.encoding) == (32, 32, 'rgb8') for m in mine)
    assert any(np.frombuffer(bytes(m.data), np.uint8).any() for m in mine)  # a picture
    # Beside each image its camera info, as camera drivers publish it (a sensor-QoS reader).
    assert spin_until(executor, lambda: any(
        convert.stamp_ns(i.header.stamp) == convert.stamp_ns(mine[-1].header.stamp)
        for i in infos))
    info = infos[-1]
    assert (info.height, info.width, info.header.frame_id) == (32, 32, mine[-1].header.frame_id)
    assert getattr(driver, 'exit_status', None) is None
    driver.destroy_node()


def test_run_nodes_freezes_what_startup_made_and_returns_a_nodes_exit_status():
    """A node process freezes its start-up objects and ends with the status a node sets.

    Out of the garbage collector's sight, they cost a full collection nothing (it would hold
    the interpreter lock for ~130 ms: a real-time control thread's stall); the node is closed.
    """
    import gc

    from rclpy.node import Node

    from sac_robot.nodes.spin import run_nodes
    seen = {}

    class Quitter(Node):
        def __init__(self):
            super().__init__('quitter')
            self.create_timer(0.01, self.tick)

        def tick(self):
            seen['frozen'] = gc.get_freeze_count()
            self.exit_status = 3

        def close(self):
            seen['closed'] = True

    try:
        assert run_nodes([Quitter], args=[]) == 3
    finally:
        gc.unfreeze()
    assert seen['frozen'] > 10000 and seen['closed']


def test_realtime_driver_runs_the_process_callbacks_on_its_control_thread(tmp_path):
    """In a node process a real-time driver takes the executor over.

    Every callback of the process (another node's timer, the driver's own reset service) runs
    on the control thread, between steps, so no other thread holds the interpreter lock during
    a step; a reset through the service is done there without waiting on itself, and its
    measurement gets a whole period before the next step, as a step's does; the process ends
    with the status a node sets and the control thread is stopped before the nodes go.
    """
    import threading

    from rclpy.node import Node

    from sac_robot.nodes.driver import Driver
    from sac_robot.nodes.spin import run_nodes
    from sac_robot.srv import Reset
    seen = {'threads': set()}

    def driver():
        seen['driver'] = Driver(namespace='/minitaur', parameter_overrides=params(
            clock='realtime', thread_priority=0, latency_log=str(tmp_path / 'latency.csv')))
        return seen['driver']

    class Watcher(Node):
        def __init__(self):
            super().__init__('watcher', namespace='/minitaur')
            self.client = self.create_client(Reset, 'reset')
            self.future = None
            self.create_timer(0.005, self.tick)

        def tick(self):
            seen['threads'].add(threading.current_thread().name)
            if self.future is None and self.client.service_is_ready():
                self.future = self.client.call_async(Reset.Request(seed=2, reason='test'))
            elif self.future is not None and self.future.done():
                seen['reset'] = self.future.result()
                if seen['driver'].steps >= 20:
                    self.exit_status = 5

    try:
        assert run_nodes([driver, Watcher], args=[]) == 5
    finally:
        import gc
        gc.unfreeze()
    assert seen['threads'] == {'control'}
    assert seen['reset'].success and seen['reset'].episode_id == 1
    assert not seen['driver']._thread.is_alive()
    timeline = seen['driver'].timeline  # (stamp ns, 1 for a step or 0 for a reset)
    reset = [i for i, (_, step) in enumerate(timeline) if not step]
    assert len(reset) == 1 and timeline[reset[0] + 1][1] == 1
    period = seen['driver'].period_ns
    assert timeline[reset[0] + 1][0] - timeline[reset[0]][0] >= 0.95 * period


def test_the_robot_comes_from_the_namespace_unless_set_against_it(ros_context):
    """``robot`` defaults to the robot the namespace names; set against it, it is refused."""
    from rclpy.node import Node

    from sac_robot.nodes.params import declare_robot
    cases = {'/dclaw': 'dclaw', '/lab/minitaur2': 'minitaur', '/dclaw0': 'dclaw',
             '/': 'minitaur', '/cell': 'minitaur'}
    for namespace, robot in cases.items():
        node = Node('n', namespace=namespace, context=ros_context)
        assert declare_robot(node) == robot, namespace
        node.destroy_node()
    node = Node('n', namespace='/cell', context=ros_context,
                parameter_overrides=params(robot='dclaw'))
    assert declare_robot(node) == 'dclaw'  # a namespace naming no robot: as set
    node.destroy_node()
    from sac_robot.nodes.safety import SafetyNode
    with pytest.raises(ValueError, match='robot:=minitaur contradicts the namespace /dclaw, '
                                         'which names the dclaw'):
        SafetyNode(context=ros_context, namespace='/dclaw',
                   parameter_overrides=params(robot='minitaur'))


def test_a_bad_sensor_message_changes_nothing_whatever_its_stamp(ros_context, executor, probe,
                                                                capfd):
    """A sensor message is checked before anything advances.

    A rejected one stamped in the future does not make the good ones that follow look old;
    each kind of rejection is said and counted.
    """
    from sensor_msgs.msg import Imu, JointState

    from sac_robot.nodes.robots import profile
    from sac_robot.nodes.sync import SensorSync
    minitaur = profile('minitaur')
    got = []
    sync = SensorSync(probe, minitaur, ('joints', 'imu'), lambda stamp, msgs: got.append(stamp),
                      qos_profile=qos.SENSOR_DEEP)
    states = probe.create_publisher(JointState, 'joint_states', qos.SENSOR_RELIABLE)
    imus = probe.create_publisher(Imu, 'imu/data', qos.SENSOR_RELIABLE)
    assert spin_until(executor, lambda: states.get_subscription_count() >= 1
                      and imus.get_subscription_count() >= 1)
    names = minitaur.joint_names

    def good(stamp):
        states.publish(convert.joint_state(names, np.zeros(8), np.zeros(8), stamp=stamp))
        imus.publish(convert.imu([1, 0, 0, 0], np.zeros(3), [0, 0, 9.81], stamp=stamp))

    future = convert.joint_state(names, np.zeros(8), np.zeros(8), stamp=10**18)
    future.position[2] = float('nan')
    states.publish(future)
    wrong = convert.joint_state(names[:7], np.zeros(7), np.zeros(7), stamp=10**18 + 1)
    states.publish(wrong)  # another kind, a moment later: said too
    states.publish(convert.joint_state(names, np.full(8, 1e300), np.zeros(8), stamp=10**18 + 2))
    for stamp in (1_000_000, 2_000_000):
        good(stamp)
    assert spin_until(executor, lambda: got == [1_000_000, 2_000_000])
    said = capfd.readouterr().err
    assert 'sensor message dropped: joint_states: position[2] is nan (not finite)' in said
    assert 'sensor message dropped: joint_states: joint(s) ' in said
    assert ('sensor message dropped: joint_states: position[0] is 1e+300 rad: not plausible '
            '(more than 1000 rad)') in said  # well-formed, but no robot's
    assert sync.rejections.total == 3 and sync.rejections.by_topic() == {'joint_states': 3}


def test_a_reward_that_cannot_be_used_is_refused_where_it_enters(ros_context):
    """A NaN reward, or one its terms do not add up to, never reaches a return or a chunk."""
    from sac_robot.msg import RewardTerms
    from sac_robot.nodes.collector import DataCollector
    from sac_robot.nodes.safety import SafetyNode
    safety = SafetyNode(context=ros_context, namespace='/minitaur')
    collector = DataCollector(context=ros_context, namespace='/minitaur')
    safety.episode_id, safety.state = 1, 'running'

    def reward(value, values=(0.5, 0.25)):
        return RewardTerms(robot_id='minitaur', episode_id=1, step=0, reward=value,
                           names=['a', 'b'][:len(values)], values=list(values))

    one_name_no_value = RewardTerms(robot_id='minitaur', episode_id=1, reward=0.5, names=['a'])
    for bad in (reward(float('nan'), ()), reward(0.75, (0.5, float('inf'))), reward(2.0),
                one_name_no_value):
        safety.on_reward(bad)
        collector.on_reward(bad)
    assert safety.returns[1] == 0.0 and safety.rejections.total == 4
    assert collector.rejections.total == 4
    safety.on_reward(reward(0.75))  # terms adding up to it: taken
    assert safety.returns[1] == 0.75
    safety.destroy_node()
    collector.destroy_node()


def test_a_plain_sensor_data_and_a_default_subscriber_both_hear_the_driver(ros_context,
                                                                           executor, probe):
    """ROS habits: both usual subscriber QoS match the driver's sensor topics, and no stale ones.

    `qos_profile_sensor_data` (best effort) and the default (reliable, volatile, depth 10); a
    subscriber that joins late with the publisher's own QoS (as `ros2 topic echo` and `ros2 bag
    record` adapt) receives only samples measured after it joined.
    """
    from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
    from sensor_msgs.msg import Imu, JointState

    from sac_robot.nodes.driver import Driver
    driver = Driver(context=ros_context, namespace='/minitaur', parameter_overrides=params(
        clock='realtime', thread_priority=0, imu_variances=[1e-4, -1.0, 0.01]))
    executor.add_node(driver)
    heard = {'sensor_data': [], 'default': []}
    probe.create_subscription(JointState, 'joint_states', heard['sensor_data'].append,
                              qos_profile_sensor_data)
    probe.create_subscription(Imu, 'imu/data', heard['default'].append, 10)
    from sac_robot.srv import Reset
    client = probe.create_client(Reset, 'reset')
    assert spin_until(executor, client.service_is_ready)
    future = client.call_async(Reset.Request(seed=0, reason='test'))
    assert spin_until(executor, future.done) and future.result().success
    assert spin_until(executor, lambda: len(heard['sensor_data']) >= 5
                      and len(heard['default']) >= 5)
    # The IMU's covariances as set (sensor_msgs: -1 where there is no estimate).
    imu = heard['default'][-1]
    assert list(imu.orientation_covariance) == [1e-4, 0, 0, 0, 1e-4, 0, 0, 0, 1e-4]
    assert list(imu.angular_velocity_covariance) == [-1] + [0] * 8
    assert list(imu.linear_acceleration_covariance)[::4] == [0.01] * 3
    spin_until(executor, lambda: False, timeout=1.0)  # (a second of samples: 100 at 100 Hz)
    offered = probe.get_publishers_info_by_topic('/minitaur/joint_states')[0].qos_profile
    assert offered.durability == DurabilityPolicy.VOLATILE
    joined = driver.get_clock().now().nanoseconds
    late = listen(probe, JointState, 'joint_states', QoSProfile(
        depth=1000, reliability=offered.reliability, durability=offered.durability))
    assert spin_until(executor, lambda: len(late) >= 5)
    period = int(driver.profile.control_period * 1e9)
    stamps = [msg.header.stamp.sec * 10 ** 9 + msg.header.stamp.nanosec for msg in late]
    assert min(stamps) >= joined - 2 * period, (joined - min(stamps)) / 1e9  # (none stale)
    driver.close()
    driver.destroy_node()


def test_imu_covariances_follow_sensor_msgs_and_refuse_what_it_cannot_say():
    """Diagonal variances per field, -1 in element 0 where no estimate, zeros when unknown."""
    orientation, rates, acceleration = convert.imu_covariances((1e-4, -1, (1e-2, 2e-2, 3e-2)))
    assert orientation == (1e-4, 0, 0, 0, 1e-4, 0, 0, 0, 1e-4)
    assert rates == (-1,) + (0,) * 8
    assert acceleration[::4] == (1e-2, 2e-2, 3e-2)
    assert convert.imu_covariances(()) == ((0.0,) * 9,) * 3
    for bad, said in (((1e-4, 1e-4), '3 (orientation'), ((1e-4, -0.5, 0), '>= 0 or -1'),
                      ((math.nan, 0, 0), 'finite')):
        with pytest.raises(ValueError, match=re.escape(said)):
            convert.imu_covariances(bad)


def test_a_step_that_cannot_be_used_is_refused_where_it_enters(ros_context):
    """A poisoned copy of a real policy step (same episode, step and stamp) changes nothing.

    NaN actions or observations, an action outside [-1, 1], or a second, different copy of a
    step already held: the collector keeps the policy's own step, the reward estimator scores
    only that one, and each refusal is counted and said.
    """
    from sac_robot.nodes.collector import DataCollector
    from sac_robot.nodes.reward_estimator import RewardEstimator
    collector = DataCollector(context=ros_context, namespace='/minitaur')
    estimator = RewardEstimator(context=ros_context, namespace='/minitaur')

    def step(action=0.1, observation=0.5):
        msg = PolicyStep(robot_id='minitaur', episode_id=3, step=4, policy_version=1)
        msg.header.stamp = convert.to_stamp(1_000_000)
        msg.observation = np.full(112, observation, np.float32)
        msg.action = np.full(8, action, np.float32)
        return msg

    real = step()
    collector.on_step(real)
    estimator.on_step(real)
    for poison in (step(action=float('nan')), step(observation=float('inf')), step(action=1.5)):
        collector.on_step(poison)
        estimator.on_step(poison)
    collector.on_step(step(action=-0.2))  # finite, but not the step the policy sent
    estimator.on_step(step(action=-0.2))
    assert collector.rejections.total == 4 and estimator.rejections.total == 3
    held = collector.episodes[3].steps[4]
    assert list(held.action) == list(real.action)
    assert list(estimator.pending.values()) == [real]
    collector.destroy_node()
    estimator.destroy_node()


def test_episode_counts_and_ids_from_senders_are_bounded(ros_context, executor, probe):
    """An END claiming more steps than an episode holds, or a reset a million episodes ahead.

    Random values on the event topics made the collector count 4294967295 transitions as
    dropped and send chunks claiming them; a reset with an episode id near the uint64's end
    would leave the next episode no id. Each is refused, named and counted, and nothing moves.
    """
    from sac_robot.msg import EpisodeEvent
    from sac_robot.nodes.collector import DataCollector
    from sac_robot.nodes.driver import Driver
    from sac_robot.srv import Reset
    collector = DataCollector(context=ros_context, namespace='/minitaur')
    for event, topic in ((EpisodeEvent.END, 'episode_events'),
                         (EpisodeEvent.CHECKED, 'episode_checks')):
        msg = EpisodeEvent(robot_id='minitaur', episode_id=7, event=event, steps=2**32 - 1)
        (collector.on_event if event == EpisodeEvent.END else collector.on_check)(msg)
        assert collector.rejections.by_topic()[topic] == 1
    from sac_robot.nodes.collector import OPEN_EPISODES

    def step(episode_id, k):
        msg = PolicyStep(robot_id='minitaur', episode_id=episode_id, step=k)
        msg.observation, msg.action = np.zeros(112, np.float32), np.zeros(8, np.float32)
        return msg

    collector.on_step(step(8, 501))  # past any episode's end: of no transition
    assert not collector.episodes and collector.dropped == 0 and not collector.unnumbered
    # Steps of episodes that never end (random ids) are not held for good: at most
    # OPEN_EPISODES, the one heard of longest ago forgotten first, the running one kept.
    for k in range(3 * OPEN_EPISODES):
        collector.on_step(step(1, k))  # the running episode, every step
        collector.on_step(step(10**9 + k, 0))  # a stray one each time
    assert len(collector.episodes) == OPEN_EPISODES and 1 in collector.episodes
    assert len(collector.episodes[1].steps) == 3 * OPEN_EPISODES
    assert collector.rejections.by_topic()['policy/steps'] == 2 * OPEN_EPISODES + 1
    collector.destroy_node()

    driver = Driver(context=ros_context, namespace='/minitaur', parameter_overrides=params())
    executor.add_node(driver)
    client = probe.create_client(Reset, 'reset')
    assert spin_until(executor, client.service_is_ready)
    for episode_id, success in ((2**64 - 1, False), (10**6 + 1, False), (10**6, True)):
        future = client.call_async(Reset.Request(seed=0, episode_id=episode_id, reason='test'))
        assert spin_until(executor, future.done)
        assert future.result().success is success, future.result().message
        if not success:
            assert 'episode ids grow one an episode' in future.result().message
    assert driver.episode_id == 10**6
    driver.close()
    driver.destroy_node()


def test_malformed_weights_are_refused_on_the_loading_thread(ros_context):
    """Weights with a good checksum but a header no policy has: each refused, said, counted.

    (A list for a header raised AttributeError on the loading thread, a traceback and no line.)
    """
    import json
    import struct

    from sac_robot.nodes.policy import PolicyNode
    policy = PolicyNode(context=ros_context, namespace='/minitaur')

    def file(header) -> bytes:
        text = json.dumps(header).encode()
        return struct.pack('<Q', len(text)) + text + bytes(16)
    meta = {'format': 'sac_robot.policy/1', 'algorithm': 'sac', 'obs_spec': '112',
            'action_dim': '8', 'hidden': '[64, 64]'}
    layer = {'dtype': 'F32', 'shape': [2, 2], 'data_offsets': [0, 16]}
    variants = [file([1, 2]), b'\x01', struct.pack('<Q', 10 ** 6) + b'{}',
                file({'__metadata__': 'a string', 'w': layer}),
                file({'__metadata__': {**meta, 'action_dim': 'eight'}, 'w': layer}),
                file({'__metadata__': meta, 'net.x.weight': layer}),
                file({'__metadata__': meta, 'w': {**layer, 'shape': ['2', '2']}})]
    for version, data in enumerate(variants, 1):
        policy._build(data, version, 'forged')
    assert policy.policy is None
    assert policy.rejections.by_topic() == {'policy/weights': len(variants)}
    policy.destroy_node()
