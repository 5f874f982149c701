# SPDX-License-Identifier: Apache-2.0
"""Parameter declarations shared by the graph's nodes."""

from rcl_interfaces.msg import ParameterDescriptor


def describe(text: str) -> ParameterDescriptor:
    """A parameter descriptor carrying ``text`` (what ``ros2 param describe`` shows)."""
    return ParameterDescriptor(description=text)


def declare_robot_id(node, robot: str, meaning: str) -> str:
    """Declare ``robot_id``; its value, or else the node's namespace, or else ``robot``."""
    value = node.declare_parameter('robot_id', '', describe(
        f'{meaning} (default: the namespace).')).value
    return value or node.get_namespace().strip('/') or robot
