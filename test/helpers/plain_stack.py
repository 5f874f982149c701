# SPDX-License-Identifier: Apache-2.0
"""A Minitaur's ros2_control stack and vrpn_mocap, played by plain rclpy (none of sac_robot).

``plain_stack.py <controller joint order ...>``: publishes /joint_states (the URDF's names, in
its own order: the reverse), /imu_sensor_broadcaster/imu and /vrpn_mocap/minitaur/pose at
200 Hz with their drivers' QoS, the robot standing still with joint k (URDF order) at
1.0 + 0.1 k; prints ``stack up``, then ``command v0 .. v7`` for the first command on
/forward_position_controller/commands, as the controller would take it.
"""

import sys

import rclpy
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Float64MultiArray

URDF = ['motor_front_leftL_joint', 'motor_front_leftR_joint', 'motor_back_leftL_joint',
        'motor_back_leftR_joint', 'motor_front_rightL_joint', 'motor_front_rightR_joint',
        'motor_back_rightL_joint', 'motor_back_rightR_joint']


def main():
    controller_joints = sys.argv[1:] or URDF
    rclpy.init()
    node = Node('plain_stack')
    states = node.create_publisher(JointState, '/joint_states', 10)
    imus = node.create_publisher(Imu, '/imu_sensor_broadcaster/imu', 10)
    poses = node.create_publisher(PoseStamped, '/vrpn_mocap/minitaur/pose',
                                  qos_profile_sensor_data)
    printed = []

    def on_command(msg):
        if len(msg.data) == len(controller_joints) and not printed:
            printed.append(True)
            print('command ' + ' '.join(repr(v) for v in msg.data), flush=True)

    node.create_subscription(Float64MultiArray, '/forward_position_controller/commands',
                             on_command, 10)

    def publish():
        stamp = node.get_clock().now().to_msg()
        state = JointState()
        state.header.stamp = stamp
        state.name = list(reversed(URDF))
        state.position = [1.0 + 0.1 * URDF.index(name) for name in state.name]
        state.velocity = [0.0] * 8
        state.effort = [0.0] * 8
        states.publish(state)
        imu = Imu()
        imu.header.stamp, imu.header.frame_id = stamp, 'imu_link'
        imu.orientation.w = 1.0
        imu.linear_acceleration.z = 9.81
        imus.publish(imu)
        pose = PoseStamped()
        pose.header.stamp, pose.header.frame_id = stamp, 'world'
        pose.pose.position.z = 0.2
        pose.pose.orientation.w = 1.0
        poses.publish(pose)

    node.create_timer(0.005, publish)
    print('stack up', flush=True)
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass


if __name__ == '__main__':
    main()
