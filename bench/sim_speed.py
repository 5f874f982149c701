# SPDX-License-Identifier: Apache-2.0
"""Simulation speed of each task against MuJoCo's raw physics on the same model.

For each task: environment steps per second under random actions, and the rate of the same
number of bare ``mj_step`` calls per control step on the same model (the simulator's physical
limit at the task's control rate). The overhead is ``raw rate / task rate - 1``; the goal is
under 30 % for the state tasks. The pixel task's extra cost is rendering, reported apart.

    .venv/bin/python bench/sim_speed.py [--seconds 3]

The last line is ``worst_overhead_pct: X`` over the state tasks.
"""

import argparse
import time

# First: importing sac_robot chooses the offscreen GL backend, which MuJoCo reads when it is
# first imported; it also registers the tasks.
import sac_robot  # noqa: F401

import gymnasium  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402

TASKS = ('sac_robot/DClawTurn-v0', 'sac_robot/DClawTurnPixels-v0', 'sac_robot/MinitaurWalk-v0')


def task_rate(env_id: str, seconds: float) -> float:
    env = gymnasium.make(env_id)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (1000, *env.action_space.shape)).astype(np.float32)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(actions[steps % 1000])
        steps += 1
        if terminated or truncated:
            env.reset()
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def raw_rate(env_id: str, seconds: float) -> tuple:
    """Control steps per second of bare physics under the same random commands.

    Each control step writes the actuators' targets straight into ``data.ctrl`` and calls
    ``mj_step`` ``substeps`` times: the same motion and contacts as the task, none of its code.
    """
    wrapped = gymnasium.make(env_id)
    env, episode = wrapped.unwrapped, wrapped.spec.max_episode_steps
    model, data, substeps = env.robot.model, env.robot.data, env.substeps
    to_targets = getattr(env, 'action_to_targets', None) or env.action_to_motors
    env.reset(seed=0)
    initial = (data.qpos.copy(), data.qvel.copy())
    rng = np.random.default_rng(0)
    # The task's own action-to-target mapping, computed before the clock starts.
    actions = rng.uniform(-1, 1, (1000, *env.action_space.shape))
    controls = np.array([to_targets(a) for a in actions])
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        data.ctrl[:] = controls[steps % 1000]
        mujoco.mj_step(model, data, nstep=substeps)
        steps += 1
        if steps % episode == 0:  # episodes of the same length as the task's
            data.qpos[:], data.qvel[:] = initial
    env.close()
    return steps / (time.perf_counter() - start), substeps


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
    parser.add_argument('--seconds', type=float, default=3.0, help='per measurement')
    args = parser.parse_args()
    overheads = []
    for env_id in TASKS:
        task = task_rate(env_id, args.seconds)
        raw, substeps = raw_rate(env_id, args.seconds)
        overhead = raw / task - 1
        if 'Pixels' not in env_id:
            overheads.append(overhead)
        print(f'{env_id:32s} {task:8.0f} steps/s; raw physics ({substeps} mj_step per control '
              f'step) {raw:8.0f}/s = {raw * substeps:9.0f} mj_step/s; overhead '
              f'{100 * overhead:5.1f} %', flush=True)
    print(f'rendering 32 x 32 RGB (pixel task): {render_rate(args.seconds):.0f} frames/s')
    print(f'worst_overhead_pct: {100 * max(overheads):.1f}')


if __name__ == '__main__':
    main()
