"""Mesh, sharding, placement and multi-host helpers for training and evaluation.

One mesh axis, ``'data'``: the global batch is split over every device of every process
(data parallelism). Parameters and optimizer state are replicated, or, with
``param_sharding='fsdp'``, each array is sharded over ``'data'`` along its largest axis that
the number of devices divides (arrays with none stay replicated). Multi-host: each process
loads only its share of the global batch (``process_index`` / ``process_count`` passed to the
data iterator) and :func:`global_batch` assembles the global ``jax.Array`` with
``jax.make_array_from_process_local_data``.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"

_log = logging.getLogger(__name__)


def initialize(config) -> None:
    """Calls ``jax.distributed.initialize`` when ``config.distributed.initialize`` is set.

    Must run before anything touches a JAX device. On CPU the cross-process collectives use
    gloo (``jax_cpu_collectives_implementation``). ``coordinator_address`` ("host:port"),
    ``num_processes`` and ``process_id`` may be ``None`` on platforms JAX auto-detects
    (Cloud TPU, SLURM, ...).
    """
    d = config.distributed
    if not d.initialize:
        return
    if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=d.coordinator_address,
        num_processes=d.num_processes,
        process_id=d.process_id,
    )
    _log.info("jax.distributed initialised: process %d of %d", jax.process_index(), jax.process_count())


def mesh_axis_sizes(mesh_shape: Mapping[str, int], num_devices: int) -> dict[str, int]:
    """Resolves ``-1`` in ``mesh_shape`` (at most one) so that the product is ``num_devices``.

    Raises:
      ValueError: with what to change, when the sizes cannot cover the devices.
    """
    shape = dict(mesh_shape)
    if list(shape) != [DATA_AXIS]:
        raise ValueError(f"train.mesh_shape must have exactly one axis {DATA_AXIS!r}, got {shape}; "
                         f"set --config.train.mesh_shape.data=-1")
    size = shape[DATA_AXIS]
    if size == -1:
        size = num_devices
    if size != num_devices:
        raise ValueError(f"train.mesh_shape.data={shape[DATA_AXIS]} but there are {num_devices} devices; "
                         f"set --config.train.mesh_shape.data=-1 (all devices) or {num_devices}")
    return {DATA_AXIS: size}


def make_mesh(mesh_shape: Mapping[str, int] | None = None, devices=None) -> Mesh:
    """A 1-D ``('data',)`` mesh over all (global) devices, or ``devices``."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = mesh_axis_sizes(mesh_shape or {DATA_AXIS: -1}, len(devices))
    return Mesh(np.asarray(devices).reshape(sizes[DATA_AXIS]), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis over ``'data'``, the rest replicated."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def fsdp_spec(shape: tuple[int, ...], num_shards: int, min_size: int = 1024) -> P:
    """``PartitionSpec`` sharding the largest axis of ``shape`` divisible by ``num_shards``.

    Ties go to the earliest axis. Arrays with fewer than ``min_size`` elements, or with no
    divisible axis, stay replicated (``P()``).
    """
    if num_shards <= 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return P()
    best = None
    for axis, n in enumerate(shape):
        if n % num_shards == 0 and (best is None or n > shape[best]):
            best = axis
    if best is None:
        return P()
    spec = [None] * len(shape)
    spec[best] = DATA_AXIS
    return P(*spec)


def param_shardings(tree: Any, mesh: Mesh, mode: str = "replicated") -> Any:
    """A ``NamedSharding`` per leaf of ``tree`` (arrays or ``ShapeDtypeStruct``s).

    ``mode='replicated'``: every leaf replicated. ``'fsdp'``: :func:`fsdp_spec` per leaf (the
    rule depends only on the shape, so the optimizer state's momentum gets the same sharding
    as its parameter).
    """
    if mode not in ("replicated", "fsdp"):
        raise ValueError(f"param_sharding must be 'replicated' or 'fsdp', got {mode!r}")
    n = mesh.shape[DATA_AXIS]

    def one(x):
        if mode == "replicated":
            return NamedSharding(mesh, P())
        return NamedSharding(mesh, fsdp_spec(tuple(np.shape(x)), n))

    return jax.tree.map(one, tree)


def global_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assembles each process's share into global arrays sharded along the batch axis.

    Args:
      local_batch: this process's examples, every array with leading size
        ``global_batch_size / process_count``.

    Returns:
      Arrays with leading size ``global_batch_size``, batch-sharded over ``mesh``.
    """
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local_batch.items()}


def to_host(tree: Any) -> Any:
    """Fetches a (possibly multi-host sharded) tree to NumPy on every process.

    Fully addressable arrays are copied directly; otherwise
    ``multihost_utils.process_allgather`` gathers them (all processes must call this).
    """
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, jax.device_get(tree))
    from jax.experimental import multihost_utils

    return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))


def place(tree: Any, shardings: Any) -> Any:
    """Puts host values (identical on every process) onto global shardings.

    Args:
      tree: pytree of host arrays (NumPy or anything ``np.asarray`` takes), the same on every
        process.
      shardings: matching pytree of ``jax.sharding.Sharding``.

    Returns:
      The pytree of global ``jax.Array``s; each process fills only its addressable shards.
    """

    def one(x, s):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, s, lambda idx: x[idx])

    return jax.tree.map(one, tree, shardings)


def abstract(tree: Any, shardings: Any = None) -> Any:
    """``jax.ShapeDtypeStruct`` per leaf of ``tree`` (arrays or ``ShapeDtypeStruct``s).

    Args:
      shardings: optional matching pytree of shardings attached to the structs (what
        ``jax.jit`` out-shardings and Orbax restores need); ``None``: no sharding.
    """
    if shardings is None:
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), tree)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=s), tree, shardings)


def is_primary() -> bool:
    """True on process 0 (the one that logs, plots and writes summaries)."""
    return jax.process_index() == 0


__all__ = [
    "DATA_AXIS",
    "abstract",
    "batch_sharding",
    "fsdp_spec",
    "global_batch",
    "initialize",
    "is_primary",
    "make_mesh",
    "mesh_axis_sizes",
    "param_shardings",
    "place",
    "replicated",
    "to_host",
]
