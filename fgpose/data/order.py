"""Deterministic, resumable example order for training and evaluation.

Training order: the split's ``N`` examples are shuffled once per epoch with
``np.random.default_rng((seed, epoch)).permutation(N)``; the permutations of consecutive
epochs are concatenated into one infinite stream, and the *global* batch of step ``s`` is the
contiguous slice ``[s * G, (s + 1) * G)`` of that stream (``G`` = global batch size), so a
batch may straddle two epochs and no example is dropped at an epoch's end. Process ``p`` of
``P`` takes the contiguous part ``[p * G/P, (p + 1) * G/P)`` of the global batch. Everything is
a pure function of ``(seed, step, N, G, p, P)``: a run resumed at step ``s`` sees exactly the
batches a fresh run sees from step ``s`` on.

Evaluation order: the split once, in index order, in global batches of ``G``; the last global
batch is padded with index ``-1`` so that every process gets the same number of batches
(``ceil(N / G)``) of the same shape.
"""

from __future__ import annotations

import functools

import numpy as np


def _check(num_examples: int, global_batch_size: int, process_index: int, process_count: int) -> int:
    if num_examples <= 0:
        raise ValueError(f"num_examples must be positive, got {num_examples}")
    if global_batch_size <= 0:
        raise ValueError(f"global_batch_size must be positive, got {global_batch_size}")
    if process_count <= 0 or not 0 <= process_index < process_count:
        raise ValueError(f"bad process_index/process_count: {process_index}/{process_count}")
    if global_batch_size % process_count:
        raise ValueError(
            f"global_batch_size {global_batch_size} is not divisible by process_count {process_count}"
        )
    return global_batch_size // process_count


@functools.lru_cache(maxsize=8)
def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
    """``np.random.default_rng((seed, epoch)).permutation(num_examples)`` (read-only, cached).

    Returns:
      ``(num_examples,)`` int64, a permutation of ``0..num_examples-1``.
    """
    perm = np.random.default_rng((int(seed), int(epoch))).permutation(int(num_examples))
    perm.setflags(write=False)
    return perm


def batch_indices(
    step: int,
    *,
    seed: int,
    num_examples: int,
    global_batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
    shuffle: bool = True,
) -> np.ndarray:
    """Example indices of this process's part of the training batch of global step ``step``.

    Args:
      step: global training step (``>= 0``).
      seed: shuffling seed (an int ``>= 0``).
      num_examples: size ``N`` of the split.
      global_batch_size: ``G``, divisible by ``process_count``.
      process_index, process_count: this process and the number of processes.
      shuffle: ``False`` keeps index order (epoch ``e`` is ``0..N-1`` again).

    Returns:
      ``(G // process_count,)`` int64 indices into the split. Stream position ``q`` (``q =
      step * G + process_index * G/P + i``) maps to ``perm_{q // N}[q % N]``.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    per_process = _check(num_examples, global_batch_size, process_index, process_count)
    start = int(step) * global_batch_size + process_index * per_process
    positions = start + np.arange(per_process, dtype=np.int64)
    epochs = positions // num_examples
    within = positions % num_examples
    if not shuffle:
        return within
    out = np.empty(per_process, np.int64)
    for epoch in np.unique(epochs):
        sel = epochs == epoch
        out[sel] = epoch_permutation(seed, int(epoch), num_examples)[within[sel]]
    return out


def num_eval_batches(num_examples: int, global_batch_size: int) -> int:
    """``ceil(num_examples / global_batch_size)``: batches of one evaluation pass (every process)."""
    if num_examples < 0 or global_batch_size <= 0:
        raise ValueError(f"bad sizes: num_examples={num_examples}, global_batch_size={global_batch_size}")
    return -(-num_examples // global_batch_size)


def eval_batch_indices(
    batch: int,
    *,
    num_examples: int,
    global_batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
) -> np.ndarray:
    """Indices of this process's part of evaluation batch ``batch``; ``-1`` marks padding.

    Global batch ``b`` covers split positions ``[b * G, (b + 1) * G)`` in index order;
    positions ``>= num_examples`` are padding (``-1``). Over ``b = 0 ..
    num_eval_batches(N, G) - 1`` and all processes every example appears exactly once.

    Returns:
      ``(G // process_count,)`` int64.
    """
    per_process = _check(max(num_examples, 1), global_batch_size, process_index, process_count)
    n = num_eval_batches(num_examples, global_batch_size)
    if not 0 <= batch < n:
        raise ValueError(f"evaluation batch {batch} out of range [0, {n})")
    start = batch * global_batch_size + process_index * per_process
    positions = start + np.arange(per_process, dtype=np.int64)
    return np.where(positions < num_examples, positions, -1)


__all__ = ["batch_indices", "epoch_permutation", "eval_batch_indices", "num_eval_batches"]
