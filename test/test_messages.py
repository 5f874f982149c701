# SPDX-License-Identifier: Apache-2.0
"""Every custom message and the Reset service cross DDS between two processes unchanged."""

import os
import signal
import subprocess
import sys

import pytest
from conftest import spin_until
from helpers.messages import MESSAGE_TYPES, fill, message_class

HERE = os.path.dirname(os.path.abspath(__file__))

pytestmark = pytest.mark.ros


@pytest.fixture
def echo_process(ros_domain):
    process = subprocess.Popen([sys.executable, os.path.join(HERE, 'helpers', 'echo_node.py')],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout.readline().strip() == 'echo ready'
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def test_every_message_round_trips(ros_context, executor, echo_process):
    from rclpy.node import Node
    from helpers.echo_node import QOS

    node = Node('round_trip', context=ros_context)
    executor.add_node(node)
    received = {}
    publishers = {}
    for name in MESSAGE_TYPES:
        cls = message_class(name)
        publishers[name] = node.create_publisher(cls, f'in/{name}', QOS)
        node.create_subscription(cls, f'out/{name}',
                                 lambda msg, name=name: received.setdefault(name, msg), QOS)
    assert spin_until(executor, lambda: all(
        p.get_subscription_count() > 0 for p in publishers.values()), timeout=15)
    sent = {}
    for index, name in enumerate(MESSAGE_TYPES):
        sent[name] = fill(message_class(name)(), seed=10 * index + 1)
        publishers[name].publish(sent[name])
    assert spin_until(executor, lambda: len(received) == len(MESSAGE_TYPES), timeout=15), (
        f'received only {sorted(received)}')
    for name in MESSAGE_TYPES:
        assert received[name] == sent[name], name
    # The messages were not trivially empty: arrays and nested fields made the trip.
    assert len(received['Experience'].observations) == 3
    assert received['PolicyStep'].header.frame_id == sent['PolicyStep'].header.frame_id != ''
    node.destroy_node()


def test_reset_service_between_processes(ros_context, executor, echo_process):
    from rclpy.node import Node
    from sac_robot.srv import Reset

    node = Node('reset_client', context=ros_context)
    executor.add_node(node)
    client = node.create_client(Reset, 'reset')
    assert spin_until(executor, client.service_is_ready, timeout=15)
    request = Reset.Request(seed=21, reason='test')
    future = client.call_async(request)
    assert spin_until(executor, future.done, timeout=10)
    response = future.result()
    assert response.success and response.message == '21:test' and response.episode_id == 42
    node.destroy_node()
