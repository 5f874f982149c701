# SPDX-License-Identifier: Apache-2.0
"""Turn a :class:`~sac_robot.bringup.graph.Graph` into a ROS 2 ``LaunchDescription``.

Used by ``launch/*.launch.py`` under ``ros2 launch``. Every argument becomes a
``DeclareLaunchArgument`` (description and choices included); the nodes are built by the same
``Graph.nodes`` that ``sac-robot launch`` uses, inside an ``OpaqueFunction`` once the argument
values are known. Required nodes shut the launch down when they exit. ``launch`` and
``launch_ros`` are imported here only, so the graph descriptions load without them.
"""

from sac_robot.bringup.graph import Graph, NodeParameters


def launch_description(graph: Graph):
    """Return the ``LaunchDescription`` of ``graph`` for ``ros2 launch``."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    declared = [
        DeclareLaunchArgument(
            argument.name, default_value=argument.default, description=argument.description,
            **({'choices': list(argument.choices)} if argument.choices else {}))
        for argument in graph.arguments]
    return LaunchDescription(declared + [OpaqueFunction(function=_nodes, args=[graph])])


def _parameters(parameters, directory: str, label: str = ''):
    """A parameter entry as launch_ros takes it: a file.

    Values for one node (of a container, or a process's own) go in a parameter file that
    names it (:meth:`NodeSpec.addressed_parameters`), in ``directory``, ``label`` keeping the
    files of several entries for one node apart.
    """
    if not isinstance(parameters, NodeParameters):
        return parameters
    import os

    import yaml
    path = os.path.join(directory, f'{label}{parameters.node}.yaml')
    with open(path, 'w') as stream:
        yaml.safe_dump(parameters.as_yaml_dict(), stream)
    return path


def _nodes(context, graph: Graph):
    import os

    from launch.actions import SetEnvironmentVariable, Shutdown
    from launch_ros.actions import Node

    import atexit
    import shutil
    import tempfile

    values = {argument.name: context.launch_configurations[argument.name]
              for argument in graph.arguments}
    # The containers' per-node parameter files; the nodes read them as they start, and they
    # go when ros2 launch exits.
    directory = tempfile.mkdtemp(prefix='sac_robot_launch_')
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    actions = [SetEnvironmentVariable(name, value)
               for name, value in graph.env(values, os.environ).items()]
    for spec in graph.nodes(values):
        label = f'{spec.namespace}_{spec.name}'.strip('/_').replace('/', '_')
        actions.append(Node(
            package=spec.package, executable=spec.executable,
            # A container's nodes keep their own names (a name would rename them all).
            name=None if spec.members else spec.name,
            # The process's label in the output: the node's name, not the prefix's `nice`.
            exec_name=spec.name,
            namespace=spec.namespace or None,
            parameters=[_parameters(p, directory, f'{label}_{i}_')
                        for i, p in enumerate(spec.addressed_parameters())],
            remappings=list(spec.remappings), arguments=list(spec.arguments),
            additional_env=dict(spec.env) or None, output='screen', emulate_tty=True,
            prefix=f'nice -n {spec.nice}' if spec.nice else None,
            on_exit=Shutdown(reason=f'required node {spec.name} exited')
            if spec.required else None))
    return actions
