# SPDX-License-Identifier: Apache-2.0
"""Soft Actor-Critic and Soft Q-Learning, with their networks, replay buffer and checkpoints.

Plain PyTorch, no ROS: usable from a script, a notebook or the trainer node.
"""

from sac_robot.algorithms.replay import Batch, ReplayBuffer
from sac_robot.algorithms.sac import SAC, SACConfig
from sac_robot.algorithms.sql import SQL, SQLConfig

__all__ = ['Batch', 'ReplayBuffer', 'SAC', 'SACConfig', 'SQL', 'SQLConfig']
