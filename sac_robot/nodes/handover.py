# SPDX-License-Identifier: Apache-2.0
"""The in-process hand-over between a driver and a controller node of the same process.

As a ros2_control controller reads state interfaces and writes command interfaces instead of
going through topics, a policy composed with a real-time driver takes each measurement's
readings directly and writes its targets back; the topics carry the same for everyone else.
:class:`LocalControl` is the typed contract: a node offers it by deriving from it, a
controller finds it with ``isinstance`` (no attribute probing).
"""

import abc

import numpy as np


class LocalControl(abc.ABC):
    """What a driver offers a controller node of its process (see the module docstring)."""

    @abc.abstractmethod
    def offers_local_control(self) -> bool:
        """Whether it hands over now.

        A real-time driver does; a lockstep one steps on the published command, which must go
        through the topic.
        """

    @abc.abstractmethod
    def add_local_reader(self, reader, keys) -> None:
        """Call ``reader(stamp_ns, readings)`` with every measurement's ``keys`` sensors.

        The tuples the profile's ``read`` makes of their messages, before the messages go out.
        """

    @abc.abstractmethod
    def take_local_targets(self, targets: np.ndarray, stamp: int) -> bool:
        """Joint targets answering the measurement at ``stamp`` (ns); False if refused."""
