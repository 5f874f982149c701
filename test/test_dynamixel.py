# SPDX-License-Identifier: Apache-2.0
"""The D'Claw's Dynamixel path: the wire format, the emulated bus, the real-SDK backend.

The protocol against hand-made packets (the e-Manual's examples) and against the SDK's own
CRC and stuffing; dynamixel-sdk's own calls against the emulator on a pseudo-terminal; the
backend's calibration, clipping, torque off and fault handling against the emulator.
"""

import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REPO

from sac_robot.backends import protocol2 as p2
from sac_robot.backends.dynamixel import DClawDynamixel, DynamixelSettings
from sac_robot.backends.emulator import FINGER_IDS, VALVE_ID, DClawEmulator, Faults
from sac_robot.backends.interface import BackendError, BackendFault
from sac_robot.robots.description import DCLAW

dxl = pytest.importorskip('dynamixel_sdk')


# The wire format ---------------------------------------------------------------------------

def test_packets_match_the_e_manual_examples():
    # Protocol 2.0 e-Manual: PING of ID 1; its status (XM430-W210? model 0x0406, firmware
    # 0x26); READ of 4 bytes at 132 from ID 1.
    assert p2.encode(1, p2.Instruction.PING).hex(' ') == 'ff ff fd 00 01 03 00 01 19 4e'
    assert p2.status(1, 0, bytes([0x06, 0x04, 0x26])).hex(' ') == (
        'ff ff fd 00 01 07 00 55 00 06 04 26 65 5d')
    assert p2.encode(1, p2.Instruction.READ, bytes([0x84, 0, 4, 0])).hex(' ') == (
        'ff ff fd 00 01 07 00 02 84 00 04 00 1d 15')


def test_crc_and_stuffing_agree_with_the_sdk():
    handler = dxl.PacketHandler(2.0)
    rng = np.random.default_rng(0)
    for size in (0, 1, 7, 100, 700):
        data = rng.integers(0, 256, size).astype(np.uint8).tobytes()
        assert p2.crc16(data) == handler.updateCRC(0, list(data), len(data))
    # A WRITE whose data holds FF FF FD: stuffed, LEN counting the extra byte.
    params = bytes([116, 0, 0xFF, 0xFF, 0xFD, 0x01])
    ours = p2.encode(7, p2.Instruction.WRITE, params)
    raw = [0xFF, 0xFF, 0xFD, 0, 7, len(params) + 3, 0, p2.Instruction.WRITE, *params, 0, 0]
    sdk = handler.addStuffing(raw)
    crc = handler.updateCRC(0, sdk, len(sdk) - 2)
    assert ours == bytes(sdk[:-2] + [crc & 0xFF, crc >> 8])
    assert ours.count(b'\xff\xff\xfd\xfd') == 1 and ours[5] == len(params) + 4
    parsed = p2.PacketParser().feed(ours)
    assert parsed == [p2.Packet(7, p2.Instruction.WRITE, params)]


def test_parser_skips_noise_splits_and_bad_crcs():
    parser = p2.PacketParser()
    a = p2.encode(3, p2.Instruction.PING)
    b = p2.encode(4, p2.Instruction.READ, bytes([132, 0, 4, 0]))
    bad = bytearray(p2.encode(5, p2.Instruction.PING))
    bad[-1] ^= 0xFF
    stream = b'\x00\xff\x12' + a + bytes(bad) + b
    packets = []
    for i in range(0, len(stream), 3):  # in pieces, as a serial port delivers them
        packets += parser.feed(stream[i:i + 3])
    assert [(pk.id, pk.instruction) for pk in packets] == [(3, 1), (4, 2)]
    assert parser.crc_errors == 1 and parser.skipped >= 3
    assert p2.signed(0xFFFF, 2) == -1 and p2.signed(0x7FFF, 2) == 32767
    assert p2.signed(0xFFFFFFF0, 4) == -16 and p2.describe_hardware_error(0x24) == (
        'overheating, overload')


# The emulator, through the SDK -------------------------------------------------------------

@pytest.fixture
def emulator():
    emulator = DClawEmulator(valve_angle=0.5)
    emulator.start()
    yield emulator
    emulator.stop()


def open_port(path, baud=1_000_000):
    port = dxl.PortHandler(path)
    assert port.openPort() and port.setBaudRate(baud)
    return port


def test_sdk_reads_writes_and_group_reads_the_emulated_servos(emulator):
    port, packets = open_port(emulator.port), dxl.PacketHandler(2.0)
    for servo_id in (*FINGER_IDS, VALVE_ID):
        assert packets.ping(port, servo_id) == (1020, 0, 0)
    assert packets.ping(port, 99)[1] == dxl.COMM_RX_TIMEOUT  # nobody there
    # Present position reports the hand through the calibration: a_j0 (offset -pi/2) is at a
    # quarter turn at 0 rad, a_j1 (offset -pi) at half a turn (the limp joints sag a little).
    assert packets.read4ByteTxRx(port, 10, 132)[1:] == (0, 0)
    for servo_id, index, offset in ((10, 0, -np.pi / 2), (11, 1, -np.pi)):
        ticks = packets.read4ByteTxRx(port, servo_id, 132)[0]
        truth = (emulator.joint_positions()[index] - offset) / (2 * np.pi / 4096)
        assert abs(ticks - truth) <= 3
    # Extended position mode (4) on the valve motor, position mode (3) on the fingers.
    assert packets.read1ByteTxRx(port, VALVE_ID, 11)[0] == 4
    assert packets.read1ByteTxRx(port, 10, 11)[0] == 3

    # Torque on, a sync write of goal positions: the simulated joint follows.
    assert packets.write1ByteTxRx(port, 11, 64, 1) == (0, 0)
    write = dxl.GroupSyncWrite(port, packets, 116, 4)
    write.addParam(11, list(p2.u32(2048)))  # a_j1 to 0 rad
    assert write.txPacket() == 0
    time.sleep(0.6)
    assert abs(emulator.joint_positions()[1]) < 0.05

    read = dxl.GroupSyncRead(port, packets, 126, 12)
    for servo_id in (*FINGER_IDS, VALVE_ID):
        assert read.addParam(servo_id)
    # The limp joints still sag while the two reads run (more so on a loaded machine): each
    # read may differ from the other by the motion the simulation shows between them.
    tick = 2 * math.pi / 4096
    before = np.append(emulator.joint_positions(), emulator.valve_angle()) / tick
    assert read.txRxPacket() == 0
    slow = {i: read.getData(i, 132, 4) for i in (*FINGER_IDS, VALVE_ID)}
    assert read.fastSyncRead() == 0
    fast = {i: read.getData(i, 132, 4) for i in (*FINGER_IDS, VALVE_ID)}
    after = np.append(emulator.joint_positions(), emulator.valve_angle()) / tick
    moved = dict(zip((*FINGER_IDS, VALVE_ID), np.abs(after - before)))
    assert all(abs(slow[i] - fast[i]) <= 3 + moved[i] for i in slow), (slow, fast, moved)
    assert abs(fast[VALVE_ID] - after[-1]) <= 3 + moved[VALVE_ID]
    bulk = dxl.GroupBulkRead(port, packets)
    assert bulk.addParam(10, 132, 4) and bulk.addParam(VALVE_ID, 11, 1)
    assert bulk.txRxPacket() == 0
    truth = (emulator.joint_positions()[0] + np.pi / 2) / (2 * np.pi / 4096)
    assert bulk.getData(VALVE_ID, 11, 1) == 4 and abs(bulk.getData(10, 132, 4) - truth) <= 3

    # The firmware's rules: EEPROM only with torque off; goals within the position limits.
    assert packets.write1ByteTxRx(port, 11, 11, 4)[1] == p2.Error.ACCESS
    assert packets.write4ByteTxRx(port, 11, 116, 5000)[1] == p2.Error.DATA_LIMIT
    assert packets.write1ByteTxRx(port, 11, 70, 0)[1] == p2.Error.ACCESS  # read-only
    port.closePort()


def test_emulator_faults_and_reboot(emulator):
    port, packets = open_port(emulator.port), dxl.PacketHandler(2.0)
    assert packets.write1ByteTxRx(port, 12, 64, 1) == (0, 0)
    emulator.bus.faults.overload[12] = 0.0
    time.sleep(0.05)
    error_status, result, error = packets.read1ByteTxRx(port, 12, 70)
    assert result == 0 and error_status == p2.HardwareError.OVERLOAD and error & 0x80
    assert not emulator.torque_report()[12]  # the firmware's shutdown
    result, error = packets.write1ByteTxRx(port, 12, 64, 1)  # refused until a reboot
    assert error == p2.Error.RESULT_FAIL | p2.Error.ALERT and not emulator.torque_report()[12]
    del emulator.bus.faults.overload[12]
    assert packets.reboot(port, 12) == (0, 0)
    assert packets.read1ByteTxRx(port, 12, 70)[:2] == (0, 0)
    assert packets.write1ByteTxRx(port, 12, 64, 1) == (0, 0)
    emulator.bus.faults.corrupt = 1.0
    assert packets.ping(port, 10)[1] == dxl.COMM_RX_CORRUPT
    emulator.bus.faults.corrupt, emulator.bus.faults.drop = 0.0, 1.0
    assert packets.ping(port, 10)[1] == dxl.COMM_RX_TIMEOUT
    port.closePort()
    # A client at another baud rate is not understood.
    emulator.bus.faults.drop = 0.0
    port = open_port(emulator.port, 57600)
    assert packets.ping(port, 10)[1] == dxl.COMM_RX_TIMEOUT
    port.closePort()


# The backend -------------------------------------------------------------------------------

#: A hand assembled differently from the defaults: one servo mounted reversed, offsets moved.
SCALE = (1.0, -1.0, 1.0) * 3
OFFSET = (-math.pi / 2, math.pi, -math.pi + 0.1) * 3


@pytest.fixture
def hand():
    """An emulated hand with :data:`SCALE` / :data:`OFFSET`, and a backend configured for it."""
    emulator = DClawEmulator(scale=SCALE, offset=OFFSET, valve_angle=-1.0)
    port = emulator.start()
    backend = DClawDynamixel(DynamixelSettings(port=port, scale=SCALE, offset=OFFSET,
                                               retries=2))
    backend.configure()
    yield emulator, backend
    backend.close()
    emulator.stop()


def test_backend_reads_the_calibrated_hand_and_moves_it(hand):
    emulator, backend = hand
    assert backend.command_interfaces == tuple(f'{j}/position' for j in DCLAW.joints)
    assert len(backend.state_interfaces) == 3 * 9 + 2 and 'valve/position' in (
        backend.state_interfaces)
    assert not any(emulator.torque_report().values())
    backend.activate()
    torque = emulator.torque_report()
    assert all(torque[i] for i in FINGER_IDS) and not torque[VALVE_ID]  # the valve stays free
    time.sleep(0.3)  # at rest, held
    reading = backend.read()
    q, v, current = reading['joints']
    np.testing.assert_allclose(q, emulator.joint_positions(), atol=2 * 2 * np.pi / 4096)
    assert abs(reading['valve'][0][0] - emulator.valve_angle()) < 3e-3
    # Move the reversed servo's joint (a_j1) down: its velocity reads negative while it turns.
    targets = DCLAW.reset_pose.copy()
    targets[1] -= 0.6
    sent = backend.write(targets)
    np.testing.assert_allclose(sent, targets)
    velocities = []
    for _ in range(15):
        time.sleep(0.02)
        velocities.append(backend.read()['joints'][1][1])
    assert min(velocities) < -0.3  # signed, through the reversed calibration
    time.sleep(0.4)
    q, _, current = backend.read()['joints']
    assert abs(q[1] - targets[1]) < 0.1 and abs(emulator.joint_positions()[1] - targets[1]) < 0.1
    assert backend.bus_time > 0 and backend.counts['writes'] == 1
    # Holding against gravity draws current (mA, signed).
    assert np.abs(current).max() > 1.0


def test_backend_clips_targets_and_flags_unsafe_readings(hand):
    emulator, backend = hand
    backend.activate()
    present = backend.read()['joints'][0]
    wild = present + np.array([5.0, -5.0, 0.2, 0, 0, 0, 0, 0, 0])
    safe = backend.safe_targets(wild)
    low, high = DCLAW.joint_range.T
    step = backend.settings.max_target_speed * DCLAW.control_period
    assert (safe >= low).all() and (safe <= high).all()
    assert (np.abs(safe - present) <= step + 1e-9).all()
    assert safe[2] == pytest.approx(wild[2])  # what is within both bounds is untouched
    backend.settings.max_target_speed = 1.0
    assert np.abs(backend.safe_targets(wild) - present).max() == pytest.approx(0.1)
    with pytest.raises(ValueError, match='9 finite'):
        backend.write(np.full(9, np.nan))
    flags = backend.check({'joints': (np.array([1.34, *present[1:]]), np.full(9, 1.5),
                                      np.full(9, 250.0))})
    assert flags['near_limit'][0] and not flags['near_limit'][1:].any()
    assert flags['too_fast'].all() and flags['over_current'].all()


def test_backend_survives_corrupt_replies_within_its_retries(hand):
    emulator, backend = hand
    emulator.bus.faults.corrupt = 0.02  # of each reply: a tenth of the group reads hit
    emulator.bus.random.seed(1)
    backend.settings.retries = 4
    for _ in range(30):
        reading = backend.read()
    assert backend.counts['retries'] > 0 and backend.faulted is None
    np.testing.assert_allclose(reading['joints'][0], emulator.joint_positions(), atol=5e-3)


def test_a_silent_servo_is_a_fault_naming_its_joint_and_torque_goes_off(hand):
    emulator, backend = hand
    backend.activate()
    emulator.bus.faults.silent[21] = 0.0
    with pytest.raises(BackendFault, match=r'21 \(b_j1\) do not answer') as fault:
        backend.read()
    assert fault.value.joint == 'b_j1' and fault.value.servo == 21
    torque = emulator.torque_report()
    assert not any(on for i, on in torque.items() if i != 21)  # the others heard torque off
    assert backend.torque_unconfirmed == [21]  # and the silent one is named
    with pytest.raises(BackendFault, match='stopped after a fault'):
        backend.write(DCLAW.reset_pose)  # no silent reuse: it stays stopped


def test_a_servo_silent_for_a_while_answers_again(hand):
    """``--silent 21@S+D``: a loose cable, reseated; the fault it made stays until configured."""
    from sac_robot.backends.emulator import _fault_map
    assert _fault_map(['21@5+3', '30'], windows=True) == {21: (5.0, 8.0), 30: 0.0}
    with pytest.raises(SystemExit, match='for --silent only'):
        _fault_map(['21@5+3'])  # (an overload has no end)
    emulator, backend = hand
    backend.activate()
    now = emulator.bus.clock() - emulator.bus.start
    emulator.bus.faults.silent[21] = (now, now + 0.5)
    with pytest.raises(BackendFault, match=r'21 \(b_j1\) do not answer'):
        backend.read()
    time.sleep(max(0.0, now + 0.6 - (emulator.bus.clock() - emulator.bus.start)))
    backend.configure()  # (what the driver's next reset does)
    backend.activate()
    assert backend.read()['joints'][0].shape == (9,)


def test_a_hardware_error_is_a_fault_with_the_servo_id(hand):
    emulator, backend = hand
    backend.activate()
    emulator.bus.faults.overload[30] = 0.0
    time.sleep(0.05)
    with pytest.raises(BackendFault, match=r'ID 30 \(c_j0\): overload') as fault:
        backend.poll_hardware_errors()
    assert fault.value.servo == 30
    assert not any(emulator.torque_report().values())


def test_the_valve_reset_turns_the_valve_to_the_start_and_frees_it(hand):
    """The scripted reset: fingers released, the valve motor turns the valve.

    The nearest way round; its torque off again; the fingers at the reset pose within 5
    degrees; the start angle follows the seed.
    """
    emulator, backend = hand
    backend.activate()
    starts = []
    for seed in (3, 4, 3):
        result = backend.reset({'seed': seed})
        assert result.success and result.attempts == 1, result
        before = emulator.valve_angle()  # (the free valve may still creep: read between)
        reading = backend.read()
        angle = emulator.valve_angle()
        starts.append(math.remainder(angle, 2 * math.pi))
        assert min(before, angle) - 3e-3 < reading['valve'][0][0] < max(before, angle) + 3e-3
        error = np.abs(reading['joints'][0] - DCLAW.reset_pose)
        assert error.max() < math.radians(5), np.degrees(error)
        torque = emulator.torque_report()
        assert not torque[VALVE_ID] and all(torque[i] for i in FINGER_IDS)  # the valve free
    assert abs(starts[0] - starts[2]) < math.radians(12) and abs(starts[0] - starts[1]) > 0.3
    # Asked for a start: there it is (the calibrated encoder's angle), give or take the nudge
    # of the fingers coming back.
    assert backend.reset({'valve_angle': -2.5}).success
    assert abs(math.remainder(backend.read()['valve'][0][0] + 2.5, 2 * math.pi)) < math.radians(12)


def test_a_valve_reset_that_cannot_succeed_asks_for_a_person(hand):
    emulator, backend = hand
    backend.settings.reset_timeout = 0.4
    backend.activate()
    emulator.bus.faults.stuck_valve = True
    before = emulator.valve_angle()
    result = backend.reset({'valve_angle': before + 2.0})
    assert not result.success and result.needs_operator and result.attempts == 3
    assert 'the valve reset failed 3 times' in result.message
    assert 'the valve motor did not turn the valve' in result.message
    assert not emulator.torque_report()[VALVE_ID]  # never left holding it
    emulator.bus.faults.stuck_valve = False  # (a person freed it)
    assert backend.reset({'valve_angle': 0.0}).success


def test_configure_says_what_is_missing_and_where(tmp_path):
    missing = str(tmp_path / 'ttyUSB9')
    with pytest.raises(BackendError, match=f'cannot open the servo port {missing}'):
        DClawDynamixel(DynamixelSettings(port=missing)).configure()
    emulator = DClawEmulator(faults=Faults(silent={31: 0.0}))
    port = emulator.start()
    try:
        with pytest.raises(BackendError, match=r'servo\(s\) 31 \(c_j1\) do not answer'):
            DClawDynamixel(DynamixelSettings(port=port, retries=0)).configure()
        with pytest.raises(BackendError, match='no servo answers .* at 57600 baud'):
            DClawDynamixel(DynamixelSettings(port=port, baud=57600, retries=0)).configure()
        emulator.bus.faults.silent.clear()
        with pytest.raises(BackendError, match='ID 10 is XM430-W350.*XH430-V350'):
            DClawDynamixel(DynamixelSettings(port=port, model=1040, retries=0)).configure()
    finally:
        emulator.stop()
    shipped = DynamixelSettings.from_yaml(os.path.join(REPO, 'config', 'dclaw_dynamixel.yaml'))
    assert shipped.ids == FINGER_IDS and shipped.valve_id == VALVE_ID and shipped.baud == 1000000
    np.testing.assert_allclose(shipped.offset, DynamixelSettings().offset, atol=1e-7)
    with pytest.raises(BackendError, match='dynamixel.ids needs 9 values'):
        DynamixelSettings.from_mapping({'ids': [1, 2, 3]})
    with pytest.raises(BackendError, match='unknown dynamixel setting'):
        DynamixelSettings.from_mapping({'prot': '/dev/ttyUSB0'})


def test_the_emulator_command_serves_and_reports_torque_at_exit(tmp_path):
    """``sac-robot emulate dclaw`` as a user runs it: the port printed, torque state at exit."""
    port_file = tmp_path / 'port'
    process = subprocess.Popen([sys.executable, '-m', 'sac_robot.cli', 'emulate', 'dclaw',
                                '--port-file', str(port_file)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        port = port_file.read_text().strip()
        backend = DClawDynamixel(DynamixelSettings(port=port))
        backend.configure()
        backend.activate()
        backend.read()
        backend.close()
    finally:
        process.send_signal(2)
        output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output
    assert f'pass port:={port}' in output
    assert 'at exit: torque off on all 10 servos' in output
