# SPDX-License-Identifier: Apache-2.0
"""Training without ROS: an agent, a gymnasium environment, a replay buffer, and a loop.

``sac-robot train --env <id> --algo sac|sql --steps N --out DIR`` runs :func:`train`: uniform
random actions for the first ``learning_starts`` steps, then the policy, with ``utd_ratio``
gradient steps per environment step; periodic evaluation (SAC: the mean action; SQL: the
sampler without exploration noise); a CSV log, TensorBoard scalars (``out/tb``), a
learning-curve PNG, checkpoints (resumable).
"""

import csv
import dataclasses
import json
import logging
import math
import os
import time

import gymnasium
import numpy as np
import torch

from sac_robot.algorithms.checkpoint import (load_checkpoint, read_checkpoint_meta,
                                             recover_checkpoint, save_checkpoint)
from sac_robot.algorithms.observations import image_key, spec_from_space
from sac_robot.algorithms.replay import ReplayBuffer
from sac_robot.algorithms.sac import SAC, SACConfig
from sac_robot.algorithms.sql import SQL, FineTuneSchedule, SQLConfig
from sac_robot.defaults import PIXEL_DEFAULTS, TRAINER_DEFAULTS
from sac_robot.robots.description import ROBOTS
from sac_robot.scalars import Scalars

log = logging.getLogger('sac_robot.train')

ALGORITHMS = {'sac': (SAC, SACConfig), 'sql': (SQL, SQLConfig)}


#: Environment steps between TensorBoard points of the update's metrics and the rates, at
#: most (as often as evaluations where they are more frequent).
SCALARS_EVERY = 1000


@dataclasses.dataclass
class RunConfig:
    """What to train, for how long, and where the results go."""

    env: str = 'Pendulum-v1'
    """Gymnasium environment id (``sac_robot/...`` ids are registered by the package)."""
    env_args: dict = dataclasses.field(default_factory=dict)
    """Keyword arguments of the environment, e.g. ``{'frames': 3}`` for the D'Claw's pixels."""
    algo: str = 'sac'
    """'sac' or 'sql'."""
    steps: int = 100_000
    """Environment steps."""
    out: str = 'runs/train'
    """Output directory: progress.csv, learning_curve.png, checkpoint/."""
    seed: int = 0
    """Seeds the environment, the networks and the replay sampling."""
    eval_every: int = 5_000
    """Environment steps between evaluations (0: never)."""
    eval_episodes: int = 5
    """Episodes per evaluation."""
    checkpoint_every: int = 50_000
    """Environment steps between checkpoints (one is always written at the end)."""
    resume: bool = False
    """Continue from ``out/checkpoint`` if it exists."""
    threads: int = 0
    """torch intra-op threads (0: torch's default)."""
    progress: bool = True
    """Show a progress bar."""
    tensorboard: bool = True
    """Write TensorBoard scalars to ``out/tb`` (``tensorboard --logdir <out or above>``)."""
    init: str = ''
    """Start from the agent of this checkpoint (fine-tuning a pretrained policy: its networks,
    optimisers and temperature; the replay buffer and the step counts start empty, and the
    agent acts from the first step instead of random warm-up actions). '': from scratch."""
    finetune_epochs: int = 0
    """SQL, with ``init``: the paper's fine-tuning schedule (App. D.1) over this many epochs of
    1000 steps: alpha annealed log-linearly from the pretrained agent's to ``finetune_alpha``,
    the sampler's noise a fixed set shrinking from 32 draws to 1. 0: no schedule."""
    finetune_alpha: float = 1e-3
    """SQL fine-tuning: the alpha the schedule ends at."""


def make_env(env_id: str, seed: int | None = None,
             env_args: dict | None = None) -> gymnasium.Env:
    """Make ``env_id`` with actions rescaled to [-1, 1] (the agents' action space).

    ``env_args``: keyword arguments of the environment (a clear error if it takes none such).
    """
    try:
        env = gymnasium.make(env_id, **(env_args or {}))
    except TypeError as error:  # an argument the environment does not take
        if not env_args:
            raise
        raise ValueError(f'{env_id} does not take the arguments {env_args}: {error}') from error
    if not isinstance(env.action_space, gymnasium.spaces.Box):
        raise ValueError(f'{env_id}: continuous (Box) actions needed, got {env.action_space}')
    spec_from_space(env.observation_space)  # raises for unsupported observation spaces
    low, high = env.action_space.low, env.action_space.high
    if not (np.all(low == -1) and np.all(high == 1)):
        ones = np.ones(env.action_space.shape, np.float32)
        env = gymnasium.wrappers.RescaleAction(env, -ones, ones)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return env


def evaluate(agent, env: gymnasium.Env, episodes: int) -> dict:
    """Run ``episodes`` episodes without exploration; return mean and std of the returns."""
    returns = []
    for _ in range(episodes):
        obs, _ = env.reset()
        done, total = False, 0.0
        while not done:
            obs, reward, terminated, truncated, _ = env.step(agent.act(obs, deterministic=True))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return {'eval/return': float(np.mean(returns)), 'eval/return_std': float(np.std(returns))}


def build_agent(algo: str, obs_spec, action_dim: int, overrides: dict | None = None,
                seed: int | None = None):
    """Return an agent of ``algo`` with its config's defaults updated by ``overrides``."""
    if algo not in ALGORITHMS:
        raise ValueError(f'unknown algorithm {algo!r}; choose from {", ".join(ALGORITHMS)}')
    agent_class, config_class = ALGORITHMS[algo]
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(overrides or {}) - fields)
    if unknown:
        raise ValueError(f'unknown {algo} setting(s) {", ".join(unknown)}; '
                         f'known: {", ".join(sorted(fields))}')
    return agent_class(obs_spec, action_dim, config_class(**(overrides or {})), seed=seed)


def tool_settings(algo: str, obs_spec, overrides: dict | None = None) -> dict:
    """The agent settings ``sac-robot train`` runs with: its defaults, then ``overrides``.

    For SAC the training tools' defaults (``TRAINER_DEFAULTS``: compiled updates) and, on an
    image task, ``PIXEL_DEFAULTS`` (sac_robot/defaults.py) with the robots' ``privileged``
    keys its observation has (the robot descriptions'); SQL's are its config's.
    """
    if algo != 'sac':
        return dict(overrides or {})
    pixels = {}
    if image_key(obs_spec) is not None:
        privileged = sorted({k for robot in ROBOTS.values() for k in robot.privileged
                             if k in obs_spec})
        pixels = {**PIXEL_DEFAULTS, 'privileged': tuple(privileged)}
    return {**TRAINER_DEFAULTS, **pixels, **(overrides or {})}


def train(run: RunConfig, overrides: dict | None = None) -> dict:
    """Train as ``run`` says; return the final metrics (and write them to ``out``)."""
    if run.threads:
        torch.set_num_threads(run.threads)
    os.makedirs(run.out, exist_ok=True)
    env = make_env(run.env, run.seed, run.env_args)
    eval_env = make_env(run.env, run.seed + 10_000, run.env_args)
    obs_spec, action_dim = spec_from_space(env.observation_space), env.action_space.shape[0]
    agent = build_agent(run.algo, obs_spec, action_dim,
                        tool_settings(run.algo, obs_spec, overrides), run.seed)
    config = agent.config
    buffer = ReplayBuffer(obs_spec, action_dim, min(config.buffer_size, max(run.steps, 1)),
                          seed=run.seed)
    checkpoint_dir = os.path.join(run.out, 'checkpoint')
    start_step, episodes = 0, 0
    resumed = run.resume and recover_checkpoint(checkpoint_dir)
    if resumed:
        meta = read_checkpoint_meta(checkpoint_dir)
        restored, extra = load_checkpoint(checkpoint_dir, agent)
        buffer = restored if restored is not None else buffer
        start_step, episodes = extra.get('env_steps', 0), extra.get('episodes', 0)
        log.info('resumed from %s at step %d (%d gradient steps)', checkpoint_dir, start_step,
                 meta['gradient_steps'])
    elif run.init:
        pretrained = read_checkpoint_meta(run.init)
        load_checkpoint(run.init, agent, load_replay=False)
        agent.gradient_steps = 0  # (this run's counts: a ratio of updates to steps is its own)
        log.info('starting from the %s agent of %s (%d steps, %d gradient steps)',
                 pretrained['algorithm'], run.init, pretrained['extra'].get('env_steps', 0),
                 pretrained['gradient_steps'])
    schedule = None
    if run.finetune_epochs:
        if run.algo != 'sql' or not run.init:
            raise ValueError('finetune_epochs is the schedule of SQL fine-tuning a pretrained '
                             'agent: it needs algo sql and init')
        schedule = FineTuneSchedule(initial_alpha=agent.config.alpha,
                                    final_alpha=run.finetune_alpha, epochs=run.finetune_epochs)
        noise = torch.randn(schedule.initial_noise_samples, action_dim,
                            generator=torch.Generator().manual_seed(run.seed))
    random_until = 0 if run.init else config.learning_starts
    if run.algo == 'sac':
        agent.start_compiling()  # (with compile: beside the warm-up steps)
    with open(os.path.join(run.out, 'config.json'), 'w', encoding='utf-8') as stream:
        json.dump({'run': dataclasses.asdict(run), 'agent': dataclasses.asdict(config)},
                  stream, indent=1)

    csv_path = os.path.join(run.out, 'progress.csv')
    columns = ['env_steps', 'episodes', 'episode_return', 'eval/return', 'eval/return_std',
               'loss/critic', 'loss/actor', 'alpha', 'entropy', 'q/mean', 'wall_time',
               'steps_per_second']
    new_file = not (run.resume and os.path.exists(csv_path))
    csv_stream = open(csv_path, 'w' if new_file else 'a', newline='', encoding='utf-8')
    writer = csv.DictWriter(csv_stream, columns, extrasaction='ignore')
    if new_file:
        writer.writeheader()

    scalars = Scalars(os.path.join(run.out, 'tb')) if run.tensorboard else None
    mark = (time.monotonic(), start_step, agent.gradient_steps)  # of the last scalars
    scalars_every = min(SCALARS_EVERY, run.eval_every or SCALARS_EVERY)
    progress = _progress_bar(run, start_step)
    obs, _ = env.reset(seed=run.seed + episodes)
    episode_return, episode_start, metrics, last = 0.0, start_step, {}, {}
    start_time = time.monotonic()
    utd = getattr(config, 'utd_ratio', 1)
    for step in range(start_step + 1, run.steps + 1):
        if schedule is not None:  # (epochs of 1000 steps, as softlearning's)
            epoch = (step - 1) / 1000
            agent.alpha = schedule.alpha(epoch)
            agent.fixed_noise = noise[:schedule.noise_samples(epoch)].to(agent.device)
        if step <= random_until:
            action = env.action_space.sample()
        else:
            action = agent.act(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        if not math.isfinite(reward):
            raise FloatingPointError(f'{run.env} returned a non-finite reward at step {step}')
        buffer.add(obs, action, reward, next_obs, terminated, truncated)
        episode_return += float(reward)
        obs = next_obs
        if terminated or truncated:
            episodes += 1
            last = {'episode_return': episode_return}
            writer.writerow({'env_steps': step, 'episodes': episodes, **last, **metrics,
                             'wall_time': time.monotonic() - start_time})
            if scalars is not None:
                scalars.add(step, {'episode_return': episode_return,
                                   'episode_length': step - episode_start}, 'rollout')
            episode_return, episode_start = 0.0, step
            obs, _ = env.reset()
            if hasattr(agent, 'exploration'):
                agent.exploration.reset()
        if step > config.learning_starts and len(buffer) >= config.batch_size:
            for i in range(utd):
                batch = buffer.sample(config.batch_size, agent.device)
                if run.algo == 'sac':
                    metrics = agent.update(batch, update_actor=(i == utd - 1))
                else:
                    metrics = agent.update(batch)
        if run.eval_every and step % run.eval_every == 0:
            elapsed = time.monotonic() - start_time
            row = {'env_steps': step, 'episodes': episodes, **metrics,
                   **evaluate(agent, eval_env, run.eval_episodes), 'wall_time': elapsed,
                   'steps_per_second': (step - start_step) / max(elapsed, 1e-9)}
            writer.writerow(row)
            csv_stream.flush()
            if scalars is not None:
                scalars.add(step, {k[len('eval/'):]: v for k, v in row.items()
                                   if k.startswith('eval/')}, 'eval')
            log.debug('step %d: %s', step, row)
            last.update(row)
        if scalars is not None and step % scalars_every == 0:
            mark = _scalars_now(scalars, step, agent, metrics, mark)
        if run.checkpoint_every and step % run.checkpoint_every == 0:
            save_checkpoint(checkpoint_dir, agent, buffer,
                            {'env_steps': step, 'episodes': episodes})
        if progress is not None:
            progress.update(1)
            if step % 100 == 0 and last:
                progress.set_postfix({k.split('/')[-1]: f'{v:.3g}' for k, v in last.items()
                                      if k in ('episode_return', 'eval/return')})
    if progress is not None:
        progress.close()
    csv_stream.close()
    if scalars is not None:
        scalars.close()
    save_checkpoint(checkpoint_dir, agent, buffer, {'env_steps': run.steps, 'episodes': episodes})
    # The last evaluation's metrics first: its step and episode counts are not the totals.
    final = {**last, 'env_steps': run.steps, 'episodes': episodes,
             'gradient_steps': agent.gradient_steps, 'wall_time': time.monotonic() - start_time}
    with open(os.path.join(run.out, 'final.json'), 'w', encoding='utf-8') as stream:
        json.dump(final, stream, indent=1)
    try:
        plot_learning_curve(csv_path, os.path.join(run.out, 'learning_curve.png'),
                            f'{run.algo.upper()} on {run.env}')
    except ValueError as error:  # nothing to plot yet (a very short run)
        log.info('no learning curve: %s', error)
    return final


def _scalars_now(scalars: Scalars, step: int, agent, metrics: dict, mark: tuple) -> tuple:
    """The update's metrics and the rates since ``mark`` to TensorBoard; the new mark."""
    now, then, step0, updates0 = time.monotonic(), *mark
    elapsed = max(now - then, 1e-9)
    scalars.add(step, metrics, 'train')
    scalars.add(step, {'steps_per_second': (step - step0) / elapsed,
                       'updates_per_second': (agent.gradient_steps - updates0) / elapsed},
                'time')
    return now, step, agent.gradient_steps


def plot_learning_curve(csv_path: str, png_path: str, title: str = ''):
    """Plot episode and evaluation returns (and losses, alpha) from ``progress.csv``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(open(csv_path, encoding='utf-8')))
    if not rows:
        raise ValueError(f'{csv_path} holds no rows')

    def series(column):
        points = [(float(r['env_steps']), float(r[column])) for r in rows if r.get(column)]
        return np.array(points).reshape(-1, 2)

    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    episodes, evaluations = series('episode_return'), series('eval/return')
    if len(episodes):
        axes[0].plot(*episodes.T, '.', alpha=0.3, ms=3, label='training episodes')
    if len(evaluations):
        axes[0].plot(*evaluations.T, '-o', label='evaluation (no exploration)')
    axes[0].set(xlabel='environment steps', ylabel='return', title=title)
    axes[0].legend()
    for column in ('loss/critic', 'loss/actor'):
        values = series(column)
        if len(values):
            axes[1].plot(*values.T, label=column)
    axes[1].set(xlabel='environment steps', title='losses', yscale='symlog')
    if axes[1].lines:
        axes[1].legend()
    alpha = series('alpha')
    if len(alpha):
        axes[2].plot(*alpha.T)
    axes[2].set(xlabel='environment steps', title='temperature alpha', yscale='log')
    figure.tight_layout()
    figure.savefig(png_path, dpi=100)
    plt.close(figure)


def _progress_bar(run: RunConfig, start: int):
    if not run.progress:
        return None
    from tqdm import tqdm
    return tqdm(total=run.steps, initial=start, unit='step', dynamic_ncols=True,
                desc=f'{run.algo} {run.env}', mininterval=1.0)
