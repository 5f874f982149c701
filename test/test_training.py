# SPDX-License-Identifier: Apache-2.0
"""Training without ROS: SAC learns a small task; the command writes its outputs and resumes."""

import csv
import json
import os
import subprocess
import sys

import gymnasium
import numpy as np
import pytest

from sac_robot.tasks.multigoal import GOALS, MultiGoalEnv, multigoal_reward
from sac_robot.training import RunConfig, evaluate, make_env, train

SAC_ROBOT = os.path.join(os.path.dirname(sys.executable), 'sac-robot')


class RandomAgent:
    def __init__(self, env):
        self.space = env.action_space

    def act(self, obs, deterministic=False):
        return self.space.sample()


def test_multigoal_env_conforms_and_rewards_by_hand():
    from gymnasium.utils.env_checker import check_env
    env = gymnasium.make('sac_robot/MultiGoal-v0')
    check_env(env.unwrapped)
    terms = multigoal_reward(np.array([4.0, 0.5]), np.array([0.5, -0.5]))
    assert terms['distance'] == pytest.approx(-(1.0 + 0.25))
    assert terms['action'] == pytest.approx(-30 * 0.5)
    # Batched: one row per position.
    batch = multigoal_reward(GOALS, np.zeros((4, 2)))
    assert np.all(batch['distance'] == 0)
    raw = MultiGoalEnv()
    raw.reset(seed=0)
    raw.position = np.array([4.5, 0.0])
    _, reward, terminated, truncated, info = raw.step(np.array([0.3, 0.0]))
    assert terminated and not truncated and info['goal'] == 0
    assert reward == pytest.approx(-(0.2 ** 2) - 30 * 0.09 + 10.0)


def test_sac_learns_multigoal(tmp_path):
    """A short SAC run reaches a goal: far better than acting at random."""
    run = RunConfig(env='sac_robot/MultiGoal-v0', algo='sac', steps=4000, out=str(tmp_path),
                    eval_every=0, checkpoint_every=0, progress=False, seed=0)
    final = train(run, {'hidden': (64, 64), 'learning_starts': 500, 'batch_size': 128})
    env = make_env(run.env, 1)
    random_return = evaluate(RandomAgent(env), env, 20)['eval/return']
    from sac_robot.algorithms.checkpoint import load_checkpoint
    from sac_robot.algorithms.sac import SAC, SACConfig
    agent = SAC(2, 2, SACConfig(hidden=(64, 64)))
    load_checkpoint(os.path.join(run.out, 'checkpoint'), agent, load_replay=False)
    learned = evaluate(agent, env, 20)['eval/return']
    assert final['gradient_steps'] == 3500
    assert learned > random_return + 300, (learned, random_return)
    assert learned > -250, learned  # reaches a goal; standing still scores -500


def test_train_command_outputs_and_resume(tmp_path):
    out = str(tmp_path / 'run')
    common = [SAC_ROBOT, 'train', '--env', 'Pendulum-v1', '--out', out, '--eval-every', '100',
              '--eval-episodes', '1', '--checkpoint-every', '200', '--no-progress',
              '--set', 'learning_starts=100', '--set', 'hidden=[32, 32]',
              '--set', 'batch_size=32']
    first = subprocess.run(common + ['--steps', '300'], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    for name in ('progress.csv', 'learning_curve.png', 'config.json', 'final.json',
                 'checkpoint/agent.safetensors', 'checkpoint/replay.safetensors'):
        assert os.path.isfile(os.path.join(out, name)), name
    assert json.load(open(os.path.join(out, 'final.json')))['gradient_steps'] == 200

    second = subprocess.run(common + ['--steps', '500', '--resume'], capture_output=True,
                            text=True)
    assert second.returncode == 0, second.stderr
    assert 'resumed from' in second.stderr
    final = json.load(open(os.path.join(out, 'final.json')))
    assert final['gradient_steps'] == 400 and final['env_steps'] == 500
    rows = list(csv.DictReader(open(os.path.join(out, 'progress.csv'))))
    evaluated = [int(r['env_steps']) for r in rows if r['eval/return']]
    assert evaluated == [100, 200, 300, 400, 500]

    # TensorBoard holds what the CSV does, over both runs (tensorboard --logdir OUT).
    from sac_robot import scalars
    board = scalars.read(os.path.join(out, 'tb'))
    assert [step for step, _ in board['eval/return']] == evaluated
    np.testing.assert_allclose([v for _, v in board['eval/return']],
                               [float(r['eval/return']) for r in rows if r['eval/return']],
                               rtol=1e-6)
    ended = [(int(r['env_steps']), float(r['episode_return'])) for r in rows
             if r['episode_return'] and not r['eval/return']]
    # (the resumed run begins an episode at its step 301)
    assert [step for step, _ in board['rollout/episode_return']] == [200, 500]
    assert [step for step, _ in ended] == [200, 500]
    np.testing.assert_allclose([v for _, v in board['rollout/episode_return']],
                               [v for _, v in ended], rtol=1e-6)
    assert [v for _, v in board['rollout/episode_length']] == [200, 200]
    for tag in ('train/loss_critic', 'train/loss_actor', 'train/alpha', 'time/steps_per_second',
                'time/updates_per_second'):
        expected = [200, 300, 400, 500] if tag.startswith('train') else evaluated  # (updates
        assert [step for step, _ in board[tag]] == expected, tag  # from step 101 on)


def test_train_command_rejects_bad_settings(tmp_path):
    result = subprocess.run([SAC_ROBOT, 'train', '--steps', '10', '--out', str(tmp_path),
                             '--set', 'learning_rate=1'], capture_output=True, text=True)
    assert result.returncode == 2
    assert 'unknown sac setting(s) learning_rate' in result.stderr
    result = subprocess.run([SAC_ROBOT, 'train', '--steps', '10', '--out', str(tmp_path),
                             '--env-arg', 'framez=3'], capture_output=True, text=True)
    assert result.returncode == 2
    assert "Pendulum-v1 does not take the arguments {'framez': 3}" in result.stderr


def test_train_command_passes_env_args(tmp_path):
    result = subprocess.run([SAC_ROBOT, 'train', '--steps', '120', '--out', str(tmp_path),
                             '--env-arg', 'g=3.5', '--eval-every', '0', '--no-progress',
                             '--set', 'learning_starts=100', '--set', 'hidden=[16]',
                             '--set', 'batch_size=16'], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    config = json.load(open(tmp_path / 'config.json'))
    assert config['run']['env_args'] == {'g': 3.5}
    env = make_env('Pendulum-v1', 0, config['run']['env_args'])
    assert env.unwrapped.g == 3.5


def test_final_counts_are_totals_when_evaluation_does_not_divide_the_run(tmp_path):
    final = train(RunConfig(env='Pendulum-v1', steps=250, out=str(tmp_path), eval_every=100,
                            eval_episodes=1, checkpoint_every=0, progress=False),
                  {'learning_starts': 100, 'hidden': (16,), 'batch_size': 16})
    assert final['env_steps'] == 250 and final['gradient_steps'] == 150
    assert final['episodes'] == 1  # Pendulum truncates at 200 steps; the last eval was at 200


def test_pretrain_then_fine_tune_from_its_checkpoint(tmp_path):
    """sac-robot pretrain writes an agent; train --init starts from it, SQL on its schedule."""
    import torch

    from sac_robot.algorithms.checkpoint import load_checkpoint
    from sac_robot.algorithms.sql import SQL, FineTuneSchedule, SQLConfig
    pretrained = str(tmp_path / 'pretrain')
    small = ['--set', 'learning_starts=50', '--set', 'hidden=[16, 16]', '--set', 'batch_size=16',
             '--set', 'value_particles=4', '--set', 'kernel_particles=4', '--no-progress',
             '--eval-every', '0']
    first = subprocess.run([SAC_ROBOT, 'pretrain', '--steps', '80', '--out', pretrained,
                            *small], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    config = json.load(open(os.path.join(pretrained, 'config.json')))
    assert config['run']['env'] == 'sac_robot/MinitaurPretrain-v0'
    assert config['run']['algo'] == 'sql'
    checkpoint = os.path.join(pretrained, 'checkpoint')

    out = str(tmp_path / 'finetune')
    second = subprocess.run([SAC_ROBOT, 'train', '--env', 'sac_robot/MinitaurWalk-v0',
                             '--algo', 'sql', '--steps', '40', '--out', out, '--init', checkpoint,
                             '--finetune-epochs', '1', *small], capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert f'starting from the sql agent of {checkpoint} (80 steps' in second.stderr
    final = json.load(open(os.path.join(out, 'final.json')))
    assert final['env_steps'] == 40 and final['gradient_steps'] == 0  # (no update before 50)
    # The fine-tuned run began from the pretrained networks: before any update, they are equal.
    agents = []
    for directory in (checkpoint, os.path.join(out, 'checkpoint')):
        agent = SQL(12 * 6 + 8 * 5, 8, SQLConfig(hidden=(16, 16), value_particles=4,
                                               kernel_particles=4))
        load_checkpoint(directory, agent, load_replay=False)
        agents.append(agent)
    for a, b in zip(agents[0].sampler.parameters(), agents[1].sampler.parameters()):
        assert torch.equal(a, b)
    # With updates: the schedule sets alpha (1.0 annealed towards 1e-3 over 1000 steps).
    longer = subprocess.run([SAC_ROBOT, 'train', '--env', 'sac_robot/MinitaurWalk-v0', '--algo',
                             'sql', '--steps', '120', '--out', str(tmp_path / 'longer'),
                             '--init', checkpoint, '--finetune-epochs', '1', *small,
                             '--eval-every', '120', '--eval-episodes', '1'],
                            capture_output=True, text=True)
    assert longer.returncode == 0, longer.stderr
    rows = list(csv.DictReader(open(tmp_path / 'longer' / 'progress.csv')))
    alphas = [float(r['alpha']) for r in rows if r['alpha']]
    schedule = FineTuneSchedule(initial_alpha=1.0, final_alpha=1e-3, epochs=1)
    assert alphas and alphas[-1] == pytest.approx(schedule.alpha(119 / 1000), rel=1e-6)
    # The schedule needs a pretrained SQL agent.
    refused = subprocess.run([SAC_ROBOT, 'train', '--steps', '10', '--out', str(tmp_path / 'x'),
                              '--finetune-epochs', '2', '--no-progress'], capture_output=True,
                             text=True)
    assert refused.returncode == 2 and 'needs algo sql and init' in refused.stderr
