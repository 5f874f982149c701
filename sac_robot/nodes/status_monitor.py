# SPDX-License-Identifier: Apache-2.0
"""status_monitor: one live status line for a training run.

Subscribes to ``training_stats`` (sac_robot/TrainingStats) and ``episode_events``
(sac_robot/EpisodeEvent) and logs, every ``period`` seconds, the environment steps, episodes,
recent returns, policy version and update rate, e.g.::

    steps 12000 | episodes 24 | return 153.2 (mean of last 10: 120.4) | policy v118 | 41.2 upd/s

A fleet's trainer (``robots:=``) adds a part per robot: its steps, episodes, newest return, the
version lag of the policy it acts with, and how long it has been silent when it has.

It also follows the robot's driver on ``/diagnostics``: when the robot waits for a person (a
Minitaur after every episode, a hand whose valve reset failed) or an emergency stop is set,
the line says so at once, with what to do. Where it runs in a terminal (``keyboard``), a press
of Enter there confirms the waiting reset (the driver's ``confirm_reset``), as a person would
with ``ros2 service call``.
"""

import collections
import sys
import threading

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from std_srvs.srv import Trigger

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
        keyboard = self.declare_parameter('keyboard', True, describe(
            'Read Enter from this terminal to confirm a reset that waits for a person (only '
            'where stdin is a terminal).')).value
        if self.period <= 0 or self.window <= 0:
            raise ValueError('period and return_window must be positive')
        namespace = self.get_namespace().rstrip('/')
        self.driver_name = f'{namespace}/driver'
        self.confirm_service = f'{namespace}/confirm_reset'
        self.confirm = self.create_client(Trigger, 'confirm_reset')
        self.waiting = None  # what the robot waits for a person for (its driver says)
        self.stopped = False  # the driver reports an emergency stop
        self.keys = 0  # Enter presses not yet acted on (the keyboard thread counts them)
        self.keyboard = False
        self.create_subscription(DiagnosticArray, '/diagnostics', self.on_diagnostics,
                                 qos.DIAGNOSTICS)
        self.create_timer(0.1, self.on_keys)
        if keyboard and sys.stdin is not None and sys.stdin.isatty():
            self.start_keyboard(sys.stdin)
        self.stats = None
        self.episodes = 0
        self.returns = collections.deque(maxlen=self.window)
        self.create_subscription(TrainingStats, 'training_stats', self.on_stats, qos.EVENTS)
        self.create_subscription(EpisodeEvent, 'episode_events', self.on_event, qos.EVENTS)
        self.create_timer(self.period, self.report)

    def start_keyboard(self, stream):
        """Count the lines typed on ``stream`` (Enter) from a thread of its own."""
        self.keyboard = True

        def read():
            for _ in stream:
                self.keys += 1

        threading.Thread(target=read, name='keyboard', daemon=True).start()

    def on_diagnostics(self, msg: DiagnosticArray):
        """Follow the driver: a person awaited, an emergency stop (said at once)."""
        for status in msg.status:
            if status.name != self.driver_name:
                continue
            waiting = (status.message[len('waiting for a person: '):]
                       if status.message.startswith('waiting for a person: ') else None)
            stopped = status.message == 'emergency stop'
            changed = (waiting, stopped) != (self.waiting, self.stopped)
            self.waiting, self.stopped = waiting, stopped
            if changed and (waiting or stopped):
                self.report()

    def on_keys(self):
        """An Enter press: confirm the waiting reset (the driver's ``confirm_reset``)."""
        if not self.keys:
            return
        self.keys = 0
        if self.waiting is None:
            self.get_logger().info('(Enter: nothing waits for a person)')
            return
        if not self.confirm.service_is_ready():
            self.get_logger().error(f'{self.confirm_service} is not there: is the driver up?')
            return
        self.confirm.call_async(Trigger.Request()).add_done_callback(self._confirmed)

    def _confirmed(self, future):
        result = future.result()
        if result is not None:
            self.get_logger().info(f'confirmed: {result.message}')
            if result.success:
                self.waiting = None

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
        robots = self.robot_parts() if self.stats is not None else []
        if self.stats is not None:
            parts.append(f'steps {self.stats.env_steps}')
        # (a fleet's line, in no robot's namespace: the episodes of all, as the trainer counts)
        parts.append(f'episodes {self.stats.episodes if robots else self.episodes}')
        if self.returns:
            mean = sum(self.returns) / len(self.returns)
            parts.append(f'return {self.returns[-1]:.1f} '
                         f'(mean of last {len(self.returns)}: {mean:.1f})')
        if self.stats is not None:
            parts.append(f'policy v{self.stats.policy_version}')
            parts.append(f'{self.stats.updates_per_second:.1f} upd/s')
            parts.append(f'{self.stats.gradient_steps} updates')
        parts += robots
        if self.stopped:
            parts.append('EMERGENCY STOP')
        elif self.waiting is not None:
            how = ('press Enter here' if self.keyboard else
                   f'`ros2 service call {self.confirm_service} std_srvs/srv/Trigger`')
            parts.append(f'WAITING FOR A PERSON: {self.waiting}; {how} to confirm')
        return ' | '.join(parts)

    def robot_parts(self) -> list:
        """A fleet trainer's robots, one part each (its ``<robot>/...`` statistics)."""
        figures = {}
        for name, value in zip(self.stats.names, self.stats.values):
            robot, _, figure = name.rpartition('/')
            if robot:
                figures.setdefault(robot, {})[figure] = value
        parts = []
        for robot, of in figures.items():
            part = (f'{robot}: {of.get("env_steps", 0):.0f} steps, '
                    f'{of.get("episodes", 0):.0f} ep')
            if of.get('return') == of.get('return'):  # (NaN: no episode yet)
                part += f', return {of["return"]:.1f}'
            part += f', lag {of.get("version_lag", 0):.0f}'
            if of.get('idle_s', 0) > 10:  # a robot gone quiet (left, or stopped)
                part += f', silent {of["idle_s"]:.0f} s'
            parts.append(part)
        return parts

    def report(self):
        """Log the status line."""
        self.get_logger().info(self.status_line())


def main(args=None) -> int:
    """Run the status monitor node."""
    return run(StatusMonitor, args)
