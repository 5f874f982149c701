# SPDX-License-Identifier: Apache-2.0
"""Dynamixel Protocol 2.0 on the wire, and the X-series control table (ROBOTIS e-Manual).

The emulated servo bus (:mod:`sac_robot.backends.emulator`) speaks through these; the real
driver talks through the vendor's dynamixel-sdk, so the two sides of a test are written
independently of each other.

Packet: ``FF FF FD 00 | ID | LEN_L LEN_H | INST | parameters | CRC_L CRC_H``; ``LEN`` counts
the instruction, the (stuffed) parameters and the CRC. Byte stuffing: inside the instruction
and parameters, every ``FF FF FD`` is followed by an extra ``FD``. The CRC-16 (polynomial
0x8005, initial value 0, no reflection) runs over everything before it, after stuffing. A
status packet is an instruction ``0x55`` whose first parameter is the error byte.
"""

import dataclasses
import enum
import math

HEADER = b'\xff\xff\xfd\x00'
BROADCAST_ID = 0xFE
#: The highest ID a servo can have.
MAX_ID = 0xFC


class Instruction(enum.IntEnum):
    """Protocol 2.0 instructions."""

    PING = 0x01
    READ = 0x02
    WRITE = 0x03
    REG_WRITE = 0x04
    ACTION = 0x05
    FACTORY_RESET = 0x06
    REBOOT = 0x08
    CLEAR = 0x10
    STATUS = 0x55
    SYNC_READ = 0x82
    SYNC_WRITE = 0x83
    FAST_SYNC_READ = 0x8A
    BULK_READ = 0x92
    BULK_WRITE = 0x93
    FAST_BULK_READ = 0x9A


class Error(enum.IntEnum):
    """The status packet's error byte: a number in the low bits, ``ALERT`` in bit 7."""

    NONE = 0
    RESULT_FAIL = 1
    INSTRUCTION = 2
    CRC = 3
    DATA_RANGE = 4
    DATA_LENGTH = 5
    DATA_LIMIT = 6
    ACCESS = 7
    #: Bit 7: the servo has a hardware error (read Hardware Error Status, address 70).
    ALERT = 0x80


class HardwareError(enum.IntFlag):
    """Hardware Error Status (address 70) bits of the X series."""

    INPUT_VOLTAGE = 1 << 0
    OVERHEATING = 1 << 2
    MOTOR_ENCODER = 1 << 3
    ELECTRICAL_SHOCK = 1 << 4
    OVERLOAD = 1 << 5


def describe_hardware_error(bits: int) -> str:
    """The names of the hardware error bits set in ``bits`` ('overload, overheating')."""
    names = [flag.name.lower().replace('_', ' ') for flag in HardwareError if bits & flag]
    return ', '.join(names) or 'none'


def _crc_table() -> list:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes, crc: int = 0) -> int:
    """CRC-16/BUYPASS (polynomial 0x8005, initial 0) of ``data``, continuing from ``crc``."""
    table = _CRC_TABLE
    for byte in data:
        crc = ((crc << 8) ^ table[((crc >> 8) ^ byte) & 0xFF]) & 0xFFFF
    return crc


def stuff(body: bytes) -> bytes:
    """Insert an ``FD`` after every ``FF FF FD`` of ``body`` (instruction and parameters)."""
    return bytes(body).replace(b'\xff\xff\xfd', b'\xff\xff\xfd\xfd')


def unstuff(body: bytes) -> bytes:
    """Undo :func:`stuff`."""
    return bytes(body).replace(b'\xff\xff\xfd\xfd', b'\xff\xff\xfd')


def encode(packet_id: int, instruction: int, parameters: bytes = b'') -> bytes:
    """A whole packet: header, ID, length, stuffed instruction and parameters, CRC."""
    body = stuff(bytes([instruction]) + bytes(parameters))
    length = len(body) + 2
    packet = HEADER + bytes([packet_id, length & 0xFF, length >> 8]) + body
    crc = crc16(packet)
    return packet + bytes([crc & 0xFF, crc >> 8])


def status(packet_id: int, error: int = 0, parameters: bytes = b'') -> bytes:
    """A status packet (instruction 0x55) with its error byte and parameters."""
    return encode(packet_id, Instruction.STATUS, bytes([error]) + bytes(parameters))


@dataclasses.dataclass(frozen=True)
class Packet:
    """One decoded packet (parameters unstuffed)."""

    id: int
    instruction: int
    parameters: bytes

    @property
    def error(self) -> int:
        """A status packet's error byte."""
        return self.parameters[0]


class PacketParser:
    """Bytes from the wire in, whole packets out; noise skipped, bad CRCs counted.

    ``feed(data)`` returns the packets completed by ``data``. Bytes before a header are
    skipped (a servo that starts listening mid-packet); a packet whose CRC does not match is
    dropped and counted in :attr:`crc_errors` (a servo does not act on it).
    """

    #: Longest length field accepted: anything longer is noise, not a packet.
    MAX_LENGTH = 1024

    def __init__(self):
        self.buffer = bytearray()
        self.crc_errors = 0
        self.skipped = 0

    def feed(self, data: bytes) -> list:
        """Append ``data``; return the packets it completes."""
        self.buffer += data
        packets = []
        while True:
            start = self.buffer.find(HEADER)
            if start < 0:  # keep a possible partial header at the end
                keep = next((n for n in (3, 2, 1) if self.buffer.endswith(HEADER[:n])), 0)
                self.skipped += len(self.buffer) - keep
                del self.buffer[:len(self.buffer) - keep]
                return packets
            if start:
                self.skipped += start
                del self.buffer[:start]
            if len(self.buffer) < 7:
                return packets
            length = self.buffer[5] | self.buffer[6] << 8
            if length < 3 or length > self.MAX_LENGTH:
                self.skipped += 1
                del self.buffer[:1]  # a false header: look further
                continue
            total = 7 + length
            if len(self.buffer) < total:
                return packets
            raw = bytes(self.buffer[:total])
            del self.buffer[:total]
            if crc16(raw[:-2]) != (raw[-2] | raw[-1] << 8):
                self.crc_errors += 1
                continue
            body = unstuff(raw[7:-2])
            packets.append(Packet(raw[4], body[0], body[1:]))


def u16(value: int) -> bytes:
    """Little-endian 2 bytes."""
    return int(value & 0xFFFF).to_bytes(2, 'little')


def u32(value: int) -> bytes:
    """Little-endian 4 bytes (negative values as two's complement)."""
    return int(value & 0xFFFFFFFF).to_bytes(4, 'little')


def signed(value: int, size: int) -> int:
    """An unsigned ``size``-byte reading (what the SDK's group reads return) as signed."""
    bits = 8 * size
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


@dataclasses.dataclass(frozen=True)
class Field:
    """One item of the control table."""

    address: int
    size: int
    #: Writable at all (RAM or EEPROM), and only with torque off (EEPROM).
    writable: bool = True
    eeprom: bool = False
    #: Stored as a signed number.
    signed: bool = False


#: The X series' control table (XM430 / XH430, e-Manual), the items this project uses.
CONTROL_TABLE = {
    'model_number': Field(0, 2, writable=False),
    'firmware_version': Field(6, 1, writable=False),
    'id': Field(7, 1, eeprom=True),
    'baud_rate': Field(8, 1, eeprom=True),
    'return_delay_time': Field(9, 1, eeprom=True),
    'operating_mode': Field(11, 1, eeprom=True),
    'homing_offset': Field(20, 4, eeprom=True, signed=True),
    'temperature_limit': Field(31, 1, eeprom=True),
    'current_limit': Field(38, 2, eeprom=True),
    'velocity_limit': Field(44, 4, eeprom=True),
    'max_position_limit': Field(48, 4, eeprom=True),
    'min_position_limit': Field(52, 4, eeprom=True),
    'torque_enable': Field(64, 1),
    'led': Field(65, 1),
    'status_return_level': Field(68, 1),
    'hardware_error_status': Field(70, 1, writable=False),
    'position_d_gain': Field(80, 2),
    'position_i_gain': Field(82, 2),
    'position_p_gain': Field(84, 2),
    'bus_watchdog': Field(98, 1),
    'profile_acceleration': Field(108, 4),
    'profile_velocity': Field(112, 4),
    'goal_position': Field(116, 4, signed=True),
    'moving': Field(122, 1, writable=False),
    'present_current': Field(126, 2, writable=False, signed=True),
    'present_velocity': Field(128, 4, writable=False, signed=True),
    'present_position': Field(132, 4, writable=False, signed=True),
    'present_input_voltage': Field(144, 2, writable=False),
    'present_temperature': Field(146, 1, writable=False),
}
#: Size of the control table (addresses 0 .. 146, and the indirect area is not used).
TABLE_SIZE = 147

#: Operating modes (address 11).
CURRENT_MODE, VELOCITY_MODE, POSITION_MODE, EXTENDED_POSITION_MODE = 0, 1, 3, 4

#: Position: ticks per turn; velocity: rpm per unit (e-Manual).
TICKS_PER_TURN = 4096
RPM_PER_VELOCITY_UNIT = 0.229
#: The same in SI units: radians per position tick, rad/s per velocity unit.
RAD_PER_TICK = 2 * math.pi / TICKS_PER_TURN
RAD_S_PER_UNIT = RPM_PER_VELOCITY_UNIT * 2 * math.pi / 60
#: Model number -> (name, mA per present-current unit, N m per A at the rated voltage).
MODELS = {
    1020: ('XM430-W350', 2.69, 1.78),
    1030: ('XM430-W210', 2.69, 1.33),
    1040: ('XH430-V350', 1.34, 1.90),
    1050: ('XH430-V210', 1.34, 1.45),
}
