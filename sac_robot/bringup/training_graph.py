# SPDX-License-Identifier: Apache-2.0
"""The training and evaluation graphs of a robot, described once for both launchers.

Robot side (the robot's on-board computer in the paper): the driver, safety/reset, the reward
estimator, the policy and the data collector. Workstation side: the trainer, the status line
and the recorder. ``part:=robot`` or ``part:=workstation`` starts one side only, for two
machines on one network (set ``ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET`` and the same
``ROS_DOMAIN_ID`` on both; see docs/install.md, "Networking").
"""

import os
import time

from sac_robot.bringup.graph import (SIM_ENVIRONMENT, Argument, Graph, LaunchArgumentError,
                                     NodeSpec, compose, config_file)
from sac_robot.backends import BACKENDS, backend_class
from sac_robot.defaults import PIXEL_DEFAULTS
from sac_robot.robots.description import describe

#: The robot side's nodes in a composed process, the policy first.
ROBOT_SIDE_ORDER = ('policy', 'driver', 'safety', 'reward_estimator', 'collector')


def _flag(value: str) -> bool:
    return value.lower() in ('true', '1', 'yes', 'on')


def _fleet(values) -> list:
    """The namespaces of ``robots:=a,b,c`` (none: one robot, ``robot:=``)."""
    names = [name.strip().strip('/') for name in values.get('robots', '').split(',')]
    names = [name for name in names if name]
    if not names:
        return []
    bad = [name for name in names if not all(part.isidentifier() for part in name.split('/'))]
    if bad or len(set(names)) != len(names):
        raise LaunchArgumentError(
            f'robots:={values["robots"]}: each robot a namespace of its own (letters, digits, '
            f'_; a/b nests), none twice{"; not " + ", ".join(bad) if bad else ""}')
    return names


def _composed(nodes: list, mode: str) -> list:
    """One robot's nodes, those of ``mode`` sharing one process (``compose:=``)."""
    # The policy first: after each measurement the executor serves its callbacks before
    # the others' (the command goes out sooner).
    members = {'none': (), 'control': ('policy', 'driver')}.get(mode, ROBOT_SIDE_ORDER)
    by_executable = {n.executable: n for n in nodes}
    chosen = [by_executable[name] for name in members if name in by_executable]
    if not chosen:
        return nodes
    first = min(nodes.index(n) for n in chosen)
    rest = [n for n in nodes if n not in chosen]
    return rest[:first] + [compose(mode, chosen)] + rest[first:]


def training_graph(robot: str, train: bool = True) -> Graph:
    """The graph of ``robot`` ('minitaur' or 'dclaw'): training, or evaluation of a policy."""
    default_run = os.path.join('runs', f'{robot}_train')
    description = describe(robot)
    arguments = [
        Argument('robot', robot, 'Namespace of the robot (one per robot; topics live under it).'),
        Argument('hardware', 'sim', 'sim: the MuJoCo stand-in; real: the hardware drivers.',
                 ('sim', 'real')),
        Argument('clock', '', 'lockstep (a simulation as fast as the policy answers, /clock '
                 'published) or realtime (the control rate); default: lockstep in simulation, '
                 'realtime on hardware (which has no other).', ('', 'lockstep', 'realtime')),
        Argument('record', 'false', 'Record every topic to a bag (mcap).', ('true', 'false')),
        Argument('bag', '', 'Directory of the bag (default: <run_dir>/bag_<date>_<time>).'),
        Argument('config', '', f'Parameter YAML applied over config/{robot}_train.yaml (only '
                 'what it sets changes).'),
        Argument('max_steps', '0', 'Stop cleanly after this many environment steps '
                 '(0: no limit).'),
        Argument('seed', '0', 'Seed of the simulation, the policy and the trainer.'),
        Argument('part', 'all', 'Which machine this is: all, robot or workstation.',
                 ('all', 'robot', 'workstation')),
        Argument('status', 'true', 'Print a live status line.', ('true', 'false')),
        Argument('tf', 'false', 'Publish the robot for rviz and Foxglove: robot_description '
                 '(its URDF), its links on /tf and /tf_static (the robot_state node).',
                 ('true', 'false')),
        Argument('compose', 'robot', 'Which nodes share a process. robot: the whole robot side '
                 '(driver, policy, safety, reward estimator, collector) in one, as on a robot '
                 'computer (in lockstep the simulation cannot outrun the nodes that must see '
                 'every step; in real time the lowest latency); control: the driver and the '
                 'policy; none: a process per node.', ('robot', 'control', 'none')),
    ]
    if train:
        arguments += [
            Argument('algorithm', 'sac', 'Learning algorithm.', ('sac', 'sql')),
            Argument('resume', 'false', 'Continue from the checkpoint in run_dir.',
                     ('true', 'false')),
            Argument('run_dir', default_run, 'Directory of the checkpoint and the bag.'),
            Argument('trainer_nice', '10', 'CPU niceness of the trainer (0-19): where it shares '
                     'cores with the robot side, the control loop goes first.'),
            Argument('init', '', 'Start the trainer from the agent of this checkpoint (e.g. '
                     'a pretrained one: sac-robot pretrain, or a run with pretraining:=true); '
                     'the robot acts with it from the first step.'),
            Argument('robots', '', 'Several robots feeding one trainer (a fleet): their '
                     'namespaces, comma-separated (robots:=dclaw0,dclaw1,dclaw2); each robot '
                     'side is started with seed + its index, the trainer, status line and '
                     'recorder in the root namespace. With part:=workstation, the trainer of '
                     'robots launched elsewhere (part:=robot robot:=<namespace>).'),
        ]
    else:
        arguments += [
            Argument('checkpoint', os.path.join(default_run, 'checkpoint'),
                     'The policy to run: a checkpoint directory or a policy.safetensors.'),
            Argument('deterministic', 'true', 'Mean actions (true) or sampled ones.',
                     ('true', 'false')),
        ]
    hardware = [name for name, robots in BACKENDS.items() if robot in robots
                and name != 'mujoco']
    # The hardware backend's own arguments (the D'Claw's port:=, camera:=).
    hardware_arguments = backend_class(hardware[0], robot).launch_arguments if hardware else {}
    arguments += [Argument(name, '', text) for name, (_, text) in hardware_arguments.items()]
    if robot == 'minitaur' and train:
        arguments.append(Argument(
            'pretraining', 'false', "The SQL paper's pretraining reward (speed in any direction, "
            'Section 5.3) instead of forward walking; fine-tune after with init:=.',
            ('true', 'false')))
    sees = 'policy_pixels' in description.readers  # a robot with a pixel task (the hand)
    if sees:
        arguments.append(Argument(
            'pixels', 'false', 'Act on (and learn from) the 32 x 32 camera image, joint '
            'positions and velocities instead of the state (as sac_robot/DClawTurnPixels-v0).',
            ('true', 'false')))

    def build(values):
        real = values['hardware'] == 'real'
        if real and not hardware:
            raise LaunchArgumentError(
                f'hardware:=real: the {robot} has no hardware backend yet (its backends: '
                f'{", ".join(b for b, robots in BACKENDS.items() if robot in robots)}); use '
                'hardware:=sim')
        clock = values['clock'] or ('realtime' if real else 'lockstep')
        if real and clock == 'lockstep':
            raise LaunchArgumentError('hardware:=real runs on the wall clock: clock:=realtime '
                                      '(or leave clock out)')
        fleet = _fleet(values) if train else []
        if fleet and real and values['part'] != 'workstation':
            raise LaunchArgumentError(
                'robots:= with hardware:=real: every robot has its own hardware (its bus, its '
                'stack); start each on its computer (part:=robot robot:=<namespace> and its '
                'hardware arguments) and the trainer with part:=workstation robots:=...')
        namespaces = fleet or [values['robot']]
        # The package's defaults, then the user's file over them.
        files = (config_file(f'{robot}_train.yaml'),) + (
            (os.path.abspath(values['config']),) if values['config'] else ())
        # The hardware's settings (where the bus is, the calibration), then the user's file.
        driver_files = ((config_file(f'{robot}_train.yaml'),
                         config_file(f'{robot}_{hardware[0]}.yaml'))
                        + files[1:]) if real else files
        backend = {'backend': hardware[0], **{
            parameter: values[name] for name, (parameter, _) in hardware_arguments.items()
            if values.get(name)}} if real else {}
        max_steps, seed = int(values['max_steps']), int(values['seed'])
        recording = int(_flag(values['record']))
        nice = values.get('trainer_nice', '0')
        if not nice.isdigit() or int(nice) > 19:
            raise LaunchArgumentError(f'trainer_nice:={nice!r} is not a niceness from 0 to 19')
        common = {'robot': robot}
        pixels = _flag(values.get('pixels', 'false'))
        # Who sees the camera (the driver renders it, the policy acts on it, the collector and
        # trainer carry it); with pixels the policy's network no longer reads the valve encoder
        # (its node passes the angle on to the learner: the agent's `privileged` keys).
        seeing = {'pixels': pixels} if sees else {}
        run_dir = values.get('run_dir') or os.path.dirname(values['checkpoint'].rstrip('/'))

        def robot_side(namespace: str, seed: int) -> list:
            """One robot's nodes; a fleet's robots each have a seed and simulated time."""
            own_clock = {'clock_topic': 'clock'} if fleet and clock == 'lockstep' else {}
            clock_reader = (['clock>=1' if fleet else '/clock>=1']
                            if recording and clock == 'lockstep' else [])
            nodes = [
                NodeSpec('driver', 'driver', namespace=namespace, parameters=(
                    *driver_files, {**common, **backend, 'clock': clock, 'seed': seed,
                                    **own_clock,
                                    # Its readers: policy, reward estimator, safety (as they
                                    # subscribe), and the recorder, so that a bag holds the run
                                    # from its first step.
                                    'wait_for_readers': [
                                        f'{topic}>={count + recording}' for topic, count in
                                        description.sensor_readers(
                                            ('policy', 'reward_estimator', 'safety'),
                                            pixels).items()] + clock_reader,
                                    **seeing})),
                NodeSpec('safety', 'safety', namespace=namespace, parameters=(
                    *files, {**common, 'max_steps': max_steps, 'seed': seed,
                             'exit_when_done': not train,
                             # A restarted robot side numbers its episodes after the ones the
                             # (resumed) trainer holds.
                             'number_after_trainer': train,
                             # Every node of the robot side listens before the first episode,
                             # and the trainer and the recorder take the experience (a chunk
                             # sent before the recorder subscribed would be missing in the
                             # bag).
                             'wait_for': (['policy/steps>=2', 'reward>=2', 'episode_events>=2',
                                           f'experience>={1 + recording}']
                                          if train else ['policy/steps>=1',
                                                         'episode_events>=1']),
                             # Lockstep has no deadline to keep: the simulation waits for the
                             # policy (which may wait for the trainer), and a dead policy ends
                             # the graph (required).
                             **({'command_timeout': 0.0} if clock == 'lockstep'
                                else {})}), required=not train),
                NodeSpec('reward_estimator', 'reward_estimator', namespace=namespace,
                         parameters=(*files, {**common, **({'pretraining': True} if _flag(
                             values.get('pretraining', 'false')) else {})})),
            ]
            if train:
                nodes += [
                    NodeSpec('policy', 'policy', namespace=namespace, required=not fleet,
                             parameters=(*files, {
                                 **common, **seeing, 'seed': seed,
                                 # A robot in real time cannot wait for the learner, and acts
                                 # on the newest measurement only (a queue would only add
                                 # latency).
                                 **({'min_utd': 0.0, 'sensor_qos': 'best_effort'}
                                    if clock == 'realtime' else {})})),
                    NodeSpec('collector', 'collector', namespace=namespace,
                             parameters=(*files, {**common, **seeing})),
                ]
            else:
                nodes.append(NodeSpec('policy', 'policy', namespace=namespace, parameters=(
                    *files, {**common, **seeing, 'seed': seed,
                             'checkpoint': values['checkpoint'],
                             'deterministic': _flag(values['deterministic']),
                             'min_utd': 0.0})))  # no trainer to wait for
            if _flag(values['tf']):  # (a fleet's robots each under a frame prefix of their own)
                nodes.append(NodeSpec('robot_state', 'robot_state', namespace=namespace,
                                      parameters=({**common, 'frame_prefix': (
                                          namespace.strip('/') + '/' if fleet else '')},)))
            return nodes

        # A fleet's trainer, status line and recorder: in the root namespace, for every robot.
        home = '' if fleet else namespaces[0]
        workstation = []
        if train:
            # An image task's SAC defaults (PIXEL_DEFAULTS) over the package's file, under the
            # user's.
            pixel_defaults = ({f'agent.{k}': v for k, v in PIXEL_DEFAULTS.items()}
                              | {'agent.privileged': list(description.privileged)}
                              if pixels and values['algorithm'] == 'sac' else None)
            trainer_files = (files[:1] + ((pixel_defaults,) if pixel_defaults else ())
                             + files[1:])
            workstation.append(NodeSpec('trainer', 'trainer', namespace=home, required=True,
                                        parameters=(*trainer_files, {
                                            **common, **seeing, 'algorithm': values['algorithm'],
                                            'resume': _flag(values['resume']),
                                            'max_steps': max_steps, 'seed': seed,
                                            **({'robots': fleet} if fleet else {}),
                                            **({'init_checkpoint': os.path.abspath(
                                                values['init'])} if values['init'] else {}),
                                            'checkpoint_dir': os.path.join(run_dir, 'checkpoint'),
                                            'tensorboard_dir': os.path.join(run_dir, 'tb')}),
                                        nice=int(nice)))
        if _flag(values['status']):
            workstation.append(NodeSpec('status_monitor', 'status_monitor', namespace=home,
                                        parameters=files, interactive=True))
        if _flag(values['record']):
            bag = values['bag'] or os.path.join(run_dir, time.strftime('bag_%Y%m%d_%H%M%S'))
            workstation.append(NodeSpec('recorder', 'recorder', namespace=home,
                                        parameters=({'bag': bag},), stop_last=True))
        # One side only (two machines): chosen node by node, before any are composed.
        part = values['part']
        nodes = []
        if part != 'workstation':
            for index, namespace in enumerate(namespaces):
                nodes += _composed(robot_side(namespace, seed + index), values['compose'])
        if part != 'robot':
            nodes += workstation
        return nodes

    what = 'train' if train else 'evaluate a trained policy on'
    return Graph(description=f'{what} the {robot} ({"SAC or SQL" if train else "no learning"})',
                 arguments=arguments, build=build, environment=lambda values: SIM_ENVIRONMENT)
