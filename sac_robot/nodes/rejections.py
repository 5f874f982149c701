# SPDX-License-Identifier: Apache-2.0
"""Rejected input, counted and said per kind: a flood of one kind never hides another.

rclpy throttles a log call site as a whole: with one ``error(..., throttle_duration_sec=1)``
for every rejected message, a wrong-length command and a NaN one a moment apart give one line,
and a flood of one kind silences all others. :class:`Rejections` counts every rejection by
topic and kind (the reason with its numbers taken out: "joint(s) ... missing", "is not a unit
quaternion") and logs the first of each kind at once, then at most every ``period`` seconds
with how many came meanwhile. Nodes put :attr:`Rejections.counts` in their diagnostics.
``severity='info'`` counts input that is well-formed but ignored for a reason (the driver's
commands in lockstep that answer an older observation) the same way.
"""

import collections
import re
import threading
import time

#: Numbers, quoted names and lists in a reason: what varies between messages of one kind.
_VARYING = re.compile(r"-?\d[\d.e+-]*|'[^']*'|\"[^\"]*\"|\([^)]*\)|\[[^\]]*\]")


def kind_of(reason: str) -> str:
    """The kind of a rejection: its reason with numbers, names and lists blanked."""
    return _VARYING.sub('#', reason)


class Rejections:
    """Count and log rejected messages per ``(topic, kind)``."""

    def __init__(self, logger, period: float = 5.0, severity: str = 'error'):
        if severity not in ('error', 'info'):
            raise ValueError(f"severity must be 'error' or 'info', not {severity!r}")
        self.logger, self.period, self.severity = logger, float(period), severity
        self.counts = collections.Counter()  # (topic, kind) -> rejections
        self._said = {}  # (topic, kind) -> (monotonic time said, count then)
        self._lock = threading.Lock()  # (a node may reject on more than one thread)

    def __call__(self, topic: str, reason: str, what: str = 'message rejected'):
        """One rejection on ``topic`` for ``reason`` (the MessageError's text)."""
        key = (topic, kind_of(reason))
        now = time.monotonic()
        with self._lock:
            self.counts[key] += 1
            said, count_then = self._said.get(key, (-float('inf'), 0))
            if now - said < self.period:
                return
            since = self.counts[key] - count_then - 1
            self._said[key] = (now, self.counts[key])
        line = f'{what}: {reason}' + (f' ({since} more of this kind since the last line, '
                                      f'{self.counts[key]} in all)' if since > 0 else '')
        # (one call site per severity: rclpy's logger refuses a call site that changes it)
        if self.severity == 'error':
            self.logger.error(line)
        else:
            self.logger.info(line)

    @property
    def total(self) -> int:
        """Every rejection so far."""
        return sum(self.counts.values())

    def by_topic(self) -> dict:
        """Rejections per topic (for diagnostics)."""
        out = collections.Counter()
        for (topic, _), count in self.counts.items():
            out[topic] += count
        return dict(out)
