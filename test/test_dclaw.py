# SPDX-License-Identifier: Apache-2.0
"""The simulated D'Claw: model, robot accessors, the valve-turning tasks, reward terms."""

import gymnasium
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from sac_robot.rewards import dclaw_safety, dclaw_turn_reward, wrap_angle
from sac_robot.robots import asset_path
from sac_robot.robots.dclaw import JOINT_RANGE, JOINTS, RESET_POSE, DClawSim
from sac_robot.tasks.dclaw import ACTION_RANGE, DClawTurnEnv


def test_model_compiles_and_steps_a_second_without_warnings():
    model = mujoco.MjModel.from_xml_path(asset_path('dclaw', 'scene_valve.xml'))
    data = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data, model.key('home').id)
    rng = np.random.default_rng(0)
    for _ in range(int(1.0 / model.opt.timestep)):
        data.ctrl[:] = rng.uniform(*model.actuator_ctrlrange.T)
        mujoco.mj_step(model, data)
    assert all(w.number == 0 for w in data.warning), [w.number for w in data.warning]
    assert np.all(np.isfinite(data.qpos))
    # Menagerie conventions: named joints and actuators, visual and collision geoms apart.
    assert [model.actuator(i).name for i in range(model.nu)] == list(JOINTS)
    assert np.array_equal(model.jnt_range[[model.joint(j).id for j in JOINTS]], JOINT_RANGE)
    groups = {int(g) for g in model.geom_group}
    assert {2, 3} <= groups
    visual = model.geom_group == 2
    assert np.all(model.geom_contype[visual] == 0) and np.all(model.geom_conaffinity[visual] == 0)


def test_home_pose_holds_and_fingertips_reach_the_valve():
    robot = DClawSim()
    robot.reset()
    robot.step(400)  # one second
    assert np.allclose(robot.joint_positions(), RESET_POSE, atol=0.06)
    tips = robot.fingertip_positions()
    valve_height = robot.data.body('valve').xpos[2]
    assert np.all(np.abs(tips[:, 2] - valve_height) < 0.03), tips  # at spoke height
    radii = np.linalg.norm(tips[:, :2], axis=1)
    assert np.allclose(radii, radii[0], atol=1e-3)  # the three fingers are symmetric


@pytest.mark.parametrize('env_id', ['sac_robot/DClawTurn-v0', 'sac_robot/DClawTurnPixels-v0'])
def test_env_checker(env_id):
    env = gymnasium.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_same_seed_same_trajectory():
    def rollout(seed):
        env = gymnasium.make('sac_robot/DClawTurn-v0', target='random')
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(1)
        trajectory = [obs]
        for _ in range(10):
            trajectory.append(env.step(rng.uniform(-1, 1, 9))[0])
        return np.array(trajectory)
    assert np.array_equal(rollout(3), rollout(3))
    assert not np.array_equal(rollout(3), rollout(4))


def test_action_mapping_by_hand():
    action = np.array([1, -1, 0.5, 0, 0, 0, -0.5, 1, -1])
    expected = [0.48, -np.pi / 3, np.pi / 4, 0, 0, 0, -0.24, np.pi / 3, -np.pi / 2]
    assert np.allclose(DClawTurnEnv.action_to_targets(action), expected)
    assert np.allclose(DClawTurnEnv.action_to_targets(np.full(9, 3.0)), ACTION_RANGE)


def test_observation_layout():
    env = DClawTurnEnv()
    obs, _ = env.reset(seed=0)
    angle = env.robot.valve_angle()
    assert np.allclose(obs[0:9], env.robot.joint_positions(), atol=1e-6)
    assert np.allclose(obs[9:11], [np.cos(angle), np.sin(angle)], atol=1e-6)
    assert np.all(obs[11:20] == 0)  # no action yet
    obs, *_ = env.step(np.full(9, 0.25))
    assert np.allclose(obs[11:20], 0.25)
    assert obs[20] == pytest.approx(wrap_angle(env.robot.valve_angle() - np.pi), abs=1e-6)


def test_valve_turned_by_hand_changes_the_reward():
    env = DClawTurnEnv(target_angle=1.0)
    env.reset(seed=0)
    env.robot.set_valve_angle(1.0 + 2 * np.pi)  # at the target, one turn further
    info = env._info()
    assert info['success'] and info['reward_terms']['bonus_big'] == 50
    assert info['reward_terms']['bonus_small'] == 10
    assert info['reward_terms']['target_distance'] == pytest.approx(0, abs=1e-6)
    env.robot.set_valve_angle(1.0 - 0.2)
    info = env._info()
    assert not info['success'] and info['reward_terms']['bonus_big'] == 0
    assert info['reward_terms']['bonus_small'] == 10
    assert info['reward_terms']['target_distance'] == pytest.approx(-1.0)
    env.robot.set_valve_angle(1.0 + np.pi)
    assert env._info()['reward_terms']['target_distance'] == pytest.approx(-5 * np.pi)


def test_reward_terms_batched_equal_single():
    rng = np.random.default_rng(0)
    q, v = rng.normal(size=(6, 9)), rng.normal(size=(6, 9))
    angles, targets = rng.uniform(-4, 4, 6), rng.uniform(-3, 3, 6)
    batch = dclaw_turn_reward(q, v, angles, targets, RESET_POSE)
    for i in range(6):
        single = dclaw_turn_reward(q[i], v[i], angles[i], targets[i], RESET_POSE)
        for term, value in single.items():
            assert batch[term][i] == pytest.approx(value), term
    # Only velocities of at least 0.5 rad/s are penalized.
    slow = dclaw_turn_reward(RESET_POSE, np.full(9, 0.4), 0.0, 0.0, RESET_POSE)
    assert slow['joint_velocity'] == 0 and slow['pose_difference'] == 0


def test_safety_flags():
    joint_range = np.tile([[-1.0, 1.0]], (9, 1))
    q = np.zeros(9)
    q[0], q[1] = 0.95, -0.99  # within 5 degrees (0.087 rad) of a limit
    v = np.zeros(9)
    v[2] = -1.5
    flags = dclaw_safety(q, v, joint_range)
    assert list(np.flatnonzero(flags['near_limit'])) == [0, 1]
    assert list(np.flatnonzero(flags['too_fast'])) == [2]


def test_pixel_observations_show_the_valve_turning():
    env = DClawTurnEnv(pixels=True)
    obs, _ = env.reset(seed=0)
    assert obs['pixels'].shape == (32, 32, 3) and obs['pixels'].dtype == np.uint8
    assert obs['joints'].shape == obs['velocities'].shape == (9,)
    assert obs['pixels'].std() > 10  # an image, not a blank frame
    before = obs['pixels'].astype(int)
    env.robot.set_valve_angle(env.robot.valve_angle() + 2 * np.pi / 6)
    after = env._observation()['pixels'].astype(int)
    # The camera is aimed at the valve: a sixth of a turn changes over a fifth of the pixels
    # (28-32 % at any start; the first camera, which framed it small, about 10 %).
    assert (np.abs(after - before).max(-1) > 30).mean() > 0.2
    env.close()


def test_frames_stack_the_last_images_newest_last():
    env = DClawTurnEnv(pixels=True, frames=3)
    assert env.observation_space['pixels'].shape == (32, 32, 9)
    obs, _ = env.reset(seed=0)
    first = obs['pixels']
    assert first.shape == (32, 32, 9)
    assert np.array_equal(first[..., :3], first[..., 3:6])  # after a reset: repeated
    assert np.array_equal(first[..., :3], first[..., 6:])
    frames = [first[..., 6:]]
    for _ in range(3):
        obs, *_ = env.step(env.action_space.sample())
        frames.append(env.robot.render(32, 32))
        assert np.array_equal(obs['pixels'][..., 6:], frames[-1])  # the newest last
        assert np.array_equal(obs['pixels'][..., 3:6], frames[-2])
    assert not np.array_equal(obs['pixels'][..., :3], obs['pixels'][..., 6:])
    assert env.observation_space.contains(obs)
    obs, _ = env.reset(seed=1)  # a new episode forgets the last one's images
    assert np.array_equal(obs['pixels'][..., :3], obs['pixels'][..., 6:])
    env.close()
    for frames in (0, 1.5):
        with pytest.raises(ValueError, match='frames must be a whole number'):
            DClawTurnEnv(pixels=True, frames=frames)


def test_missing_gl_backend_names_the_packages(monkeypatch):
    from sac_robot.robots import rendering
    monkeypatch.delenv('MUJOCO_GL', raising=False)
    monkeypatch.setattr(rendering.ctypes.util, 'find_library', lambda name: None)
    with pytest.raises(rendering.RenderingError, match='libegl-mesa0.*libosmesa6'):
        rendering.configure_gl()
    monkeypatch.setattr(rendering.ctypes.util, 'find_library',
                        lambda name: 'libOSMesa.so.8' if name == 'OSMesa' else None)
    assert rendering.configure_gl() == 'osmesa'
