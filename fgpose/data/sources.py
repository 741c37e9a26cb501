"""Random-access example sources: a TFDS ``array_record`` split, or a list in memory.

A *source* is any sequence ``source[i] -> example`` with ``len(source)``, where an example is
a dict of NumPy values with the features of :func:`tfds_builders.base.pose3d_features`
(``image`` ``(H, W, 3)`` uint8 decoded,
``image/size``, ``label``, ``pose``, ``box``, optionally ``mask`` ``(h, w, 1)`` uint8 and
``location_field`` ``(h, w, 3)`` float16 ...). ``tfds`` data sources decode images to NumPy
already (with OpenCV), so nothing downstream decodes bytes unless an in-memory example holds
encoded bytes (see :func:`decode_image`).
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from fgpose.data import registry


class DatasetNotBuiltError(RuntimeError):
    """The requested TFDS dataset/config/split is not prepared in the searched data_dir."""


def _build_hint(name: str, builder_config: str | None, data_dir: str | None) -> str:
    cli_cfg = f" --config {builder_config}" if builder_config else ""
    cli_dir = f" --data_dir {data_dir}" if data_dir else ""
    return (
        f"Build it first, from the shell: `python -m tfds_builders.build {name}{cli_cfg}{cli_dir}` "
        f"(or `tfds build {name}{cli_cfg}{cli_dir} --imports tfds_builders`), or in Python: "
        f"`from fgpose.data import registry; "
        f"registry.builder({name!r}, {builder_config!r}, {data_dir!r}).download_and_prepare()`."
    )


def open_tfds_source(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    builder_config: str | None = None,
) -> Sequence[dict[str, Any]]:
    """Opens a prepared TFDS split for random access (``builder.as_data_source(split)``).

    Equivalent to ``tfds.data_source(name, split=split, data_dir=data_dir,
    builder_kwargs={'config': builder_config}, download=False)`` but fails early with a
    :class:`DatasetNotBuiltError` that says which ``data_dir`` was searched and which command
    builds the dataset. The dataset must have been written with ``file_format='array_record'``.

    Args:
      name: registered TFDS name (``stanford_cars3d``, ``synthetic_pose3d``, ...).
      split: split name (``train``, ``test``, or a TFDS slice such as ``train[:10%]``).
      data_dir: TFDS data directory (``None``: TFDS's default, ``$TFDS_DATA_DIR`` or
        ``~/tensorflow_datasets``).
      builder_config: builder config name (``v1``, ``tiny``, ...) or ``None`` for the default.

    Returns:
      A sequence of decoded examples (dicts of NumPy arrays / Python scalars / bytes).
    """
    data_dir = os.fspath(data_dir) if data_dir is not None else None
    searched = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets (TFDS default)"
    what = f"{name}" + (f"/{builder_config}" if builder_config else "")
    try:
        builder = registry.builder(name, builder_config, data_dir)
    except Exception as exc:  # DatasetNotFoundError, unknown config, ...
        raise DatasetNotBuiltError(
            f"TFDS dataset {what!r} not found (searched data_dir {searched}): "
            f"{type(exc).__name__}: {exc}. {_build_hint(name, builder_config, data_dir)}"
        ) from exc
    if not builder.is_prepared():
        raise DatasetNotBuiltError(
            f"TFDS dataset {what!r} (version {builder.version}) is not prepared in data_dir "
            f"{builder.data_dir if hasattr(builder, 'data_dir') else searched}. "
            f"{_build_hint(name, builder_config, data_dir)}"
        )
    try:
        return builder.as_data_source(split=split)
    except NotImplementedError as exc:
        raise DatasetNotBuiltError(
            f"TFDS dataset {what!r} in {searched} does not support random access "
            f"(file format {builder.info.file_format}); rebuild it with "
            f"file_format='array_record'. {_build_hint(name, builder_config, data_dir)}"
        ) from exc
    except (KeyError, ValueError) as exc:
        raise DatasetNotBuiltError(
            f"cannot open split {split!r} of TFDS dataset {what!r} in {searched} "
            f"(available splits: {sorted(builder.info.splits)}, file format "
            f"{builder.info.file_format}; random access needs array_record): {exc}"
        ) from exc


class InMemorySource(Sequence):
    """A list of example dicts posing as a data source (tests, tiny experiments).

    Examples may hold the image either decoded (``(H, W, 3)`` uint8) or as encoded jpeg/png
    ``bytes``; :func:`decode_image` handles both.
    """

    def __init__(self, examples: Sequence[Mapping[str, Any]]):
        self._examples = list(examples)

    def __len__(self) -> int:
        return len(self._examples)

    def __getitem__(self, index):
        return self._examples[index]


def decode_image(value: Any, channels: int = 3) -> np.ndarray:
    """An image feature value as ``(H, W, channels)`` uint8.

    Args:
      value: a decoded array ``(H, W)``/``(H, W, C)`` or encoded jpeg/png ``bytes``.
      channels: expected channels (3: RGB, 1: mask).
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        flag = cv2.IMREAD_COLOR if channels == 3 else cv2.IMREAD_GRAYSCALE
        arr = cv2.imdecode(np.frombuffer(value, np.uint8), flag)
        if arr is None:
            raise ValueError("could not decode image bytes")
        if channels == 3:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
        value = arr
    arr = np.asarray(value)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ValueError(f"expected an (H, W, C) image, got shape {arr.shape}")
    if arr.shape[-1] != channels:
        if arr.shape[-1] == 1 and channels == 3:
            arr = np.repeat(arr, 3, axis=-1)
        elif arr.shape[-1] == 4 and channels == 3:
            arr = arr[..., :3]
        else:
            raise ValueError(f"expected {channels} channels, got shape {arr.shape}")
    return arr.astype(np.uint8, copy=False)


__all__ = ["DatasetNotBuiltError", "InMemorySource", "decode_image", "open_tfds_source"]
