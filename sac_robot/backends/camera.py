# SPDX-License-Identifier: Apache-2.0
"""An OpenCV camera (``cv2.VideoCapture``) read by a thread of its own: the newest frame.

``source`` is what ``cv2.VideoCapture`` opens: a device index (``0``), a ``/dev/video*`` path,
a URL (``rtsp://...``, ``http://...``) or a video file. A live camera is read as fast as it
delivers (so that its driver's queue never holds old frames: the newest one is at most one
frame period old); a video file is played at ``rate`` and, with ``loop``, from its start again
at its end. A frame that cannot be read is counted (:attr:`VideoSource.failures`) and the
source opened again.

Two users: the ``camera`` node (a camera as ROS images, as usb_cam) and a hardware backend that
owns a camera (the D'Claw's, for the pixel task): it takes :meth:`VideoSource.newest` at every
control step, so that the image and the joint readings of a step share one stamp, and turns it
into the policy's view with :func:`square`.
"""

import os
import threading
import time

import numpy as np

from sac_robot.backends.interface import BackendError, BackendFault


def open_capture(source: str):
    """``cv2.VideoCapture`` of ``source`` (an all-digit source is a device index)."""
    import cv2
    capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not capture.isOpened():
        raise BackendError(f'camera: cannot open {source!r} (a device index, a /dev/video* '
                           'path, a URL or a video file; is it there, and readable?)')
    return capture


def square(frame: np.ndarray, size: int) -> np.ndarray:
    """An OpenCV (BGR) frame as an rgb8 ``[size, size, 3]`` image: centre crop, area resize."""
    import cv2
    height, width = frame.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    crop = frame[top:top + side, left:left + side]
    if side != size:
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(crop[:, :, ::-1])


class VideoSource:
    """A camera or video read in the background; :meth:`newest` is its latest frame."""

    def __init__(self, source: str, rate: float = 30.0, loop: bool = True):
        if rate <= 0:
            raise BackendError(f'camera: rate must be positive, not {rate}')
        self.source, self.rate, self.loop = str(source), float(rate), loop
        self.is_file = os.path.isfile(self.source)
        self.capture = open_capture(self.source)
        self.frames = self.failures = 0
        self.ended = False  # a video file without loop, played to its end
        self._frame, self._time = None, -np.inf
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f'camera {self.source}',
                                        daemon=True)
        self._thread.start()

    def newest(self, max_age: float | None = None) -> tuple:
        """``(frame [H, W, 3] BGR, monotonic time it was read, its number)``.

        Raises :class:`BackendFault` when no frame came for ``max_age`` seconds (a camera that
        stalled or was unplugged: an image that old is not the present).
        """
        with self._lock:
            frame, when, number = self._frame, self._time, self.frames
        age = time.monotonic() - when
        if frame is None or (max_age is not None and age > max_age):
            raise BackendFault(f'camera {self.source!r}: ' + (
                'no frame yet' if frame is None else f'no new frame for {age:.2f} s')
                + (' (the video ended)' if self.ended else f' ({self.failures} failed reads)'))
        return frame, when, number

    def wait(self, timeout: float) -> bool:
        """Whether a first frame came within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.frames == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.frames > 0

    def close(self):
        """Stop reading and release the source."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(2.0)
        self.capture.release()

    def _read(self):
        import cv2
        ok, frame = self.capture.read()
        if not ok and self.is_file and self.loop:  # a file at its end: from the start again
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self.capture.read()
        if ok and frame is not None and frame.ndim == 3 and frame.shape[2] == 3:
            return frame
        return None

    def _run(self):
        period = 1.0 / self.rate
        next_time = time.monotonic()
        while not self._stop.is_set():
            frame = self._read()
            if frame is None and self.is_file and not self.loop and self.frames:
                self.ended = True  # a video played once: no more frames
                break
            if frame is None:
                self.failures += 1  # (its owner reports them: no logging from this thread)
                self.capture.release()
                if self._stop.wait(0.5):
                    break
                try:
                    self.capture = open_capture(self.source)
                except BackendError:
                    pass  # tried again after the next failure
                continue
            with self._lock:
                self._frame, self._time = frame, time.monotonic()
                self.frames += 1
            if self.is_file:  # a file has no pace of its own
                next_time = max(next_time + period, time.monotonic() - period)
                self._stop.wait(max(0.0, next_time - time.monotonic()))
