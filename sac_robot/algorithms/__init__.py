# SPDX-License-Identifier: Apache-2.0
"""Soft Actor-Critic and Soft Q-Learning, with their networks, replay buffer and checkpoints.

Plain PyTorch, no ROS: usable from a script, a notebook or the trainer node.
"""

import importlib

_EXPORTS = {'Batch': 'replay', 'ReplayBuffer': 'replay', 'SAC': 'sac', 'SACConfig': 'sac',
            'SQL': 'sql', 'SQLConfig': 'sql'}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    # Imported on first use, so that the torch-free modules (observations, used by the robot-side
    # nodes' message conversions) do not bring torch into processes that never learn.
    if name in _EXPORTS:
        return getattr(importlib.import_module(f'sac_robot.algorithms.{_EXPORTS[name]}'), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
