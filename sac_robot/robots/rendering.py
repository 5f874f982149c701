# SPDX-License-Identifier: Apache-2.0
"""Offscreen rendering on machines without a display or a GPU.

MuJoCo picks its GL backend from ``MUJOCO_GL`` when it is first imported. Unless the user set
it, :func:`configure_gl` chooses EGL (Mesa's software rasterizer works without a display), then
OSMesa, and says which Debian package is missing when neither can be loaded.
"""

import ctypes.util
import os

BACKENDS = (('egl', 'EGL', 'libegl1 libegl-mesa0 libgl1-mesa-dri'),
            ('osmesa', 'OSMesa', 'libosmesa6'))


class RenderingError(RuntimeError):
    """No offscreen GL backend can be loaded on this machine."""


def configure_gl() -> str:
    """Set ``MUJOCO_GL`` (unless set) to a backend whose library loads; return it."""
    if os.environ.get('MUJOCO_GL'):
        return os.environ['MUJOCO_GL']
    for backend, library, _ in BACKENDS:
        if ctypes.util.find_library(library):
            os.environ['MUJOCO_GL'] = backend
            if backend == 'osmesa':
                os.environ.setdefault('PYOPENGL_PLATFORM', 'osmesa')
            return backend
    packages = ' or '.join(p for _, _, p in BACKENDS)
    raise RenderingError(
        'offscreen rendering needs EGL or OSMesa; install the Debian packages '
        f'{packages} (apt-get install ...), or set MUJOCO_GL')


def make_renderer(model, height: int, width: int):
    """Return a ``mujoco.Renderer``, with a clear error when no GL backend works."""
    backend = configure_gl()
    import mujoco
    try:
        return mujoco.Renderer(model, height, width)
    except Exception as error:  # GL context creation failed: name the backend and the fix
        raise RenderingError(
            f'MuJoCo could not create an offscreen GL context ({error}). MUJOCO_GL is '
            f'{backend!r}; MuJoCo reads it when first imported, so if mujoco was imported '
            'before sac_robot.robots, export MUJOCO_GL=egl (or osmesa) before Python starts. '
            f'Otherwise install {({b: p for b, _, p in BACKENDS}).get(backend, "Mesa")}.'
        ) from error
