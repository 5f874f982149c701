# SPDX-License-Identifier: Apache-2.0
"""The simulated Minitaur: model, robot accessors, the walking task, reward terms."""

import gymnasium
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from sac_robot.rewards import minitaur_safety, minitaur_walk_reward
from sac_robot.robots import asset_path
from sac_robot.robots.minitaur import (MOCAP_HEIGHT, MOTORS, STANDING_EXTENSION, MinitaurSim,
                                       feet_forward, front_feet_forward, leg_length,
                                       leg_to_motors, motors_to_leg, quat_to_rpy)
from sac_robot.tasks.minitaur import HistoryStack, MinitaurWalkEnv


def trot(step: int, frequency: float = 2.0) -> np.ndarray:
    """An open-loop trot: diagonal legs (fl+br, bl+fr) in phase, swing leading extension."""
    phase = 2 * np.pi * frequency * step * 0.01 + np.array([0, np.pi, np.pi, 0])
    return np.concatenate([0.6 * np.sin(phase), 0.5 * np.cos(phase)])


def test_model_compiles_and_steps_a_second_without_warnings():
    model = mujoco.MjModel.from_xml_path(asset_path('minitaur', 'scene_flat.xml'))
    data = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data, model.key('home').id)
    rng = np.random.default_rng(0)
    for _ in range(int(1.0 / model.opt.timestep)):
        data.ctrl[:] = STANDING_EXTENSION + rng.uniform(-0.8, 0.8, model.nu)
        mujoco.mj_step(model, data)
    assert all(w.number == 0 for w in data.warning), [w.number for w in data.warning]
    assert np.all(np.isfinite(data.qpos))
    assert [model.actuator(i).name for i in range(model.nu)] == list(MOTORS)
    visual = model.geom_group == 2
    assert np.all(model.geom_contype[visual] == 0) and np.all(model.geom_conaffinity[visual] == 0)
    assert model.neq == 4  # one loop closure per leg
    assert MinitaurSim().total_mass() == pytest.approx(6.0, abs=0.1)


@pytest.mark.parametrize('swing, extension', [(0.0, 1.3), (0.4, 0.9), (-0.5, 1.8)])
def test_reset_closes_the_linkage_where_the_leg_formula_says(swing, extension):
    robot = MinitaurSim()
    robot.reset(swing, extension)
    lower_b = robot.model.body('fl_lower_b').id
    foot_a = robot.data.body('fl_lower_a').xpos + robot.data.body('fl_lower_a').xmat.reshape(
        3, 3) @ [0, 0, -0.2]
    assert np.allclose(foot_a, robot.data.site_xpos[robot.model.site('fl_foot').id], atol=1e-9)
    assert lower_b >= 0
    feet = robot.feet_relative_to_hips()
    length = leg_length(extension)
    assert np.allclose(feet[:, 0], length * np.sin(swing), atol=1e-9)
    assert np.allclose(feet[:, 2], -length * np.cos(swing), atol=1e-9)
    assert np.allclose(robot.motor_angles(), leg_to_motors(np.full(4, swing),
                                                           np.full(4, extension)))
    assert np.allclose(feet_forward(robot.motor_angles()), feet[:, 0], atol=1e-9)


def test_stands_under_its_own_weight_and_torque_saturates():
    robot = MinitaurSim()
    robot.reset()
    robot.step(1000)  # two seconds
    roll, pitch, _ = robot.base_rpy()
    assert 0.17 < robot.base_height() < 0.22 and abs(roll) < 0.01 and abs(pitch) < 0.01
    position, _ = robot.base_pose()
    assert position[2] - MOCAP_HEIGHT == pytest.approx(robot.base_height(), abs=1e-3)
    # The servos sag a little under 6 kg with kp = 8 N m/rad, as the real PD servos would.
    _, extension = motors_to_leg(robot.motor_angles())
    assert np.all((extension > STANDING_EXTENSION) & (extension < STANDING_EXTENSION + 0.2))
    robot.command(robot.motor_angles() + 1.0)  # 8 N m wanted, 3.5 N m available
    robot.step(1)
    assert np.allclose(np.abs(robot.motor_torques()), 3.5)


def test_leg_mapping_by_hand():
    env = MinitaurWalkEnv()
    action = np.array([1.0, -0.5, 0, 0, 0, 0.4, -1.0, 0])
    # swing = 0.5 a[:4], extension = 1.3 + 0.5 a[4:]; motors a = e - s, b = e + s.
    expected = [1.3 - 0.5, 1.3 + 0.5, 1.5 + 0.25, 1.5 - 0.25, 0.8, 0.8, 1.3, 1.3]
    assert np.allclose(env.action_to_motors(action), expected)
    swing, extension = motors_to_leg(expected)
    assert np.allclose(swing, [0.5, -0.25, 0, 0]) and np.allclose(extension, [1.3, 1.5, 0.8, 1.3])
    assert np.allclose(env.action_to_motors(np.full(8, 5.0)), env.action_to_motors(np.ones(8)))


def test_history_stacking_by_hand():
    env = MinitaurWalkEnv()
    obs, _ = env.reset(seed=0)
    assert obs.shape == (112,)
    first = obs[:12].copy()
    assert np.allclose(first[:8], env.robot.motor_angles(), atol=1e-6)
    assert np.allclose(obs[:72].reshape(6, 12), first)  # the past is o_0 six times
    assert np.all(obs[72:] == 0)  # and standing actions
    a1, a2 = np.full(8, 0.1), np.full(8, -0.2)
    obs1, *_ = env.step(a1)
    obs2, *_ = env.step(a2)
    o = obs2[:72].reshape(6, 12)
    assert np.allclose(o[1], obs1[:12]) and np.allclose(o[2], first) and np.allclose(o[5], first)
    a = obs2[72:].reshape(5, 8)
    assert np.allclose(a[0], a2) and np.allclose(a[1], a1) and np.all(a[2:] == 0)
    roll, pitch, _ = env.robot.base_rpy()
    rates = env.robot.base_angular_velocity()
    assert np.allclose(o[0], np.r_[env.robot.motor_angles(), roll, pitch, rates[:2]], atol=1e-6)
    assert env.observation_space.contains(obs2)


def test_history_ring_buffer_matches_shifting():
    """The ring buffer gives what shifting the whole vector at every step gives."""
    rng = np.random.default_rng(0)
    for history in (0, 1, 2, 5):
        stack = HistoryStack(3, 2, history)
        first = rng.normal(size=3)
        stack.reset(first)
        observations, actions = [first] * (history + 1), [np.zeros(2)] * history
        for _ in range(3 * (history + 2) * max(history, 1)):  # several ring periods
            o, a = rng.normal(size=3), rng.normal(size=2)
            stack.push(o.tolist(), a)  # lists (the environment) and arrays (the node)
            observations = [o] + observations[:-1]
            actions = ([a] + actions[:-1]) if history else []
            expected = np.concatenate(observations + actions).astype(np.float32)
            assert np.array_equal(stack.observation(), expected), history
        stack.reset(first)
        assert np.allclose(stack.observation()[:3 * (history + 1)], np.tile(first, history + 1))
        assert np.all(stack.observation()[3 * (history + 1):] == 0)


def test_fast_paths_match_the_accessors():
    """The task's per-step float paths read and write what the named accessors do."""
    robot = MinitaurSim()
    robot.reset()
    rng = np.random.default_rng(1)
    for _ in range(20):
        robot.command(robot.motor_angles() + rng.uniform(-0.3, 0.3, 8))
        robot.step(5)
    measured, position = robot.readings()
    assert measured[:8] == robot.motor_angles().tolist()
    assert measured[8:10] == list(robot.base_roll_pitch())
    assert measured[10:] == robot.base_angular_velocity()[:2].tolist()
    assert position == robot.base_position().tolist()
    motors = rng.uniform(0, 2.5, (50, 8))
    assert np.allclose([front_feet_forward(m.tolist()) for m in motors],
                       feet_forward(motors)[:, 0::2], atol=1e-12)
    # Commands: clipped motor by motor to the motor range, arrays or lists, eight only.
    low, high = robot.motor_range.T
    robot.command([-5.0, 5.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    assert robot.data.ctrl[:2].tolist() == [low[0], high[1]]
    robot.command(np.full(8, 1.2))
    assert np.all(robot.data.ctrl == 1.2)
    with pytest.raises(ValueError, match='expected 8 motor targets'):
        robot.command(np.zeros(7))
    env = MinitaurWalkEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match='action of 8 numbers, got 9'):
        env.step(np.zeros(9))
    # The reward's scalar path gives the batched path's terms for the environment's lists.
    actions = rng.uniform(-1, 1, (3, 8))
    single = minitaur_walk_reward([0.0, 0.1, 0.2], [0.01, 0.1, 0.2], 0.01, actions.tolist(),
                                  0.1, (0.02, -0.1))
    batch = minitaur_walk_reward(np.array([[0.0, 0.1, 0.2]]), np.array([[0.01, 0.1, 0.2]]), 0.01,
                                 actions[None], np.array([0.1]), np.array([[0.02, -0.1]]))
    for term, value in single.items():
        assert batch[term][0] == pytest.approx(value), term


def test_env_checker():
    env = gymnasium.make('sac_robot/MinitaurWalk-v0')
    check_env(env.unwrapped, skip_render_check=True)
    assert env.spec.max_episode_steps == 500
    env.close()


@pytest.mark.parametrize('randomize', [False, True])
def test_same_seed_same_trajectory(randomize):
    def rollout(seed):
        env = MinitaurWalkEnv(randomize=randomize)
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(1)
        trajectory = [obs] + [env.step(rng.uniform(-1, 1, 8))[0] for _ in range(20)]
        return np.array(trajectory)
    assert np.array_equal(rollout(3), rollout(3))
    if randomize:
        assert not np.array_equal(rollout(3), rollout(4))


def test_trot_walks_forward_and_standing_still_does_not():
    env = MinitaurWalkEnv()
    env.reset(seed=0)
    for step in range(300):
        _, reward, terminated, _, info = env.step(trot(step))
        assert not terminated
    assert info['position'][0] > 0.6  # 3 s of an open-loop trot: the model can walk
    env.reset(seed=0)
    for _ in range(100):
        _, reward, terminated, _, info = env.step(np.zeros(8))
    assert abs(info['position'][0]) < 0.01 and not terminated
    assert info['reward_terms']['forward_velocity'] == pytest.approx(0, abs=1e-3)


def test_pushed_over_terminates():
    env = MinitaurWalkEnv()
    env.reset(seed=0)
    env.robot.push([0, 150, 0], seconds=0.1)
    for _ in range(100):
        _, _, terminated, truncated, info = env.step(np.zeros(8))
        if terminated:
            break
    assert terminated and info['fell'] and info['tilted']


def test_command_latency_in_physics_steps():
    robot = MinitaurSim(latency=0.02)
    robot.reset()
    before = robot.data.ctrl.copy()
    robot.command(robot.motor_angles() + 0.3)
    robot.step(10)  # the first 20 ms of physics still run on the old target
    assert np.array_equal(robot.data.ctrl, before)
    robot.step(1)  # from 20 ms on, the new one
    assert np.allclose(robot.data.ctrl, before + 0.3)
    with pytest.raises(ValueError, match='latency'):
        MinitaurSim(latency=-0.01)


def test_domain_randomization_stays_in_range_and_restores():
    robot = MinitaurSim()
    nominal = robot.model.body_mass.copy()
    rng = np.random.default_rng(0)
    for _ in range(5):
        robot.randomize(rng)
        ratio = robot.model.body_mass[1:] / nominal[1:]
        assert np.all((ratio >= 0.8) & (ratio <= 1.2)) and np.ptp(ratio) > 0
        friction = robot.model.geom_friction[robot._foot_geoms, 0]
        assert np.all((friction >= 0.8) & (friction <= 1.5))
        limit = robot.model.actuator_forcerange[:, 1]
        assert np.all((limit >= 3.5 * 0.88) & (limit <= 3.5))
    robot.randomize(rng, mass=None, friction=None, strength=None, damping=None)
    assert np.array_equal(robot.model.body_mass, nominal)
    env = MinitaurWalkEnv(randomize={'latency': (0.01, 0.02)})
    env.reset(seed=0)
    assert 0.01 - 1e-9 <= env.robot.latency <= 0.02 + 1e-9


def test_reward_terms_by_hand_and_batched():
    actions = np.stack([np.full(8, 0.5), np.zeros(8), np.full(8, 0.5)])  # accel 1 per motor
    terms = minitaur_walk_reward([0, 0, 0.2], [0.003, 0.004, 0.2], 0.01, actions, 0.2,
                                 [-0.08, 0.01])
    assert terms['forward_velocity'] == pytest.approx(0.3)
    assert terms['action_acceleration'] == pytest.approx(-0.002 * 8)
    assert terms['pitch'] == pytest.approx(-0.04)
    assert terms['front_legs_under'] == pytest.approx(-10 * 0.03)
    assert terms['alive'] == pytest.approx(0.1)
    pretraining = minitaur_walk_reward([0, 0, 0.2], [0.003, 0.004, 0.2], 0.01, actions, 0.0,
                                       [0, 0], pretraining=True)
    assert pretraining['forward_velocity'] == pytest.approx(0.5)  # speed in any direction
    rng = np.random.default_rng(0)
    before, after = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    acts, pitch, feet = rng.uniform(-1, 1, (5, 3, 8)), rng.normal(size=5), rng.normal(size=(5, 2))
    batch = minitaur_walk_reward(before, after, 0.01, acts, pitch, feet)
    for i in range(5):
        single = minitaur_walk_reward(before[i], after[i], 0.01, acts[i], pitch[i], feet[i])
        for term, value in single.items():
            assert batch[term][i] == pytest.approx(value), term


def test_safety_flags():
    flags = minitaur_safety(np.array([0.0, 0.5, 0.0, 0.0]), np.array([0.0, 0.0, -0.45, 0.0]),
                            np.array([0.2, 0.2, 0.2, 0.1]), np.zeros(4), {'drift': 1.0})
    assert list(flags['tilted']) == [False, True, True, False]
    assert list(flags['low']) == [False, False, False, True]
    assert minitaur_safety(0, 0, 0.2, 1.5, {'drift': 1.0})['drifted']


def test_quaternion_to_roll_pitch_yaw():
    for rpy in ([0.1, -0.2, 0.3], [-0.3, 0.25, -2.0]):
        quat = np.empty(4)
        mujoco.mju_euler2Quat(quat, np.array(rpy), 'XYZ')  # intrinsic x-y-z = extrinsic ZYX^-1
        matrix = np.empty(9)
        mujoco.mju_quat2Mat(matrix, quat)
        r = matrix.reshape(3, 3)
        yaw, pitch, roll = np.arctan2(r[1, 0], r[0, 0]), -np.arcsin(r[2, 0]), np.arctan2(
            r[2, 1], r[2, 2])
        assert np.allclose(quat_to_rpy(quat), [roll, pitch, yaw])


def test_the_pretraining_task_rewards_speed_in_any_direction():
    """MinitaurPretrain-v0: the same robot and steps; its speed term is |velocity|, not v_x."""
    import sac_robot.tasks  # noqa: F401  (registers the tasks)
    walk = gymnasium.make('sac_robot/MinitaurWalk-v0')
    pretrain = gymnasium.make('sac_robot/MinitaurPretrain-v0')
    assert pretrain.observation_space == walk.observation_space
    walk.reset(seed=4)
    pretrain.reset(seed=4)
    rng = np.random.default_rng(4)
    sideways = 0
    for _ in range(60):
        action = rng.uniform(-1, 1, 8).astype(np.float32)
        *_, walk_info = walk.step(action)
        *_, pretrain_info = pretrain.step(action)
        forward = walk_info['reward_terms']['forward_velocity']
        speed = pretrain_info['reward_terms']['forward_velocity']
        assert speed >= abs(forward) - 1e-9 and speed >= 0
        sideways += speed > abs(forward) + 1e-6
    assert sideways > 0  # (some steps move the base sideways as well)
    walk.close()
    pretrain.close()
