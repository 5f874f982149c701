# SPDX-License-Identifier: Apache-2.0
"""Bringup: the node graphs, described once, and the launcher for machines without ``ros2``.

:mod:`sac_robot.bringup.graph` describes a graph (its launch arguments and the nodes they
select) in plain Python. ``launch/*.launch.py`` turn that description into a ROS 2
``LaunchDescription`` (:mod:`sac_robot.bringup.ros_launch`) for ``ros2 launch``, and
``sac-robot launch`` runs the same description with :mod:`sac_robot.bringup.launcher`.
"""
