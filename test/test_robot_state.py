# SPDX-License-Identifier: Apache-2.0
"""The robots for rviz: URDF equal to the MuJoCo models, and their links on /tf."""

import math
import os
import sys
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest
from conftest import spin_until
from rclpy.parameter import Parameter

from sac_robot.robots import urdf
from sac_robot.robots.description import describe


def world_frames(model, data) -> dict:
    """Every body's frame in the world, from MuJoCo."""
    frames = {}
    for body in range(1, model.nbody):
        matrix = np.eye(4)
        matrix[:3, :3] = data.xmat[body].reshape(3, 3)
        matrix[:3, 3] = data.xpos[body]
        frames[model.body(body).name] = matrix
    return frames


def test_the_dclaws_urdf_moves_as_its_mujoco_model():
    """Forward kinematics of the URDF equal MuJoCo's bodies at random joint angles."""
    import mujoco

    from sac_robot.robots.dclaw import DClawSim
    sim = DClawSim()
    model, data = sim.model, sim.data
    robot = urdf.robot_kinematics('dclaw')
    assert robot.root == 'world'
    rng = np.random.default_rng(0)
    for _ in range(5):
        positions = {}
        for j in range(model.njnt):
            low, high = model.jnt_range[j] if model.jnt_limited[j] else (-math.pi, math.pi)
            data.qpos[model.jnt_qposadr[j]] = positions[model.joint(j).name] = rng.uniform(
                low, high)
        mujoco.mj_kinematics(model, data)
        mujoco.mj_camlight(model, data)
        ours = urdf.forward(robot, positions)
        for name, matrix in world_frames(model, data).items():
            if name in ours:
                np.testing.assert_allclose(ours[name], matrix, atol=1e-9, err_msg=name)
    # The camera's optical frame looks where MuJoCo's camera looks (its -z), y down.
    camera = model.camera('valve_camera')
    optical = ours['valve_camera']
    np.testing.assert_allclose(optical[:3, 3], data.cam_xpos[camera.id], atol=1e-9)
    cam = data.cam_xmat[camera.id].reshape(3, 3)
    np.testing.assert_allclose(optical[:3, 2], -cam[:, 2], atol=1e-9)
    np.testing.assert_allclose(optical[:3, 1], -cam[:, 1], atol=1e-9)


def test_the_minitaurs_urdf_closes_its_legs_as_the_physics_does():
    """Motors measured, knees computed: the linkage closes at the foot and matches MuJoCo.

    MuJoCo's equality constraint is soft (a few millimetres at the foot under load), so the
    knees agree within a few degrees; the upper legs, driven by measured motors, exactly.
    """
    import mujoco

    from sac_robot.robots.minitaur import MinitaurSim
    sim = MinitaurSim()
    model, data = sim.model, sim.data
    robot = urdf.robot_kinematics('minitaur')
    assert robot.root == 'base_link'
    motors = describe('minitaur').joints
    rng = np.random.default_rng(1)
    for _ in range(3):
        data.ctrl[:] = 1.3 + rng.uniform(-0.6, 0.6, 8)
        for _ in range(400):
            mujoco.mj_step(model, data)
        mujoco.mj_kinematics(model, data)  # (mj_step's frames are those before its last step)
        measured = {m: float(data.qpos[model.joint(m).qposadr[0]]) for m in motors}
        full = urdf.passive_positions('minitaur', measured)
        for leg in ('fl', 'bl', 'fr', 'br'):
            for side in 'ab':
                knee = f'{leg}_knee_{side}'
                assert abs(full[knee] - data.qpos[model.joint(knee).qposadr[0]]) < 0.05, knee
        ours = urdf.forward(robot, full)
        base = world_frames(model, data)['base']
        for name, matrix in world_frames(model, data).items():
            if name in ours and 'lower' not in name:
                np.testing.assert_allclose(base @ ours[name], matrix, atol=1e-9, err_msg=name)
        for leg in ('fl', 'bl', 'fr', 'br'):
            tips = [ours[f'{leg}_lower_{side}'] @ [0, 0, -0.2, 1] for side in 'ab']
            assert np.linalg.norm(tips[0] - tips[1]) < 1e-9, leg  # (closed)


@pytest.mark.parametrize('robot', ['minitaur', 'dclaw'])
def test_the_urdf_is_one_tree_with_the_robots_joints_and_frames(robot):
    """Every link once, every joint's parent known before it, measured joints by their names.

    The sensors' frames are links (what their headers name), and rviz's required fields are
    there (limits with effort and velocity).
    """
    root = ElementTree.fromstring(urdf.urdf(urdf.robot_kinematics(robot)))
    links = [link.get('name') for link in root.findall('link')]
    assert len(links) == len(set(links))
    children = [joint.find('child').get('link') for joint in root.findall('joint')]
    assert sorted(children + [links[0]]) == sorted(links)  # one root, each link a child once
    joints = {joint.get('name'): joint for joint in root.findall('joint')}
    description = describe(robot)
    for name in description.joints:
        assert joints[name].get('type') == 'revolute'
        limit = joints[name].find('limit')
        assert float(limit.get('lower')) < float(limit.get('upper'))
        assert limit.get('effort') is not None and limit.get('velocity') is not None
    for sensor in description.sensors.values():
        assert sensor.frame in links or sensor.frame == 'world', sensor
    assert all(v.find('geometry')[0].tag in ('box', 'sphere', 'cylinder')
               for v in root.iter('visual'))


def test_the_venvs_tf2_msgs_is_upstreams():
    """The venv's tf2_msgs (built from interfaces/) hashes as upstream's definition does.

    rosbags carries upstream's message definitions and computes RIHS01 hashes on its own: a
    tf2_ros listener built against upstream matches our /tf only if they agree.
    """
    import json

    from rosbags.typesys import Stores, get_typestore
    expected = get_typestore(Stores.LATEST).hash_rihs01('tf2_msgs/msg/TFMessage')
    with open(os.path.join(sys.prefix, 'share', 'tf2_msgs', 'msg', 'TFMessage.json')) as f:
        hashes = json.load(f)['type_hashes']
    ours = next(h['hash_string'] for h in hashes if h['type_name'] == 'tf2_msgs/msg/TFMessage')
    assert ours == expected


@pytest.mark.ros
def test_robot_state_publishes_the_urdf_and_every_link_of_the_walking_robot(
        ros_context, executor):
    """robot_state beside a real-time Minitaur: the URDF, the fixed frames, every moving link.

    ``world -> base_link`` from the motion capture lands on the simulated base; a NaN joint
    state is refused with a line and the node goes on.
    """
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String
    from tf2_msgs.msg import TFMessage

    from sac_robot.nodes import qos
    from sac_robot.nodes.driver import Driver
    from sac_robot.nodes.robot_state import RobotState
    from sac_robot.srv import Reset
    driver = Driver(context=ros_context, namespace='/minitaur', parameter_overrides=[
        Parameter('clock', value='realtime'), Parameter('thread_priority', value=0)])
    state = RobotState(context=ros_context, namespace='/minitaur')
    probe = Node('probe', namespace='/minitaur', context=ros_context)
    for node in (driver, state, probe):
        executor.add_node(node)
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    descriptions, statics, dynamic = [], [], []
    probe.create_subscription(String, 'robot_description', descriptions.append, latched)
    probe.create_subscription(TFMessage, '/tf_static', statics.append, latched)
    probe.create_subscription(TFMessage, '/tf', dynamic.append, 100)
    reset = probe.create_client(Reset, 'reset')
    assert spin_until(executor, reset.service_is_ready)
    future = reset.call_async(Reset.Request(seed=0, reason='test'))
    assert spin_until(executor, future.done) and future.result().success
    assert spin_until(executor, lambda: descriptions and statics and len(dynamic) > 20)
    root = ElementTree.fromstring(descriptions[0].data)
    assert root.get('name') == 'minitaur'
    fixed = {(t.header.frame_id, t.child_frame_id) for t in statics[0].transforms}
    assert ('base_link', 'imu') in fixed and ('base_link', 'mocap') in fixed
    moving = {t.child_frame_id: t for msg in dynamic for t in msg.transforms}
    links = {j.find('child').get('link') for j in root.findall('joint')
             if j.get('type') != 'fixed'}
    assert len(links) == 16 and set(moving) == links | {'base_link'}  # (knees included)
    world = moving['base_link']
    assert world.header.frame_id == 'world'
    base = driver.backend.sim.data.xpos[driver.backend.sim.model.body('base').id]
    position = world.transform.translation
    assert np.linalg.norm([position.x - base[0], position.y - base[1],
                           position.z - base[2]]) < 0.02  # (10 ms of walking at most)
    # A NaN joint state: refused and said; the node goes on with the next good one.
    bad = probe.create_publisher(JointState, 'joint_states', qos.SENSOR_RELIABLE)
    bad.publish(JointState(name=list(describe('minitaur').joints),
                           position=[math.nan] * 8))
    assert spin_until(executor, lambda: sum(state.rejections.counts.values()) >= 1)
    before = state.published
    assert spin_until(executor, lambda: state.published > before + 5)
    driver.close()
    for node in (driver, state, probe):
        node.destroy_node()
