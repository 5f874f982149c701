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


def test_rejects_nonsense_parameters(ros_context):
    from rclpy.parameter import Parameter

    from sac_robot.nodes.status_monitor import StatusMonitor

    with pytest.raises(ValueError, match='positive'):
        StatusMonitor(context=ros_context, parameter_overrides=[Parameter('period', value=0.0)])
