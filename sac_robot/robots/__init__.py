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


def import_mujoco():
    """Import MuJoCo for a simulation, choosing an offscreen GL backend first.

    MuJoCo reads ``MUJOCO_GL`` once, when first imported (see :mod:`rendering`). Only the
    simulations call this, when one is made: a process that drives real hardware (a Dynamixel
    backend, a policy) never loads MuJoCo or looks for GL.
    """
    from sac_robot.robots.rendering import RenderingError, configure_gl
    try:
        configure_gl()
    except RenderingError:  # rendering then raises a clear error when it is asked for
        pass
    import mujoco
    return mujoco
