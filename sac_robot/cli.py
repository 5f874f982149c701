# SPDX-License-Identifier: Apache-2.0
"""The ``sac-robot`` command.

``sac-robot launch <file> [name:=value ...]``
    Run a launch file's node graph as ``ros2 launch sac_robot <file>`` would, on machines
    without the ROS 2 launch tooling (``--show-args`` lists the arguments).
``sac-robot train --env <gymnasium id> --algo sac|sql --steps N --out DIR [--set key=value]``
    Train without ROS, with a progress bar, evaluations, a CSV log, a learning-curve PNG and
    checkpoints (``--resume`` continues; ``--init CHECKPOINT`` starts from a pretrained agent,
    ``--finetune-epochs`` on SQL's fine-tuning schedule).
``sac-robot pretrain [train's options]``
    The SQL paper's max-ent pretraining: SQL on sac_robot/MinitaurPretrain-v0 (speed in any
    direction) into runs/pretrain; fine-tune after with ``train --init``.
``sac-robot bag summary|plot|to-buffer <bag>``
    A recorded bag's topic statistics and episodes; its learning curves as a PNG; a replay
    buffer of its experience (the trainer's ``replay_file`` starts from it).
``sac-robot multigoal --out DIR [--steps N]``
    The SQL paper's multi-goal experiment for SQL and SAC: goals reached, and a figure.
"""

import argparse
import logging
import os
import sys


def _launch(options) -> int:
    from sac_robot.bringup.graph import LaunchArgumentError
    from sac_robot.bringup.launcher import LaunchError, launch

    try:
        return launch(options.launch_file, options.arguments, dry_run=options.dry_run,
                      show_arguments=options.show_args)
    except (LaunchError, LaunchArgumentError, FileNotFoundError) as error:
        logging.getLogger('sac_robot.launch').error('%s', error)
        return 2


def _train(options) -> int:
    import yaml

    from sac_robot.algorithms.checkpoint import CheckpointError
    from sac_robot.training import RunConfig, train

    overrides, env_args = {}, {}
    if options.config:
        with open(options.config, encoding='utf-8') as stream:
            overrides.update(yaml.safe_load(stream) or {})
    for flag, items, into in (('--set', options.set, overrides),
                              ('--env-arg', options.env_arg, env_args)):
        for item in items:
            key, separator, value = item.partition('=')
            if not separator:
                logging.getLogger('sac_robot.train').error('%s %s: expected key=value',
                                                           flag, item)
                return 2
            into[key] = yaml.safe_load(value)
    run = RunConfig(env=options.env, env_args=env_args, algo=options.algo, steps=options.steps,
                    out=options.out, seed=options.seed, eval_every=options.eval_every,
                    eval_episodes=options.eval_episodes,
                    checkpoint_every=options.checkpoint_every, resume=options.resume,
                    threads=options.threads, progress=not options.no_progress,
                    tensorboard=not options.no_tensorboard,
                    init=getattr(options, 'init', ''),
                    finetune_epochs=getattr(options, 'finetune_epochs', 0),
                    finetune_alpha=getattr(options, 'finetune_alpha', 1e-3))
    try:
        final = train(run, overrides)
    except (ValueError, CheckpointError) as error:
        logging.getLogger('sac_robot.train').error('%s', error)
        return 2
    logging.getLogger('sac_robot.train').info(
        'done: %s; results in %s', ', '.join(f'{k} {v:.4g}' if isinstance(v, float)
                                             else f'{k} {v}' for k, v in final.items()),
        run.out)
    return 0


def _bag(options) -> int:
    from sac_robot import bagtools

    try:
        if options.action == 'summary':
            print(bagtools.summary(options.bag))
        elif options.action == 'plot':
            out = options.out or os.path.join(options.bag, 'learning_curves.png')
            print(f'figure: {bagtools.plot(options.bag, out)}')
        else:
            out = options.out or os.path.join(options.bag, 'replay.safetensors')
            buffer = bagtools.to_buffer(options.bag, out, options.robot)
            print(f'{len(buffer)} transitions -> {out}')
    except bagtools.BagError as error:
        logging.getLogger('sac_robot.bag').error('%s', error)
        return 2
    return 0


def _multigoal(options) -> int:
    from sac_robot import multigoal_experiment

    results = multigoal_experiment.run(options.out, options.steps, options.rollouts,
                                       options.seed, tuple(options.algo))
    for algo, fractions in results.items():
        print(f'{algo}: goals reached by ' + ', '.join(f'{f:.0%}' for f in fractions)
              + f' of {options.rollouts} rollouts')
    print(f'figure: {options.out}/multigoal.png')
    return 0


def _training_arguments(parser, defaults, env: str, algo: str, out: str):
    """The options of ``train`` and ``pretrain`` (their defaults: ``env``, ``algo``, ``out``)."""
    parser.add_argument('--env', default=env, help='gymnasium id (default %(default)s)')
    parser.add_argument('--env-arg', action='append', default=[], metavar='KEY=VALUE',
                        help="one keyword argument of the environment, e.g. --env-arg frames=3 "
                             "(the D'Claw's pixels: the last 3 images stacked; repeatable)")
    parser.add_argument('--algo', default=algo, choices=('sac', 'sql'),
                        help='(default %(default)s)')
    parser.add_argument('--steps', type=int, default=defaults.steps, help='environment steps')
    parser.add_argument('--out', default=out, help='output directory (default %(default)s)')
    parser.add_argument('--seed', type=int, default=defaults.seed)
    parser.add_argument('--eval-every', type=int, default=defaults.eval_every)
    parser.add_argument('--eval-episodes', type=int, default=defaults.eval_episodes)
    parser.add_argument('--checkpoint-every', type=int, default=defaults.checkpoint_every)
    parser.add_argument('--resume', action='store_true', help='continue from OUT/checkpoint')
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0: default)')
    parser.add_argument('--config',
                        help='YAML file of algorithm settings (SACConfig/SQLConfig)')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                        help='one algorithm setting, e.g. --set utd_ratio=10 (repeatable)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    parser.add_argument('--no-tensorboard', action='store_true',
                        help='no TensorBoard scalars in OUT/tb')
    parser.set_defaults(run=_train)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``sac-robot``."""
    parser = argparse.ArgumentParser(
        prog='sac-robot', description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest='command', required=True)

    launch = commands.add_parser(
        'launch', help='run a launch file of sac_robot (same arguments as ros2 launch)')
    launch.add_argument('launch_file', help='e.g. minitaur_train.launch.py, or a path')
    launch.add_argument('arguments', nargs='*', metavar='name:=value',
                        help='launch arguments, as for ros2 launch')
    launch.add_argument('-s', '--show-args', action='store_true',
                        help='list the launch arguments with their descriptions and exit')
    launch.add_argument('--dry-run', action='store_true',
                        help='print the command line of every node and exit')
    launch.set_defaults(run=_launch)

    from sac_robot.training import RunConfig
    defaults = RunConfig()
    train = commands.add_parser(
        'train', help='train SAC or SQL on a gymnasium environment, without ROS')
    _training_arguments(train, defaults, defaults.env, defaults.algo, defaults.out)
    train.add_argument('--init', default='', metavar='CHECKPOINT',
                       help='start from this agent (fine-tuning a pretrained policy: e.g. '
                            'runs/pretrain/checkpoint); the replay buffer starts empty')
    train.add_argument('--finetune-epochs', type=int, default=0,
                       help="SQL with --init: the paper's fine-tuning schedule over this many "
                            'epochs of 1000 steps (alpha annealed, the noise set shrinking)')
    train.add_argument('--finetune-alpha', type=float, default=defaults.finetune_alpha,
                       help='SQL fine-tuning: the alpha the schedule ends at')
    pretrain = commands.add_parser(
        'pretrain', help="the SQL paper's max-ent pretraining (Section 5.3): the Minitaur "
                         'rewarded for speed in any direction; then train --init')
    _training_arguments(pretrain, defaults, 'sac_robot/MinitaurPretrain-v0', 'sql',
                        'runs/pretrain')

    bag = commands.add_parser('bag', help='offline tools for recorded bags (no ROS needed)')
    bag.add_argument('action', choices=('summary', 'plot', 'to-buffer'),
                     help='summary: topics and episodes; plot: learning curves (PNG); '
                          'to-buffer: a replay buffer of the experience')
    bag.add_argument('bag', help='the bag directory (with metadata.yaml)')
    bag.add_argument('-o', '--out', help='output file (default: inside the bag directory)')
    bag.add_argument('--robot', help='to-buffer: only this robot_id')
    bag.set_defaults(run=_bag)

    multigoal = commands.add_parser(
        'multigoal', help="the SQL paper's multi-goal experiment (Figure 1) for SQL and SAC")
    multigoal.add_argument('--out', default='runs/multigoal')
    multigoal.add_argument('--steps', type=int, default=20_000, help='steps per algorithm')
    multigoal.add_argument('--rollouts', type=int, default=100)
    multigoal.add_argument('--seed', type=int, default=0)
    multigoal.add_argument('--algo', nargs='+', default=['sql', 'sac'], choices=('sql', 'sac'))
    multigoal.set_defaults(run=_multigoal)

    emulate = commands.add_parser(
        'emulate', help="a robot's hardware stand-in speaking its real protocol (the D'Claw's "
        "Dynamixel bus on a pseudo-terminal; the Minitaur's ros2_control and motion-capture "
        'topics), for the real driver to run against')
    emulate.add_argument('robot', choices=sorted(EMULATORS))
    emulate.add_argument('options', nargs=argparse.REMAINDER,
                         help="the emulator's options (sac-robot emulate dclaw --help)")
    emulate.set_defaults(run=_emulate)
    return parser


#: Robot -> the module whose ``main(argv)`` runs its hardware stand-in.
EMULATORS = {'dclaw': 'sac_robot.backends.emulator', 'minitaur': 'sac_robot.nodes.standin'}


def _emulate(options) -> int:
    import importlib
    return importlib.import_module(EMULATORS[options.robot]).main(options.options)


def main(argv=None) -> int:
    """Run ``sac-robot``; return its exit status."""
    logging.basicConfig(level=logging.INFO, format='[%(levelname)s] [%(name)s]: %(message)s')
    parser = build_parser()
    # Launch arguments may stand before or after the options, as with ros2 launch.
    options, extra = parser.parse_known_args(argv)
    unknown = [token for token in extra if ':=' not in token]
    if unknown or (extra and options.command not in ('launch', 'emulate')):
        parser.error(f'unrecognized arguments: {" ".join(unknown or extra)}')
    if extra:
        options.arguments = list(options.arguments) + extra
    return options.run(options)


if __name__ == '__main__':
    sys.exit(main())
