# SPDX-License-Identifier: Apache-2.0
"""A fast subset of the fault campaign (``bench/faults.py``), run as a user runs it.

Each trial launches the graph with ``sac-robot launch`` from a clean run folder, makes its
fault at a random moment, recovers as a user would and reads the checkpoint: exactly
``max_steps`` distinct transitions, none twice, and a line saying what happened. The whole
campaign (at least 21 kills, every bad message, the stand-ins' faults) is the benchmark's.
"""

import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]

FAULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'bench',
                      'faults.py')


def campaign(tmp_path, ros_domain, *arguments, timeout=600):
    result = subprocess.run([sys.executable, FAULTS, '--domain', str(ros_domain),
                             '--out', str(tmp_path / 'faults'), *arguments],
                            capture_output=True, text=True, timeout=timeout)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.timeout(700)
def test_kills_at_random_moments_then_resumes_lose_and_double_nothing(tmp_path, ros_domain):
    """Kills, signals, a corrupt checkpoint and random values: nothing lost, doubled or unsaid.

    kill -9 of the trainer, of the robot side and of everything, each then resumed; two SIGINTs
    to the whole launch; a corrupt checkpoint; 2 s of random values on every topic.
    """
    status, out = campaign(tmp_path, ros_domain, '--kills', '3', '--others', '1',
                           '--steps', '1500', '--seed', str(ros_domain),
                           *[f'--only={fault}' for fault in (
                               'kill trainer', 'kill robot side', 'kill all', 'double SIGINT',
                               'corrupt checkpoint', 'fuzz')])
    lines = out.strip().splitlines()
    assert status == 0 and lines[-1] == 'faults: 0 crashed, 0 lost, 0 silent', out[-4000:]
    rows = [line for line in lines if '/6 ' in line]
    assert len(rows) == 6, out[-4000:]
    assert all(' recovered (' in row or ' rejected with message (' in row for row in rows), rows


def test_the_campaign_refuses_a_fault_it_does_not_know(tmp_path, ros_domain):
    status, out = campaign(tmp_path, ros_domain, '--only', 'kill everything', timeout=60)
    assert status == 2 and "no such fault ['kill everything']" in out, out
    assert 'kill all' in out  # (the faults it knows)
