# SPDX-License-Identifier: Apache-2.0
"""SAC training throughput: this SAC against Stable-Baselines3's, side by side.

Both train SAC with the paper's defaults (Table 1: 2 x 256 ReLU, batch 256, Adam 3e-4, one
gradient step per environment step, automatic temperature) on the same gymnasium task, in
alternating rounds in this one process, so the machine's noise hits both alike. A round is
``--warmup`` random steps then ``--steps`` steps with one update each; its rate is the
environment steps (= gradient updates) per second of the learning part.

    .venv/bin/python bench/train_throughput.py [--env HalfCheetah-v5] [--rounds 3]

Four variants of this SAC run in every round: ``trainer``, the training tools' default
(``sac-robot train`` and the trainer node: Algorithm 1's sequential updates, gradients in
closed form, compiled by torch.compile; the compiling, begun beside the warm-up steps as they
do, is outside the timed part and printed), ``eager`` (the library's default
``SACConfig()``: the same, not compiled),
``joint_update=True`` (all gradients from the same parameters, as softlearning) and
``closed_form=False`` (the default's update with autograd's gradients), plus ``bf16=True`` with
``--bf16`` (only for CPUs with AVX-512 BF16 or AMX). Prints each round, then the medians; the
last line is ``ratio_vs_sb3: X`` for the training tools' default (``trainer``).
"""

import argparse
import statistics
import time

import numpy as np
import torch


def ours(env_id: str, warmup: int, steps: int, seed: int, overrides: dict) -> float:
    """Return environment steps per second of this package's SAC while learning."""
    from sac_robot.algorithms.replay import ReplayBuffer
    from sac_robot.algorithms.sac import SAC, SACConfig
    from sac_robot.training import make_env

    env = make_env(env_id, seed)
    obs_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    built = time.perf_counter()
    agent = SAC(obs_dim, action_dim, SACConfig(**overrides), seed=seed)
    agent.start_compiling()  # (with compile: beside the warm-up steps, as sac-robot train does)
    buffer = ReplayBuffer(obs_dim, action_dim, warmup + steps, seed=seed)
    obs, _ = env.reset(seed=seed)
    start = None
    for step in range(warmup + steps):
        if step == warmup:
            if overrides.get('compile'):  # (compiling since the agent was built)
                waited = time.perf_counter()
                agent.wait_compiled()
                print(f'  (compiled {time.perf_counter() - built:.1f} s after the agent was '
                      f'built; the warm-up hid {waited - built:.1f} s of it)', flush=True)
            start = time.perf_counter()
        action = env.action_space.sample() if step < warmup else agent.act(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buffer.add(obs, action, reward, next_obs, terminated, truncated)
        obs = next_obs if not (terminated or truncated) else env.reset()[0]
        if step >= warmup:
            agent.update(buffer.sample(agent.config.batch_size))
    return steps / (time.perf_counter() - start)


def sb3(env_id: str, warmup: int, steps: int, seed: int) -> float:
    """Return environment steps per second of Stable-Baselines3's SAC while learning."""
    import gymnasium
    from stable_baselines3 import SAC as SB3SAC
    from stable_baselines3.common.callbacks import BaseCallback

    class Clock(BaseCallback):
        def __init__(self):
            super().__init__()
            self.start = None

        def _on_step(self):
            if self.num_timesteps == warmup + 1:
                self.start = time.perf_counter()
            return True

    model = SB3SAC('MlpPolicy', gymnasium.make(env_id), learning_starts=warmup, seed=seed,
                   buffer_size=warmup + steps, verbose=0)
    clock = Clock()
    model.learn(total_timesteps=warmup + steps, callback=clock)
    return (steps - 1) / (time.perf_counter() - clock.start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--env', default='HalfCheetah-v5')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1000)
    parser.add_argument('--steps', type=int, default=2000)
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0: default)')
    parser.add_argument('--bf16', action='store_true', help='also measure bf16 autocast')
    args = parser.parse_args()
    from sac_robot.defaults import TRAINER_DEFAULTS
    variants = {'trainer': dict(TRAINER_DEFAULTS), 'eager': {},
                'joint': {'joint_update': True}, 'autograd': {'closed_form': False}}
    if args.bf16:
        variants['joint+bf16'] = {'joint_update': True, 'bf16': True}
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f'{args.env}: {args.rounds} rounds of {args.warmup} random + {args.steps} learning '
          f'steps, torch {torch.__version__}, {torch.get_num_threads()} threads, CPU '
          f'{torch.backends.cpu.get_cpu_capability()}', flush=True)
    names = ['sb3', *variants]
    rates = {name: [] for name in names}
    for round_index in range(args.rounds):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            if name == 'sb3':
                rate = sb3(args.env, args.warmup, args.steps, round_index)
            else:
                rate = ours(args.env, args.warmup, args.steps, round_index, variants[name])
            rates[name].append(rate)
            print(f'round {round_index + 1} {name:11s} {rate:7.1f} updates/s', flush=True)
    sb3_rate = statistics.median(rates['sb3'])
    for name in variants:
        ratios = np.array(rates[name]) / np.array(rates['sb3'])
        print(f'{name:11s} median {statistics.median(rates[name]):6.1f} updates/s, '
              f'{statistics.median(ratios):.2f}x sb3 ({sb3_rate:.1f}); per round '
              f'{", ".join(f"{r:.2f}" for r in ratios)}')
    ratio = statistics.median(np.array(rates['trainer']) / np.array(rates['sb3']))
    print(f'ratio_vs_sb3: {ratio:.2f}')


if __name__ == '__main__':
    main()
