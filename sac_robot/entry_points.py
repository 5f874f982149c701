# SPDX-License-Identifier: Apache-2.0
"""The one list of executables, shared by ``setup.py`` and ``CMakeLists.txt``.

``setup.py`` turns it into ``console_scripts``; CMake runs this file at configure time to write
one small launcher script per node into ``lib/sac_robot`` (where ``ros2 run`` and
``ros2 launch`` look for executables) and one per command into ``bin``. Add an entry here and
both builds pick it up.

This module must stay importable without the package's dependencies (it is run by path).
"""

import os
import stat
import sys

#: Node executables, ``name -> "module:function"``, installed into ``lib/sac_robot``.
NODES = {
    'camera': 'sac_robot.nodes.camera:main',
    'collector': 'sac_robot.nodes.collector:main',
    'container': 'sac_robot.nodes.container:main',
    'driver': 'sac_robot.nodes.driver:main',
    'policy': 'sac_robot.nodes.policy:main',
    'recorder': 'sac_robot.nodes.recorder:main',
    'reward_estimator': 'sac_robot.nodes.reward_estimator:main',
    'robot_state': 'sac_robot.nodes.robot_state:main',
    'safety': 'sac_robot.nodes.safety:main',
    'status_monitor': 'sac_robot.nodes.status_monitor:main',
    'trainer': 'sac_robot.nodes.trainer:main',
}

#: Command-line tools, installed into ``bin/``.
COMMANDS = {
    'sac-robot': 'sac_robot.cli:main',
}


def console_scripts():
    """Return the ``console_scripts`` entry points for setuptools."""
    return [f'{name} = {target}' for name, target in {**COMMANDS, **NODES}.items()]


def _write_script(path, target, python):
    module, function = target.split(':')
    with open(path, 'w', encoding='utf-8') as script:
        script.write(
            f'#!{python}\n'
            f'"""Run {target} (written by sac_robot/entry_points.py)."""\n'
            'import sys\n\n'
            f'from {module} import {function}\n\n'
            "if __name__ == '__main__':\n"
            f'    sys.exit({function}())\n')
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def write_scripts(directory, python=sys.executable):
    """Write launcher scripts: nodes into ``directory/lib``, commands into ``directory/bin``."""
    for subdir, table in (('lib', NODES), ('bin', COMMANDS)):
        os.makedirs(os.path.join(directory, subdir), exist_ok=True)
        for name, target in sorted(table.items()):
            _write_script(os.path.join(directory, subdir, name), target, python)


if __name__ == '__main__':
    # CMake: python entry_points.py <output directory> [<python interpreter for the shebang>]
    write_scripts(*sys.argv[1:3])
