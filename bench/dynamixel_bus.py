# SPDX-License-Identifier: Apache-2.0
"""The D'Claw's control step on the bus: one sync write and one sync read, timed.

Runs the real backend (dynamixel-sdk) against the emulated servo bus (``sac-robot emulate
dclaw``'s emulator, in this process) at 1,000,000 baud, at the hand's 10 Hz: each step writes
the nine goal positions and reads current, velocity and position of the ten servos, as the
driver will. The emulator keeps the wire's timing (10 bits a byte at the baud rate, return
delay 0), so the figure is what the bytes take plus the SDK's and the emulator's work; on a
real U2D2 add the USB latency timer (1 ms when set as docs/hardware.md says, 16 ms by default).
Compares plain SYNC_READ (a status packet per servo) with FAST_SYNC_READ (one for all), in
alternating blocks. The last line is the headline.
"""

import argparse
import time

import numpy as np

from machine import describe

from sac_robot.backends.dynamixel import DClawDynamixel, DynamixelSettings
from sac_robot.backends.emulator import DClawEmulator
from sac_robot.robots.description import DCLAW


def main() -> int:
    """Time the control steps; print the percentiles per read mode."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--steps', type=int, default=300, help='control steps per mode')
    parser.add_argument('--rate', type=float, default=DCLAW.control_rate, help='Hz (0: flat out)')
    parser.add_argument('--baud', type=int, default=1_000_000)
    args = parser.parse_args()
    if args.steps < 1:
        parser.error('--steps must be at least 1')
    emulator = DClawEmulator(baud=args.baud)
    port = emulator.start()
    backend = DClawDynamixel(DynamixelSettings(port=port, baud=args.baud))
    backend.configure()
    backend.activate()
    times = {False: [], True: []}
    rng = np.random.default_rng(0)
    period = 1.0 / args.rate if args.rate > 0 else 0.0
    block = min(50, args.steps)  # alternating blocks: both modes see the same load
    deadline = time.monotonic()
    print(f'{describe()}; {args.baud} baud, {len(backend.all_ids)} servos, {args.rate:g} Hz, '
          f'{args.steps} steps per mode in blocks of {block}', flush=True)
    for index in range(2 * args.steps):
        fast = (index // block) % 2 == 1
        backend.settings.fast_sync_read = fast
        targets = DCLAW.reset_pose + rng.uniform(-0.2, 0.2, 9)
        start = time.perf_counter()
        backend.write(targets)
        backend.read()
        times[fast].append(time.perf_counter() - start)
        if period:
            deadline += period
            time.sleep(max(0.0, deadline - time.monotonic()))
        if index % 100 == 99:
            print(f'  {index + 1}/{2 * args.steps} steps', flush=True)
    backend.close()
    emulator.stop()
    # The wire alone: instruction and status bytes at the baud rate (10 bits a byte).
    n = len(backend.all_ids)
    wire = {False: (14 + 9 * 5) + (14 + n) + n * (11 + 12),
            True: (14 + 9 * 5) + (14 + n) + (8 + n * (12 + 4))}
    medians = {}
    for fast, label in ((False, 'SYNC_READ'), (True, 'FAST_SYNC_READ')):
        ms = np.array(times[fast]) * 1000
        medians[fast] = np.median(ms)
        print(f'{label:15s} step (write + read): median {np.median(ms):.2f} ms, p99 '
              f'{np.percentile(ms, 99):.2f} ms, max {ms.max():.2f} ms; the bytes alone '
              f'{wire[fast] * 10 / args.baud * 1000:.2f} ms')
    print(f'bus_time_ms: {medians[False]:.2f} (sync read), {medians[True]:.2f} (fast sync '
          f'read), of a {1000 * DCLAW.control_period:.0f} ms control period')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
