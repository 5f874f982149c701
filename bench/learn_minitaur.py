# SPDX-License-Identifier: Apache-2.0
"""SAC learning the simulated Minitaur to walk, with the paper's defaults.

Trains in chunks of ``--eval-every`` steps (``sac-robot train`` resumed each time) and after
each chunk runs ``--episodes`` evaluation episodes of 500 steps (5 s) with the mean action,
measuring the forward speed (distance along x over the episode's duration, from the
motion-capture marker) and whether the robot fell. Goal: >= 0.3 m/s over a 500-step episode
without falling, within 100k steps (the paper needed 160k on the real robot). Writes
``learn_minitaur.png`` and ``curve.csv`` into ``--out``.

    .venv/bin/python bench/learn_minitaur.py [--steps 100000]

The last line is ``steps_to_0.3_m_per_s: N`` (or ``not reached``).
"""

import argparse
import csv
import os
import time

import gymnasium
import numpy as np

from sac_robot.algorithms.checkpoint import load_checkpoint
from sac_robot.algorithms.observations import spec_from_space
from sac_robot.training import RunConfig, build_agent, make_env, train

ENV_ID = 'sac_robot/MinitaurWalk-v0'
GOAL_SPEED = 0.3


def walk(agent, episodes: int, seed: int) -> dict:
    """Mean action for ``episodes`` episodes: speeds (m/s), falls, returns."""
    env = make_env(ENV_ID, seed)
    speeds, falls, returns = [], [], []
    for episode in range(episodes):
        obs, info = env.reset(seed=seed + episode)
        start, steps, total, done = info['position'][0], 0, 0.0, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(agent.act(obs, True))
            steps, total = steps + 1, total + reward
            done = terminated or truncated
        speeds.append((info['position'][0] - start) / (steps * env.unwrapped.control_dt))
        falls.append(bool(terminated))
        returns.append(total)
    env.close()
    return {'speed': np.array(speeds), 'fell': np.array(falls), 'return': np.array(returns)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--steps', type=int, default=100_000)
    parser.add_argument('--eval-every', type=int, default=10_000)
    parser.add_argument('--episodes', type=int, default=5)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default=os.path.join('bench', 'out', 'learn_minitaur'))
    args = parser.parse_args()
    probe = gymnasium.make(ENV_ID)
    spec, action_dim = spec_from_space(probe.observation_space), probe.action_space.shape[0]
    probe.close()
    settings = {'learning_starts': 5_000}
    curve, start, reached = [], time.monotonic(), None
    for steps in range(args.eval_every, args.steps + 1, args.eval_every):
        train(RunConfig(env=ENV_ID, steps=steps, out=args.out, seed=args.seed, eval_every=0,
                        checkpoint_every=0, resume=steps > args.eval_every, progress=False),
              dict(settings))
        agent = build_agent('sac', spec, action_dim, dict(settings), args.seed)
        load_checkpoint(os.path.join(args.out, 'checkpoint'), agent, load_replay=False)
        result = walk(agent, args.episodes, 10_000 + steps)
        walked = (result['speed'] >= GOAL_SPEED) & ~result['fell']
        curve.append((steps, result['speed'].mean(), result['speed'].min(),
                      result['fell'].mean(), result['return'].mean(), walked.all()))
        print(f'{steps:7d} steps: speed {result["speed"].mean():5.2f} m/s '
              f'(min {result["speed"].min():5.2f}), fell {result["fell"].sum()}/{args.episodes}, '
              f'return {result["return"].mean():7.1f}, {time.monotonic() - start:6.0f} s',
              flush=True)
        if reached is None and walked.all():
            reached = steps

    with open(os.path.join(args.out, 'curve.csv'), 'w', newline='') as stream:
        writer = csv.writer(stream)
        writer.writerow(['steps', 'mean_speed', 'min_speed', 'fall_rate', 'mean_return',
                         'all_walked'])
        writer.writerows(curve)
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    data = np.array(curve, dtype=float)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(data[:, 0], data[:, 1], '-o', label='mean')
    left.plot(data[:, 0], data[:, 2], '--', label='slowest episode')
    left.axhline(GOAL_SPEED, color='gray', ls='--', lw=1)
    left.set(xlabel='environment steps', ylabel='forward speed (m/s)', title=f'SAC on {ENV_ID}')
    left.legend()
    right.plot(data[:, 0], data[:, 4], '-o')
    right.set(xlabel='environment steps', ylabel='evaluation return')
    figure.tight_layout()
    figure.savefig(os.path.join(args.out, 'learn_minitaur.png'), dpi=100)
    print(f'{time.monotonic() - start:.0f} s in all; figure {args.out}/learn_minitaur.png')
    print(f'steps_to_0.3_m_per_s: {reached if reached else "not reached"}')


if __name__ == '__main__':
    main()
