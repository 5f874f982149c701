# SPDX-License-Identifier: Apache-2.0
"""camera: an OpenCV camera (``cv2.VideoCapture``) as ROS images, as usb_cam or v4l2_camera.

``source`` is what ``cv2.VideoCapture`` opens: a device index (``0``), a ``/dev/video*`` path, a
URL (``rtsp://...``, ``http://...``) or a video file (played at ``rate``, from its start again at
its end with ``loop``). Every frame goes out on ``camera/image_raw`` (sensor_msgs/Image, rgb8, at
the camera's size, or ``width`` x ``height`` when set; header stamped with the node's clock when
the frame was read, ``frame_id`` the robot description's camera frame) and its
``camera/camera_info`` (sensor_msgs/CameraInfo: the size and the frame; no calibration). A
source that cannot be opened stops the node at start-up with one line naming it; a frame that
cannot be read later is logged and the source opened again. The reading is
:class:`sac_robot.backends.camera.VideoSource`'s (a thread of its own: the newest frame).
"""

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from sac_robot.backends.camera import VideoSource
from sac_robot.backends.interface import BackendError
from sac_robot.nodes import convert, qos
from sac_robot.nodes.params import describe
from sac_robot.nodes.spin import run
from sac_robot.robots.description import describe as describe_robot


class Camera(Node):
    """Publish an OpenCV source's frames as rgb8 images with their camera info."""

    def __init__(self, **kwargs):
        super().__init__('camera', **kwargs)
        declare = self.declare_parameter
        robot = declare('robot', 'dclaw', describe('The robot whose camera this is.')).value
        self.source = str(declare('source', '0', describe(
            'What cv2.VideoCapture opens: a device index, a /dev/video* path, a URL or a '
            'video file.')).value)
        sensor = describe_robot(robot).sensors.get('camera')
        if sensor is None:
            raise BackendError(f'camera: the {robot} has no camera in its description')
        self.frame_id = declare('frame_id', sensor.frame, describe(
            "header.frame_id of the images (default: the description's camera frame).")).value
        rate = declare('rate', 30.0, describe(
            'Frames a second to read (a camera gives its own pace: then this only bounds it).')
        ).value
        self.loop = declare('loop', True, describe(
            'A video file: from its start again at its end.')).value
        self.size = (declare('width', 0, describe('Resize to this width (0: as it comes).')).value,
                     declare('height', 0, describe('Resize to this height (0: as it comes).')
                             ).value)
        self.video = VideoSource(self.source, rate, self.loop)
        self.images = self.create_publisher(Image, sensor.topic, qos.SENSOR_RELIABLE)
        self.infos = self.create_publisher(
            CameraInfo, sensor.topic.rsplit('/', 1)[0] + '/camera_info', qos.SENSOR_RELIABLE)
        self.frames, self.failures, self.last_number = 0, 0, 0
        # Twice a frame period: a new frame goes out within half a period of its reading.
        self.create_timer(0.5 / rate, self.on_timer)
        self.get_logger().info(f'camera {self.source!r} on {sensor.topic}')

    def read(self):
        """The newest frame as rgb8 ``[H, W, 3]``, or None when none came since the last."""
        import cv2
        if self.video.failures > self.failures:
            self.failures = self.video.failures
            self.get_logger().error(f'camera {self.source!r}: no frame ({self.failures} failed '
                                    'reads; opening it again)', throttle_duration_sec=2.0)
        try:
            frame, _, number = self.video.newest()
        except BackendError:  # (a BackendFault) none yet
            return None
        if number == self.last_number:
            return None
        self.last_number = number
        if all(self.size):
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(frame[:, :, ::-1])  # OpenCV's BGR to rgb8

    def on_timer(self):
        """Publish the newest frame with its camera info (stamped when it is sent)."""
        rgb = self.read()
        if rgb is None:
            return
        stamp = self.get_clock().now().nanoseconds
        self.images.publish(convert.image(rgb, stamp, self.frame_id))
        info = CameraInfo(height=rgb.shape[0], width=rgb.shape[1])
        info.header.stamp, info.header.frame_id = convert.to_stamp(stamp), self.frame_id
        self.infos.publish(info)
        self.frames += 1

    def close(self):
        """Release the camera."""
        self.video.close()


def main(args=None) -> int:
    """Run the camera node."""
    return run(Camera, args)
