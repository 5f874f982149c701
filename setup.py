# SPDX-License-Identifier: Apache-2.0
"""pip install of sac_robot's pure-Python part: algorithms, simulated robots, ``sac-robot``.

With ROS 2 the package is built by CMake (``colcon build`` or ``make setup``), which also
generates the messages; this file is for machines without ROS. Executables come from the one
list in ``sac_robot/entry_points.py`` that CMake uses too.
"""

import glob
import runpy

from setuptools import find_packages, setup

entry_points = runpy.run_path('sac_robot/entry_points.py')

setup(
    name='sac_robot',
    version='0.1.0',
    description='Soft Actor-Critic and Soft Q-Learning for real robots, over ROS 2',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=find_packages(include=['sac_robot', 'sac_robot.*']),
    package_data={'sac_robot': ['**/*.xml', '**/*.yaml']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/sac_robot']),
        ('share/sac_robot', ['package.xml']),
        ('share/sac_robot/launch', glob.glob('launch/*.launch.py')),
        ('share/sac_robot/config', glob.glob('config/*.yaml')),
    ],
    install_requires=[
        'torch==2.13.0', 'numpy', 'mujoco', 'gymnasium', 'safetensors', 'PyYAML',
        'matplotlib', 'tqdm', 'rosbags',
    ],
    extras_require={'hardware': ['dynamixel-sdk', 'opencv-python-headless']},
    entry_points={'console_scripts': entry_points['console_scripts']()},
)
