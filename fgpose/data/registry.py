"""The one door from fgpose to the project's TFDS builders (the ``tfds_builders`` package).

``tfds_builders`` sits below :mod:`fgpose.data`: its builders import only lower fgpose modules
(camera, annotations, mesh, raster, synthetic, ...), and no fgpose module other than this one
imports it. Everything fgpose needs from a builder goes through the functions here:

* :func:`register_builders` registers ``stanford_cars3d``, ``compcars3d``, ``fgvc_aircraft3d``
  and ``synthetic_pose3d`` with TFDS (importing ``tfds_builders`` registers all four);
* :func:`builder` is ``tfds.builder`` after registration;
* :func:`class_meshes` asks a builder for the mesh of each of its classes (evaluation's
  ``~e_ADD`` models), so no caller needs to know a dataset's file layout.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

log = logging.getLogger(__name__)


def register_builders() -> None:
    """Registers the project's four builders with TFDS (idempotent).

    Raises:
      ImportError (or whatever ``tfds_builders`` raises on import): the package is broken or
        missing.
    """
    import tfds_builders  # noqa: F401  (importing the package registers its builders)


def builder(name: str, config: str | None = None, data_dir: str | os.PathLike | None = None) -> Any:
    """``tfds.builder(name, config=config, data_dir=data_dir)`` with the project's builders registered.

    A prepared dataset stays readable from ``data_dir`` when ``tfds_builders`` cannot be
    imported (TFDS then restores the builder from the files): the import error is logged,
    not raised.

    Args:
      name: registered TFDS name (``stanford_cars3d``, ``synthetic_pose3d``, ...).
      config: builder config name (``v1``, ``tiny``, ...) or ``None`` for the default.
      data_dir: TFDS data directory (``None``: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).

    Returns:
      The ``tfds.core.DatasetBuilder``.
    """
    import tensorflow_datasets as tfds

    try:
        register_builders()
    except Exception as exc:  # noqa: BLE001 - prepared datasets are readable without the builders
        log.warning("tfds_builders not importable (%s: %s); reading prepared datasets from disk only",
                    type(exc).__name__, exc)
    data_dir = os.fspath(data_dir) if data_dir is not None else None
    return tfds.builder(name, data_dir=data_dir, **({"config": config} if config else {}))


def class_meshes(name: str, config: str | None = None,
                 data_dir: str | os.PathLike | None = None) -> tuple[Sequence[Any], str]:
    """The mesh of every class of a dataset, in label order, as its builder knows them.

    Returns:
      ``(meshes, source)``: :class:`fgpose.mesh.Mesh` objects (vertices in model units, the
      frame the poses refer to) and the builder's ``CLASS_MESH_SOURCE`` (``'cad'``: the
      release's ShapeNet models; ``'class_meshes'``: procedural meshes).

    Raises:
      NotImplementedError: the builder cannot name its classes' meshes.
      OSError, ValueError: the meshes are not available (the message says which are missing).
    """
    b = builder(name, config, data_dir)
    get = getattr(b, "class_meshes", None)
    if get is None:
        raise NotImplementedError(f"the {name} builder has no class_meshes()")
    return list(get()), str(getattr(b, "CLASS_MESH_SOURCE", "class_meshes"))


__all__ = ["builder", "class_meshes", "register_builders"]
