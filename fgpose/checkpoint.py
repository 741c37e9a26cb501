"""Orbax checkpoints of the training state, and parameter transfer between runs.

Layout: ``<dir>/<step>/state`` (``{'params', 'rest', 'opt_state'}`` pytree, StandardSave) and
``<dir>/<step>/meta`` (JSON: step, images seen). Saves are synchronous (the training step
donates its buffers, so nothing may still read them afterwards) and collective: every
process calls :meth:`CheckpointManager.save`.
"""

from __future__ import annotations

import logging
import os
import pathlib
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from fgpose import distributed

log = logging.getLogger(__name__)

DAMAGED_SUFFIX = ".damaged"
"""Checkpoints that fail to restore are moved to ``<checkpoints><DAMAGED_SUFFIX>/<step>``."""


class CheckpointRestoreError(RuntimeError):
    """Checkpoints exist, but none of them restores."""


class CheckpointManager:
    """Thin wrapper of ``ocp.CheckpointManager`` for ``(state, opt_state)``."""

    def __init__(self, directory: str | os.PathLike, keep: int = 3):
        self.directory = pathlib.Path(directory).absolute()
        self._mgr = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False),
        )

    def latest_step(self) -> int | None:
        return self._mgr.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._mgr.all_steps())

    def save(self, step: int, state: Any, opt_state: Any, meta: dict | None = None) -> None:
        if step in self._mgr.all_steps():
            return
        self._mgr.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave({"state": state, "opt_state": opt_state}),
                meta=ocp.args.JsonSave(dict(meta or {"step": int(step)})),
            ),
            force=True,
        )
        self._mgr.wait_until_finished()

    def restore(self, step: int, state: Any, opt_state: Any, state_shardings: Any, opt_shardings: Any):
        """Restores ``(state, opt_state)`` of ``step`` onto the given shardings.

        ``state``/``opt_state`` give the tree structure, shapes and dtypes (arrays or
        ``ShapeDtypeStruct``s).
        """
        target = {"state": state, "opt_state": opt_state}
        shardings = {"state": state_shardings, "opt_state": opt_shardings}
        abstract = distributed.abstract(target, shardings)
        restored = self._mgr.restore(int(step), args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
        # Orbax returns plain containers for custom nodes (optax namedtuples): reuse the target's structure.
        leaves = jax.tree.leaves(restored.state)
        tree = jax.tree.unflatten(jax.tree.structure(target), leaves)
        return tree["state"], tree["opt_state"]

    def restore_newest(self, state: Any, opt_state: Any, state_shardings: Any, opt_shardings: Any,
                       ) -> tuple[int, Any, Any] | None:
        """Restores the newest checkpoint that restores: ``(step, state, opt_state)``, or
        ``None`` when there is no checkpoint at all.

        A checkpoint that fails to restore (truncated or overwritten files, a half-written
        step) is reported with a warning naming its step and the error, moved aside to
        ``<checkpoints>.damaged/<step>`` (so that the run can write that step again and a
        later resume does not trip over it) and the next older one is tried. Raises
        :class:`CheckpointRestoreError` when checkpoints exist but none restores.
        Arguments as in :meth:`restore`.
        """
        steps = sorted(self.all_steps(), reverse=True)
        failed: list[str] = []
        for step in steps:
            try:
                restored = self.restore(step, state, opt_state, state_shardings, opt_shardings)
            except Exception as exc:  # noqa: BLE001 - TensorStore/Orbax raise many types for damaged files
                reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
                failed.append(f"step {step} ({reason})")
                log.warning("checkpoint of step %d in %s does not restore (%s); trying the previous one",
                            step, self.directory, reason)
                self._set_aside(step)
                continue
            if failed:
                log.warning("resumed from the checkpoint of step %d: the newer %s could not be restored "
                            "and were moved to %s", step, "; ".join(failed), self.damaged_directory)
            return (step, *restored)
        if failed:
            raise CheckpointRestoreError(
                f"none of the checkpoints in {self.directory} restores ({'; '.join(failed)}); they were moved "
                f"to {self.damaged_directory}. Delete the workdir's checkpoints to start again.")
        return None

    @property
    def damaged_directory(self) -> pathlib.Path:
        return self.directory.with_name(self.directory.name + DAMAGED_SUFFIX)

    def _set_aside(self, step: int) -> None:
        """Moves a damaged step out of the managed directory (process 0 only) and reloads."""
        if distributed.is_primary():
            source = self.directory / str(step)
            if source.exists():
                target = self.damaged_directory / str(step)
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.exists():  # an older damaged copy of the same step
                    shutil.rmtree(target)
                source.rename(target)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils  # noqa: PLC0415
            multihost_utils.sync_global_devices(f"fgpose_checkpoint_set_aside_{step}")
        self._mgr.reload()

    def restore_meta(self, step: int) -> dict:
        return dict(self._mgr.restore(int(step), args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta)

    def close(self) -> None:
        self._mgr.close()


def _flat(tree: Any) -> dict[str, Any]:
    """Nested dicts -> ``{'a/b/c': leaf}``; nnx ``Param``'s ``value`` level dropped."""
    out = {}

    def walk(node, prefix):
        if isinstance(node, dict) or hasattr(node, "items") and not hasattr(node, "shape"):
            for k, v in node.items():
                if k == "value" and not isinstance(v, dict) and hasattr(v, "shape"):
                    out[prefix] = v
                    continue
                walk(v, f"{prefix}/{k}" if prefix else str(k))
        else:
            out[prefix] = node

    walk(node=tree, prefix="")
    return out


def resolve_checkpoint_path(path: str | os.PathLike) -> pathlib.Path:
    """A run's workdir, its ``checkpoints`` dir, or a step dir -> the step dir's ``state`` item."""
    p = pathlib.Path(path).absolute()
    if (p / "checkpoints").is_dir():
        p = p / "checkpoints"
    if not (p / "state").is_dir():
        steps = sorted((int(c.name) for c in p.iterdir() if c.is_dir() and c.name.isdigit()), reverse=True) \
            if p.is_dir() else []
        if not steps:
            raise FileNotFoundError(f"no checkpoint under {path}: expected <workdir>/checkpoints/<step>/state")
        p = p / str(steps[0])
    return p / "state"


def load_params_from(path: str | os.PathLike, state: dict, state_shardings: dict) -> dict:
    """Copies another run's parameters into ``state['params']`` where paths and shapes match.

    Parameters missing from the checkpoint, or whose shapes differ (class-dependent layers,
    e.g. 196-class StanfordCars3D logits into a 113-class CompCars3D model), keep their fresh
    initialisation; both lists are logged. Returns the new state (same shardings).
    """
    item = resolve_checkpoint_path(path)
    restored = ocp.StandardCheckpointer().restore(item)
    src = _flat(restored["state"]["params"])
    params = state["params"]
    pure = params.to_pure_dict() if hasattr(params, "to_pure_dict") else params
    dst = _flat(pure)
    loaded, reinit = [], []
    new_flat = {}
    for name, value in dst.items():
        s = src.get(name)
        if s is not None and tuple(np.shape(s)) == tuple(np.shape(value)):
            new_flat[name] = np.asarray(s, dtype=value.dtype)
            loaded.append(name)
        else:
            new_flat[name] = value
            reinit.append(name)
    log.info("init_checkpoint %s: loaded %d arrays, kept fresh init for %d: %s", item, len(loaded), len(reinit),
             reinit)

    def rebuild(node, prefix):
        out = {}
        for k, v in node.items():
            name = f"{prefix}/{k}" if prefix else str(k)
            out[k] = rebuild(v, name) if isinstance(v, dict) else np.asarray(new_flat[name])
        return out

    host_params = distributed.to_host(params)
    nnx.replace_by_pure_dict(host_params, rebuild(pure, ""))
    new_params = distributed.place(host_params, state_shardings["params"])
    return {"params": new_params, "rest": state["rest"]}


__all__ = ["CheckpointManager", "load_params_from", "resolve_checkpoint_path"]
