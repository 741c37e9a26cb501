"""Per-process NumPy batches from a random-access source, with prefetching.

A batch is the examples of :func:`fgpose.data.preprocess.preprocess_example` stacked by
:func:`collate` (keys ``image``, ``image_hw``, ``original_hw``, ``scale``, ``boxes``,
``box_valid``, ``labels``, ``pose``, ``frame_height``, ``index``, ``valid``, ``flipped``; with
``data.with_fields`` also ``mask`` and ``location_field``): what the model's ``losses`` and
``predict`` take.

Training: :func:`make_train_iterator` yields the batch of global step ``start_step``,
``start_step + 1``, ... forever; ``iterator.state`` is the step of the *next* batch, so a
checkpoint that stores it resumes the exact stream (:mod:`fgpose.data.order`). Flips (when
``config.data.hflip``) are drawn per global batch from ``default_rng((seed, step, 1))``, so they
too are a pure function of the step, independent of the process split.

Evaluation: :func:`make_eval_iterator` walks the split once in index order; every process gets
``ceil(N / G)`` batches, padding examples have ``valid = False`` and ``index = -1``.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from fgpose.data import order
from fgpose.data.preprocess import padding_example, preprocess_example
from fgpose.data.sources import InMemorySource, open_tfds_source

log = logging.getLogger(__name__)

Batch = dict[str, np.ndarray]


def collate(examples: Sequence[Mapping[str, np.ndarray]], indices: np.ndarray) -> Batch:
    """Stacks per-example dicts into a batch and adds ``index`` (int32) and ``valid`` (bool)."""
    batch = {k: np.stack([np.asarray(e[k]) for e in examples]) for k in examples[0]}
    indices = np.asarray(indices)
    batch["index"] = indices.astype(np.int32)
    batch["valid"] = indices >= 0
    return batch


class BatchIterator:
    """Ordered, prefetching iterator over batches ``0..num_batches-1`` (or forever).

    Batch ``i`` is ``make_batch(i)``, a pure function; ``num_workers`` threads compute up to
    ``prefetch`` batches ahead and they are yielded in order.

    Attributes:
      state: index (training: global step) of the next batch :meth:`__next__` returns.
    """

    def __init__(
        self,
        make_batch: Callable[[int], Batch],
        *,
        start: int = 0,
        num_batches: int | None = None,
        num_workers: int = 2,
        prefetch: int | None = None,
    ):
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        self._make_batch = make_batch
        self._next = int(start)
        self._stop = num_batches
        self._num_workers = max(0, int(num_workers))
        self._prefetch = max(1, prefetch if prefetch is not None else 2 * max(1, self._num_workers))
        self._pool = (
            concurrent.futures.ThreadPoolExecutor(self._num_workers, thread_name_prefix="fgpose-data")
            if self._num_workers
            else None
        )
        self._pending: collections.deque = collections.deque()
        self._submitted = self._next

    @property
    def state(self) -> int:
        """Index of the next batch (training: the global step it belongs to)."""
        return self._next

    def __len__(self) -> int:
        if self._stop is None:
            raise TypeError("an infinite (training) iterator has no length")
        return self._stop

    def get_batch(self, index: int) -> Batch:
        """Batch ``index`` computed synchronously (does not move :attr:`state`)."""
        return self._make_batch(int(index))

    def _fill(self) -> None:
        while len(self._pending) < self._prefetch and (self._stop is None or self._submitted < self._stop):
            self._pending.append(self._pool.submit(self._make_batch, self._submitted))
            self._submitted += 1

    def __iter__(self) -> "BatchIterator":
        return self

    def __next__(self) -> Batch:
        if self._stop is not None and self._next >= self._stop:
            raise StopIteration
        if self._pool is None:
            batch = self._make_batch(self._next)
        else:
            self._fill()
            batch = self._pending.popleft().result()
            self._next += 1
            self._fill()
            return batch
        self._next += 1
        return batch

    def close(self) -> None:
        """Cancels pending work and stops the threads (idempotent)."""
        for fut in self._pending:
            fut.cancel()
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._submitted = self._next

    def __enter__(self) -> "BatchIterator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _process(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    return int(process_index), int(process_count)


def open_source(config, split: str) -> Sequence[Mapping[str, Any]]:
    """The random-access source of ``split`` for ``config.dataset`` (prepared TFDS dataset)."""
    ds = config.dataset
    return open_tfds_source(ds.name, split, data_dir=ds.data_dir, builder_config=ds.builder_config)


def _example_options(config) -> dict[str, Any]:
    """The :func:`preprocess_example` options of ``config.data``."""
    data = config.data
    return dict(
        input_size=tuple(int(x) for x in data.input_size),
        max_boxes=int(data.max_boxes),
        with_fields=bool(data.with_fields),
        symmetry_axis=str(data.symmetry_axis),
    )


def make_train_iterator(
    config,
    start_step: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
    *,
    source: Sequence[Mapping[str, Any]] | None = None,
    prefetch: int | None = None,
) -> BatchIterator:
    """Infinite iterator of this process's training batches from global step ``start_step``.

    Reads ``config.dataset.{name, builder_config, data_dir, train_split}``,
    ``config.data.{input_size, max_boxes, hflip, num_workers, with_fields, symmetry_axis}``,
    ``config.train.{global_batch_size, seed}``.

    Args:
      config: experiment config (:func:`fgpose.config.base_config`; any object with these
        attributes).
      start_step: global step of the first batch (resume: the checkpoint's ``iterator.state``).
      process_index, process_count: default ``jax.process_index()/process_count()``.
      source: optional in-memory source (a sequence of example dicts, see
        :mod:`fgpose.data.sources`) used instead of the TFDS split.
      prefetch: batches computed ahead (default ``2 * num_workers``).

    Returns:
      A :class:`BatchIterator`; each batch is a dict of arrays (module docstring) with leading size
      ``config.train.global_batch_size // process_count``.

    Raises:
      DatasetNotBuiltError: the TFDS dataset is not prepared (the message says how to build it).
    """
    pi, pc = _process(process_index, process_count)
    if source is None:
        source = open_source(config, config.dataset.train_split)
    elif not hasattr(source, "__getitem__"):
        source = InMemorySource(list(source))
    n = len(source)
    gbs = int(config.train.global_batch_size)
    seed = int(config.train.seed)
    hflip = bool(config.data.hflip)
    options = _example_options(config)
    per_process = gbs // pc
    order._check(n, gbs, pi, pc)

    def make_batch(step: int) -> Batch:
        idx = order.batch_indices(
            step, seed=seed, num_examples=n, global_batch_size=gbs, process_index=pi, process_count=pc
        )
        if hflip:
            flips = np.random.default_rng((seed, step, 1)).random(gbs) < 0.5
            flips = flips[pi * per_process:(pi + 1) * per_process]
        else:
            flips = np.zeros(per_process, bool)
        examples = [preprocess_example(source[int(i)], flip=bool(fl), **options) for i, fl in zip(idx, flips)]
        batch = collate(examples, idx)
        batch["flipped"] = flips
        return batch

    return BatchIterator(
        make_batch,
        start=start_step,
        num_workers=int(config.data.num_workers),
        prefetch=prefetch,
    )


def make_eval_iterator(
    config,
    split: str | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    *,
    source: Sequence[Mapping[str, Any]] | None = None,
    batch_size: int | None = None,
    start_batch: int = 0,
    prefetch: int | None = None,
) -> BatchIterator:
    """One ordered pass over ``split`` (default ``config.dataset.eval_split``), no augmentation.

    Global batch size ``batch_size`` (default ``config.eval.batch_size``), divisible by
    ``process_count``; every process yields ``ceil(N / batch_size)`` batches of
    ``batch_size // process_count`` examples; padding examples (in the last batches) have
    ``valid = False``, ``index = -1``, no valid box and harmless geometry
    (:func:`fgpose.data.preprocess.padding_example`).
    """
    pi, pc = _process(process_index, process_count)
    if source is None:
        split = split or config.dataset.eval_split
        source = open_source(config, split)
    elif not hasattr(source, "__getitem__"):
        source = InMemorySource(list(source))
    n = len(source)
    gbs = int(batch_size if batch_size is not None else config.eval.batch_size)
    options = _example_options(config)
    pad = padding_example(options["input_size"], options["max_boxes"], options["with_fields"])
    order._check(max(n, 1), gbs, pi, pc)

    def make_batch(b: int) -> Batch:
        idx = order.eval_batch_indices(
            b, num_examples=n, global_batch_size=gbs, process_index=pi, process_count=pc
        )
        examples = [preprocess_example(source[int(i)], **options) if i >= 0 else pad for i in idx]
        batch = collate(examples, idx)
        batch["flipped"] = np.zeros(len(idx), bool)
        return batch

    return BatchIterator(
        make_batch,
        start=start_batch,
        num_batches=order.num_eval_batches(n, gbs),
        num_workers=int(config.data.num_workers),
        prefetch=prefetch,
    )


__all__ = ["Batch", "BatchIterator", "collate", "make_eval_iterator", "make_train_iterator", "open_source"]
