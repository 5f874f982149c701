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


def test_the_pypi_fast_dds_has_no_dds_security(tmp_path, ros_domain):
    """README's security note, measured: a secured node is refused by these wheels.

    Should a wheel gain DDS Security this fails: then a secured graph (SROS2 keystore,
    enclaves, Enforce) becomes a launch argument, as the note says is wanted.
    """
    (tmp_path / 'keystore' / 'enclaves' / 'probe').mkdir(parents=True)
    environment = {**os.environ, 'ROS_SECURITY_ENABLE': 'true',
                   'ROS_SECURITY_STRATEGY': 'Enforce',
                   'ROS_SECURITY_KEYSTORE': str(tmp_path / 'keystore'),
                   'ROS_SECURITY_ENCLAVE_OVERRIDE': '/probe'}
    script = ('import rclpy\nrclpy.init()\ntry:\n    rclpy.create_node("probe")\n'
              'except Exception as error:\n    print("refused:", error)\n'
              'else:\n    print("created")\n')
    done = subprocess.run([sys.executable, '-c', script], env=environment, capture_output=True,
                          text=True, timeout=60)
    assert "refused: error creating node: This Fast DDS version doesn't have the security " \
        'libraries' in done.stdout, (done.stdout, done.stderr)
