"""Scalar metrics to TensorBoard event files, through TensorFlow's own summary writer.

``tf.summary.create_file_writer`` writes the event files; each scalar is a
``tf.summary.write`` with the ``scalars`` plugin's metadata, which is what
``tf.summary.scalar`` does when the ``tensorboard`` package is installed (it is not a
dependency: ``tf.summary.scalar`` without it raises ``TBNotInstalledError``). TensorBoard
shows them as ordinary scalar plots.
"""

from __future__ import annotations

import math
import os
from typing import Mapping


class MetricWriter:
    """Writes scalars under ``logdir``; a disabled writer (``enabled=False``) does nothing.

    Training enables it on process 0 only. TensorFlow is imported only by an enabled writer
    (and is kept off the GPU, which JAX owns).
    """

    def __init__(self, logdir: str | os.PathLike, enabled: bool = True):
        self._writer = None
        if not enabled:
            return
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        tf.config.set_visible_devices([], "GPU")
        self._tf = tf
        self._meta = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
        self._writer = tf.summary.create_file_writer(str(logdir))

    def write_scalars(self, step: int, values: Mapping[str, float], prefix: str = "") -> None:
        """Writes ``values`` at ``step`` as tags ``prefix + name``; non-finite values are skipped.

        Args:
          step: the global training step.
          values: scalar name -> value (anything ``float()`` takes).
          prefix: tag prefix, e.g. ``'train/'``.
        """
        if self._writer is None:
            return
        tf = self._tf
        with self._writer.as_default():
            for k, v in values.items():
                v = float(v)
                if math.isfinite(v):
                    tf.summary.write(prefix + k, tf.constant(v, tf.float32), step=int(step), metadata=self._meta)
        self._writer.flush()

    def close(self) -> None:
        """Flushes and closes the event file (idempotent)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


__all__ = ["MetricWriter"]
