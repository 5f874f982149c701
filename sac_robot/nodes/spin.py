# SPDX-License-Identifier: Apache-2.0
"""The one way every sac_robot node process starts, spins and shuts down."""

import atexit
import gc
import os
import signal
import sys
import threading
import time

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from sac_robot.backends.interface import BackendError


def _executor_class():
    """The executor every node spins with.

    rclpy's C++ ``EventsExecutor`` (Kilted; Jazzy backports) costs a fraction of the wait-set
    executors' per-callback time, which every observation-to-command round trip pays
    (``bench/control_latency.py`` compares them). ``SAC_ROBOT_EXECUTOR=single`` selects
    ``SingleThreadedExecutor``, for comparison.
    """
    if os.environ.get('SAC_ROBOT_EXECUTOR', '') == 'single':
        return SingleThreadedExecutor
    try:
        from rclpy.experimental import EventsExecutor
    except ImportError:  # older rclpy
        return SingleThreadedExecutor
    return EventsExecutor


def _finish_whatever_comes():
    """From here on SIGINT and SIGTERM are noted, not obeyed: the shutdown runs to its end.

    And once the interpreter itself exits they are ignored: Python's finalisation puts the
    default handlers back after ``atexit``, and a signal then (the second SIGINT of
    ``ros2 launch``) would end the process by that signal instead of with its status.
    """
    def note(signum, _frame):
        print(f'[spin] {signal.Signals(signum).name} during shutdown: finishing it first',
              file=sys.stderr, flush=True)
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(signum, note)
        except ValueError:  # not the main thread (a test's run): nothing to guard
            return
    atexit.register(_ignore_stop_signals)


def _ignore_stop_signals():
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


def run(node_class, args=None, executor_class=None) -> int:
    """Create ``node_class()`` and spin it until Ctrl-C, SIGTERM or ``rclpy.shutdown``.

    Spins with ``spin_once`` in a loop rather than ``rclpy.spin``: the latter can sit in
    ``rcl_wait`` and miss SIGINT/SIGTERM (see ../shared/ROS2_FROM_PYPI.md, "Pitfalls").
    Returns the process exit status; a node ends its own run with ``node.finish(status)``.
    """
    return run_nodes([node_class], args, executor_class)


#: Most seconds a draining node (the recorder) goes on taking messages after its stop signal.
DRAIN_LIMIT = 3.0


class _StopSignals:
    """SIGINT and SIGTERM as flags, which the spinning loop reads between callbacks.

    rclpy's own handlers shut the context down from the signal, whatever callback is running
    on whichever thread: a callback then fails half-way (the EventsExecutor raised
    ``RuntimeError: Unable to convert call argument`` out of ``spin_once`` when two SIGINTs
    met a busy node), and what is still queued for the process is lost. Here the loop sees
    the flag, lets every draining node (the recorder) take what was on its way, and only then
    closes the nodes, in order. Before the nodes exist (``armed`` false) a signal interrupts
    their construction as Python's own handler would (a node waiting at start-up for a
    device or a topic). SIGTERM (ros2 launch's and our launcher's next step when SIGINT was
    not enough) ends a drain; a repeated SIGINT does not (``ros2 launch`` without a terminal
    sends two).
    """

    def __init__(self):
        self.stopping = self.hurry = self.armed = False
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._note)

    def _note(self, signum, _frame):
        if not self.armed:
            raise KeyboardInterrupt
        if not self.stopping:
            print(f'[spin] {signal.Signals(signum).name}: stopping, taking what is still on '
                  'its way', file=sys.stderr, flush=True)
        self.stopping = True
        self.hurry = self.hurry or signum == signal.SIGTERM


def _drain(executor, nodes, stop: _StopSignals, limit: float = DRAIN_LIMIT):
    """Spin until every node with ``drained(since)`` has taken all, ``limit`` s, or SIGTERM."""
    draining = [n for n in nodes if hasattr(n, 'drained')]
    since = time.monotonic()
    deadline = since + limit
    while (rclpy.ok() and not stop.hurry and time.monotonic() < deadline
           and not all(n.drained(since) for n in draining)):
        executor.spin_once(timeout_sec=0.05)


def run_nodes(node_classes, args=None, executor_class=None) -> int:
    """Run several nodes in this process, on one executor (see :func:`run`).

    The nodes share one DDS participant, so what they say to each other is delivered inside
    the process without a transport; a node with ``connect_local(nodes)`` is told who its
    neighbours are (the policy and a real-time driver hand each other measurements and
    commands directly). A node with ``take_executor(executor)`` may take the spinning over (a
    real-time driver runs the callbacks on its control thread, between steps); the main
    thread then only watches. The run ends when any node sets its ``exit_status`` (that status
    is returned), on Ctrl-C or SIGTERM; every node is then closed, in reverse. Once that
    shutdown has begun it finishes (the trainer's last checkpoint written, torque off on
    hardware) whatever signals follow: ``ros2 launch`` without a terminal sends SIGINT twice,
    and an impatient user presses Ctrl-C again. A shutdown by signal exits 0.

    A node with ``drained()`` (the recorder) is not stopped at its signal but drained: the
    executor spins on until it says it has taken everything (nothing new for a moment), for at
    most :data:`DRAIN_LIMIT` seconds or until SIGTERM, so that what the other nodes
    said just before they stopped still reaches it.
    """
    stop = None
    if threading.current_thread() is threading.main_thread():
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        stop = _StopSignals()
    else:  # (a test's run on a thread of its own, stopped by rclpy.shutdown)
        rclpy.init(args=args)
    nodes, spinner = [], None
    try:
        for node_class in node_classes:
            try:
                nodes.append(node_class())
            except (BackendError, ValueError) as error:
                # What is missing or wrong, and where (a port, a checkpoint file: a
                # CheckpointError is a ValueError, a parameter): one clear line, no traceback.
                print(f'[FATAL] {node_class.__name__}: {error}', file=sys.stderr, flush=True)
                return 1
        for node in nodes:  # nodes that work better knowing their neighbours (the policy)
            connect = getattr(node, 'connect_local', None)
            if connect is not None:
                connect(nodes)
        executor = (executor_class or _executor_class())()
        for node in nodes:
            executor.add_node(node)
        for node in nodes:
            take = getattr(node, 'take_executor', None)
            if take is not None and take(executor):
                spinner = node
                break
        # What start-up made (torch, the message types, the nodes: some 200k objects) lives as
        # long as the process: out of the collector's sight, a full collection walks only what
        # the run makes, instead of holding the interpreter lock over all of it, a stall of
        # many periods for a real-time control thread. (No collection first: that would be the
        # stall.)
        gc.freeze()
        if stop is not None:
            stop.armed = True
        while rclpy.ok() and not (stop and stop.stopping):
            status = [getattr(node, 'exit_status', None) for node in nodes]
            if any(s is not None for s in status):
                return next(s for s in status if s is not None) or 0
            if spinner is None:
                executor.spin_once(timeout_sec=0.1)
            else:
                time.sleep(0.05)
        if stop and stop.stopping and spinner is None:
            _drain(executor, nodes, stop)
        return 0
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    except RuntimeError:
        if rclpy.ok():
            raise
        return 0  # (the EventsExecutor, when rclpy.shutdown came from another thread)
    finally:
        _finish_whatever_comes()
        if spinner is not None:
            spinner.release_executor()  # no callback may run while the nodes go
        for node in reversed(nodes):
            close = getattr(node, 'close', None)
            if close is not None:
                close()
            node.destroy_node()
        rclpy.try_shutdown()
