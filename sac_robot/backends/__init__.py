# SPDX-License-Identifier: Apache-2.0
"""Robot backends: what a driver runs a robot through, simulated or real.

A backend is to the driver what a ros2_control ``SystemInterface`` is to the controller
manager (:mod:`sac_robot.backends.interface`). Vendor SDKs (dynamixel-sdk, OpenCV) are
imported inside the backends that use them, never here.
"""
