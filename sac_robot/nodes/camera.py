# SPDX-License-Identifier: Apache-2.0
"""camera: an OpenCV camera (``cv2.VideoCapture``) as ROS images, as usb_cam or v4l2_camera.

``source`` is what ``cv2.VideoCapture`` opens: a device index (``0``), a ``/dev/video*`` path, a
URL (``rtsp://...``, ``http://...``) or a video file (played at ``rate``, from its start again at
its end with ``loop``). Every frame goes out on ``camera/image_raw`` (sensor_msgs/Image, rgb8, at
the camera's size, or ``width`` x ``height`` when set; header stamped with the node's clock when
the frame was read, ``frame_id`` the robot description's camera frame) and its
``camera/camera_info`` (sensor_msgs/CameraInfo: the size and the frame; no calibration). A
source that cannot be opened stops the node at start-up with one line naming it; a frame that
cannot be read later is logged and the source opened again.
"""

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from sac_robot.backends.interface import BackendError
from sac_robot.nodes import convert, qos
from sac_robot.nodes.params import describe
from sac_robot.nodes.spin import run
from sac_robot.robots.description import describe as describe_robot


def open_source(source: str):
    """``cv2.VideoCapture`` of ``source`` (an all-digit source is a device index)."""
    import cv2
    capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not capture.isOpened():
        raise BackendError(f'camera: cannot open {source!r} (a device index, a /dev/video* '
                           'path, a URL or a video file; is it there, and readable?)')
    return capture


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
        if rate <= 0:
            raise ValueError(f'camera: rate must be positive, not {rate}')
        self.capture = open_source(self.source)
        self.images = self.create_publisher(Image, sensor.topic, qos.SENSOR_RELIABLE)
        self.infos = self.create_publisher(
            CameraInfo, sensor.topic.rsplit('/', 1)[0] + '/camera_info', qos.SENSOR_RELIABLE)
        self.frames, self.failures = 0, 0
        self.create_timer(1.0 / rate, self.on_timer)
        self.get_logger().info(f'camera {self.source!r} on {sensor.topic}')

    def read(self):
        """The next frame as rgb8 ``[H, W, 3]``, or None (logged; the source opened again)."""
        import cv2
        ok, frame = self.capture.read()
        if not ok and self.loop:  # a file at its end: from the start again
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self.capture.read()
        if not ok or frame is None or frame.ndim != 3 or frame.shape[2] != 3:
            self.failures += 1
            self.get_logger().error(f'camera {self.source!r}: no frame (opening it again)',
                                    throttle_duration_sec=2.0)
            self.capture.release()
            try:
                self.capture = open_source(self.source)
            except BackendError:
                pass  # tried again at the next frame
            return None
        if all(self.size):
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(frame[:, :, ::-1])  # OpenCV's BGR to rgb8

    def on_timer(self):
        """Read a frame and publish it with its camera info."""
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
        self.capture.release()


def main(args=None) -> int:
    """Run the camera node."""
    return run(Camera, args)
