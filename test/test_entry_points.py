# SPDX-License-Identifier: Apache-2.0
"""One list of executables serves setup.py and CMake, and every entry resolves."""

import importlib
import os
import runpy
import sys

from conftest import REPO

from sac_robot import entry_points


def test_every_entry_point_is_a_callable():
    for name, target in {**entry_points.NODES, **entry_points.COMMANDS}.items():
        module, function = target.split(':')
        assert callable(getattr(importlib.import_module(module), function)), name


def test_cmake_installed_every_executable():
    """``lib/sac_robot/<node>`` (for ros2 run) and ``bin/<command>`` exist in the venv."""
    for name in entry_points.NODES:
        path = os.path.join(sys.prefix, 'lib', 'sac_robot', name)
        assert os.access(path, os.X_OK), path
        with open(path) as stream:
            assert entry_points.NODES[name].split(':')[0] in stream.read()
    for name in entry_points.COMMANDS:
        assert os.access(os.path.join(sys.prefix, 'bin', name), os.X_OK), name


def test_setup_py_uses_the_same_list():
    namespace = runpy.run_path(os.path.join(REPO, 'sac_robot', 'entry_points.py'))
    scripts = namespace['console_scripts']()
    assert sorted(s.split(' = ')[0] for s in scripts) == sorted(
        {**entry_points.NODES, **entry_points.COMMANDS})
    with open(os.path.join(REPO, 'setup.py')) as stream:
        assert "entry_points['console_scripts']()" in stream.read()


def test_write_scripts(tmp_path):
    entry_points.write_scripts(str(tmp_path), python='/usr/bin/python3')
    script = (tmp_path / 'lib' / 'status_monitor').read_text()
    assert script.startswith('#!/usr/bin/python3\n')
    assert 'from sac_robot.nodes.status_monitor import main' in script
    assert os.access(tmp_path / 'bin' / 'sac-robot', os.X_OK)
