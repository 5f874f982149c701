# SPDX-License-Identifier: Apache-2.0
"""A video file written by OpenCV, as the hand's camera for tests of the pixel path."""

import numpy as np


def write_video(path: str, frames: int, rate: float = 10.0) -> str:
    """A 64 x 48 MJPG video at ``rate``: green outside the centre square, in it red above blue.

    The red of frame ``k`` is ``255 - 6 * (k % 10)``: successive frames differ.
    """
    import cv2
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'MJPG'), rate, (64, 48))
    frame = np.zeros((48, 64, 3), np.uint8)  # (BGR)
    frame[:, :8], frame[:, 56:] = (0, 255, 0), (0, 255, 0)
    frame[24:, 8:56] = (255, 0, 0)
    for k in range(frames):
        frame[:24, 8:56] = (0, 0, 255 - 6 * (k % 10))
        writer.write(frame)
    writer.release()
    return path


def check_pattern(image: np.ndarray):
    """``image`` (rgb8, 32 x 32) is the video's centre square: red above, blue below."""
    assert image.shape == (32, 32, 3)
    assert (image[:12, :, 0] > 180).all() and (image[:12, :, 2] < 60).all()  # red above
    assert (image[20:, :, 2] > 200).all() and (image[20:, :, 0] < 60).all()  # blue below
    assert (image[:, :, 1] < 60).all()  # the green sides cut off
