# SPDX-License-Identifier: Apache-2.0
"""In-process SAC on the Minitaur with the graph's two delays, to explain bench/learn_graph.py.

The graph learns like in-process SAC up to ~10k steps and then falls behind (learn_graph.py,
three seeds). It differs from in-process training in two delays, both kept here one at a time
or together, in one process and otherwise as ``sac_robot.training.train`` does it:

- ``episode``: the trainer gets an episode's transitions only when the episode has ended (the
  collector sends an episode once its END is known), so updates sample only finished episodes;
- ``weights``: the policy acts with weights refreshed every ``publish_every`` updates (the
  trainer publishes versioned weights, 100 updates apart by default) instead of the newest.

    .venv/bin/python bench/learn_delays.py [--steps 30000] [--seeds 1 2]
        [--delays none episode weights both]

Prints the mean training return over the 5k steps before each 10k mark per variant and seed,
and the final deterministic speed. The last line is ``both_vs_none_return_at_end: X`` (the
ratio of the last window's mean returns over the seeds).
"""

import argparse
import copy
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from learn_minitaur import walk  # noqa: E402

LEARNING_STARTS = 5000


def run(seed: int, steps: int, delays: str, publish_every: int = 100) -> dict:
    """One training run; its (step, return) per episode and the final policy's speed."""
    import gymnasium
    import torch

    import sac_robot  # noqa: F401  (registers the tasks)
    from sac_robot.algorithms.replay import ReplayBuffer
    from sac_robot.training import build_agent
    torch.set_num_threads(1)
    env = gymnasium.make('sac_robot/MinitaurWalk-v0')
    env.action_space.seed(seed)
    agent = build_agent('sac', 112, 8, {'learning_starts': LEARNING_STARTS}, seed)
    buffer = ReplayBuffer(112, 8, steps, seed=seed)
    by_episode = delays in ('episode', 'both')
    stale = delays in ('weights', 'both')
    acting = agent.actor  # the weights the policy acts with
    pending, returns, episode_return = [], [], 0.0
    obs, _ = env.reset(seed=seed)
    for step in range(1, steps + 1):
        if step <= LEARNING_STARTS:
            action = env.action_space.sample()
        else:
            with torch.no_grad():
                tensor = torch.as_tensor(obs, dtype=torch.float32)[None]
                action = acting(tensor, False, agent.generator)[0][0].numpy()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        transition = (obs, action, reward, next_obs, terminated, truncated)
        if by_episode:
            pending.append(transition)
        else:
            buffer.add(*transition)
        episode_return += float(reward)
        obs = next_obs
        if terminated or truncated:
            for row in pending:
                buffer.add(*row)
            pending.clear()
            returns.append((step, episode_return))
            episode_return = 0.0
            obs, _ = env.reset()
        if step > LEARNING_STARTS and len(buffer) >= agent.config.batch_size:
            agent.update(buffer.sample(agent.config.batch_size))
            if stale and agent.gradient_steps % publish_every == 0:
                acting = copy.deepcopy(agent.actor)
            elif not stale:
                acting = agent.actor
    speed = walk(agent, 5, 20_000)['speed'].mean()
    return {'returns': np.array(returns), 'speed': speed}


def window_means(returns: np.ndarray, steps: int) -> list:
    out = []
    for mark in range(10_000, steps + 1, 10_000):
        values = returns[(returns[:, 0] > mark - 5000) & (returns[:, 0] <= mark), 1]
        out.append(values.mean() if values.size else float('nan'))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--steps', type=int, default=30_000)
    parser.add_argument('--seeds', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--delays', nargs='+', default=['none', 'both'],
                        choices=['none', 'episode', 'weights', 'both'])
    args = parser.parse_args()
    windows = {}
    for delays in args.delays:
        for seed in args.seeds:
            result = run(seed, args.steps, delays)
            windows[delays, seed] = window_means(result['returns'], args.steps)
            print(f'delays {delays:8s} seed {seed}: return per 10k mark '
                  f'{np.round(windows[delays, seed], 1).tolist()}, final speed '
                  f'{result["speed"]:.2f} m/s', flush=True)
    last = {d: np.nanmean([windows[d, s][-1] for s in args.seeds]) for d in args.delays}
    for d in args.delays:
        print(f'{d}: mean return in the last window {last[d]:.1f}')
    if 'both' in last and 'none' in last:
        print(f'both_vs_none_return_at_end: {last["both"] / last["none"]:.2f}')


if __name__ == '__main__':
    main()
