# SPDX-License-Identifier: Apache-2.0
"""Dict observations (an image and vectors): encoder, buffer, agent, checkpoint, learning."""

import gymnasium
import numpy as np
import pytest
import torch

from sac_robot.algorithms.checkpoint import (export_policy, import_policy, load_checkpoint,
                                             save_checkpoint)
from sac_robot.algorithms.networks import Encoder, random_shift
from sac_robot.algorithms.observations import spec_from_space, to_tensor
from sac_robot.algorithms.replay import ReplayBuffer, ReplayBufferError
from sac_robot.algorithms.sac import SAC, SACConfig

SPEC = {'pixels': (32, 32, 3), 'joints': (9,), 'velocities': (9,)}


def observation(rng, batch=None):
    lead = () if batch is None else (batch,)
    return {'pixels': rng.integers(0, 256, (*lead, 32, 32, 3), dtype=np.uint8),
            'joints': rng.normal(size=(*lead, 9)).astype(np.float32),
            'velocities': rng.normal(size=(*lead, 9)).astype(np.float32)}


def test_encoder_is_the_papers_and_fuses_the_vectors():
    encoder = Encoder(SPEC)
    convolutions = [m for m in encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in convolutions] == [(4, (3, 3))] * 2
    # 32 -> pool 3 -> 10 -> pool 3 -> 3: 4 x 3 x 3 image features, then 18 joint values.
    assert encoder.out_features == 36 + 18
    obs, _ = to_tensor(observation(np.random.default_rng(0), 5), encoder.spec, 'cpu')
    assert encoder(obs).shape == (5, 54)


def test_buffer_stores_images_as_bytes_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    buffer = ReplayBuffer(SPEC, 9, capacity=6, seed=0)
    for _ in range(8):
        buffer.add(observation(rng), rng.uniform(-1, 1, 9), 1.0, observation(rng), False, True)
    assert buffer.storage['obs.pixels'].dtype == np.uint8 and len(buffer) == 6
    batch = buffer.sample(4)
    assert batch.obs['pixels'].dtype == torch.uint8 and batch.obs['pixels'].shape == (4, 32, 32, 3)
    assert batch.next_obs['joints'].shape == (4, 9) and batch.truncated.sum() == 4
    path = str(tmp_path / 'replay.safetensors')
    buffer.save(path)
    loaded = ReplayBuffer.load(path, SPEC, 9)
    assert np.array_equal(loaded.storage['next_obs.pixels'], buffer.storage['next_obs.pixels'])
    with pytest.raises(ReplayBufferError, match='keys'):
        buffer.add({'pixels': np.zeros((32, 32, 3))}, np.zeros(9), 0, observation(rng), 0, 0)
    with pytest.raises(ReplayBufferError, match='obs.joints of shape'):
        bad = observation(rng)
        bad['joints'] = np.zeros(8)
        buffer.add(bad, np.zeros(9), 0, observation(rng), 0, 0)


@pytest.mark.parametrize('options', [{}, {'shared_encoder': True, 'image_shift': 2}])
def test_agent_acts_updates_checkpoints_and_exports(tmp_path, options):
    rng = np.random.default_rng(1)
    agent = SAC(SPEC, 9, SACConfig(hidden=(32, 32), **options), seed=0)
    assert agent.act(observation(rng)).shape == (9,)
    assert agent.act(observation(rng, 3)).shape == (3, 9)
    buffer = ReplayBuffer(SPEC, 9, capacity=50, seed=0)
    buffer.add(observation(rng, 20), rng.uniform(-1, 1, (20, 9)), rng.normal(size=20),
               observation(rng, 20), np.zeros(20), np.zeros(20))
    for joint in (False, True):
        agent.config.joint_update = joint
        metrics = agent.update(buffer.sample(8))
        assert np.isfinite(list(metrics.values())).all()
    save_checkpoint(str(tmp_path / 'ckpt'), agent, buffer)
    restored = SAC(SPEC, 9, SACConfig(hidden=(32, 32), **options), seed=7)
    load_checkpoint(str(tmp_path / 'ckpt'), restored)
    obs = observation(rng)
    assert np.array_equal(agent.act(obs, True), restored.act(obs, True))
    batch = buffer.sample(8)  # (the restored agent updates on: its optimizers fit)
    assert np.isfinite(list(restored.update(batch).values())).all()
    network, meta = import_policy(export_policy(agent, version=3))
    tensors, _ = to_tensor(obs, agent.obs_spec, 'cpu')
    assert torch.equal(network(tensors, True)[0][0], torch.as_tensor(agent.act(obs, True)))
    with pytest.raises(ValueError, match='keys'):
        agent.act({'pixels': obs['pixels']})


def test_random_shift_moves_each_image_by_its_own_offset_and_repeats_the_edges():
    """DrQ's augmentation: pad by repeating the border, crop at a random offset per image."""
    rng = np.random.default_rng(2)
    images = torch.as_tensor(rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8))
    shifted = random_shift(images, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape and shifted.dtype == torch.uint8
    padded = np.pad(images.numpy(), ((0, 0), (2, 2), (2, 2), (0, 0)), mode='edge')
    found = []
    for image, out in zip(padded, shifted.numpy()):
        offsets = [(dy, dx) for dy in range(5) for dx in range(5)
                   if np.array_equal(image[dy:dy + 32, dx:dx + 32], out)]
        assert len(offsets) == 1  # (random images: one offset explains it)
        found.append(offsets[0])
    assert len(set(found)) > 15  # 25 offsets, drawn per image
    assert torch.equal(shifted, random_shift(images, 2, torch.Generator().manual_seed(0)))
    assert not torch.equal(shifted, random_shift(images, 2, torch.Generator().manual_seed(1)))
    assert random_shift(images, 0) is images


def _pixel_batch(seed=3, size=16):
    rng = np.random.default_rng(seed)
    buffer = ReplayBuffer(SPEC, 9, capacity=50, seed=0)
    buffer.add(observation(rng, 20), rng.uniform(-1, 1, (20, 9)), rng.normal(size=20),
               observation(rng, 20), np.zeros(20), np.zeros(20))
    return buffer.sample(size)


def _encoders(agent):
    return ([p.clone() for p in agent.critic.encoder.parameters()],
            [p.clone() for p in agent.actor.encoder.parameters()])


@pytest.mark.parametrize('joint', [False, True])
def test_a_shared_encoder_learns_from_the_critics_alone_and_the_policy_acts_with_it(joint):
    """shared_encoder: the policy's loss moves no encoder weight; its copy follows the critics'.

    Two agents from one state, one updating its critics only, the other also its policy: the
    critics' encoders end equal (the policy's gradient never reached it), and each policy's copy
    equals its critics' encoder. Without sharing, the policy's own encoder moves.
    """
    batch = _pixel_batch()
    config = {'hidden': (32, 32), 'shared_encoder': True, 'joint_update': joint}
    critic_only, both = (SAC(SPEC, 9, SACConfig(**config), seed=0) for _ in range(2))
    assert not any(p.requires_grad for p in both.actor.encoder.parameters())
    before = _encoders(both)
    if joint:  # (the joint update always steps the policy: compare with the sequential one)
        critic_only.config.joint_update = False
    critic_only.update(batch, update_actor=False)
    both.update(batch)
    after_critic, after_both = _encoders(critic_only), _encoders(both)
    for a, b, old in zip(after_critic[0], after_both[0], before[0]):
        assert torch.equal(a, b) and not torch.equal(a, old)
    for agent in (critic_only, both):
        for critic, actor in zip(*_encoders(agent)):
            assert torch.equal(critic, actor)
    separate = SAC(SPEC, 9, SACConfig(hidden=(32, 32)), seed=0)
    own = [p.clone() for p in separate.actor.encoder.parameters()]
    separate.update(batch)
    assert any(not torch.equal(p, q) for p, q in zip(own, separate.actor.encoder.parameters()))


def test_image_shift_augments_the_minibatch_and_needs_an_image():
    """image_shift: the same minibatch and seed give another critic loss; flat inputs refuse."""
    batch = _pixel_batch()
    plain = SAC(SPEC, 9, SACConfig(hidden=(32, 32)), seed=0).update(batch)
    shifted = SAC(SPEC, 9, SACConfig(hidden=(32, 32), image_shift=2), seed=0).update(batch)
    assert plain['loss/critic'] != shifted['loss/critic']
    assert np.isfinite(list(shifted.values())).all()
    with pytest.raises(ValueError, match='image'):
        SAC(12, 3, SACConfig(image_shift=2))
    with pytest.raises(ValueError, match='image'):
        SAC(12, 3, SACConfig(shared_encoder=True))


PRIVILEGED = {**SPEC, 'valve': (2,)}


def _valve_batch(rng, size):
    """Observations whose privileged ``valve`` is a function of the image.

    (Its left half's brightness, as the D'Claw's valve angle is a function of its image.)
    """
    obs = observation(rng, size)
    left = obs['pixels'][:, :, :16].mean(axis=(1, 2, 3)) / 255.0
    obs['valve'] = np.stack([left, 1.0 - left], -1).astype(np.float32)
    return obs


def test_privileged_keys_reach_no_network_and_the_aux_loss_teaches_the_encoder(tmp_path):
    """The valve moves no action and no Q-value; encoder_loss 'both' teaches the encoder it.

    Its step is the encoder's and the head's own: the critics' and the policy's steps are
    those of the same agent without it.
    """
    rng = np.random.default_rng(4)
    config = {'hidden': (32, 32), 'shared_encoder': True, 'privileged': ('valve',)}
    agent = SAC(PRIVILEGED, 9, SACConfig(encoder_loss='both', **config), seed=0)
    assert agent.critic.encoder.out_features == agent.actor.encoder.out_features == 36 + 18
    obs = _valve_batch(rng, 4)
    moved = {**obs, 'valve': -obs['valve']}
    assert np.array_equal(agent.act(obs, True), agent.act(moved, True))
    tensors, _ = to_tensor(obs, PRIVILEGED, 'cpu')
    moved_tensors, _ = to_tensor(moved, PRIVILEGED, 'cpu')
    action = torch.zeros(4, 9)
    assert torch.equal(agent.critic(tensors, action), agent.critic(moved_tensors, action))

    buffer = ReplayBuffer(PRIVILEGED, 9, capacity=400, seed=0)
    buffer.add(_valve_batch(rng, 400), rng.uniform(-1, 1, (400, 9)), rng.normal(size=400),
               _valve_batch(rng, 400), np.zeros(400), np.zeros(400))
    plain = SAC(PRIVILEGED, 9, SACConfig(**config), seed=0)  # the same, without the aux loss
    batch = buffer.sample(32)
    first = agent.update(batch)['loss/aux']
    assert 'loss/aux' not in plain.update(batch)
    # The aux loss's step moves the encoder elsewhere, and nothing else.
    assert any(not torch.equal(p, q) for p, q in
               zip(agent.critic.encoder.parameters(), plain.critic.encoder.parameters()))
    for mine, theirs in ((agent.critic.net, plain.critic.net), (agent.actor.net, plain.actor.net)):
        assert all(torch.equal(p, q) for p, q in zip(mine.parameters(), theirs.parameters()))
    for _ in range(150):
        last = agent.update(buffer.sample(32))['loss/aux']
    assert last < 0.5 * first, (first, last)

    save_checkpoint(str(tmp_path / 'ckpt'), agent, buffer)
    restored = SAC(PRIVILEGED, 9, SACConfig(encoder_loss='both', **config), seed=7)
    load_checkpoint(str(tmp_path / 'ckpt'), restored)
    assert all(torch.equal(p, q) for p, q in zip(agent.aux_head.parameters(),
                                                 restored.aux_head.parameters()))
    network, meta = import_policy(export_policy(agent))
    assert meta['ignore'] == '["valve"]'
    assert torch.equal(network(tensors, True)[0], torch.as_tensor(agent.act(obs, True)))
    assert torch.equal(network(moved_tensors, True)[0], network(tensors, True)[0])


def test_encoder_loss_privileged_keeps_the_critics_loss_out_of_the_encoder():
    """encoder_loss='privileged': the encoder learns the prediction alone.

    Two agents from one state update on minibatches that differ only in their rewards: their
    critics move apart, their encoders stay equal (the TD loss never reaches them), and each
    policy's copy follows its encoder.
    """
    rng = np.random.default_rng(5)
    obs, next_obs = _valve_batch(rng, 16), _valve_batch(rng, 16)
    buffer = ReplayBuffer(PRIVILEGED, 9, capacity=16, seed=0)
    buffer.add(obs, rng.uniform(-1, 1, (16, 9)), np.zeros(16), next_obs, np.zeros(16),
               np.zeros(16))
    batch = buffer.sample(16)
    other = batch._replace(reward=batch.reward + 100.0)
    config = SACConfig(hidden=(32, 32), shared_encoder=True, privileged=('valve',),
                       encoder_loss='privileged')
    first, second = (SAC(PRIVILEGED, 9, config, seed=0) for _ in range(2))
    before = [p.clone() for p in first.critic.encoder.parameters()]
    for _ in range(3):
        first.update(batch)
        second.update(other)
    for a, b, old in zip(first.critic.encoder.parameters(), second.critic.encoder.parameters(),
                         before):
        assert torch.equal(a, b) and not torch.equal(a, old)
    assert any(not torch.equal(a, b) for a, b in zip(first.critic.net.parameters(),
                                                     second.critic.net.parameters()))
    for critic, actor in zip(*_encoders(first)):
        assert torch.equal(critic, actor)


def test_privileged_and_aux_settings_are_checked():
    with pytest.raises(ValueError, match="encoder_loss 'both' needs shared_encoder"):
        SACConfig(encoder_loss='both', privileged=('valve',))
    with pytest.raises(ValueError, match="encoder_loss 'privileged' needs shared_encoder"):
        SACConfig(encoder_loss='privileged', shared_encoder=True)
    with pytest.raises(ValueError, match="encoder_loss must be 'critic', 'privileged' or"):
        SACConfig(encoder_loss='actor')
    with pytest.raises(ValueError, match=r"cannot ignore \['angle'\]"):
        SAC(PRIVILEGED, 9, SACConfig(hidden=(8,), privileged=('angle',)))
    with pytest.raises(ValueError, match='flat observation'):
        SAC(12, 3, SACConfig(privileged=('valve',)))


def test_the_pixel_tasks_settings_hide_the_valve_and_teach_it():
    from sac_robot.defaults import PIXEL_DEFAULTS
    from sac_robot.tasks.dclaw import DClawTurnEnv
    from sac_robot.training import tool_settings
    env = DClawTurnEnv(pixels=True)
    obs, _ = env.reset(seed=0)
    angle = env.robot.valve_angle()
    np.testing.assert_allclose(obs['valve'], [np.cos(angle), np.sin(angle)], atol=1e-6)
    spec = spec_from_space(env.observation_space)
    env.close()
    settings = tool_settings('sac', spec)
    assert settings['privileged'] == ('valve',)
    assert settings['encoder_loss'] == PIXEL_DEFAULTS['encoder_loss'] == 'critic'
    taught = SAC(spec, 9, SACConfig(**{**settings, 'compile': False,
                                       'encoder_loss': 'privileged'}))
    assert taught.aux_head is not None
    other = tool_settings('sac', SPEC, {'encoder_loss': 'both'})  # no privileged key
    assert other['privileged'] == ()
    with pytest.raises(ValueError, match="encoder_loss 'both' needs"):
        SACConfig(**other)
    paper = tool_settings('sac', spec, {'shared_encoder': False, 'encoder_loss': 'critic'})
    assert paper['privileged'] == ('valve',)  # the valve stays out of the networks


class SideOfTheImage(gymnasium.Env):
    """One-step task: which half of the image is bright says which sign of action pays.

    The vectors carry nothing, so only the image encoder can tell the cases apart.
    """

    observation_space = gymnasium.spaces.Dict({
        'pixels': gymnasium.spaces.Box(0, 255, (32, 32, 3), np.uint8),
        'state': gymnasium.spaces.Box(-1, 1, (2,), np.float32)})
    action_space = gymnasium.spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.side = 1.0 if self.np_random.random() < 0.5 else -1.0
        image = np.zeros((32, 32, 3), np.uint8)
        image[:, (16 if self.side > 0 else 0):(32 if self.side > 0 else 16)] = 255
        return {'pixels': image, 'state': np.zeros(2, np.float32)}, {}

    def step(self, action):
        reward = float(action[0]) * self.side  # before reset() draws the next side
        return self.reset()[0], reward, True, False, {}


def test_sac_learns_from_pixels_alone():
    env = SideOfTheImage()
    spec = spec_from_space(env.observation_space)
    agent = SAC(spec, 1, SACConfig(hidden=(32, 32), batch_size=64), seed=0)
    buffer = ReplayBuffer(spec, 1, 2000, seed=0)
    obs, _ = env.reset(seed=0)
    for step in range(1200):
        action = env.action_space.sample() if step < 200 else agent.act(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buffer.add(obs, action, reward, next_obs, terminated, truncated)
        obs = next_obs
        if step >= 200:
            agent.update(buffer.sample(64))
    rewards = []
    for _ in range(100):
        obs, _ = env.reset()
        rewards.append(env.step(agent.act(obs, deterministic=True))[1])
    # The sign is right for every image (random actions score 0 on average); the size of the
    # action stays moderate, as the entropy bonus (alpha about 0.75 here) wants.
    assert min(rewards) > 0.2, rewards
