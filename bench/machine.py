# SPDX-License-Identifier: Apache-2.0
"""What every benchmark states beside its figures, and where it writes them.

The machines these run on differ (2-core AMD EPYC with AVX2, Intel with AVX-512 and AMX), so
a figure without its CPU means little: ``describe()`` names it. ``fresh_folder`` empties an
output folder so that a run's plot and logs never mix with a previous run's.
"""

import os
import platform
import shutil


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
