# SPDX-License-Identifier: Apache-2.0
"""A node graph described once: launch arguments, and the nodes that a set of values selects.

Both ``ros2 launch`` (through :func:`sac_robot.bringup.ros_launch.launch_description`) and the
package's own launcher (``sac-robot launch``) start exactly the nodes that
:meth:`Graph.nodes` returns for the same argument values, so the graph is never written twice.
"""

import dataclasses
import os
import sys
from typing import Callable, Mapping, Sequence

#: Environment given to every simulated graph unless the user set it: DDS discovery stays on
#: this machine (a robot split across two computers sets ``SUBNET`` on purpose, see
#: docs/install.md).
SIM_ENVIRONMENT = {'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'}


class LaunchArgumentError(ValueError):
    """An unknown launch argument, or a value outside the argument's choices."""


@dataclasses.dataclass(frozen=True)
class Argument:
    """A launch argument, declared with a description as ``DeclareLaunchArgument`` is."""

    name: str
    default: str
    description: str
    choices: tuple = ()


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    """One process of a graph, in the terms of ``launch_ros.actions.Node``."""

    executable: str
    name: str
    package: str = 'sac_robot'
    namespace: str = ''
    #: Paths of parameter YAML files and dicts of parameter values, applied in order.
    parameters: tuple = ()
    #: ``(from, to)`` topic or service remappings.
    remappings: tuple = ()
    #: Extra command-line arguments before ``--ros-args``.
    arguments: tuple = ()
    #: When a required node exits the whole graph shuts down (``on_exit=Shutdown()``); the
    #: launcher then exits with the node's status.
    required: bool = False
    #: Environment variables set for this process only.
    env: tuple = ()
    #: For a ``container`` process (:func:`compose`): the names of the nodes it runs. Such a
    #: process gets no ``__node`` remapping (it would rename every node in it).
    members: tuple = ()
    #: CPU niceness of the process (0: as the launcher's; higher yields the CPU to the others).
    nice: int = 0
    #: Reads the launcher's terminal (the status monitor: Enter confirms a reset that waits
    #: for a person); every other process gets no input.
    interactive: bool = False
    #: Stopped only after every other process has exited (the recorder: it writes what they
    #: sent until they stopped, none of it lost in flight).
    stop_last: bool = False

    def addressed_parameters(self) -> tuple:
        """``parameters`` with every dict addressed to this node by name.

        rcl applies the sections of a node's parameter files in the order their names first
        appeared, not file by file: values under ``/**`` (launch_ros's form for a nameless
        dict) come before a package file's ``/**/driver`` whenever that file opened with a
        ``/**`` section of its own, and lose to it. Under ``/**/<name>`` they land in the
        file's section for this node, and a later file's values win as documented.
        """
        return tuple(NodeParameters(self.name, p) if isinstance(p, Mapping) else p
                     for p in self.parameters)


@dataclasses.dataclass(frozen=True)
class NodeParameters:
    """Parameter values for the node called ``node`` only (one node of a container)."""

    node: str
    values: Mapping

    def as_yaml_dict(self) -> dict:
        """The parameter-file form: ``{'/**/<node>': {'ros__parameters': values}}``."""
        return {f'/**/{self.node}': {'ros__parameters': dict(self.values)}}


def compose(name: str, specs: Sequence[NodeSpec]) -> NodeSpec:
    """One ``container`` process running the nodes of ``specs`` (one namespace, no remaps).

    Parameter files are given once, in order; each node's own values are addressed to it by
    name. The container is required when any of its nodes is.
    """
    namespaces = {spec.namespace for spec in specs}
    if len(namespaces) != 1 or any(spec.remappings or spec.arguments or spec.members
                                   for spec in specs):
        raise ValueError('compose: the nodes must share one namespace and have no remappings '
                         'or arguments')
    files, values = [], []
    for spec in specs:
        for parameters in spec.parameters:
            if isinstance(parameters, Mapping):
                values.append(NodeParameters(spec.name, parameters))
            elif parameters not in files:
                files.append(parameters)
    return NodeSpec('container', name, namespace=specs[0].namespace,
                    parameters=(*files, *values), arguments=tuple(s.executable for s in specs),
                    required=any(spec.required for spec in specs),
                    env=tuple(item for spec in specs for item in spec.env),
                    members=tuple(spec.name for spec in specs))


@dataclasses.dataclass(frozen=True)
class Graph:
    """Launch arguments and a function from their values to the nodes to start."""

    description: str
    arguments: Sequence[Argument]
    build: Callable[[Mapping[str, str]], Sequence[NodeSpec]]
    #: Environment defaults for every node; a variable already set by the user wins.
    environment: Callable[[Mapping[str, str]], Mapping[str, str]] = lambda values: {}

    def resolve(self, given: Mapping[str, str]) -> dict:
        """Return every argument's value: ``given`` checked against the declarations, defaults."""
        declared = {argument.name: argument for argument in self.arguments}
        unknown = sorted(set(given) - set(declared))
        if unknown:
            raise LaunchArgumentError(
                f'unknown launch argument(s) {", ".join(unknown)}; '
                f'this launch file declares: {", ".join(sorted(declared))}')
        values = {}
        for name, argument in declared.items():
            value = str(given.get(name, argument.default))
            if argument.choices and value not in argument.choices:
                raise LaunchArgumentError(
                    f"launch argument {name}:={value!r} is not one of "
                    f"{', '.join(argument.choices)}")
            values[name] = value
        return values

    def nodes(self, given: Mapping[str, str]) -> list:
        """Return the nodes selected by the argument values ``given`` (defaults filled in)."""
        return list(self.build(self.resolve(given)))

    def env(self, given: Mapping[str, str], base: Mapping[str, str] = os.environ) -> dict:
        """Return the environment defaults that ``base`` does not already set."""
        defaults = self.environment(self.resolve(given))
        return {key: value for key, value in defaults.items() if key not in base}


def parse_launch_arguments(tokens: Sequence[str]) -> dict:
    """Parse ``name:=value`` tokens as ``ros2 launch`` does."""
    values = {}
    for token in tokens:
        name, separator, value = token.partition(':=')
        if not separator or not name:
            raise LaunchArgumentError(
                f'malformed launch argument {token!r}: expected name:=value')
        values[name] = value
    return values


def share_directory(package: str = 'sac_robot') -> str:
    """Return the package's share directory (launch/, config/), wherever it was installed.

    Looks where ``ament_index_python`` would (``AMENT_PREFIX_PATH``), then in this Python's
    prefix (a pip install), then in the source tree this module was imported from.
    """
    candidates = [os.path.join(prefix, 'share', package)
                  for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep)
                  if prefix]
    candidates.append(os.path.join(sys.prefix, 'share', package))
    here = os.path.dirname(os.path.realpath(__file__))
    candidates.append(os.path.dirname(os.path.dirname(here)))
    for candidate in candidates:
        if os.path.isdir(os.path.join(candidate, 'launch')):
            return candidate
    raise FileNotFoundError(
        f'no share directory of {package} (with launch/) in: {", ".join(candidates)}')


def config_file(name: str, package: str = 'sac_robot') -> str:
    """Return the path of ``config/<name>`` in the package's share directory."""
    path = os.path.join(share_directory(package), 'config', name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'no config file {name!r} at {path}')
    return path
