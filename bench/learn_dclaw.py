# SPDX-License-Identifier: Apache-2.0
"""SAC learning the simulated D'Claw valve turning, with the paper's defaults.

Trains in chunks of ``--eval-every`` steps (``sac-robot train`` resumed each time) and after
each chunk runs ``--episodes`` evaluation episodes with the mean action, counting an episode a
success when the valve ends within 0.1 rad of the target. Goal (from state): >= 90 % success
within 50k steps. Writes ``learn_dclaw.png`` into ``--out``.

    .venv/bin/python bench/learn_dclaw.py [--steps 50000] [--pixels]

The last line is ``steps_to_90pct_success: N`` (or ``not reached``).
"""

import argparse
import os
import time

import gymnasium
import numpy as np

from sac_robot.algorithms.checkpoint import load_checkpoint
from sac_robot.algorithms.observations import spec_from_space
from sac_robot.training import RunConfig, build_agent, make_env, train


def success_rate(agent, env_id: str, episodes: int, seed: int) -> tuple:
    env = make_env(env_id, seed)
    successes, returns = [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done, total, info = False, 0.0, {}
        while not done:
            obs, reward, terminated, truncated, info = env.step(agent.act(obs, True))
            total += reward
            done = terminated or truncated
        successes.append(info['success'])
        returns.append(total)
    env.close()
    return float(np.mean(successes)), float(np.mean(returns))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--steps', type=int, default=50_000)
    parser.add_argument('--eval-every', type=int, default=5_000)
    parser.add_argument('--episodes', type=int, default=20)
    parser.add_argument('--pixels', action='store_true', help='learn from 32 x 32 images')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default=None)
    args = parser.parse_args()
    env_id = 'sac_robot/DClawTurnPixels-v0' if args.pixels else 'sac_robot/DClawTurn-v0'
    out = args.out or os.path.join('bench', 'out', 'learn_dclaw' + ('_pixels' * args.pixels))
    probe = gymnasium.make(env_id)
    spec, action_dim = spec_from_space(probe.observation_space), probe.action_space.shape[0]
    probe.close()
    settings = {'learning_starts': 1_000}
    curve, start, reached = [], time.monotonic(), None
    for steps in range(args.eval_every, args.steps + 1, args.eval_every):
        train(RunConfig(env=env_id, steps=steps, out=out, seed=args.seed, eval_every=0,
                        checkpoint_every=0, resume=steps > args.eval_every, progress=False),
              dict(settings))
        agent = build_agent('sac', spec, action_dim, dict(settings), args.seed)
        load_checkpoint(os.path.join(out, 'checkpoint'), agent, load_replay=False)
        rate, mean_return = success_rate(agent, env_id, args.episodes, 10_000 + steps)
        curve.append((steps, rate, mean_return))
        print(f'{steps:7d} steps: success {rate:4.0%}, return {mean_return:8.1f}, '
              f'{time.monotonic() - start:6.0f} s', flush=True)
        if reached is None and rate >= 0.9:
            reached = steps

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    data = np.array(curve)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(data[:, 0], 100 * data[:, 1], '-o')
    left.axhline(90, color='gray', ls='--', lw=1)
    left.set(xlabel='environment steps', ylabel='success (%)', ylim=(-5, 105),
             title=f'SAC on {env_id}')
    right.plot(data[:, 0], data[:, 2], '-o')
    right.set(xlabel='environment steps', ylabel='evaluation return')
    figure.tight_layout()
    figure.savefig(os.path.join(out, 'learn_dclaw.png'), dpi=100)
    print(f'{time.monotonic() - start:.0f} s in all; figure {out}/learn_dclaw.png')
    print(f'steps_to_90pct_success: {reached if reached else "not reached"}')


if __name__ == '__main__':
    main()
