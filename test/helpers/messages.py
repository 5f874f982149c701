# SPDX-License-Identifier: Apache-2.0
"""Every custom interface of sac_robot, and messages filled with distinctive values."""

import importlib

import numpy as np

MESSAGE_TYPES = ('PolicyStep', 'Experience', 'ExperienceAck', 'PolicyWeights', 'RewardTerms',
                 'EpisodeEvent', 'TrainingStats', 'TrainingProgress')


def message_class(name):
    """Return the class of ``sac_robot/msg/<name>``."""
    return getattr(importlib.import_module('sac_robot.msg'), name)


def _value(field_type, seed):
    """Return a distinctive value for a field of rosidl type ``field_type``."""
    if field_type.startswith('sequence<'):
        inner = field_type[len('sequence<'):-1]
        if inner == 'uint8' or inner == 'octet':
            return bytes(range(seed % 7, seed % 7 + 5))
        return [_value(inner, seed + i) for i in range(3)]
    if field_type in ('float', 'double'):
        return 0.25 * seed + 0.5  # exactly representable in float32
    if field_type == 'boolean':
        return seed % 2 == 0
    if field_type == 'string':
        return f'value-{seed}'
    if field_type.startswith(('int', 'uint')) or field_type == 'octet':
        return seed % 120
    if '/' in field_type:  # a nested message, e.g. std_msgs/Header
        package, name = field_type.split('/')
        nested = getattr(importlib.import_module(f'{package}.msg'), name)()
        fill(nested, seed)
        return nested
    raise TypeError(f'no sample value for field type {field_type!r}')


def fill(message, seed=1):
    """Fill every field of ``message`` with values derived from ``seed``; return it."""
    for index, (field, field_type) in enumerate(message.get_fields_and_field_types().items()):
        value = _value(field_type, seed + 3 * index)
        if isinstance(value, bytes) and field_type == 'sequence<uint8>':
            value = np.frombuffer(value, np.uint8).tolist()
        setattr(message, field, value)
    return message
