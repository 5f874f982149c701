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


# A process driving the real hand, or a policy, loads no MuJoCo and looks for no GL backend.
NO_MUJOCO = r"""
import os, sys
sys.modules['mujoco'] = None
os.environ.pop('MUJOCO_GL', None)
import sac_robot
from sac_robot.backends import dynamixel, emulator, interface, protocol2
from sac_robot.robots.description import ROBOTS
import sac_robot.tasks.dclaw, sac_robot.tasks.minitaur
from sac_robot.nodes.robots import profile
for robot in ROBOTS:
    profile(robot).hold_command()
backend = dynamixel.DClawDynamixel()
# The driver node on the hand's servos, up to its port (absent here: a clear error).
import rclpy
from rclpy.parameter import Parameter
from sac_robot.backends import backend_class
from sac_robot.nodes.driver import Driver
from sac_robot.nodes.policy import PolicyNode
assert backend_class('dynamixel', 'dclaw') is dynamixel.DClawDynamixel
rclpy.init()
try:
    Driver(namespace='/dclaw', parameter_overrides=[
        Parameter('robot', value='dclaw'), Parameter('backend', value='dynamixel'),
        Parameter('clock', value='realtime'), Parameter('dynamixel.port', value='/dev/nothere')])
except interface.BackendError as error:
    assert '/dev/nothere' in str(error), error
else:
    raise SystemExit('no port, yet a driver')
rclpy.shutdown()
assert 'MUJOCO_GL' not in os.environ, os.environ['MUJOCO_GL']
try:
    from sac_robot.robots.dclaw import DClawSim
    DClawSim()
except ImportError:
    pass
else:
    raise SystemExit('mujoco blocker did not work')
print('ok')
"""


def test_hardware_and_policy_code_runs_without_mujoco(tmp_path):
    # (Out of the source tree, whose sac_robot/ has no generated messages.)
    result = subprocess.run([sys.executable, '-c', NO_MUJOCO], capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'ok'
