# SPDX-License-Identifier: Apache-2.0
"""Parameter declarations shared by the graph's nodes."""

from rcl_interfaces.msg import ParameterDescriptor


def describe(text: str) -> ParameterDescriptor:
    """A parameter descriptor carrying ``text`` (what ``ros2 param describe`` shows)."""
    return ParameterDescriptor(description=text)


def declare_robot(node) -> str:
    """Declare ``robot`` (``minitaur`` or ``dclaw``); by default the robot the namespace names.

    A namespace whose last part is a robot's name, or that name and a number (``/dclaw``,
    ``/lab/minitaur2``), says which robot the node serves; any other: the Minitaur. A ``robot``
    set against the namespace's is refused with both named: nodes of one robot's graph that
    disagree on the robot cannot work together.
    """
    from sac_robot.nodes.robots import PROFILES
    value = node.declare_parameter('robot', '', describe(
        f'{" or ".join(PROFILES)} (default: the one the namespace names, as /dclaw or '
        '/minitaur2; else minitaur).')).value
    namespace = node.get_namespace()
    last = namespace.rstrip('/').rsplit('/', 1)[-1].rstrip('0123456789')
    named = last if last in PROFILES else None
    if value and named and value != named:
        raise ValueError(f'robot:={value} contradicts the namespace {namespace}, which names '
                         f'the {named}: set robot:={named}, or run it in another namespace')
    return value or named or 'minitaur'


def declare_robot_id(node, robot: str, meaning: str) -> str:
    """Declare ``robot_id``; its value, or else the node's namespace, or else ``robot``."""
    value = node.declare_parameter('robot_id', '', describe(
        f'{meaning} (default: the namespace).')).value
    return value or node.get_namespace().strip('/') or robot
