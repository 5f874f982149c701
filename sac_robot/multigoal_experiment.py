# SPDX-License-Identifier: Apache-2.0
"""The SQL paper's multi-goal experiment (Section 5.1, Figure 1), for SQL and SAC.

Each algorithm is trained on ``sac_robot/MultiGoal-v0``; then ``rollouts`` stochastic rollouts
start at the origin and the goal each one reaches is counted. The maximum-entropy optimum
reaches all four goals; a policy that commits to one goal reaches one. The figure shows the
reward's level sets, the goals and the rollouts of each algorithm.
"""

import os

import numpy as np

from sac_robot.tasks.multigoal import GOALS, MultiGoalEnv, multigoal_reward
from sac_robot.training import RunConfig, train

#: App. D.1's multi-goal settings for SQL: alpha 10, K = M = 100, K_V = 50, 2 x 200 networks,
#: Q lr 1e-3, sampler lr 1e-4, batch 64, hard target copy every 1000 steps. The replay warm-up
#: is 1000 steps here (App. D.1 uses 10k steps for its long runs).
SQL_SETTINGS = {'alpha': 10.0, 'kernel_particles': 100, 'value_particles': 50,
                'hidden': (200, 200), 'batch_size': 64, 'learning_starts': 1000,
                'target_update_interval': 1000, 'ou_sigma': 0.0}
#: SAC with Table 1 defaults but the same scale of entropy bonus at the start (alpha 10 on
#: rewards of this size), tuned automatically from there.
SAC_SETTINGS = {'alpha': 10.0, 'learning_starts': 1000}


def rollouts(agent, count: int, seed: int = 0):
    """Run ``count`` stochastic episodes from the origin; return trajectories and goals."""
    env = MultiGoalEnv(init_sigma=0.0)
    env.reset(seed=seed)
    paths, goals = [], []
    for _ in range(count):
        obs, _ = env.reset()
        path, goal, done = [obs.copy()], -1, False
        steps = 0
        while not done and steps < 20:
            obs, _, terminated, _, info = env.step(agent.act(obs, deterministic=False))
            path.append(obs.copy())
            goal, done, steps = info['goal'], terminated, steps + 1
        paths.append(np.array(path))
        goals.append(goal)
    return paths, np.array(goals)


def goal_fractions(goals: np.ndarray) -> np.ndarray:
    """Fraction of rollouts that reached each of the four goals."""
    return np.array([(goals == g).mean() for g in range(len(GOALS))])


def run(out: str, steps: int = 20_000, rollout_count: int = 100, seed: int = 0,
        algorithms=('sql', 'sac'), progress: bool = True) -> dict:
    """Train each algorithm, roll it out, save ``multigoal.png``; return goal fractions."""
    from sac_robot.algorithms.checkpoint import load_checkpoint
    from sac_robot.training import build_agent

    results, trajectories = {}, {}
    for algo in algorithms:
        settings = SQL_SETTINGS if algo == 'sql' else SAC_SETTINGS
        directory = os.path.join(out, algo)
        train(RunConfig(env='sac_robot/MultiGoal-v0', algo=algo, steps=steps, out=directory,
                        seed=seed, eval_every=0, checkpoint_every=0, progress=progress),
              dict(settings))
        agent = build_agent(algo, 2, 2, dict(settings), seed)
        load_checkpoint(os.path.join(directory, 'checkpoint'), agent, load_replay=False)
        paths, goals = rollouts(agent, rollout_count, seed)
        results[algo] = goal_fractions(goals)
        trajectories[algo] = paths
    plot(trajectories, results, os.path.join(out, 'multigoal.png'))
    return results


def plot(trajectories: dict, results: dict, path: str):
    """Draw the reward's level sets, the goals and each algorithm's rollouts side by side."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    grid = np.linspace(-7, 7, 200)
    xx, yy = np.meshgrid(grid, grid)
    positions = np.stack([xx, yy], -1)
    reward = multigoal_reward(positions, np.zeros_like(positions))['distance']
    figure, axes = plt.subplots(1, len(trajectories), figsize=(5.5 * len(trajectories), 5),
                                squeeze=False)
    for ax, (algo, paths) in zip(axes[0], trajectories.items()):
        contours = ax.contour(xx, yy, reward, levels=20, cmap='viridis', linewidths=0.8)
        ax.clabel(contours, inline=True, fontsize=6, fmt='%.0f')
        for trajectory in paths:
            ax.plot(trajectory[:, 0], trajectory[:, 1], 'b-', alpha=0.35, lw=1)
        ax.plot(GOALS[:, 0], GOALS[:, 1], 'ro', ms=9)
        fractions = ', '.join(f'{f:.0%}' for f in results[algo])
        ax.set(xlim=(-7, 7), ylim=(-7, 7), aspect='equal',
               title=f'{algo.upper()}: goals reached {fractions}')
    figure.suptitle('Multi-goal task: trajectories from the origin (red: goals)')
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
