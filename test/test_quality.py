# SPDX-License-Identifier: Apache-2.0
"""Code quality, as ament's linters check it: style, docstrings, license headers."""

import os
import subprocess
import sys

from conftest import REPO

PYTHON_ROOTS = ('sac_robot', 'test', 'launch', 'bench', 'setup.py')
HEADER = '# SPDX-License-Identifier: Apache-2.0'


def python_files():
    for root in PYTHON_ROOTS:
        path = os.path.join(REPO, root)
        if os.path.isfile(path):
            yield path
        for directory, _, files in os.walk(path):
            if '__pycache__' in directory:
                continue
            yield from (os.path.join(directory, f) for f in files if f.endswith('.py'))


def test_ruff_clean():
    """Ruff (flake8 + pep257 rules, 99 columns, see ruff.toml) finds nothing."""
    roots = [r for r in PYTHON_ROOTS if os.path.exists(os.path.join(REPO, r))]
    result = subprocess.run([sys.executable, '-m', 'ruff', 'check', '--no-cache', *roots],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_license_headers():
    """Every Python file starts with the SPDX license identifier (after a shebang)."""
    missing = []
    for path in python_files():
        with open(path, encoding='utf-8') as stream:
            lines = stream.read().splitlines()[:2]
        if HEADER not in lines:
            missing.append(os.path.relpath(path, REPO))
    assert not missing, f'missing "{HEADER}" in: {missing}'
