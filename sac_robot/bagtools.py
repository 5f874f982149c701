# SPDX-License-Identifier: Apache-2.0
"""Offline tools for the graph's bags (``sac-robot bag summary|plot|to-buffer``), without ROS.

Bags are read with the rosbags library (mcap or sqlite3, rosbag2 format), with the ROS 2 Kilted
message definitions and sac_robot's own (from the installed ``share/sac_robot/msg``, or the
source tree). Nothing here needs rclpy.
"""

import collections
import glob
import os

import numpy as np


class BagError(ValueError):
    """A bag that cannot be read, or lacks what was asked of it."""


def typestore_with_package_types():
    """A rosbags typestore of ROS 2 Kilted plus this package's message definitions."""
    from rosbags.typesys import Stores, get_typestore, get_types_from_msg

    from sac_robot.bringup.graph import share_directory

    typestore = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for path in sorted(glob.glob(os.path.join(share_directory(), 'msg', '*.msg'))):
        name = os.path.splitext(os.path.basename(path))[0]
        with open(path, encoding='utf-8') as stream:
            types.update(get_types_from_msg(stream.read(), f'sac_robot/msg/{name}'))
    typestore.register(types)
    return typestore


def _reader(path: str):
    from rosbags.rosbag2 import Reader
    if not os.path.isdir(path):
        raise BagError(f'{path}: no such bag directory')
    try:
        reader = Reader(path)
        reader.open()
    except Exception as error:
        raise BagError(f'{path}: not a readable rosbag2 bag: {error}') from error
    return reader


def _messages(path: str, suffixes):
    """Yield ``(topic, timestamp ns, message)`` for topics ending in one of ``suffixes``."""
    typestore = typestore_with_package_types()
    reader = _reader(path)
    try:
        connections = [c for c in reader.connections if c.topic.endswith(tuple(suffixes))]
        for connection, timestamp, raw in reader.messages(connections):
            try:
                yield connection.topic, timestamp, typestore.deserialize_cdr(
                    raw, connection.msgtype)
            except Exception as error:  # one bad record must not end the analysis
                raise BagError(f'{path}: message on {connection.topic} at {timestamp} ns '
                               f'cannot be decoded: {error}') from error
    finally:
        reader.close()


def summary(path: str) -> str:
    """Topic statistics and what the training did, as text."""
    reader = _reader(path)
    try:
        duration = reader.duration / 1e9 if reader.message_count else 0.0
        rows = sorted((c.topic, c.msgtype, c.msgcount) for c in reader.connections)
        total = reader.message_count
    finally:
        reader.close()
    lines = [f'bag: {path}', f'duration: {duration:.1f} s, {total} messages, {len(rows)} topics',
             '', f'{"topic":44s} {"type":34s} {"count":>8s} {"rate":>9s}']
    for topic, msgtype, count in rows:
        rate = count / duration if duration > 0 else 0.0
        lines.append(f'{topic:44s} {msgtype:34s} {count:8d} {rate:7.1f}/s')
    episodes = [m for _, _, m in _messages(path, ('episode_events',)) if m.event == 1]
    if episodes:
        returns = np.array([m.episode_return for m in episodes])
        reasons = collections.Counter(m.reason.split(':')[0] for m in episodes)
        lines += ['', f'episodes: {len(episodes)}, {sum(m.steps for m in episodes)} steps, '
                  f'return mean {returns.mean():.2f}, last {returns[-1]:.2f}, best '
                  f'{returns.max():.2f}',
                  'ended by: ' + ', '.join(f'{k} {v}' for k, v in reasons.most_common())]
    versions = [m.version for _, _, m in _messages(path, ('policy/weights',))]
    if versions:
        lines.append(f'policy versions: {min(versions)}..{max(versions)}')
    return '\n'.join(lines)


def learning_data(path: str) -> dict:
    """Per-episode returns and reward terms, and the trainer's statistics over time.

    An episode's terms are summed over its steps, as its return is: the policy may act (and
    the reward estimator score) a step or two past the end before the reset, and such a step
    may span the reset itself (the robot put back at its start: a large negative speed), so
    rewards of steps at or past an ended episode's last are left out. Per robot, by episode.
    """
    episodes, ends, stats = [], {}, collections.defaultdict(list)
    rewards = {}  # (robot, episode, step) -> {term: value}, the newest of each step
    for topic, _, msg in _messages(path, ('episode_events', '/reward', 'training_stats')):
        if topic.endswith('episode_events') and msg.event == 1:
            episodes.append((msg.episode_id, msg.steps, msg.episode_return))
            ends[(msg.robot_id, msg.episode_id)] = msg.steps
        elif topic.endswith('/reward'):
            rewards[(msg.robot_id, msg.episode_id, msg.step)] = dict(zip(msg.names, msg.values))
        elif topic.endswith('training_stats'):
            stats['env_steps'].append(msg.env_steps)
            stats['gradient_steps'].append(msg.gradient_steps)
            stats['updates_per_second'].append(msg.updates_per_second)
            for name, value in zip(msg.names, msg.values):
                stats[name].append(value)
    terms = collections.defaultdict(lambda: collections.defaultdict(float))
    for (robot, episode, step), values in sorted(rewards.items()):
        if step < ends.get((robot, episode), step + 1):
            for name, value in values.items():
                terms[episode][name] += value
    return {'episodes': episodes, 'terms': terms, 'stats': stats}


def plot(path: str, out: str) -> str:
    """Learning curves of a bag as a PNG: returns, reward terms, temperature, losses."""
    data = learning_data(path)
    if not data['episodes']:
        raise BagError(f'{path}: no finished episode (episode_events END) to plot')
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    episodes = data['episodes']
    steps = np.cumsum([s for _, s, _ in episodes])
    figure, axes = plt.subplots(2, 2, figsize=(12, 8))
    axes[0, 0].plot(steps, [r for _, _, r in episodes], '.-')
    axes[0, 0].set(xlabel='environment steps', ylabel='episode return', title='returns')
    names = sorted({n for t in data['terms'].values() for n in t})
    for name in names:
        axes[0, 1].plot(steps, [data['terms'][e].get(name, 0.0) for e, _, _ in episodes],
                        label=name)
    axes[0, 1].set(xlabel='environment steps', ylabel='sum over the episode',
                   title='reward terms')
    if names:
        axes[0, 1].legend(fontsize=8)
    stats = data['stats']
    if stats.get('alpha'):
        axes[1, 0].plot(stats['env_steps'][-len(stats['alpha']):], stats['alpha'])
        axes[1, 0].set_yscale('log')
    axes[1, 0].set(xlabel='environment steps', ylabel='alpha', title='temperature')
    for name in [n for n in stats if n.startswith('loss/')]:
        axes[1, 1].plot(stats['env_steps'][-len(stats[name]):], stats[name], label=name)
    axes[1, 1].set(xlabel='environment steps', title='losses')
    if any(n.startswith('loss/') for n in stats):
        axes[1, 1].legend(fontsize=8)
    figure.suptitle(os.path.basename(os.path.normpath(path)))
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out


def to_buffer(path: str, out: str, robot: str | None = None):
    """A replay buffer (safetensors) of every transition in the bag's ``experience`` chunks.

    Chunks are taken once per (robot, sequence) however often they were resent, in sequence
    order. Returns the buffer.
    """
    from sac_robot.algorithms.observations import from_wire, spec_from_json, wire_layout
    from sac_robot.algorithms.replay import ReplayBuffer

    chunks = {}
    for _, _, msg in _messages(path, ('/experience',)):
        if robot is not None and msg.robot_id != robot:
            continue
        chunks.setdefault((msg.robot_id, msg.sequence), msg)
    chunks = [chunks[k] for k in sorted(chunks) if chunks[k].num_transitions]
    if not chunks:
        raise BagError(f'{path}: no experience chunks' + (f' of robot {robot!r}' if robot
                                                          else ''))
    sizes = {(c.observation_size, c.action_size, c.observation_spec) for c in chunks}
    if len(sizes) != 1:
        raise BagError(f'{path}: chunks of different sizes {sorted(sizes)}; choose a robot')
    obs_size, action_size, spec_json = sizes.pop()
    spec = spec_from_json(spec_json) if spec_json else obs_size
    image_shape = wire_layout(spec)[1]
    total = sum(c.num_transitions for c in chunks)
    buffer = ReplayBuffer(spec, action_size, total)

    def observations(flat, images, n: int):
        image = (None if image_shape is None else
                 np.frombuffer(images, np.uint8).reshape(n, *image_shape))
        return from_wire(np.asarray(flat, np.float32).reshape(n, obs_size), image, spec)

    for c in chunks:
        n = c.num_transitions
        buffer.add(observations(c.observations, c.images, n),
                   np.asarray(c.actions, np.float32).reshape(n, action_size),
                   np.asarray(c.rewards, np.float32),
                   observations(c.next_observations, c.next_images, n),
                   np.asarray(c.terminated, bool), np.asarray(c.truncated, bool))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    buffer.save(out)
    return buffer
