# SPDX-License-Identifier: Apache-2.0
"""TensorBoard scalars of a run, in ``<run_dir>/tb``, as SB3 and CleanRL users expect them.

``tensorboard --logdir runs`` shows every run below ``runs/``. Both ``sac-robot train`` and the
trainer node write through :class:`Scalars`; the names group as TensorBoard shows them:

- ``rollout/episode_return``, ``rollout/episode_length``: each finished episode;
- ``eval/return``, ``eval/return_std``: each deterministic evaluation (``sac-robot train``);
- ``train/...``: the update's metrics (``loss/critic`` is ``train/loss_critic``; ``alpha``,
  ``entropy``, ``q_mean``), the updates per transition (``utd``), the version lag (how many
  policy versions behind the newest the acting policy was);
- ``time/...``: environment steps and updates a second.

The x axis is the environment step. Values that are not finite are left out (a NaN loss shows
as a gap, and the training's own checks say why). The CSV and PNG of a run stay as they are.
"""

import math
import os


class Scalars:
    """A TensorBoard event file of scalars in ``directory`` (made on the first value)."""

    def __init__(self, directory: str, flush_seconds: float = 10.0):
        self.directory = os.path.abspath(os.path.expanduser(directory))
        self.flush_seconds = flush_seconds
        self._writer = None

    def _open(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:  # (torch present, the tensorboard package not)
            raise RuntimeError(f'TensorBoard scalars need the tensorboard package ({error}); '
                               'it is in requirements.txt') from error
        os.makedirs(self.directory, exist_ok=True)
        self._writer = SummaryWriter(self.directory, flush_secs=self.flush_seconds)

    def add(self, step: int, values: dict, group: str = ''):
        """Write ``values`` (name -> number) at environment step ``step``.

        Names are TensorBoard tags: ``group/name`` where ``group`` is given, ``/`` in a name
        becoming ``_`` so that each group is one level (``loss/critic`` -> ``loss_critic``).
        """
        for name, value in values.items():
            try:
                value = float(value)
            except (TypeError, ValueError):
                continue
            if not math.isfinite(value):
                continue
            if self._writer is None:
                self._open()
            tag = f'{group}/{name.replace("/", "_")}' if group else name
            self._writer.add_scalar(tag, value, int(step))

    def flush(self):
        """Write what is buffered to the event file."""
        if self._writer is not None:
            self._writer.flush()

    def close(self):
        """Flush and close the event file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read(directory: str) -> dict:
    """Every scalar under ``directory``: tag -> ``[(step, value), ...]`` (for tests, plots)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    accumulator = EventAccumulator(directory, size_guidance={'scalars': 0})
    accumulator.Reload()
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()['scalars']}
