# SPDX-License-Identifier: Apache-2.0
"""robot_state: the robot for rviz and Foxglove, its URDF and the transforms of its links.

What robot_state_publisher does for a tree, for our robots and without a ROS install:

- ``robot_description`` (std_msgs/String, latched): the URDF generated from the MuJoCo model
  (:mod:`sac_robot.robots.urdf`), as robot_state_publisher publishes it;
- ``/tf_static`` (latched): every fixed joint, sensors' frames included (the IMU's, the
  camera's optical frame);
- ``/tf``: every moving joint's transform at each joint state (``joint_states``, and
  ``valve/joint_states`` for the D'Claw), stamped as the measurement. The Minitaur's passive
  knees, which no encoder measures, come from the motor angles by the linkage's geometry, so
  rviz draws whole legs (robot_state_publisher would leave those links without a transform);
- ``world -> base_link`` on ``/tf`` from motion capture (``mocap/pose``, the marker's pose,
  less the marker's offset on the base), for a robot that moves in the world (REP 105).

Frames are the URDF's links, prefixed with ``frame_prefix`` (several robots on one ``/tf``:
``dclaw0/``). Run it with the graph (``tf:=true``) or alone:
``ros2 run sac_robot robot_state --ros-args -r __ns:=/minitaur``. A malformed joint state or
pose is refused with a line naming the topic and why, and the node goes on.
"""

import numpy as np
from geometry_msgs.msg import PoseStamped, TransformStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from tf2_msgs.msg import TFMessage

from sac_robot.nodes import convert, qos
from sac_robot.nodes.params import declare_robot, describe
from sac_robot.nodes.rejections import Rejections
from sac_robot.nodes.spin import run
from sac_robot.robots import urdf
from sac_robot.robots.description import describe as describe_robot

#: tf2_ros's broadcasters' QoS: /tf reliable and volatile (depth 100), /tf_static latched.
TF = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
TF_STATIC = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                       reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.TRANSIENT_LOCAL)


def transform_message(parent: str, child: str, matrix: np.ndarray, stamp) -> TransformStamped:
    """A ``geometry_msgs/TransformStamped`` of ``child``'s frame in ``parent``'s."""
    msg = TransformStamped()
    msg.header.stamp, msg.header.frame_id, msg.child_frame_id = stamp, parent, child
    t = msg.transform.translation
    t.x, t.y, t.z = (float(v) for v in matrix[:3, 3])
    r = msg.transform.rotation
    r.w, r.x, r.y, r.z = (float(v) for v in urdf.quaternion(matrix))
    return msg


class RobotState(Node):
    """Publish the robot's URDF, its fixed frames once and its moving links at every state."""

    def __init__(self, **kwargs):
        super().__init__('robot_state', **kwargs)
        self.robot = declare_robot(self)
        self.prefix = self.declare_parameter('frame_prefix', '', describe(
            "Put before every frame of this robot (several robots on one /tf: 'dclaw0/').")).value
        self.kinematics = urdf.robot_kinematics(self.robot)
        description = describe_robot(self.robot)
        self.positions = {}  # joint name -> newest position
        self.rejections = Rejections(self.get_logger())
        self.tf = self.create_publisher(TFMessage, '/tf', TF)
        self.tf_static = self.create_publisher(TFMessage, '/tf_static', TF_STATIC)
        self.description = self.create_publisher(String, 'robot_description', qos.LATCHED)
        self.description.publish(String(data=urdf.urdf(self.kinematics)))
        now = self.get_clock().now().to_msg()
        self.tf_static.publish(TFMessage(transforms=[
            transform_message(self.frame(j.parent), self.frame(j.child), j.origin, now)
            for j in self.kinematics.joints if j.type == 'fixed']))
        self.states = []
        for sensor in description.sensors.values():
            if sensor.message == 'sensor_msgs/JointState':
                self.states.append(sensor.topic)
                self.create_subscription(
                    JointState, sensor.topic,
                    lambda msg, topic=sensor.topic: self.on_joint_state(msg, topic), qos.SENSOR)
        self.marker = None
        mocap = next((sensor for sensor in description.sensors.values() if sensor.tracked),
                     None)
        if mocap is not None and self.kinematics.root == 'base_link':
            # The marker's frame in the base's: the pose of the marker gives the base's.
            frames = urdf.forward(self.kinematics,
                                  dict.fromkeys(self.kinematics.moving(), 0.0))
            self.marker = np.linalg.inv(frames[mocap.tracked])
            self.world, self.mocap_topic = mocap.frame, mocap.topic
            self.create_subscription(PoseStamped, mocap.topic, self.on_pose, qos.SENSOR)
        self.published = 0
        self.get_logger().info(
            f'{self.robot}: robot_description ({len(self.kinematics.links)} links), '
            f'/tf_static, /tf from {", ".join(self.resolve_topic_name(t) for t in self.states)}'
            + (f' and {self.resolve_topic_name(mocap.topic)}' if self.marker is not None
               else '') + (f'; frames prefixed {self.prefix!r}' if self.prefix else ''))

    def frame(self, link: str) -> str:
        """The /tf name of a link (``world`` is shared by every robot)."""
        return link if link == 'world' else self.prefix + link

    def on_joint_state(self, msg: JointState, topic: str):
        """Take the positions; publish every moving link once all joints are known."""
        try:
            if len(msg.position) != len(msg.name):
                raise convert.MessageError(f'{topic}: {len(msg.name)} names but '
                                           f'{len(msg.position)} positions')
            values = np.asarray(msg.position, np.float64)
            if not np.isfinite(values).all():
                raise convert.MessageError(f'{topic}: a position is not finite')
            positions = dict(zip(msg.name, values.tolist()))
            unknown = [name for name in positions if name not in self.kinematics.moving()]
            if unknown:
                raise convert.MessageError(f'{topic}: joint(s) {", ".join(unknown)} are not '
                                           f"the {self.robot}'s")
        except convert.MessageError as error:
            self.rejections(topic, str(error))
            return
        self.positions.update(positions)
        try:
            full = urdf.passive_positions(self.robot, self.positions)
            moving = urdf.link_transforms(self.kinematics, full)
        except KeyError:
            return  # (not every joint heard from yet: the other topic's first message)
        self.tf.publish(TFMessage(transforms=[
            transform_message(self.frame(parent), self.frame(child), matrix, msg.header.stamp)
            for parent, child, matrix in moving]))
        self.published += 1

    def on_pose(self, msg: PoseStamped):
        """``world -> base_link`` from the marker's tracked pose."""
        try:
            position, orientation = convert.read_pose(msg, self.mocap_topic)
        except convert.MessageError as error:
            self.rejections(self.mocap_topic, str(error))
            return
        base = urdf.transform(position, orientation) @ self.marker
        self.tf.publish(TFMessage(transforms=[transform_message(
            msg.header.frame_id or self.world, self.frame('base_link'), base,
            msg.header.stamp)]))


def main(args=None) -> int:
    """Run the robot_state node."""
    return run(RobotState, args)
