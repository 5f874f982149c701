# SPDX-License-Identifier: Apache-2.0
"""Robot backends: what a driver runs a robot through, simulated or real.

A backend is to the driver what a ros2_control ``SystemInterface`` is to the controller
manager (:mod:`sac_robot.backends.interface`). Vendor SDKs (dynamixel-sdk, OpenCV) are
imported inside the backends that use them, never here.
"""

import importlib

#: Backend name -> robot -> ``module:class``, imported only when chosen (a real hand's driver
#: never loads MuJoCo, a simulation never loads a vendor SDK). A new backend is a line here.
BACKENDS = {
    'mujoco': {'minitaur': 'sac_robot.backends.mujoco:MujocoMinitaur',
               'dclaw': 'sac_robot.backends.mujoco:MujocoDClaw'},
    'dynamixel': {'dclaw': 'sac_robot.backends.dynamixel:DClawDynamixel'},
    # A running ros2_control stack's topics and a motion-capture driver, through the driver's
    # node.
    'ros2_control': {'minitaur': 'sac_robot.backends.ros2_control:Ros2ControlBackend'},
}


def backend_class(name: str, robot: str):
    """The backend class ``name`` of ``robot``; a ``ValueError`` names what exists."""
    if name not in BACKENDS:
        raise ValueError(f'unknown backend {name!r}; known: {", ".join(BACKENDS)}')
    if robot not in BACKENDS[name]:
        able = [b for b, robots in BACKENDS.items() if robot in robots]
        raise ValueError(f'backend {name!r} drives no {robot!r} (it drives '
                         f'{", ".join(BACKENDS[name])}); the {robot} runs on: '
                         f'{", ".join(able) or "nothing"}')
    module, cls = BACKENDS[name][robot].split(':')
    return getattr(importlib.import_module(module), cls)
