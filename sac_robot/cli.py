# SPDX-License-Identifier: Apache-2.0
"""The ``sac-robot`` command.

``sac-robot launch <file> [name:=value ...]``
    Run a launch file's node graph as ``ros2 launch sac_robot <file>`` would, on machines
    without the ROS 2 launch tooling (``--show-args`` lists the arguments).
"""

import argparse
import logging
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
    return parser


def main(argv=None) -> int:
    """Run ``sac-robot``; return its exit status."""
    logging.basicConfig(level=logging.INFO, format='[%(levelname)s] [%(name)s]: %(message)s')
    parser = build_parser()
    # Launch arguments may stand before or after the options, as with ros2 launch.
    options, extra = parser.parse_known_args(argv)
    unknown = [token for token in extra if ':=' not in token]
    if unknown or (extra and options.command != 'launch'):
        parser.error(f'unrecognized arguments: {" ".join(unknown or extra)}')
    if extra:
        options.arguments = list(options.arguments) + extra
    return options.run(options)


if __name__ == '__main__':
    sys.exit(main())
