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


def test_a_script_in_the_checkout_imports_the_generated_interfaces():
    """From the repository root the source tree's sac_robot/ comes first on sys.path.

    It lacks the generated messages and services (they are built into the installed
    package); a user's script there must still import them, and type-support with them.
    """
    import subprocess
    script = ('import rclpy.serialization, sac_robot, sac_robot.msg, sac_robot.srv\n'
              'from sac_robot.msg import EpisodeEvent\n'
              'from sac_robot.srv import Reset\n'
              'data = rclpy.serialization.serialize_message(EpisodeEvent(steps=7))\n'
              'back = rclpy.serialization.deserialize_message(data, EpisodeEvent)\n'
              'print(sac_robot.__file__, back.steps, Reset.Request(seed=3).seed)')
    result = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    path, steps, seed = result.stdout.split()
    assert path == os.path.join(REPO, 'sac_robot', '__init__.py')  # the checkout's
    assert (steps, seed) == ('7', '3')



def test_the_activated_venv_is_where_ros2_run_finds_every_node():
    """``source .venv/bin/activate`` puts the venv on AMENT_PREFIX_PATH (make setup adds it).

    ``ros2 run`` and ``ros2 launch`` look a package up in the ament index there and run
    ``<prefix>/lib/<package>/<executable>``: each node's executable must be found so.
    """
    import shlex
    import subprocess
    activate = os.path.join(sys.prefix, 'bin', 'activate')
    script = ('import os\n'
              'from ament_index_python.packages import get_package_prefix\n'
              'from sac_robot import entry_points\n'
              'prefix = get_package_prefix("sac_robot")\n'
              'found = [n for n in entry_points.NODES\n'
              '         if os.access(os.path.join(prefix, "lib", "sac_robot", n), os.X_OK)]\n'
              'print(prefix, len(found))')
    env = {k: v for k, v in os.environ.items() if k not in ('AMENT_PREFIX_PATH', 'VIRTUAL_ENV')}
    result = subprocess.run(
        ['bash', '-c', f'source {shlex.quote(activate)} && python -c {shlex.quote(script)}'],
        env=env, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    prefix, found = result.stdout.split()
    assert os.path.realpath(prefix) == os.path.realpath(sys.prefix)
    assert int(found) == len(entry_points.NODES)
