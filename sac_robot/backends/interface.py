# SPDX-License-Identifier: Apache-2.0
"""The backend interface, in the spirit of ros2_control's ``SystemInterface``.

A driver runs any robot through the same life cycle, whatever is behind it (a MuJoCo model,
servos on a bus):

- ``configure()``: reach the hardware (open the port, find every servo, check the models) and
  set it up; nothing moves. Raises :class:`BackendError` with what is missing and where.
- ``activate()``: torque on, holding where the robot is.
- ``read()``: one reading of every state interface, ``{sensor key: tuple of arrays}`` in the
  description's joint order, the fields of the sensor's message in their order (joint states:
  positions, velocities, efforts; see :data:`sac_robot.nodes.convert.SENSOR_MESSAGES`).
- ``write(targets)``: the command interfaces (joint position targets, rad, description order),
  clipped by the backend to what is safe.
- ``reset(options)``: bring the robot to an episode's start; returns a :class:`ResetResult`.
- ``deactivate()``: torque off (or hold, where dropping would hurt the robot).
- ``close()``: release the hardware; torque is off after it on every path out.

A failure during operation (a servo that stops answering, a corrupt reply past the retries, a
hardware error bit) raises :class:`BackendFault`, which names the joint and the error: the
driver ends the episode truncated with that reason, never reuses a stale reading.
"""

import abc
import dataclasses

import numpy as np

from sac_robot.robots.description import RobotDescription


class BackendError(RuntimeError):
    """The backend cannot start: the message says what is missing and where (port, ID)."""


class BackendFault(RuntimeError):  # noqa: N818 - a fault, in ros2_control's words
    """The hardware failed while running: which joint (or servo) and which error."""

    def __init__(self, message: str, joint: str | None = None, servo: int | None = None):
        super().__init__(message)
        self.joint, self.servo = joint, servo


@dataclasses.dataclass
class ResetResult:
    """How a reset went."""

    success: bool
    message: str = ''
    #: Attempts made (a scripted reset retries a bounded number of times).
    attempts: int = 1
    #: A person must step in (the scripted reset gave up); the driver waits for a confirmation.
    needs_operator: bool = False


class Backend(abc.ABC):
    """A robot's state and command interfaces, and its life cycle (module docstring)."""

    #: The robot it drives.
    description: RobotDescription
    #: Whether time passes only when the driver says so (``advance()``, one control period):
    #: a simulation, which the driver may run in lockstep. Hardware runs on the wall clock.
    simulated = False
    #: Launch arguments of the robot's graphs on this backend (``hardware:=real``): argument
    #: name -> (the driver parameter it sets, its description), e.g. ``port:=``.
    launch_arguments: dict = {}

    @property
    def sensors(self) -> tuple:
        """The description's sensor keys that :meth:`read` reports."""
        return tuple(self.description.sensors)

    @property
    def hardware_id(self) -> str:
        """What it runs, for diagnostics (``hardware_id`` of a ``DiagnosticStatus``)."""
        return type(self).__name__

    def status(self) -> dict:
        """Figures for diagnostics, name -> value (the bus time of the last step, counts)."""
        return {}

    @property
    def state_interfaces(self) -> tuple:
        """Names of what :meth:`read` reports, ros2_control style (``joint/interface``)."""
        return tuple(f'{joint}/{interface}' for joint in self.description.joints
                     for interface in ('position', 'velocity'))

    @property
    def command_interfaces(self) -> tuple:
        """Names of what :meth:`write` takes: one position target per joint."""
        return tuple(f'{joint}/position' for joint in self.description.joints)

    @classmethod
    def from_parameters(cls, declare, logger=None) -> 'Backend':
        """The backend made from a driver's parameters.

        ``declare(name, default, description)`` declares one (dotted names group a backend's
        settings, e.g. ``dynamixel.port``) and returns its value; ``logger`` has ROS's
        ``info``/``warning``/``error``.
        """
        raise NotImplementedError(f'{cls.__name__} cannot be made from parameters')

    def attach(self, node) -> None:  # noqa: B027 - optional
        """Take the driver's node, before :meth:`configure` (others ignore it).

        For a backend that speaks ROS itself: a ros2_control stack's topics.
        """

    def detach(self) -> None:  # noqa: B027 - optional
        """Let go of what :meth:`attach` made (threads, subscriptions); the node's end calls it."""

    def configure(self) -> None:  # noqa: B027 - optional, like SystemInterface's
        """Reach and set up the hardware; nothing moves."""

    def activate(self) -> None:  # noqa: B027 - optional, like SystemInterface's
        """Torque on."""

    def deactivate(self) -> None:  # noqa: B027 - optional, like SystemInterface's
        """Torque off (or hold)."""

    @abc.abstractmethod
    def read(self) -> dict:
        """Every state interface now: ``{sensor key: tuple of arrays}``."""

    @abc.abstractmethod
    def write(self, targets: np.ndarray) -> None:
        """Joint position targets (rad, description order)."""

    @abc.abstractmethod
    def reset(self, options: dict | None = None) -> ResetResult:
        """Bring the robot to an episode's start."""

    def operator_confirmed(self) -> None:  # noqa: B027 - optional
        """Hear that a person set the robot right after a reset that asked for one.

        (``needs_operator``); the driver's next reset follows.
        """

    def emergency_stop(self) -> None:
        """Command the robot no more: torque off (the default), or what this robot needs."""
        self.deactivate()

    def release_emergency_stop(self) -> None:  # noqa: B027 - optional
        """The stop is released; the driver's next reset activates the robot again."""

    def close(self) -> None:  # noqa: B027 - optional, like SystemInterface's
        """Release the hardware (torque off first)."""
