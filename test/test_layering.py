# SPDX-License-Identifier: Apache-2.0
"""Only the node layer imports rclpy: the core and bringup run in a process without ROS."""

import subprocess
import sys

# Imports every module of sac_robot outside the ROS layer with rclpy made unimportable, and
# checks that the blocker works by failing to import a node module.
SCRIPT = r"""
import importlib, pkgutil, sys
sys.modules['rclpy'] = None
import sac_robot
ros_layer = ('sac_robot.nodes', 'sac_robot.msg', 'sac_robot.srv')
imported = []
for info in pkgutil.walk_packages(sac_robot.__path__, 'sac_robot.'):
    if info.name.startswith(ros_layer):
        continue
    importlib.import_module(info.name)
    imported.append(info.name)
try:
    importlib.import_module('sac_robot.nodes.status_monitor')
except ImportError:
    pass
else:
    raise SystemExit('rclpy blocker did not work')
print('\n'.join(imported))
"""


def test_core_modules_import_without_rclpy():
    result = subprocess.run([sys.executable, '-c', SCRIPT], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    imported = result.stdout.split()
    assert 'sac_robot.bringup.launcher' in imported
    assert 'sac_robot.cli' in imported
