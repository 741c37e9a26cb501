"""Shared machinery of the fgpose TFDS builders.

Every builder emits the same per-example features (:func:`pose3d_features`); the geometry
(camera matrices, box, mask, location field) comes from
:func:`fgpose.record_geometry.record_geometry`. This module holds what the builders
share and nothing dataset-specific:

* :class:`Pose3DConfig` — builder config with ``annotation_version``, ``field_max_side``
  (cap on the field resolution's longer side) and ``max_faces`` (mesh decimation budget);
* :class:`Pose3DBuilder` — ``array_record`` by default (random access through
  ``tfds.data_source``), skip bookkeeping (:class:`SkipLog`: every bad input is skipped
  with a warning, counted per split and reason, summarised in the log and written to
  ``<data_dir>/<name>/<config>/<version>/skipped.json``), and the ``class_meshes()``
  contract (:attr:`Pose3DBuilder.CLASS_MESH_SOURCE`);
* :class:`ReleaseBuilder` — the three real datasets: reads a manual directory laid out like
  the release (``Anno3D/``, ``CAD/``, ``Image/``, see :mod:`fgpose.annotations`), loads each
  mesh once (by model id, decimated to ``max_faces``, through the ``.npz`` mesh cache) and
  yields one example per annotation; its ``class_meshes()`` are the CAD models named by
  ``CAD/<Dataset>3D.txt``. Subclasses only say where the class labels come from.
"""

from __future__ import annotations

import collections
import dataclasses
import inspect
import io
import json
import logging
import os
import pathlib
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image
from tensorflow_datasets.core import utils as tfds_utils

from fgpose import annotations as anno_lib
from fgpose import mesh as mesh_lib
from fgpose.record_geometry import pad_mesh, record_geometry
from fgpose.safe_repr import short_repr

log = logging.getLogger("tfds_builders")

CATEGORIES = ("car", "airplane")
"""Names of the ``category`` ClassLabel, in label order."""

DEFAULT_FIELD_MAX_SIDE = 640
"""Default cap (pixels) on the longer side of the mask / location field."""

DEFAULT_MAX_FACES = 20000
"""Default mesh decimation budget (faces) for the rendered ground truth."""

SKIPPED_FILE = "skipped.json"
"""Name of the skip report written next to ``dataset_info.json``."""

CITATION = """\
@inproceedings{wang2018finegrainedpose,
  title     = {3D Pose Estimation for Fine-Grained Object Categories},
  author    = {Wang, Yaming and Tan, Xiao and Yang, Yi and Liu, Xiao and Ding, Errui and
               Zhou, Feng and Davis, Larry S.},
  booktitle = {ECCV Workshops},
  year      = {2018},
}"""

HOMEPAGE = "https://github.com/yangyi02/finegrained-pose"


@dataclasses.dataclass(eq=False)
class Pose3DConfig(tfds.core.BuilderConfig):
    """Builder config of every fgpose dataset.

    Attributes:
      annotation_version: 1 (human annotations) or 2 (refined; StanfordCars and
        FGVC-Aircraft only). Unused by the synthetic builder.
      field_max_side: cap in pixels on the longer side of ``mask`` / ``location_field``
        (``None``: original resolution).
      max_faces: decimate each mesh to at most this many faces before rendering the ground
        truth (``None``: full resolution).
    """

    annotation_version: int = 1
    field_max_side: int | None = DEFAULT_FIELD_MAX_SIDE
    max_faces: int | None = DEFAULT_MAX_FACES


def v1_v2_configs() -> list[Pose3DConfig]:
    """The ``v1`` (human) and ``v2`` (refined) configs of a dataset annotated twice."""
    return [
        Pose3DConfig(name="v1", annotation_version=1, description="first-stage (human) annotations"),
        Pose3DConfig(name="v2", annotation_version=2, description="refined annotations"),
    ]


def pose3d_features(label: tfds.features.ClassLabel) -> tfds.features.FeaturesDict:
    """The per-example features every fgpose builder emits, with the given fine-grained ``label``.

    :mod:`fgpose.data.sources` reads them and :func:`fgpose.data.preprocess.preprocess_example`
    turns one into a batch row.
    """
    return tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg",
                                         doc="original photo, RGB uint8"),
            "image/filename": tfds.features.Text(doc="release key, e.g. 00001.jpg"),
            "image/size": tfds.features.Tensor(shape=(2,), dtype=np.int32,
                                               doc="original (height, width)"),
            "label": label,
            "model_id": tfds.features.Text(doc="CAD model id (ShapeNet id or synthetic name)"),
            "category": tfds.features.ClassLabel(names=list(CATEGORIES)),
            "pose": tfds.features.Tensor(
                shape=(7,), dtype=np.float32,
                doc="raw (azimuth, elevation, theta, distance, f, u, v), release convention"),
            "rotation": tfds.features.Tensor(shape=(3, 3), dtype=np.float32, doc="R"),
            "intrinsics": tfds.features.Tensor(shape=(3, 3), dtype=np.float32,
                                               doc="K in original-photo pixels"),
            "projection": tfds.features.Tensor(shape=(3, 4), dtype=np.float32,
                                               doc="P in original-photo pixels"),
            "box": tfds.features.Tensor(
                shape=(4,), dtype=np.float32,
                doc="tight box (y0, x0, y1, x1) of the mask, original-photo pixels"),
            "mask": tfds.features.Image(shape=(None, None, 1), encoding_format="png",
                                        doc="projected-model mask {0, 1}, field resolution"),
            "location_field": tfds.features.Tensor(
                shape=(None, None, 3), dtype=np.float16, encoding=tfds.features.Encoding.ZLIB,
                doc="model-space XYZ of the visible surface, 0 off the mask, field resolution"),
        }
    )


# ----------------------------------------------------------------------------- skips


class SkipLog:
    """Counts skipped inputs per split and reason; warns for the first few of each reason.

    Reasons used by the builders: ``malformed_annotation``, ``missing_photo``,
    ``corrupt_photo``, ``missing_mesh``, ``bad_mesh``, ``no_label``, ``empty_mask``,
    ``error`` (anything unexpected while making one example).

    Keys come from untrusted files: a key that is not a ``str`` of at most
    :attr:`MAX_KEY_CHARS` characters (a huge int, a deeply nested tuple, ...) is recorded and
    logged as its :func:`fgpose.safe_repr.short_repr` (so are details that are neither text
    nor exceptions), so that recording a skip never fails.
    """

    WARN_FIRST = 10
    KEEP_KEYS = 50
    MAX_KEY_CHARS = 256

    def __init__(self):
        self.counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.keys: dict[str, dict[str, list[str]]] = collections.defaultdict(lambda: collections.defaultdict(list))
        self.generated: collections.Counter = collections.Counter()

    def skip(self, split: str, reason: str, key: str, detail: Any = "") -> None:
        """Records that ``key`` of ``split`` was skipped for ``reason`` (and warns)."""
        self.counts[split][reason] += 1
        shown = key if isinstance(key, str) and len(key) <= self.MAX_KEY_CHARS else short_repr(key, 120)
        if len(self.keys[split][reason]) < self.KEEP_KEYS:
            self.keys[split][reason].append(shown)
        n = self.counts[split][reason]
        if n <= self.WARN_FIRST:
            text = str(detail) if isinstance(detail, (str, BaseException)) else short_repr(detail, 1000)
            log.warning("skipping %s example %s (%s): %s", split, short_repr(shown, 300), reason, text)
        if n == self.WARN_FIRST:
            log.warning("further %s skips in split %s are only counted", reason, split)

    def summary(self) -> dict:
        """``{"total": n, "splits": {split: {"generated": n, "skipped": {reason: n}}}, "keys": ...}``."""
        splits = sorted(set(self.counts) | set(self.generated))
        return {
            "total": int(sum(sum(c.values()) for c in self.counts.values())),
            "splits": {
                s: {"generated": int(self.generated[s]), "skipped": dict(sorted(self.counts[s].items()))}
                for s in splits
            },
            "keys": {s: {r: list(k) for r, k in self.keys[s].items()} for s in splits if s in self.keys},
        }

    def log_split(self, name: str, split: str) -> None:
        """Logs the summary line of one split."""
        c = self.counts[split]
        log.warning(
            "%s/%s: generated %d examples, skipped %d%s",
            name, split, self.generated[split], sum(c.values()),
            (" (" + ", ".join(f"{r}: {n}" for r, n in sorted(c.items())) + ")") if c else "",
        )


class PhotoError(Exception):
    """A photo that is missing (``reason='missing_photo'``) or unreadable (``corrupt_photo``)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of an ``(H, W, 3)`` uint8 RGB image (PIL; avoids TFDS's TF-graph encoder)."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgb, np.uint8)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def encode_png(mask: np.ndarray) -> bytes:
    """PNG bytes of an ``(h, w)`` or ``(h, w, 1)`` uint8 mask (OpenCV; lossless)."""
    import cv2  # noqa: PLC0415

    m = np.asarray(mask, np.uint8)
    ok, buf = cv2.imencode(".png", m.reshape(m.shape[:2]))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def read_photo(path: os.PathLike) -> tuple[bytes, tuple[int, int]]:
    """Reads and fully decodes a photo to check it.

    Returns:
      ``(jpeg, (H, W))``: ``jpeg`` is the file's own bytes for RGB or greyscale JPEGs (no
      re-encoding; greyscale decodes to 3 equal channels) and the RGB conversion re-encoded
      as JPEG (quality 95) for anything else (CMYK JPEG, PNG, ...). EXIF orientation is
      ignored (the release annotates the stored pixel grid).

    Raises:
      PhotoError: missing file or undecodable / truncated image.
    """
    path = pathlib.Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PhotoError("missing_photo", f"no such file {path}") from None
    except OSError as exc:
        raise PhotoError("missing_photo", f"cannot read {path}: {exc}") from None
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            hw = (int(im.height), int(im.width))
            if im.format == "JPEG" and im.mode in ("RGB", "L"):
                return data, hw
            return encode_jpeg(np.asarray(im.convert("RGB"), np.uint8)), hw
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ...
        raise PhotoError("corrupt_photo", f"cannot decode {path}: {type(exc).__name__}: {exc}") from None


# ----------------------------------------------------------------------------- builders


class Pose3DBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of the four fgpose builders: array_record by default and skip bookkeeping.

    After ``download_and_prepare`` the skip report is in :attr:`skipped` and in
    ``skipped.json`` in the dataset's data directory.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    CLASS_MESH_SOURCE: str = "class_meshes"
    """What :meth:`class_meshes` returns, as evaluation reports it (``add_vertices``)."""

    def class_meshes(self) -> list[mesh_lib.Mesh]:
        """The mesh of every class, in label order: the model every example of that class shows,
        in the frame its poses refer to (evaluation's ``~e_ADD`` vertices).

        Raises:
          NotImplementedError: the builder cannot name them (subclasses that can override this).
        """
        raise NotImplementedError(f"{type(self).__name__} has no class meshes")

    def __init__(self, *, file_format: str | tfds.core.FileFormat | None = None, **kwargs):
        super().__init__(file_format=file_format, **kwargs)
        if file_format is None and not self.info.initialized:
            # Not restored from disk: make array_record (random access) the default.
            self.info.set_file_format(tfds.core.FileFormat.ARRAY_RECORD, override=True)
        self._skips = SkipLog()
        self._mesh_cache: dict[str, mesh_lib.PackedMeshes | Exception] = {}

    @tfds_utils.classproperty
    @classmethod
    @tfds_utils.memoize()
    def code_path(cls) -> epath.Path | None:
        """The builder's source file.

        TFDS 4.9.10's own implementation touches ``importlib_resources.abc`` for builders
        defined in a package, and that backport is not installed here (nor needed on
        Python >= 3.9); this returns the same path through :func:`inspect.getfile`.
        """
        try:
            return epath.Path(inspect.getfile(cls))
        except (TypeError, OSError):
            return None

    def _as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
        """``tf.data`` reading, also for array_record (which TFDS 4.9.10 cannot read with tf.data).

        For array_record the serialized records come from the random-access data source
        through a Python generator (in order, or permuted with ``read_config.shuffle_seed``
        when ``shuffle_files``) and are parsed and decoded by the features exactly as TFDS's
        tfrecord reader does. Fine for evaluation and small datasets; for heavy ``tf.data``
        training prepare with ``file_format='tfrecord'`` instead (the fgpose input pipeline
        reads ``tfds.data_source``).
        """
        fmt = (read_config.file_format if read_config is not None else None) or self.info.file_format
        if fmt is None or tfds.core.FileFormat.from_value(fmt) != tfds.core.FileFormat.ARRAY_RECORD:
            return super()._as_dataset(split, decoders=decoders, read_config=read_config, shuffle_files=shuffle_files)
        import tensorflow as tf  # noqa: PLC0415

        features = self.info.features
        if isinstance(decoders, tfds.decode.PartialDecoding):
            features = decoders.extract_features(features)
            decoders = decoders.decoders
        source = self.as_data_source(split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
        order = np.arange(len(source))
        if shuffle_files:
            seed = getattr(read_config, "shuffle_seed", None)
            order = np.random.default_rng(seed).permutation(order)

        def records():
            for i in order:
                yield source[int(i)]

        ds = tf.data.Dataset.from_generator(records, output_signature=tf.TensorSpec((), tf.string))
        return ds.map(
            lambda x: features.deserialize_example(x, decoders=decoders),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )

    @property
    def skipped(self) -> dict:
        """Skip report of the last ``download_and_prepare`` (empty before one)."""
        return self._skips.summary()

    def _post_download_and_prepare_hook(self) -> None:
        summary = self._skips.summary()
        path = self.data_path / SKIPPED_FILE
        path.write_text(json.dumps(summary, indent=2, sort_keys=True))
        log.warning("%s/%s: %d inputs skipped in total (details in %s)",
                    self.name, self.builder_config.name, summary["total"], path)

    def _geometry_mesh(self, model_id: str, loader: Callable[[], mesh_lib.Mesh]) -> mesh_lib.PackedMeshes:
        """The padded mesh of ``model_id``, loaded once (a load error is cached and re-raised)."""
        if model_id not in self._mesh_cache:
            try:
                m = loader()
                self._mesh_cache[model_id] = pad_mesh(m.vertices, m.faces)
            except Exception as exc:  # noqa: BLE001 - recorded, re-raised per example
                self._mesh_cache[model_id] = exc
        entry = self._mesh_cache[model_id]
        if isinstance(entry, Exception):
            raise entry
        return entry

    def _make_example(
        self,
        *,
        key: str,
        image: bytes,
        image_hw: tuple[int, int],
        label: int | str,
        model_id: str,
        category: str,
        pose: np.ndarray,
        mesh: mesh_lib.PackedMeshes,
    ) -> dict[str, Any] | None:
        """The feature dict of one example, or ``None`` when the model's mask is empty."""
        cfg = self.builder_config
        geo = record_geometry(None, None, pose, image_hw, cfg.field_max_side, mesh=mesh)
        if not geo["mask"].any():
            return None
        return {
            "image": image,
            "image/filename": key,
            "image/size": np.asarray(image_hw, np.int32),
            "label": label,
            "model_id": model_id,
            "category": category,
            "pose": np.asarray(pose, np.float32),
            "rotation": geo["rotation"],
            "intrinsics": geo["intrinsics"],
            "projection": geo["projection"],
            "box": geo["box"],
            "mask": encode_png(geo["mask"]),
            "location_field": geo["location_field"],
        }


@dataclasses.dataclass
class Labels:
    """Fine-grained labels of a real dataset.

    Attributes:
      names: class names in label order (``None``: already fixed in ``_info``).
      lookup: ``(split, key, annotation) -> label index or None`` (``None``: unknown image).
    """

    names: list[str] | None
    lookup: Callable[[str, str, anno_lib.Annotation], int | None]


class MissingLabelsError(FileNotFoundError):
    """The label source of a dataset is not in the manual directory."""


class ReleaseBuilder(Pose3DBuilder, skip_registration=True):
    """A real dataset of the release read from a manual directory (see subclasses).

    Subclasses set :attr:`DATASET` (release name), the docs, and implement
    :meth:`_load_labels`; they may override :meth:`_image_path`. :attr:`NUM_CLASSES` is not
    theirs to set: it is the release layout's ``num_classes`` of :attr:`DATASET`
    (:data:`fgpose.annotations.DATASETS`), filled in when the subclass is defined, which also
    checks fixed :attr:`CLASS_NAMES` against it.
    """

    DATASET: str = ""
    NUM_CLASSES: int = 0
    CLASS_NAMES: tuple[str, ...] | None = None
    DESCRIPTION: str = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.DATASET:
            return
        cls.NUM_CLASSES = anno_lib.get_dataset(cls.DATASET).num_classes
        if cls.CLASS_NAMES is not None and len(cls.CLASS_NAMES) != cls.NUM_CLASSES:
            raise TypeError(f"{cls.__name__}: {len(cls.CLASS_NAMES)} CLASS_NAMES, but {cls.DATASET} has "
                            f"{cls.NUM_CLASSES} classes")

    def _info(self) -> tfds.core.DatasetInfo:
        if self.CLASS_NAMES is not None:
            label = tfds.features.ClassLabel(names=list(self.CLASS_NAMES))
        else:  # names are read from the label source at preparation time
            label = tfds.features.ClassLabel(num_classes=self.NUM_CLASSES)
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=pose3d_features(label),
            homepage=HOMEPAGE,
            citation=CITATION,
        )

    CLASS_MESH_SOURCE = "cad"

    @property
    def info_release(self) -> anno_lib.DatasetInfo:
        return anno_lib.get_dataset(self.DATASET)

    def class_meshes(self, root: os.PathLike | None = None) -> list[mesh_lib.Mesh]:
        """The CAD model of every class, in label order: line ``i`` of ``CAD/<Dataset>3D.txt``
        (:func:`fgpose.annotations.load_class_models`) is class ``i``'s ShapeNet model.

        Meshes are loaded at full resolution and normalised (bounding box centred, unit
        diagonal: :func:`fgpose.mesh.load_mesh` with ``normalize=True``); a model shared by
        several classes is loaded once.

        Args:
          root: the release root (or a manual directory laid out like it); default
            ``$FGPOSE_RELEASE_DIR`` (:func:`fgpose.annotations.release_dir`).

        Raises:
          FileNotFoundError: no root, no class list, or any class's ``model.obj`` missing
            (the message counts the missing ones).
          ValueError: the class list does not have :attr:`NUM_CLASSES` lines.
        """
        root = pathlib.Path(root) if root is not None else anno_lib.release_dir()
        if root is None:
            raise FileNotFoundError(f"{self.name}: set ${anno_lib.RELEASE_DIR_ENV} to the release root "
                                    f"(its CAD/ holds the class models)")
        ids = anno_lib.load_class_models(root, self.DATASET)
        if len(ids) != self.NUM_CLASSES:
            raise ValueError(f"{self.name}: {self.info_release.class_models_file} under {root} has {len(ids)} "
                             f"lines, expected {self.NUM_CLASSES}")
        paths = {i: anno_lib.cad_path(root, self.DATASET, i) for i in ids}
        missing = sorted(str(p) for p in paths.values() if not p.exists())
        if missing:
            raise FileNotFoundError(f"{self.name}: {len(missing)} of {len(paths)} CAD models missing under {root}, "
                                    f"e.g. {missing[0]}")
        meshes = {i: mesh_lib.load_mesh(p, normalize=True) for i, p in paths.items()}
        return [meshes[i] for i in ids]

    def _load_labels(self, root: pathlib.Path) -> Labels:
        raise NotImplementedError

    def _image_path(self, root: pathlib.Path, split: str, key: str) -> pathlib.Path:
        return anno_lib.image_path(root, self.DATASET, split, key)

    def _missing(self, what: str) -> MissingLabelsError:
        return MissingLabelsError(
            f"{self.name}: {what}\n\nManual download instructions:\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
        )

    def _require_label_files(self, what: str, files: Sequence[pathlib.Path], hint: str) -> None:
        """Raises :class:`MissingLabelsError` naming those of ``files`` that do not exist."""
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise self._missing(f"{what} are missing: " + ", ".join(missing) + f" ({hint})")

    def _check_num_classes(self, names: Sequence[str], path: pathlib.Path, what: str) -> None:
        """Raises ``ValueError`` unless ``path`` gave :attr:`NUM_CLASSES` ``names``."""
        if len(names) != self.NUM_CLASSES:
            raise ValueError(f"{path}: expected {self.NUM_CLASSES} {what}, got {len(names)}")

    def _read_records(self, path: pathlib.Path) -> list[tuple[str, Any]]:
        """The raw ``(key, record)`` pairs of one annotation pickle (records validated later)."""
        if not path.is_file():
            raise self._missing(f"annotation file {path} not found")
        data = anno_lib.safe_load_pickle(path)  # unsafe / broken pickle: AnnotationError
        if not isinstance(data, dict):
            raise anno_lib.AnnotationError(
                f"{path}: expected a dict {{image_key: {{field: value}}}}, got {type(data).__name__}", source=path
            )
        return list(data.items())

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = pathlib.Path(dl_manager.manual_dir)
        version = self.builder_config.annotation_version
        paths = {s: anno_lib.annotation_path(root, self.DATASET, s, version) for s in anno_lib.SPLITS}
        records = {s: self._read_records(p) for s, p in paths.items()}
        labels = self._load_labels(root)  # fails here, before any work, if missing
        if labels.names is not None:
            self.info.features["label"].names = list(labels.names)
        self._skips = SkipLog()
        return {
            s: self._generate_examples(root=root, split=s, source=paths[s], records=records[s], labels=labels)
            for s in anno_lib.SPLITS
        }

    def _generate_examples(self, root, split, source, records, labels) -> Iterator[tuple[str, dict]]:
        info = self.info_release
        cfg = self.builder_config
        try:
            for key, record in records:
                try:
                    ann = anno_lib.Annotation.from_record(key, record, source=source)
                except anno_lib.AnnotationError as exc:
                    self._skips.skip(split, "malformed_annotation", key, exc)
                    continue
                except Exception as exc:  # noqa: BLE001 - a record must never stop the build
                    self._skips.skip(split, "malformed_annotation", key, f"{type(exc).__name__}: {exc}")
                    continue
                try:
                    example = self._example_for(root, split, ann, labels, info, cfg)
                except PhotoError as exc:
                    self._skips.skip(split, exc.reason, key, exc)
                    continue
                except _Skip as exc:
                    self._skips.skip(split, exc.reason, key, exc)
                    continue
                except Exception as exc:  # noqa: BLE001 - never crash halfway
                    self._skips.skip(split, "error", key, f"{type(exc).__name__}: {exc}")
                    continue
                self._skips.generated[split] += 1
                yield key, example
        finally:
            self._skips.log_split(f"{self.name}/{cfg.name}", split)

    def _example_for(self, root, split, ann, labels, info, cfg) -> dict:
        label = labels.lookup(split, ann.key, ann)
        if label is None:
            raise _Skip("no_label", f"no class label for {ann.key!r}")
        cad = anno_lib.cad_path(root, self.DATASET, ann.model_id)

        def load():
            return mesh_lib.load_mesh(cad, max_faces=cfg.max_faces)

        try:
            mesh = self._geometry_mesh(ann.model_id, load)
        except FileNotFoundError as exc:
            raise _Skip("missing_mesh", exc) from None
        except Exception as exc:  # noqa: BLE001
            raise _Skip("bad_mesh", f"{cad}: {type(exc).__name__}: {exc}") from None
        image, hw = read_photo(self._image_path(root, split, ann.key))
        pose = np.array([getattr(ann, k) for k in anno_lib.FLOAT_FIELDS], np.float64)
        example = self._make_example(
            key=ann.key, image=image, image_hw=hw, label=int(label), model_id=ann.model_id,
            category=info.category, pose=pose, mesh=mesh,
        )
        if example is None:
            raise _Skip("empty_mask", "the projected model does not cover any pixel of the photo")
        return example


class _Skip(Exception):
    def __init__(self, reason: str, detail: Any):
        super().__init__(str(detail))
        self.reason = reason


def release_manual_dir_layout() -> str:
    """The manual-directory tree shared by the three real builders (for the instructions)."""
    return """\
<manual_dir>/                        (pass as DownloadConfig(manual_dir=...); default
                                      ~/tensorflow_datasets/downloads/manual)
  Anno3D/StanfordCars/{train,test}_anno.pkl, {train,test}_anno_v2.pkl
  Anno3D/CompCars/{train,test}_anno.pkl
  Anno3D/FGVC_Aircraft/{train,test}_anno.pkl, {train,test}_anno_v2.pkl
  CAD/StanfordCars3D.txt, CAD/CompCars3D.txt, CAD/FGVC_Aircraft3D.txt
  CAD/02958343/<model_id>/model.obj   ShapeNetCore.v1 cars      (StanfordCars3D, CompCars3D)
  CAD/02691156/<model_id>/model.obj   ShapeNetCore.v1 airplanes (FGVC-Aircraft3D)
  Image/StanfordCars/cars_train/<key>, Image/StanfordCars/cars_test/<key>
  Image/StanfordCars/devkit/cars_meta.mat, cars_train_annos.mat, cars_test_annos_withlabels.mat
  Image/CompCars/image/<make>/<model>/<year>/<hash>.jpg
  Image/FGVC_Aircraft/<id>.jpg       (or fgvc-aircraft-2013b/data/images/<id>.jpg)
  fgvc-aircraft-2013b/data/variants.txt, images_variant_trainval.txt, images_variant_test.txt
"""


RELEASE_INSTRUCTIONS = """\
1. The 3D annotations and CAD lists: clone https://github.com/yangyi02/finegrained-pose
   (e.g. commit 7dcafdb) and copy its Anno3D/ directory and CAD/*.txt files into
   <manual_dir>/Anno3D and <manual_dir>/CAD.
2. The meshes: ShapeNetCore.v1 (https://shapenet.org, registration needed). Extract
   ShapeNetCore.v1/{synset}.zip and place (or symlink) the synset directory as
   <manual_dir>/CAD/{synset}/ so that CAD/{synset}/<model_id>/model.obj exists.
"""

__all__ = [
    "CATEGORIES",
    "CITATION",
    "DEFAULT_FIELD_MAX_SIDE",
    "DEFAULT_MAX_FACES",
    "HOMEPAGE",
    "Labels",
    "MissingLabelsError",
    "PhotoError",
    "Pose3DBuilder",
    "Pose3DConfig",
    "RELEASE_INSTRUCTIONS",
    "ReleaseBuilder",
    "SKIPPED_FILE",
    "SkipLog",
    "pose3d_features",
    "encode_jpeg",
    "encode_png",
    "read_photo",
    "release_manual_dir_layout",
]
