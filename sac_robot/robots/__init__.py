# SPDX-License-Identifier: Apache-2.0
"""Robots: MuJoCo models (MJCF as package data) and their named accessors, apart from tasks.

A robot class exposes what the hardware would measure (joint angles and velocities, the valve
encoder, motion capture) and takes what the hardware would take (joint position targets); the
tasks in :mod:`sac_robot.tasks` build observations and rewards from those, so a hardware
backend implementing the same interface runs the same task code.
"""

import os

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'assets')


def asset_path(*parts: str) -> str:
    """Return the path of a model file shipped with the package."""
    path = os.path.join(ASSETS, *parts)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'no model file {path}')
    return path
