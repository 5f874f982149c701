# SPDX-License-Identifier: Apache-2.0
"""What every benchmark states beside its figures, and where it writes them.

The machines these run on differ (2-core AMD EPYC with AVX2, Intel with AVX-512 and AMX), so
a figure without its CPU means little: ``describe()`` names it. ``fresh_folder`` empties an
output folder so that a run's plot and logs never mix with a previous run's; ``ros_environment``
keeps a graph on loopback in a domain of its own.
"""

import os
import platform
import shutil
import sys
import tempfile

#: The package's command, beside the interpreter running the benchmark.
SAC_ROBOT = os.path.join(os.path.dirname(sys.executable), 'sac-robot')


def cpu() -> str:
    """The CPU's model name, from /proc/cpuinfo where there is one."""
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as stream:
            for line in stream:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown CPU'


def describe() -> str:
    """'<CPU model>, <n> cores', to print at the head of every benchmark's output."""
    return f'{cpu()}, {os.cpu_count()} cores'


def fresh_folder(path: str) -> str:
    """Empty (or create) the folder ``path``; returns its absolute path."""
    path = os.path.abspath(path)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def ros_environment(domain: int) -> dict:
    """The environment of one graph: loopback only, its own domain and log directory."""
    return {**os.environ, 'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
            'ROS_DOMAIN_ID': str(domain),
            'ROS_LOG_DIR': tempfile.mkdtemp(prefix='sac_robot_ros_log_')}
