# SPDX-License-Identifier: Apache-2.0
"""status_monitor: one live status line for a training run.

Subscribes to ``training_stats`` (sac_robot/TrainingStats) and ``episode_events``
(sac_robot/EpisodeEvent) and logs, every ``period`` seconds, the environment steps, episodes,
recent returns, policy version and update rate, e.g.::

    steps 12000 | episodes 24 | return 153.2 (mean of last 10: 120.4) | policy v118 | 41.2 upd/s
"""

import collections

from rclpy.node import Node

from sac_robot.msg import EpisodeEvent, TrainingStats
from sac_robot.nodes import qos
from sac_robot.nodes.params import describe
from sac_robot.nodes.spin import run


class StatusMonitor(Node):
    """Log a one-line summary of training progress at a fixed period."""

    def __init__(self, **kwargs):
        super().__init__('status_monitor', **kwargs)
        self.period = self.declare_parameter(
            'period', 2.0, describe('Seconds between status lines.')).value
        self.window = self.declare_parameter(
            'return_window', 10, describe('Episodes averaged in the "mean of last N" return.')
        ).value
        if self.period <= 0 or self.window <= 0:
            raise ValueError('period and return_window must be positive')
        self.stats = None
        self.episodes = 0
        self.returns = collections.deque(maxlen=self.window)
        self.create_subscription(TrainingStats, 'training_stats', self.on_stats, qos.EVENTS)
        self.create_subscription(EpisodeEvent, 'episode_events', self.on_event, qos.EVENTS)
        self.create_timer(self.period, self.report)

    def on_stats(self, msg: TrainingStats):
        """Keep the newest statistics."""
        self.stats = msg

    def on_event(self, msg: EpisodeEvent):
        """Count finished episodes and their returns."""
        if msg.event == EpisodeEvent.END:
            self.episodes += 1
            self.returns.append(msg.episode_return)

    def status_line(self) -> str:
        """Return the current status line."""
        parts = []
        if self.stats is not None:
            parts.append(f'steps {self.stats.env_steps}')
        parts.append(f'episodes {self.episodes}')
        if self.returns:
            mean = sum(self.returns) / len(self.returns)
            parts.append(f'return {self.returns[-1]:.1f} '
                         f'(mean of last {len(self.returns)}: {mean:.1f})')
        if self.stats is not None:
            parts.append(f'policy v{self.stats.policy_version}')
            parts.append(f'{self.stats.updates_per_second:.1f} upd/s')
            parts.append(f'{self.stats.gradient_steps} updates')
        return ' | '.join(parts)

    def report(self):
        """Log the status line."""
        self.get_logger().info(self.status_line())


def main(args=None) -> int:
    """Run the status monitor node."""
    return run(StatusMonitor, args)
