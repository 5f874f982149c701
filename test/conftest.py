# SPDX-License-Identifier: Apache-2.0
"""Test fixtures: DDS on loopback, a ROS domain per test process, isolated rclpy contexts.

Set before anything imports rclpy, so that every node made by a test, and every process a test
starts (they inherit the environment), stays on this machine and in this process's domain.
"""

import itertools
import os
import shutil
import tempfile
import time

import pytest

_LOG_DIR = tempfile.mkdtemp(prefix='sac_robot_test_ros_log_')
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ['ROS_LOG_DIR'] = _LOG_DIR
# A domain of this test process's own (0..101 are valid with the default port mapping), unless
# the caller chose one; parallel test processes then never see each other's topics.
os.environ.setdefault('ROS_DOMAIN_ID', str(1 + os.getpid() % 100))
os.environ.setdefault('PYTHONUNBUFFERED', '1')
# Offscreen rendering without a display (Mesa's EGL; sac_robot would choose it on import too,
# but a test module may import mujoco first).
os.environ.setdefault('MUJOCO_GL', 'egl')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (`python -m pytest` puts the repository root first on sys.path, as a user's script in the
# checkout has it: the source tree's sac_robot/ is imported, and finds the generated
# interfaces in the installed package; see sac_robot/__init__.py.)


def pytest_sessionfinish(session, exitstatus):
    """Remove this run's ROS logs and shared-memory files left by killed processes."""
    shutil.rmtree(_LOG_DIR, ignore_errors=True)


_domains = itertools.count(os.getpid())


@pytest.fixture
def ros_domain(monkeypatch):
    """A ROS domain of the test's own, also given to every process the test starts."""
    domain = 1 + next(_domains) % 100
    monkeypatch.setenv('ROS_DOMAIN_ID', str(domain))
    return domain


@pytest.fixture
def ros_context(ros_domain):
    """An rclpy context of the test's own, in the test's own domain, shut down after it."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain)
    try:
        yield context
    finally:
        context.try_shutdown()


@pytest.fixture
def executor(ros_context):
    """A single-threaded executor on the test's context."""
    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor(context=ros_context)
    try:
        yield executor
    finally:
        executor.shutdown()


def spin_until(executor, predicate, timeout=10.0):
    """Spin ``executor`` until ``predicate()`` is true; return whether it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=0.02)
    return predicate()
