# SPDX-License-Identifier: Apache-2.0
"""Tasks as gymnasium environments, registered under the ``sac_robot/`` namespace."""

import gymnasium

from sac_robot.robots.description import DCLAW, MINITAUR

gymnasium.register(
    id='sac_robot/MultiGoal-v0', entry_point='sac_robot.tasks.multigoal:MultiGoalEnv',
    max_episode_steps=20)
gymnasium.register(
    id='sac_robot/DClawTurn-v0', entry_point='sac_robot.tasks.dclaw:DClawTurnEnv',
    max_episode_steps=DCLAW.max_episode_steps)
gymnasium.register(
    id='sac_robot/DClawTurnPixels-v0', entry_point='sac_robot.tasks.dclaw:DClawTurnEnv',
    max_episode_steps=DCLAW.max_episode_steps, kwargs={'pixels': True})
# The Minitaur's control step is little physics (five 2 ms steps of a small model), so
# gymnasium's PassiveEnvChecker wrapper would be a noticeable part of it: it is left out, and
# the tests run the full gymnasium.utils.env_checker.check_env.
gymnasium.register(
    id='sac_robot/MinitaurWalk-v0', entry_point='sac_robot.tasks.minitaur:MinitaurWalkEnv',
    max_episode_steps=MINITAUR.max_episode_steps, disable_env_checker=True)
# The SQL paper's pretraining task (Section 5.3): the same robot and observations, rewarded
# for speed in any direction; a policy learned here is fine-tuned on MinitaurWalk-v0.
gymnasium.register(
    id='sac_robot/MinitaurPretrain-v0', entry_point='sac_robot.tasks.minitaur:MinitaurWalkEnv',
    max_episode_steps=MINITAUR.max_episode_steps, disable_env_checker=True,
    kwargs={'pretraining': True})
