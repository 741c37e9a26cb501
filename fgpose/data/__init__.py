"""Input pipeline: TFDS examples (:func:`tfds_builders.base.pose3d_features`) -> per-process
NumPy batches (:mod:`fgpose.data.pipeline`).

See :mod:`fgpose.data.registry` (the one way to the project's TFDS builders),
:mod:`fgpose.data.order` (deterministic, resumable order), :mod:`fgpose.data.preprocess`
(resize/pad/flip geometry), :mod:`fgpose.data.sources` (TFDS ``array_record`` random access,
in-memory sources) and :mod:`fgpose.data.pipeline` (prefetching iterators).
"""

from fgpose.data.order import batch_indices, epoch_permutation, eval_batch_indices, num_eval_batches
from fgpose.data.pipeline import BatchIterator, collate, make_eval_iterator, make_train_iterator, open_source
from fgpose.data.preprocess import (
    flip_boxes,
    flip_pose,
    input_scale,
    padding_example,
    preprocess_example,
    resize_and_pad,
    resize_nearest,
)
from fgpose.data.sources import DatasetNotBuiltError, InMemorySource, decode_image, open_tfds_source

__all__ = [
    "BatchIterator",
    "DatasetNotBuiltError",
    "InMemorySource",
    "batch_indices",
    "collate",
    "decode_image",
    "epoch_permutation",
    "eval_batch_indices",
    "flip_boxes",
    "flip_pose",
    "input_scale",
    "make_eval_iterator",
    "make_train_iterator",
    "num_eval_batches",
    "open_source",
    "open_tfds_source",
    "padding_example",
    "preprocess_example",
    "resize_and_pad",
    "resize_nearest",
]
