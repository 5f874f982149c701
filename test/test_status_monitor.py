# SPDX-License-Identifier: Apache-2.0
"""status_monitor in-process: it summarizes what arrives on its topics."""

import pytest
from conftest import spin_until

pytestmark = pytest.mark.ros


def test_status_line_follows_stats_and_episodes(ros_context, executor):
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from sac_robot.msg import EpisodeEvent, TrainingStats
    from sac_robot.nodes import qos
    from sac_robot.nodes.status_monitor import StatusMonitor

    monitor = StatusMonitor(context=ros_context, parameter_overrides=[
        Parameter('return_window', value=2)])
    source = Node('source', context=ros_context)
    executor.add_node(monitor)
    executor.add_node(source)
    stats = source.create_publisher(TrainingStats, 'training_stats', qos.EVENTS)
    events = source.create_publisher(EpisodeEvent, 'episode_events', qos.EVENTS)
    assert monitor.status_line() == 'episodes 0'
    assert spin_until(executor, lambda: events.get_subscription_count() == 1)

    for episode_return in (10.0, 20.0, 40.0):
        events.publish(EpisodeEvent(event=EpisodeEvent.START))
        events.publish(EpisodeEvent(event=EpisodeEvent.END, episode_return=episode_return))
    stats.publish(TrainingStats(env_steps=1500, policy_version=7, updates_per_second=42.5,
                                gradient_steps=1200))
    assert spin_until(executor, lambda: monitor.stats is not None and monitor.episodes == 3)
    assert monitor.status_line() == (
        'steps 1500 | episodes 3 | return 40.0 (mean of last 2: 30.0) | policy v7 | '
        '42.5 upd/s | 1200 updates')


def test_a_fleet_line_shows_each_robot(ros_context):
    from sac_robot.msg import TrainingStats
    from sac_robot.nodes.status_monitor import StatusMonitor
    monitor = StatusMonitor(context=ros_context)
    names = ['utd', 'dclaw0/env_steps', 'dclaw0/episodes', 'dclaw0/return', 'dclaw0/version_lag',
             'dclaw0/idle_s', 'dclaw1/env_steps', 'dclaw1/episodes', 'dclaw1/return',
             'dclaw1/version_lag', 'dclaw1/idle_s']
    values = [1.0, 800, 2, 12.5, 3, 0.2, 40, 0, float('nan'), 9, 31.0]
    monitor.stats = TrainingStats(env_steps=840, episodes=2, policy_version=9,
                                  gradient_steps=100, names=names, values=values)
    assert monitor.status_line() == (
        'steps 840 | episodes 2 | policy v9 | 0.0 upd/s | 100 updates | '
        'dclaw0: 800 steps, 2 ep, return 12.5, lag 3 | dclaw1: 40 steps, 0 ep, lag 9, silent 31 s')
    monitor.destroy_node()


def test_rejects_nonsense_parameters(ros_context):
    from rclpy.parameter import Parameter

    from sac_robot.nodes.status_monitor import StatusMonitor

    with pytest.raises(ValueError, match='positive'):
        StatusMonitor(context=ros_context, parameter_overrides=[Parameter('period', value=0.0)])
