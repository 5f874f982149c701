# SPDX-License-Identifier: Apache-2.0
"""An emulated Dynamixel bus for the D'Claw: the hand's servos on a pseudo-terminal.

``sac-robot emulate dclaw`` opens a pseudo-terminal pair, prints the port to pass to the real
driver (``port:=/dev/pts/N``) and answers on it as the hand's X-series servos would: Protocol
2.0 packets (:mod:`sac_robot.backends.protocol2`: PING, READ, WRITE, SYNC_READ, SYNC_WRITE,
FAST_SYNC_READ, BULK_READ, REBOOT; byte stuffing, CRC-16) over the X-series control table
(torque enable, operating mode, position limits, goal position, present current, velocity and
position, hardware error status, moving). Behind the servos the MuJoCo D'Claw and its valve
step in real time: goal positions move the simulated joints, present positions report them
through the hand's calibration (``raw = (q - offset) / scale``), a servo with torque off is
limp, and the valve motor (ID 50) is the valve's encoder and, with torque on, turns it.

No code of the driver's is used here (only the hand's IDs and calibration, which describe how
it was assembled): the real driver, with the vendor's dynamixel-sdk, runs against this as
against a U2D2 adapter. The wire's speed is kept: a reply comes after the
instruction and the reply would have taken at the bus's baud rate (10 bits a byte) plus the
servo's return delay time, and a client at another baud rate is not understood (no reply).

Faults on purpose (:class:`Faults`, or the command line): dropped replies, corrupt CRCs, a
servo that falls silent, a hardware error bit (overload), added latency, a stuck valve motor.
"""

import argparse
import dataclasses
import math
import os
import random
import select
import signal
import sys
import termios
import threading
import time
import tty

import numpy as np

from sac_robot.backends import protocol2 as p2
from sac_robot.backends.dynamixel import DEFAULT_OFFSET, DEFAULT_SCALE, FINGER_IDS, VALVE_ID
from sac_robot.backends.protocol2 import CONTROL_TABLE, Error, Instruction

RAD_PER_TICK, RAD_S_PER_UNIT = p2.RAD_PER_TICK, p2.RAD_S_PER_UNIT
#: The valve motor's position loop when its torque is on (N m/rad, N m s/rad, N m).
VALVE_KP, VALVE_KD, VALVE_MAX_TORQUE = 1.0, 0.05, 1.5
#: Default position P gain of the X series: the model's kp (2 N m/rad) at this value.
DEFAULT_P_GAIN = 800
BAUD_RATES = {9600: 0, 57600: 1, 115200: 2, 1000000: 3, 2000000: 4, 3000000: 5, 4000000: 6}


@dataclasses.dataclass
class Faults:
    """What goes wrong on the emulated bus, on purpose."""

    #: Probability that a reply is not sent.
    drop: float = 0.0
    #: Probability that a reply's CRC is corrupted.
    corrupt: float = 0.0
    #: Servo ID -> emulator time (s) from which it never answers, or ``(from, until)``: a loose
    #: cable, reseated.
    silent: dict = dataclasses.field(default_factory=dict)
    #: Servo ID -> emulator time (s) from which it reports an overload (torque shuts off).
    overload: dict = dataclasses.field(default_factory=dict)
    #: Added before every reply (s).
    latency: float = 0.0
    #: The valve motor does not turn (its readings still come).
    stuck_valve: bool = False


class Servo:
    """One X-series servo: its control table and what its firmware does with writes."""

    def __init__(self, servo_id: int, model: int = 1020, baud: int = 1_000_000):
        self.id = servo_id
        self.torque_ons = 0  # times its torque was turned on (the valve motor: resets)
        self.table = bytearray(p2.TABLE_SIZE)
        self._defaults = {'model_number': model, 'firmware_version': 45, 'id': servo_id,
                          'baud_rate': BAUD_RATES.get(baud, 3), 'return_delay_time': 0,
                          'operating_mode': p2.POSITION_MODE, 'temperature_limit': 80,
                          'current_limit': 1193, 'velocity_limit': 1023,
                          'max_position_limit': 4095, 'min_position_limit': 0,
                          'status_return_level': 2, 'position_p_gain': DEFAULT_P_GAIN,
                          'present_input_voltage': 120, 'present_temperature': 30}
        self.reboot()

    def reboot(self):
        """Power-on state: RAM at its defaults (torque off, no hardware error)."""
        eeprom = bytes(self.table[:64])
        self.table[:] = bytes(p2.TABLE_SIZE)
        for name, value in self._defaults.items():
            self.set(name, value)
        if any(eeprom):  # EEPROM survives a reboot
            self.table[:64] = eeprom
            self.set('model_number', self._defaults['model_number'])

    def get(self, name: str) -> int:
        """A control-table item's value."""
        field = CONTROL_TABLE[name]
        raw = int.from_bytes(self.table[field.address:field.address + field.size], 'little')
        return p2.signed(raw, field.size) if field.signed else raw

    def set(self, name: str, value: int):
        """Set an item as the firmware does (no access checks)."""
        field = CONTROL_TABLE[name]
        mask = (1 << 8 * field.size) - 1
        self.table[field.address:field.address + field.size] = (int(value) & mask).to_bytes(
            field.size, 'little')

    @property
    def torque(self) -> bool:
        """Whether its torque is on (address 64)."""
        return bool(self.table[CONTROL_TABLE['torque_enable'].address])

    def read(self, address: int, length: int) -> tuple:
        """``(error, data)`` of a READ."""
        if length < 1 or address + length > p2.TABLE_SIZE:
            return Error.DATA_RANGE, b''
        return Error.NONE, bytes(self.table[address:address + length])

    def write(self, address: int, data: bytes) -> int:
        """The error of a WRITE of ``data`` at ``address`` (nothing written on an error)."""
        end = address + len(data)
        if not data or end > p2.TABLE_SIZE:
            return Error.DATA_RANGE
        touched = [(name, f) for name, f in CONTROL_TABLE.items()
                   if f.address < end and address < f.address + f.size]
        for _, field in touched:
            if not field.writable or (field.eeprom and self.torque):
                return Error.ACCESS  # read-only, or EEPROM while torque is on
        if self.get('hardware_error_status') and any(
                name == 'torque_enable' for name, _ in touched) and data[0]:
            return Error.RESULT_FAIL | Error.ALERT  # only a reboot re-enables torque
        old = bytes(self.table[address:end])
        was_on = self.torque
        self.table[address:end] = data
        if self.torque and not was_on:  # torque on holds where the servo is
            self.torque_ons += 1
            self.set('goal_position', self.get('present_position'))
        mode = self.get('operating_mode')
        if mode == p2.POSITION_MODE and any(name == 'goal_position' for name, _ in touched):
            goal = self.get('goal_position')
            if not self.get('min_position_limit') <= goal <= self.get('max_position_limit'):
                self.table[address:end] = old
                return Error.DATA_LIMIT
        return Error.NONE

    def error_byte(self, error: int = 0) -> int:
        """A status packet's error byte: ``error`` and the alert bit of a hardware error."""
        return error | (Error.ALERT if self.get('hardware_error_status') else 0)


class ServoBus:
    """The servos of one bus answering packets, with :class:`Faults`."""

    def __init__(self, servos: dict, faults: Faults | None = None, clock=time.monotonic,
                 seed: int = 0):
        self.servos = servos
        self.faults = faults or Faults()
        self.clock, self.start = clock, clock()
        self.random = random.Random(seed)
        self.lock = threading.Lock()  # the physics thread shares the tables
        self.counts = {'packets': 0, 'replies': 0, 'dropped': 0, 'corrupted': 0}

    def _answers(self, servo_id: int) -> bool:
        window = self.faults.silent.get(servo_id)
        if window is None:
            return servo_id in self.servos
        since, until = window if isinstance(window, tuple) else (window, math.inf)
        return servo_id in self.servos and not since <= self.clock() - self.start < until

    def _reply(self, servo: Servo, error: int = 0, parameters: bytes = b'') -> bytes:
        return p2.status(servo.id, servo.error_byte(error), parameters)

    def handle(self, packet: p2.Packet) -> list:
        """The status packets ``packet`` makes the servos send, in the order they send them."""
        self.counts['packets'] += 1
        with self.lock:
            replies = self._handle(packet)
        out = []
        for reply in replies:
            if self.random.random() < self.faults.drop:
                self.counts['dropped'] += 1
                continue
            if self.random.random() < self.faults.corrupt:
                reply = reply[:-1] + bytes([reply[-1] ^ 0x5A])
                self.counts['corrupted'] += 1
            out.append(reply)
        self.counts['replies'] += len(out)
        return out

    def _handle(self, packet: p2.Packet) -> list:
        inst, params, target = packet.instruction, packet.parameters, packet.id
        if inst in (Instruction.SYNC_READ, Instruction.FAST_SYNC_READ, Instruction.SYNC_WRITE,
                    Instruction.BULK_READ, Instruction.BULK_WRITE):
            if target != p2.BROADCAST_ID:
                return []
            return self._group(inst, params)
        ids = sorted(self.servos) if target == p2.BROADCAST_ID else [target]
        replies = []
        for servo_id in ids:
            if not self._answers(servo_id):
                continue
            servo = self.servos[servo_id]
            reply = self._single(servo, inst, params)
            if reply is not None and target != p2.BROADCAST_ID or inst == Instruction.PING:
                replies.append(reply)
        return replies

    def _single(self, servo: Servo, inst: int, params: bytes):
        if inst == Instruction.PING:
            return self._reply(servo, 0, p2.u16(servo.get('model_number'))
                               + bytes([servo.get('firmware_version')]))
        if inst == Instruction.READ:
            if len(params) != 4:
                return self._reply(servo, Error.DATA_LENGTH)
            address, length = params[0] | params[1] << 8, params[2] | params[3] << 8
            error, data = servo.read(address, length)
            return self._reply(servo, error, data)
        if inst == Instruction.WRITE:
            if len(params) < 3:
                return self._reply(servo, Error.DATA_LENGTH)
            return self._reply(servo, servo.write(params[0] | params[1] << 8, params[2:]))
        if inst == Instruction.REBOOT:
            servo.reboot()
            return self._reply(servo)
        return self._reply(servo, Error.INSTRUCTION)

    def _group(self, inst: int, params: bytes) -> list:
        if inst == Instruction.BULK_READ:
            replies = []
            for i in range(0, len(params) - 4, 5):
                servo_id = params[i]
                address, length = params[i + 1] | params[i + 2] << 8, params[i + 3] | params[
                    i + 4] << 8
                if self._answers(servo_id):
                    servo = self.servos[servo_id]
                    error, data = servo.read(address, length)
                    replies.append(self._reply(servo, error, data))
            return replies
        if len(params) < 4:
            return []
        address, length = params[0] | params[1] << 8, params[2] | params[3] << 8
        body = params[4:]
        if inst == Instruction.SYNC_WRITE:
            for i in range(0, len(body) - length, length + 1):
                servo_id = body[i]
                if self._answers(servo_id):
                    self.servos[servo_id].write(address, body[i + 1:i + 1 + length])
            return []
        ids = [servo_id for servo_id in body if self._answers(servo_id)]
        if inst == Instruction.SYNC_READ:
            return [self._reply(self.servos[i], *self.servos[i].read(address, length))
                    for i in ids]
        # FAST_SYNC_READ: one status packet from the broadcast ID; each servo adds its error,
        # ID, data and the CRC of the packet so far, and the last servo's CRC closes it. A
        # silent servo leaves the packet unfinished (the client times out).
        if len(ids) != len(body):
            return []
        blocks = []
        for servo_id in ids:
            servo = self.servos[servo_id]
            error, data = servo.read(address, length)
            blocks.append((servo.error_byte(error), servo_id, data))
        size = 1 + sum(len(d) + 4 for _, _, d in blocks)
        packet = bytearray(p2.HEADER + bytes([p2.BROADCAST_ID, size & 0xFF, size >> 8,
                                              Instruction.STATUS]))
        for error, servo_id, data in blocks:
            packet += bytes([error, servo_id]) + data
            crc = p2.crc16(packet)
            packet += bytes([crc & 0xFF, crc >> 8])
        return [bytes(packet)]


class DClawEmulator:
    """The D'Claw's servo bus on a pseudo-terminal, backed by the MuJoCo hand and valve.

    ``start()`` opens the pty and starts two threads: the physics (real time, in 2-step
    chunks of the model's 2.5 ms) and the bus (select on the pty, answer packets). ``port`` is
    the path to give the driver. ``stop()`` ends both and closes the pty.

    Servos are hardware: they answer in microseconds whatever the computer does. So that the
    emulated ones answer within the SDK's timeout on a loaded machine too (the driver's control
    thread runs at SCHED_FIFO 50 and spins while it waits for a reply, as dynamixel-sdk
    does), both threads ask for SCHED_FIFO ``priority`` (above the driver's; 0: normal
    scheduling); :attr:`scheduling` says what they got.
    """

    def __init__(self, finger_ids=FINGER_IDS, valve_id: int = VALVE_ID, model: int = 1020,
                 baud: int = 1_000_000, scale=DEFAULT_SCALE, offset=DEFAULT_OFFSET,
                 valve_scale: float = 1.0, valve_offset: float = 0.0,
                 faults: Faults | None = None, valve_angle: float = 0.0, seed: int = 0,
                 realtime_factor: float = 1.0, priority: int = 60):
        from sac_robot.robots.dclaw import DClawSim  # the simulation side needs MuJoCo
        self.sim = DClawSim()
        self.sim.reset(valve_angle=valve_angle)
        self.finger_ids, self.valve_id = tuple(finger_ids), valve_id
        self.scale, self.offset = np.asarray(scale, float), np.asarray(offset, float)
        self.valve_scale, self.valve_offset = float(valve_scale), float(valve_offset)
        self.baud, self.model_number = int(baud), model
        self.torque_constant = p2.MODELS.get(model, p2.MODELS[1020])[2]
        self.current_unit = p2.MODELS.get(model, p2.MODELS[1020])[1]
        servos = {i: Servo(i, model, baud) for i in (*self.finger_ids, valve_id)}
        servos[valve_id].set('operating_mode', p2.EXTENDED_POSITION_MODE)
        self.bus = ServoBus(servos, faults, seed=seed)
        self.realtime_factor = realtime_factor
        self.priority = int(priority)
        #: Thread name -> the scheduling it runs under (after start()).
        self.scheduling = {}
        model_ = self.sim.model
        self._kp = model_.actuator_gainprm[self.sim._actuators, 0].copy()
        self._valve_dof = self.sim._valve_qvel
        self._valve_force = 0.0
        self.master = self.slave = None
        self.port = None
        self._stop = threading.Event()
        self._threads = []
        self.sim_time = 0.0
        self._sync_registers()

    # Physics --------------------------------------------------------------------------------

    def _to_ticks(self, q, scale, offset):
        return np.round((np.asarray(q) - offset) / scale / RAD_PER_TICK).astype(np.int64)

    def _from_ticks(self, ticks, scale, offset):
        return np.asarray(ticks, float) * RAD_PER_TICK * scale + offset

    def _apply_servos(self):
        """Goal positions and torque states into the model (under the bus lock)."""
        servos, sim = self.bus.servos, self.sim
        for index, servo_id in enumerate(self.finger_ids):
            servo = servos[servo_id]
            self._check_faults(servo)
            on = servo.torque
            gain = self._kp[index] * servo.get('position_p_gain') / DEFAULT_P_GAIN if on else 0.0
            actuator = sim._actuators[index]
            sim.model.actuator_gainprm[actuator, 0] = gain
            sim.model.actuator_biasprm[actuator, 1] = -gain
            if on:
                goal = self._from_ticks(servo.get('goal_position'), self.scale[index],
                                        self.offset[index])
                sim.data.ctrl[actuator] = goal
        valve = servos[self.valve_id]
        self._check_faults(valve)
        if valve.torque and not self.bus.faults.stuck_valve:
            goal = float(self._from_ticks(valve.get('goal_position'), self.valve_scale,
                                          self.valve_offset))
            error = goal - sim.valve_angle()
            force = VALVE_KP * error - VALVE_KD * sim.valve_velocity()
            self._valve_force = float(np.clip(force, -VALVE_MAX_TORQUE, VALVE_MAX_TORQUE))
        else:
            self._valve_force = 0.0
        sim.data.qfrc_applied[self._valve_dof] = self._valve_force

    def _check_faults(self, servo: Servo):
        since = self.bus.faults.overload.get(servo.id)
        if since is not None and self.bus.clock() - self.bus.start >= since and not servo.get(
                'hardware_error_status'):
            servo.set('hardware_error_status', p2.HardwareError.OVERLOAD)
            servo.set('torque_enable', 0)  # the firmware's shutdown

    def _sync_registers(self):
        """Present position, velocity, current and moving from the model (under the lock)."""
        sim, servos = self.sim, self.bus.servos
        q, v = sim.joint_positions(), sim.joint_velocities()
        force = sim.data.actuator_force[sim._actuators]
        ticks = self._to_ticks(q, self.scale, self.offset)
        for index, servo_id in enumerate(self.finger_ids):
            servo = servos[servo_id]
            servo.set('present_position', ticks[index])
            servo.set('present_velocity', round(v[index] / self.scale[index] / RAD_S_PER_UNIT))
            servo.set('present_current', round(force[index] / self.scale[index]
                                               / self.torque_constant * 1000 / self.current_unit))
            servo.set('moving', abs(v[index]) > 0.05)
        valve = servos[self.valve_id]
        valve.set('present_position', int(self._to_ticks(sim.valve_angle(), self.valve_scale,
                                                         self.valve_offset)))
        valve.set('present_velocity', round(sim.valve_velocity() / self.valve_scale
                                            / RAD_S_PER_UNIT))
        valve.set('present_current', round(self._valve_force / self.torque_constant * 1000
                                           / self.current_unit))
        valve.set('moving', abs(sim.valve_velocity()) > 0.05)

    def step(self, substeps: int = 2):
        """Advance the physics ``substeps`` steps with the servos' state (thread-safe)."""
        with self.bus.lock:
            self._apply_servos()
            self.sim.step(substeps)
            self.sim_time += substeps * self.sim.timestep
            self._sync_registers()

    def _real_time(self, name: str):
        """Put the calling thread under SCHED_FIFO at :attr:`priority`, where allowed."""
        if self.priority <= 0:
            self.scheduling[name] = 'normal'
            return
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(self.priority))
            self.scheduling[name] = f'SCHED_FIFO {self.priority}'
        except (OSError, AttributeError) as error:
            self.scheduling[name] = f'normal (SCHED_FIFO not permitted: {error})'

    def _physics_loop(self):
        self._real_time('physics')
        substeps = 2
        period = substeps * self.sim.timestep / self.realtime_factor
        deadline = time.monotonic()
        while not self._stop.is_set():
            self.step(substeps)
            deadline += period
            delay = deadline - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            elif delay < -0.1:  # fell far behind (a stalled machine): do not race to catch up
                deadline = time.monotonic()

    # The bus --------------------------------------------------------------------------------

    def _client_baud_matches(self) -> bool:
        """Whether the client set the bus's baud rate on the port (pyserial does, by termios)."""
        expected = getattr(termios, f'B{self.baud}', None)
        try:
            return expected is None or termios.tcgetattr(self.slave)[5] == expected
        except termios.error:
            return True

    def _bus_loop(self):
        self._real_time('bus')
        parser = p2.PacketParser()
        byte_time = 10.0 / self.baud
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:  # no client has the port open: wait for one
                time.sleep(0.01)
                continue
            if not self._client_baud_matches():
                continue  # bytes at another baud rate are noise to a servo
            arrived = time.monotonic()
            for packet in parser.feed(data):
                replies = self.bus.handle(packet)
                if not replies:
                    continue
                delay = self.bus.faults.latency
                servo = self.bus.servos.get(packet.id)
                if servo is not None:
                    delay += 2e-6 * servo.get('return_delay_time')
                # A reply starts once the instruction is through, and takes its own bytes.
                ready_at = arrived + delay + byte_time * (
                    len(p2.encode(packet.id, packet.instruction, packet.parameters))
                    + sum(len(r) for r in replies))
                wait = ready_at - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                os.write(self.master, b''.join(replies))

    def start(self) -> str:
        """Open the pseudo-terminal, start the physics and the bus; return the port's path."""
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo, no line discipline: bytes as they are
        self.port = os.ttyname(self.slave)
        for target, name in ((self._physics_loop, 'physics'), (self._bus_loop, 'bus')):
            thread = threading.Thread(target=target, name=f'emulator-{name}', daemon=True)
            thread.start()
            self._threads.append(thread)
        return self.port

    def stop(self):
        """Stop both threads and close the pseudo-terminal."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2.0)
        for fd in (self.master, self.slave):
            if fd is not None:
                os.close(fd)
        self.master = self.slave = None

    def torque_report(self) -> dict:
        """Servo ID -> whether its torque is on."""
        with self.bus.lock:
            return {servo_id: servo.torque for servo_id, servo in self.bus.servos.items()}

    def joint_positions(self) -> np.ndarray:
        """The simulated hand's joint angles (rad), the truth the servos report."""
        with self.bus.lock:
            return self.sim.joint_positions()

    def valve_angle(self) -> float:
        """The simulated valve's angle (rad)."""
        with self.bus.lock:
            return self.sim.valve_angle()


def _fault_map(entries, windows: bool = False) -> dict:
    """``ID[@S]`` (and, with ``windows``, ``ID@S+D``: for D seconds) -> {ID: S or (S, S + D)}."""
    out = {}
    for entry in entries or ():
        servo, _, when = entry.partition('@')
        since, plus, duration = when.partition('+')
        if plus and not windows:
            raise SystemExit(f'{entry}: a duration (+D) is for --silent only')
        out[int(servo)] = ((float(since or 0.0), float(since or 0.0) + float(duration))
                           if plus else float(since or 0.0))
    return out


def main(argv=None) -> int:
    """``sac-robot emulate dclaw``: serve the emulated hand until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog='sac-robot emulate dclaw', description=__doc__.split('\n\n')[0])
    parser.add_argument('--baud', type=int, default=1_000_000, help='bus baud rate')
    parser.add_argument('--model', type=int, default=1020, choices=sorted(p2.MODELS),
                        help='servo model number (1020 XM430-W350, 1040 XH430-V350, ...)')
    parser.add_argument('--valve-angle', type=float, default=0.0, help='valve start (rad)')
    parser.add_argument('--drop', type=float, default=0.0, help='probability of a lost reply')
    parser.add_argument('--corrupt', type=float, default=0.0,
                        help='probability of a reply with a bad CRC')
    parser.add_argument('--silent', action='append', metavar='ID[@S[+D]]',
                        help='servo ID stops answering (from S seconds on; for D seconds: a '
                             'loose cable, reseated)')
    parser.add_argument('--overload', action='append', metavar='ID[@S]',
                        help='servo ID reports an overload (from S seconds on)')
    parser.add_argument('--latency', type=float, default=0.0, help='added reply latency (ms)')
    parser.add_argument('--stuck-valve', action='store_true', help='the valve motor cannot turn')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--priority', type=int, default=60,
                        help='SCHED_FIFO priority of the emulator threads, above the '
                             "driver's 50, as servos answer whatever the computer does "
                             '(0: normal scheduling)')
    parser.add_argument('--port-file', help='also write the port path to this file')
    args = parser.parse_args(argv)
    faults = Faults(drop=args.drop, corrupt=args.corrupt,
                    silent=_fault_map(args.silent, windows=True),
                    overload=_fault_map(args.overload), latency=args.latency / 1000,
                    stuck_valve=args.stuck_valve)
    emulator = DClawEmulator(model=args.model, baud=args.baud, faults=faults,
                             valve_angle=args.valve_angle, seed=args.seed,
                             priority=args.priority)
    done = threading.Event()  # (before anyone learns the port: a signal from then on ends it)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    port = emulator.start()
    done.wait(0.05)  # (the threads have set their scheduling)
    if args.port_file:
        with open(args.port_file, 'w', encoding='utf-8') as stream:
            stream.write(port + '\n')
    print(f"emulated D'Claw bus at {port} ({args.baud} baud, servos "
          f"{', '.join(map(str, sorted(emulator.bus.servos)))}): pass port:={port}", flush=True)
    print('threads: ' + ', '.join(f'{name} {how}' for name, how in
                                  sorted(emulator.scheduling.items())), flush=True)
    last = time.monotonic()
    while not done.wait(0.2):
        if time.monotonic() - last > 10.0:
            last = time.monotonic()
            on = [i for i, t in emulator.torque_report().items() if t]
            print(f'{emulator.sim_time:8.1f} s simulated, {emulator.bus.counts["packets"]} '
                  f'packets, torque on: {", ".join(map(str, on)) or "none"}', flush=True)
    report = emulator.torque_report()
    emulator.stop()
    counts = emulator.bus.counts
    print(f'at exit: {counts["packets"]} packets, {counts["dropped"]} replies dropped and '
          f'{counts["corrupted"]} corrupted on purpose', flush=True)
    on = [i for i, t in report.items() if t]
    print('at exit: torque ' + (f'ON on {", ".join(map(str, on))}' if on else
                                f'off on all {len(report)} servos'), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
