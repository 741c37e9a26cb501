"""synthetic_pose3d: procedural cars and aircraft rendered at release-like poses (embedded).

Needs no download. Each class is a procedural mesh of :mod:`fgpose.synthetic`
(``synthetic_classes(num_car_classes, num_airplane_classes, seed=catalogue_seed)``; class
names such as ``car_sedan_00`` / ``airplane_airliner_00`` are the label names). Example
``index`` of a split is a pure function of ``(seed, split, index)``:

* its generator is ``np.random.default_rng([seed, SPLIT_IDS[split], index])``;
* class ``index % num_classes`` (balanced), photo size ``sample_image_hw(rng, 1, category,
  max_side)``, pose ``sample_poses(rng, 1, category, (H, W), points=extent_points(mesh))``
  (release-like prior, object inside the photo), photo ``render_photo(mesh, pose, (H, W),
  rng, category=..., parts=...)`` (pyrender, random paint, car glass/tyres/lamps, lights and background; rendered in a
  worker process, see ``render_worker.py``), stored as JPEG (quality 95);
* ``box``, ``mask``, ``location_field`` and the camera matrices come from
  :func:`fgpose.record_geometry.record_geometry` (the JAX rasterizer; it agrees with the
  pyrender photo's object pixels, see the tests).

Configs: ``tiny`` (default; 4 car + 4 aircraft classes, 192 train / 64 test photos with the
longer side capped at 320 px; builds in about a minute on 2 CPU cores), ``small``, ``medium``,
``large`` (more classes and photos at larger sizes, for real training). Build any variant
with a custom :class:`SyntheticConfig` (another name) for other counts or seeds.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import os
import weakref
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from fgpose import mesh as mesh_lib
from fgpose.buckets import count_bucket
from fgpose.record_geometry import pad_mesh
from tfds_builders import base
from tfds_builders.synthetic_pose3d.classes import class_names, make_classes, render_jpeg  # noqa: F401

log = logging.getLogger("tfds_builders")

SPLIT_IDS = {"train": 0, "test": 1}
"""Split ids mixed into every example's seed."""


@dataclasses.dataclass(eq=False)
class SyntheticConfig(base.Pose3DConfig):
    """Config of ``synthetic_pose3d``.

    Attributes:
      num_car_classes, num_airplane_classes: procedural classes per category.
      num_train, num_test: photos per split.
      max_side: cap in pixels on the photos' longer side (release-like sizes scaled down).
      seed: seed of the per-example randomness (poses, sizes, appearance).
      catalogue_seed: seed of the class meshes' proportions.
      real_meshes: also make one class of each real mesh found next to the release
        (``$FGPOSE_RELEASE_DIR``: its ShapeNet car and ``../meshes/airplane.ply``, see
        :func:`fgpose.synthetic.real_mesh_sources`); the build fails if none is there.
      (``field_max_side``, ``max_faces``: see :class:`tfds_builders.base.Pose3DConfig`.)
    """

    num_car_classes: int = 4
    num_airplane_classes: int = 4
    num_train: int = 192
    num_test: int = 64
    max_side: int | None = 320
    seed: int = 0
    catalogue_seed: int = 0
    real_meshes: bool = False


def example_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of example ``index`` of ``split``."""
    return np.random.default_rng([int(seed), SPLIT_IDS[split], int(index)])


def sample_example(cfg: SyntheticConfig, classes, points, split: str, index: int):
    """Draws label, photo size and pose of one example.

    Returns:
      ``(label, (H, W), pose (7,) float64, rng)``; ``rng`` is left in the state from which
      the photo's appearance is drawn (``render_photo(mesh, pose, (H, W), rng, ...)``).
    """
    from fgpose import synthetic  # noqa: PLC0415

    rng = example_rng(cfg.seed, split, index)
    label = int(index) % len(classes)
    cls = classes[label]
    hw = synthetic.sample_image_hw(rng, 1, cls.category, max_side=cfg.max_side)[0]
    hw = (int(hw[0]), int(hw[1]))
    pose = synthetic.sample_poses(rng, 1, cls.category, hw, points=points[label])[0]
    return label, hw, np.asarray(pose, np.float64), rng


def _class_fields(cfg: SyntheticConfig) -> dict:
    return dict(num_car_classes=cfg.num_car_classes, num_airplane_classes=cfg.num_airplane_classes,
                catalogue_seed=cfg.catalogue_seed, max_faces=cfg.max_faces, real_meshes=cfg.real_meshes)


# ---- photo rendering (in a worker process by default; see render_worker.py)

RENDER_WORKER_ENV = "FGPOSE_SYNTHETIC_RENDER_IN_PROCESS"
"""Set to 1 to render photos in the building process instead of a worker process."""


def _cfg(name, description, cars, planes, train, test, max_side, field_max_side, real=False) -> SyntheticConfig:
    return SyntheticConfig(
        name=name, description=description, num_car_classes=cars, num_airplane_classes=planes,
        num_train=train, num_test=test, max_side=max_side, field_max_side=field_max_side, real_meshes=real,
    )


class Builder(base.Pose3DBuilder):
    """Synthetic cars and aircraft with exact 3D ground truth (no download)."""

    BUILDER_CONFIGS = [
        _cfg("tiny", "4+4 classes, 192/64 photos, max side 320 (CI, ~1 min on 2 cores)", 4, 4, 192, 64, 320, 320),
        _cfg("small", "8+6 classes, 2400/600 photos, max side 480", 8, 6, 2400, 600, 480, 480),
        _cfg("medium", "24+18 classes, 12000/3000 photos, max side 640", 24, 18, 12000, 3000, 640, 640),
        _cfg("large", "48+36 classes, 48000/8000 photos, max side 800", 48, 36, 48000, 8000, 800, 640),
        _cfg("small_real", "small plus one class per real mesh next to $FGPOSE_RELEASE_DIR (the ShapeNet "
             "car, the PyVista aircraft)", 8, 6, 2560, 640, 480, 480, real=True),
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "tiny"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release.",
        "1.1.0": "Car photos show glass, tyres, rims, head and tail lamps and a grille, so front and back "
                 "differ as on real cars; geometry, poses, labels and aircraft photos are unchanged.",
    }

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        names = class_names(cfg.num_car_classes, cfg.num_airplane_classes, cfg.real_meshes)
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=base.pose3d_features(tfds.features.ClassLabel(names=names)),
            homepage=base.HOMEPAGE,
            citation=base.CITATION,
        )

    @functools.cached_property
    def _classes(self):
        """``(classes, padded meshes, extent points)`` of the config (built once)."""
        from fgpose import synthetic  # noqa: PLC0415

        classes = make_classes(_class_fields(self.builder_config))
        # One padded size for every class: the rasterizer compiles once per canvas.
        nv = count_bucket(max(c.mesh.num_vertices for c in classes))
        nf = count_bucket(max(c.mesh.num_faces for c in classes))
        padded = [pad_mesh(c.mesh.vertices, c.mesh.faces, nv, nf) for c in classes]
        points = [synthetic.extent_points(c.mesh) for c in classes]
        return classes, padded, points

    def class_meshes(self) -> list[mesh_lib.Mesh]:
        """The procedural mesh of every class, in label order: the model that every example of
        that class shows (used for ~e_ADD in evaluation)."""
        return [c.mesh for c in self._classes[0]]

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager
        cfg = self.builder_config
        self._skips = base.SkipLog()
        return {
            "train": self._generate_examples(split="train", num=cfg.num_train),
            "test": self._generate_examples(split="test", num=cfg.num_test),
        }

    LOOKAHEAD = 8
    """Photos queued ahead in the render worker (it renders while this process rasterizes)."""

    def _renderer(self, classes):
        """The photo renderer, one per builder (shared by the splits, closed after the build)."""
        from tfds_builders.synthetic_pose3d import render_worker  # noqa: PLC0415

        pool = self.__dict__.get("_render_pool")
        if pool is None:
            if os.environ.get(RENDER_WORKER_ENV, "") not in ("", "0"):
                pool = render_worker.InProcessRenderer(classes)
            else:
                pool = render_worker.RenderWorker(_class_fields(self.builder_config))
                weakref.finalize(self, pool.close)
            self._render_pool = pool
        return pool

    def _close_renderer(self) -> None:
        pool = self.__dict__.pop("_render_pool", None)
        if pool is not None:
            pool.close()

    def _post_download_and_prepare_hook(self) -> None:
        self._close_renderer()
        super()._post_download_and_prepare_hook()

    def _generate_examples(self, split: str, num: int) -> Iterator[tuple[int, dict]]:
        """Photos are rendered by pyrender in a worker process (render_worker.py), so this process never
        loads OpenGL next to TensorFlow (they crash together here) and rasterization overlaps
        rendering. Set ``FGPOSE_SYNTHETIC_RENDER_IN_PROCESS=1`` to render in-process."""
        cfg = self.builder_config
        classes, padded, points = self._classes
        pool = self._renderer(classes)
        pending: collections.deque = collections.deque()
        next_index = 0

        def submit():
            nonlocal next_index, pool
            index = next_index
            next_index += 1
            try:
                label, hw, pose, rng = sample_example(cfg, classes, points, split, index)
            except Exception as exc:  # noqa: BLE001
                pending.append((index, None, None, None, exc))
                return
            fut = pool.submit(label, pose, hw, rng.bit_generator.state)
            pending.append((index, label, hw, pose, fut))

        try:
            while next_index < min(num, self.LOOKAHEAD):
                submit()
            while pending:
                index, label, hw, pose, fut = pending.popleft()
                if next_index < num:
                    submit()
                key = f"{index:06d}.jpg"
                if isinstance(fut, Exception):
                    self._skips.skip(split, "error", key, f"{type(fut).__name__}: {fut}")
                    continue
                try:
                    cls = classes[label]
                    example = self._make_example(
                        key=key, image=b"", image_hw=hw, label=label,
                        model_id=cls.model_id, category=cls.category, pose=pose, mesh=padded[label],
                    )
                    try:
                        image = fut.result()  # always collected: the worker answers in order
                    except BrokenPipeError as exc:  # the worker died: render here from now on
                        log.error("%s; rendering the remaining photos in this process", exc)
                        from tfds_builders.synthetic_pose3d import render_worker  # noqa: PLC0415

                        self._close_renderer()
                        pool = self._render_pool = render_worker.InProcessRenderer(classes)
                        for i, item in enumerate(pending):  # re-queue what the worker owed
                            if not isinstance(item[4], Exception):
                                rng_state = sample_example(cfg, classes, points, split, item[0])[3].bit_generator.state
                                pending[i] = item[:4] + (pool.submit(item[1], item[3], item[2], rng_state),)
                        fut = pool.submit(label, pose, hw,
                                          sample_example(cfg, classes, points, split, index)[3].bit_generator.state)
                        image = fut.result()
                    if example is not None:
                        example["image"] = image
                except Exception as exc:  # noqa: BLE001 - never crash halfway
                    self._skips.skip(split, "error", key, f"{type(exc).__name__}: {exc}")
                    continue
                if example is None:
                    self._skips.skip(split, "empty_mask", key, "the object does not cover any pixel")
                    continue
                self._skips.generated[split] += 1
                yield index, example
        finally:
            if pending:  # abandoned midway: the worker still owes answers, so discard it
                self._close_renderer()
            self._skips.log_split(f"{self.name}/{cfg.name}", split)


__all__ = ["Builder", "RENDER_WORKER_ENV", "SPLIT_IDS", "make_classes",
           "render_jpeg", "SyntheticConfig", "class_names", "example_rng", "sample_example"]
