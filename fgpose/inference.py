"""Running a trained workdir on photos: load config + checkpoint, batch, jitted predict.

A training run (:mod:`fgpose.train`) leaves ``workdir/config.json`` (the experiment config)
and ``workdir/checkpoints/<step>/`` (Orbax). :func:`load_predictor` rebuilds the model of
that config (no pretrained download: the checkpoint replaces every weight), restores a step
(default: the latest) and jits ``model.predict`` once for a fixed batch size
(:func:`fgpose.evaluate.make_predict_fn`). :meth:`Predictor.predict` takes any number of
photos of any sizes, preprocesses each exactly like evaluation
(:func:`fgpose.data.preprocess.preprocess_example`: one isotropic resize into
``config.data.input_size``, zero padding at the bottom/right), pads the batch with
:func:`fgpose.data.preprocess.padding_example` rows (``valid = False``) and returns the
model's outputs for the real photos only, plus the preprocessing geometry (``scale``,
``original_hw``, ``frame_height``) needed to map them back to original-photo pixels.

:func:`dataset_classes` gathers what the outputs name per class: class names, CAD model ids
and meshes (for overlays), as far as the dataset's builder and ``$FGPOSE_RELEASE_DIR`` know them.

Imports run one way: :mod:`fgpose.checkpoint` -> :mod:`fgpose.evaluate` ->
:mod:`fgpose.prediction_writer` -> this module -> :mod:`fgpose.predict`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
from typing import Any, Callable, Sequence

import jax
import ml_collections
import numpy as np
from flax import nnx

from fgpose import annotations as anno_lib
from fgpose import checkpoint as ckpt
from fgpose import distributed
from fgpose import mesh as mesh_lib
from fgpose.config import ConfigError, resolve_num_classes, validate_config
from fgpose.data import registry
from fgpose.data.pipeline import collate
from fgpose.data.preprocess import padding_example, preprocess_example
from fgpose.evaluate import make_predict_fn, restore_model_state
from fgpose.models.build import ModelFn, build_model
from fgpose.prediction_writer import ClassInfo

__all__ = ["Predictor", "WorkdirError", "class_names", "dataset_classes", "load_config", "load_predictor",
           "prepare_batch"]

log = logging.getLogger("fgpose.inference")

CONFIG_FILE = "config.json"
"""The experiment config a training run writes into its workdir."""


class WorkdirError(ConfigError):
    """The workdir is missing, has no usable config or no checkpoint (the message says what)."""


def _tuples(x: Any) -> Any:
    """JSON lists back to tuples (configs hold sizes and patterns as tuples), recursively."""
    if isinstance(x, dict):
        return {k: _tuples(v) for k, v in x.items()}
    if isinstance(x, list):
        return tuple(_tuples(v) for v in x)
    return x


def load_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
    """The experiment config of a training workdir (``workdir/config.json``), validated.

    Raises:
      WorkdirError: no such directory, no ``config.json``, or one that is not a valid config.
    """
    workdir = pathlib.Path(workdir)
    if not workdir.is_dir():
        raise WorkdirError(f"no workdir {workdir}: give the --workdir of a training run "
                           f"(python -m fgpose.train --config <config> --workdir {workdir})")
    path = workdir / CONFIG_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise WorkdirError(f"{workdir} is not a training workdir: it has no {CONFIG_FILE} "
                           f"(python -m fgpose.train writes it)") from None
    except (OSError, ValueError) as exc:
        raise WorkdirError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise WorkdirError(f"{path} does not hold a config (a JSON object)")
    config = ml_collections.ConfigDict(_tuples(data))
    try:
        validate_config(config)
    except ConfigError as exc:
        raise WorkdirError(f"{path}: {exc}") from None
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise WorkdirError(f"{path} is not a complete fgpose config ({type(exc).__name__}: {exc})") from None
    return config


def class_names(config) -> list[str] | None:
    """The dataset's class names in label order (``label`` feature of its builder), or ``None``
    when the builder has none (CompCars3D) or cannot be reached."""
    ds = config.dataset
    try:
        names = registry.builder(ds.name, ds.builder_config, ds.data_dir).info.features["label"].names
    except Exception:  # noqa: BLE001 - names are optional decoration of the outputs
        return None
    names = [str(n) for n in names]
    if not names or all(n == str(i) for i, n in enumerate(names)):  # ClassLabel(num_classes=...) only
        return None
    return names


def prepare_batch(photos: Sequence[np.ndarray], input_size: tuple[int, int], max_boxes: int,
                  batch_size: int) -> dict[str, np.ndarray]:
    """Photos -> one padded batch, preprocessed exactly like evaluation.

    Args:
      photos: at most ``batch_size`` ``(H_i, W_i, 3)`` uint8 RGB photos of any sizes.
      input_size: ``(H_in, W_in)`` (``config.data.input_size``).
      max_boxes: ``config.data.max_boxes`` (the batch carries placeholder GT rows).
      batch_size: ``B``; rows ``len(photos)..B-1`` are padding (``valid = False``).

    Returns:
      The batch of :func:`fgpose.data.pipeline.collate`: ``image (B, H_in, W_in, 3)`` uint8,
      ``image_hw (B, 2)``, ``original_hw (B, 2)`` int32, ``scale (B,)`` float32 (input pixels
      per original pixel), ``frame_height (B,)`` float32, ``valid (B,)``, ``index (B,)``, and
      placeholder ``boxes``/``labels``/``pose`` (the model's ``predict`` does not read them).
    """
    if not 0 < len(photos) <= batch_size:
        raise ValueError(f"expected 1..{batch_size} photos, got {len(photos)}")
    size = tuple(int(x) for x in input_size)
    rows = []
    for photo in photos:
        h, w = np.shape(photo)[:2]
        placeholder = {"image": photo, "label": 0, "pose": np.zeros(7, np.float32),
                       "box": np.array([0, 0, h, w], np.float32)}
        rows.append(preprocess_example(placeholder, input_size=size, max_boxes=max_boxes))
    pad = padding_example(size, max_boxes)
    rows += [pad] * (batch_size - len(photos))
    indices = np.arange(batch_size)
    indices[len(photos):] = -1
    return collate(rows, indices)


_GEOMETRY = ("scale", "original_hw", "frame_height", "image_hw")


@dataclasses.dataclass
class Predictor:
    """A restored model with its jitted batched ``predict`` (build with :func:`load_predictor`)."""

    config: Any
    graphdef: nnx.GraphDef
    state: Any
    mesh: jax.sharding.Mesh
    predict_fn: Callable
    step: int
    num_classes: int
    batch_size: int

    def predict(self, photos: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Runs the model on up to ``batch_size`` photos.

        Returns:
          Host arrays with a leading axis of ``len(photos)``: every key of the model's
          ``predict`` (boxes and ``top_box`` in *input* pixels, ``projection`` in original
          pixels; with a field head also ``field``/``field_fg``, see
          :class:`fgpose.models.detector.PoseDetector`) plus ``scale``, ``original_hw``,
          ``frame_height`` and ``image_hw`` of the preprocessing.
        """
        data = self.config.data
        batch = prepare_batch(photos, data.input_size, int(data.max_boxes), self.batch_size)
        out = distributed.to_host(self.predict_fn(self.state, distributed.global_batch(batch, self.mesh)))
        out.update({k: batch[k] for k in _GEOMETRY})
        return {k: np.asarray(v)[: len(photos)] for k, v in out.items()}


def load_predictor(workdir: str | pathlib.Path, *, step: int | None = None, batch_size: int | None = None,
                   num_classes: int | None = None, model_fn: ModelFn | None = None) -> Predictor:
    """Restores a training workdir for prediction.

    Args:
      workdir: the ``--workdir`` of :mod:`fgpose.train` (``config.json`` + ``checkpoints/``).
      step: checkpoint step (default: the latest).
      batch_size: photos per jitted call (default ``config.eval.batch_size``), rounded up to a
        multiple of the device count.
      num_classes: default ``config.dataset.num_classes``, else the prepared dataset's count
        (:func:`fgpose.config.resolve_num_classes`, never building a dataset here).
      model_fn: ``(config, num_classes, seed) -> nnx.Module`` (default: the detector of
        :func:`fgpose.models.build.build_model` without pretrained weights).

    Raises:
      WorkdirError: missing/invalid workdir or config, no checkpoint, unknown class count, or a
        checkpoint that does not fit the config's model.
    """
    workdir = pathlib.Path(workdir)
    config = load_config(workdir)
    if num_classes is None:
        num_classes = config.dataset.num_classes
    if num_classes is None:
        config.dataset.auto_build = False
        try:
            num_classes = resolve_num_classes(config)
        except ConfigError as exc:
            raise WorkdirError(f"the class count of the run is unknown ({exc}); pass --num_classes") from None
    num_classes = int(num_classes)
    mesh = distributed.make_mesh()  # every local device, whatever the training run used
    if model_fn is None:  # the checkpoint replaces any pretrained weights: skip loading them
        def model_fn(c, n, seed):
            return build_model(c, n, seed, pretrained=False)

    manager = ckpt.CheckpointManager(workdir / "checkpoints", keep=config.train.keep_checkpoints)
    try:
        step = manager.latest_step() if step is None else int(step)
        if step is None:
            raise WorkdirError(f"no checkpoint in {workdir / 'checkpoints'}: train first with "
                               f"python -m fgpose.train --config <config> --workdir {workdir}")
        if step not in manager.all_steps():
            raise WorkdirError(f"no checkpoint of step {step} in {workdir / 'checkpoints'} "
                               f"(steps: {manager.all_steps()})")
        try:
            graphdef, state, shardings = restore_model_state(manager, step, config, num_classes, model_fn, mesh)
        except (ValueError, KeyError, TypeError) as exc:
            raise WorkdirError(f"the checkpoint of step {step} in {workdir / 'checkpoints'} does not fit the "
                               f"model of {workdir / CONFIG_FILE} with {num_classes} classes: {exc}") from None
    finally:
        manager.close()
    devices = mesh.devices.size
    batch_size = int(batch_size or config.eval.batch_size)
    batch_size = -(-batch_size // devices) * devices
    predict_fn = make_predict_fn(graphdef, mesh, shardings)
    return Predictor(config, graphdef, state, mesh, predict_fn, int(step), num_classes, batch_size)


def dataset_classes(config, num_classes: int) -> ClassInfo:
    """Names, CAD model ids and meshes of the config's dataset classes, as far as they are known.

    * names: :func:`class_names`;
    * model ids: line ``i`` of the release's ``CAD/<Dataset>3D.txt`` for a builder of a
      release dataset (its ``DATASET``) when ``$FGPOSE_RELEASE_DIR`` is set;
    * meshes: :func:`fgpose.data.registry.class_meshes` (procedural meshes for
      ``synthetic_pose3d``; the release's CAD models when ``$FGPOSE_RELEASE_DIR`` holds all
      of them); otherwise, with model ids, each class whose ``model.obj`` is present
      (:func:`fgpose.annotations.cad_path`), normalised like the builders' class meshes
      (:func:`fgpose.mesh.load_mesh` with ``normalize=True``) and ``None`` for the others.
    """
    ds = config.dataset
    names = class_names(config)
    if names is not None and len(names) != num_classes:
        names = None
    meshes = None
    try:
        found, _ = registry.class_meshes(ds.name, ds.builder_config, ds.data_dir)
        meshes = list(found) if len(found) == num_classes else None
    except Exception as exc:  # noqa: BLE001 - overlays fall back to the box and axes
        log.info("no class meshes for %s (%s: %s): overlays show the box and axes", ds.name, type(exc).__name__, exc)
    model_ids, release_name = None, None
    root = anno_lib.release_dir()
    try:
        release_name = getattr(registry.builder(ds.name, ds.builder_config, ds.data_dir), "DATASET", None)
        if root is not None and release_name:
            ids = anno_lib.load_class_models(root, release_name)
            model_ids = ids if len(ids) == num_classes else None
    except Exception as exc:  # noqa: BLE001 - the pickle then names classes as class_<index>
        log.info("no CAD model ids for %s (%s: %s)", ds.name, type(exc).__name__, exc)
    if meshes is None and model_ids is not None:
        meshes = _present_cad_meshes(root, release_name, model_ids)
    return ClassInfo(names=names, model_ids=model_ids, meshes=meshes)


def _present_cad_meshes(root: pathlib.Path, dataset: str, model_ids: Sequence[str]) -> list | None:
    """The normalised CAD mesh of each class whose model file exists under ``root`` (else ``None``)."""
    loaded: dict[str, Any] = {}
    for model_id in dict.fromkeys(model_ids):
        path = anno_lib.cad_path(root, dataset, model_id)
        if path.is_file():
            try:
                loaded[model_id] = mesh_lib.load_mesh(path, normalize=True)
            except (OSError, ValueError) as exc:
                log.warning("cannot load the CAD model %s: %s", path, exc)
    return [loaded.get(m) for m in model_ids] if loaded else None
