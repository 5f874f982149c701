# SPDX-License-Identifier: Apache-2.0
"""Simulation speed of each task against MuJoCo's raw physics on the same model.

For each task: environment steps per second under random actions, and the rate of the same
number of bare ``mj_step`` calls per control step on the same model (the simulator's physical
limit at the task's control rate). The overhead is ``raw rate / task rate - 1``; the goal is
under 30 % for the state tasks. The pixel task's extra cost is rendering, reported apart.

    .venv/bin/python bench/sim_speed.py [--seconds 10] [--verbose]

Task and raw physics run the same episodes in two copies of the model, step by step in
alternation (this machine is shared and its speed drifts by tens of percent within a minute,
the cost of physics by as much with the robot's state): the overhead is the task's total time
over the raw physics' total time, minus one.

The last line is ``worst_overhead_pct: X`` over the state tasks.
"""

import argparse
import time

# First: the offscreen GL backend, which MuJoCo reads when it is first imported (the bare
# physics below imports it directly); importing sac_robot registers the tasks.
from sac_robot.robots import import_mujoco

mujoco = import_mujoco()

import gymnasium  # noqa: E402
import numpy as np  # noqa: E402

TASKS = ('sac_robot/DClawTurn-v0', 'sac_robot/DClawTurnPixels-v0', 'sac_robot/MinitaurWalk-v0')


class Runs:
    """One task's environment, a second copy as bare physics, the same random actions for both.

    Each episode runs in both copies from the same start (the task's own reset with the same
    seed, outside the clock), step by step in alternation: a control step through the task
    (``gymnasium.make``, wrappers included), then the same control step as bare physics, which
    writes the actuators' targets straight into ``data.ctrl`` and calls ``mj_step``
    ``substeps`` times. Both simulate the same motion and contacts (the cost of physics varies
    by tens of percent with the robot's state), and whatever else the machine is doing falls on
    both alike (its speed drifts by tens of percent within a minute): the difference is the
    task layer's code.
    """

    def __init__(self, env_id: str):
        self.env, self.bare = gymnasium.make(env_id), gymnasium.make(env_id)
        task = self.bare.unwrapped
        self.episode = self.env.spec.max_episode_steps
        self.model, self.data, self.substeps = task.robot.model, task.robot.data, task.substeps
        to_targets = getattr(task, 'action_to_targets', None) or task.action_to_motors
        rng = np.random.default_rng(0)
        self.actions = rng.uniform(-1, 1, (self.episode, *self.env.action_space.shape)).astype(
            np.float32)
        # The task's own action-to-target mapping, computed before the clock starts.
        self.controls = np.array([to_targets(a) for a in self.actions])

    def episode_times(self, seed: int) -> tuple:
        """Seconds spent in the task's steps and in the bare physics' over one episode."""
        env, model, data, substeps = self.env, self.model, self.data, self.substeps
        env.reset(seed=seed)
        self.bare.reset(seed=seed)
        clock, task_time, raw_time = time.perf_counter, 0.0, 0.0
        for action, control in zip(self.actions, self.controls):
            start = clock()
            _, _, terminated, _, _ = env.step(action)
            middle = clock()
            data.ctrl[:] = control
            mujoco.mj_step(model, data, nstep=substeps)
            end = clock()
            task_time, raw_time = task_time + middle - start, raw_time + end - middle
            if terminated:
                raise RuntimeError('the random policy fell: the two copies would differ')
        return task_time, raw_time

    def close(self):
        """Close both copies."""
        self.env.close(), self.bare.close()


def compare(env_id: str, seconds: float, verbose: bool = False) -> tuple:
    """Task and bare physics side by side for about ``seconds``.

    Returns the task's and the bare physics' control steps per second, the overhead
    (task time / raw time - 1 over all episodes) and the physics steps per control step.
    """
    runs = Runs(env_id)
    runs.episode_times(0)  # warm up
    times, seed, start = [], 0, time.perf_counter()
    while time.perf_counter() - start < seconds or seed < 3:
        seed += 1
        times.append(runs.episode_times(seed))
    runs.close()
    task_times, raw_times = np.array(times).T
    if verbose:
        per_episode = 100 * (task_times / raw_times - 1)
        print(f'  {env_id}: {seed} episodes; overhead per episode (%) quartiles '
              f'{np.round(np.percentile(per_episode, [25, 50, 75]), 1).tolist()}')
    steps = runs.episode * seed
    return (steps / task_times.sum(), steps / raw_times.sum(),
            task_times.sum() / raw_times.sum() - 1, runs.substeps)


def render_rate(seconds: float) -> float:
    env = gymnasium.make('sac_robot/DClawTurnPixels-v0').unwrapped
    env.reset(seed=0)
    frames, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.robot.render(32, 32)
        frames += 1
    env.close()
    return frames / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seconds', type=float, default=10.0,
                        help='per task (both variants)')
    parser.add_argument('--verbose', action='store_true', help='print every slice')
    args = parser.parse_args()
    overheads = []
    for env_id in TASKS:
        task, raw, overhead, substeps = compare(env_id, args.seconds, verbose=args.verbose)
        if 'Pixels' not in env_id:
            overheads.append(overhead)
        print(f'{env_id:32s} {task:8.0f} steps/s; raw physics ({substeps} mj_step per control '
              f'step) {raw:8.0f}/s = {raw * substeps:9.0f} mj_step/s; overhead '
              f'{100 * overhead:5.1f} %', flush=True)
    print(f'rendering 32 x 32 RGB (pixel task): {render_rate(args.seconds):.0f} frames/s')
    print(f'worst_overhead_pct: {100 * max(overheads):.1f}')


if __name__ == '__main__':
    main()
