"""Safe reading and writing of the release's 3D pose annotations, and its directory layout.

The public release of Wang et al. 2018 (``finegrained-pose``) ships its annotations as
Python 2 pickles (protocol 0) under ``Anno3D/<Dataset>/{train,test}_anno[_v2].pkl``, each a
dict ``{image_key: {"model_id": str, "azimuth": float, "elevation": float, "theta": float,
"distance": float, "f": float, "u": float, "v": float}}``:

* ``azimuth, elevation, theta``: radians (see :mod:`fgpose.camera` for the convention;
  v2 angles are not wrapped into ``[0, 2 pi)``);
* ``distance``: camera distance in model units (ShapeNet meshes have a unit bbox diagonal);
* ``f, u, v``: focal length and principal-point offset from the frame centre, in pixels of
  the *annotation frame* (the photo resized to width 300, height ``int(H * 300 / W)``).

Pickle can run arbitrary code, so the files are read with :class:`RestrictedUnpickler`,
which refuses every global: only dicts, lists, tuples, strings and numbers can be built.
Every record is validated into a frozen :class:`Annotation`; any problem raises
:class:`AnnotationError` naming the file, the image key and the field.

Every float field must lie in its documented range, :data:`FLOAT_BOUNDS` (checked when
reading, when constructing an :class:`Annotation` and again when writing): the ranges hold
every record of the release with a wide margin, and every value in them is a finite,
normal float32, so that no pose that passes can overflow or underflow the float32 camera
maths (a distance of ``1e-300`` becomes 0 in float32, an ``f`` of ``1e300`` becomes inf).
Integers of any size (``10**400``), values nested any depth and huge strings give an
:class:`AnnotationError` too, never ``OverflowError`` or ``RecursionError``.

Layout of the release root (``FGPOSE_RELEASE_DIR``)::

    Anno3D/<Dataset>/{train,test}_anno.pkl        v1, every dataset
    Anno3D/<Dataset>/{train,test}_anno_v2.pkl     v2, StanfordCars and FGVC_Aircraft
    CAD/<Dataset>3D.txt                            one CAD model id per class line
    CAD/<synset>/<model_id>/model.obj              ShapeNetCore.v1 meshes
    Image/StanfordCars/cars_{train,test}/<key>
    Image/CompCars/image/<key>
    Image/FGVC_Aircraft/<key>
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import pathlib
import pickle
import re
from typing import Any, Iterable, Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from fgpose import camera
from fgpose.atomic_io import atomic_write
from fgpose.safe_repr import short_repr

RELEASE_DIR_ENV = "FGPOSE_RELEASE_DIR"
"""Environment variable holding the path of the release root (``.../finegrained_pose``)."""

FLOAT_FIELDS = camera.POSE_FIELDS
"""The 7 float fields of a record, in :data:`fgpose.camera.POSE_FIELDS` order."""

FIELDS = ("model_id",) + FLOAT_FIELDS
"""All fields of a release record (the image key is the dict key, not a field)."""

SPLITS = ("train", "test")

ANGLE_LIMIT = 1e3
"""Bound on ``|azimuth|``, ``|elevation|``, ``|theta|`` (radians). v2 angles are unwrapped;
the release's extremes are about -2.1 and 7.1."""

DISTANCE_RANGE = (1e-4, 1e6)
"""Closed range of ``distance`` (model units; ShapeNet meshes have a unit bounding-box
diagonal). The release's extremes are 0.215 and 384."""

FOCAL_RANGE = (1e-2, 1e7)
"""Closed range of ``f`` (pixels of the width-300 annotation frame). The release's
extremes are 22.7 and 23,600."""

OFFSET_LIMIT = 1e6
"""Bound on ``|u|`` and ``|v|`` (pixels of the width-300 annotation frame). The release's
extremes are about -208 and 196."""

FLOAT_BOUNDS: dict[str, tuple[float, float]] = {
    "azimuth": (-ANGLE_LIMIT, ANGLE_LIMIT),
    "elevation": (-ANGLE_LIMIT, ANGLE_LIMIT),
    "theta": (-ANGLE_LIMIT, ANGLE_LIMIT),
    "distance": DISTANCE_RANGE,
    "f": FOCAL_RANGE,
    "u": (-OFFSET_LIMIT, OFFSET_LIMIT),
    "v": (-OFFSET_LIMIT, OFFSET_LIMIT),
}
"""``{field: (low, high)}``: the closed range every value of a float field must lie in.

All bounds are normal float32 numbers and ``distance`` and ``f`` are bounded away from 0,
so a valid pose is finite, non-denormal and (for ``distance``, ``f``) positive in float32.
"""

_POSITIVE_FIELDS = frozenset({"distance", "f"})
_MODEL_ID_RE = re.compile(r"^[0-9A-Za-z_-]+$")


class AnnotationError(ValueError):
    """A malformed, unsafe or unreadable annotation file or record.

    Attributes:
      source: the file (or ``None`` for in-memory records).
      key: the image key of the offending record, if any.
      field: the offending field, if any.
      problem: what is wrong, without the file/key/field prefix (the whole message when
        not given).
    """

    def __init__(self, message: str, *, source=None, key=None, field=None, problem: str | None = None):
        super().__init__(message)
        self.source = source
        self.key = key
        self.field = field
        self.problem = message if problem is None else problem


def _where(source) -> str:
    return str(source) if source is not None else "<in-memory annotation>"


def _record_error(source, key, field, problem: str) -> AnnotationError:
    parts = [_where(source), f"image key {short_repr(key)}"]
    if field is not None:
        parts.append(f"field {short_repr(field)}")
    return AnnotationError(": ".join(parts + [problem]), source=source, key=key, field=field, problem=problem)


# ----------------------------------------------------------------------------- unpickling


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global (class, function or module attribute).

    The release's pickles hold only dicts, strings and floats, which pickle builds from
    dedicated opcodes without looking up any global; everything that could run code
    (``__reduce__`` payloads, ``GLOBAL``/``STACK_GLOBAL``/``INST``/``OBJ`` opcodes,
    persistent ids) goes through :meth:`find_class` or :meth:`persistent_load`, and both
    raise :class:`AnnotationError` before anything is imported or called.

    Python 2 ``str`` objects are decoded as latin-1 (the release's encoding).
    """

    def __init__(self, file, *, source=None):
        super().__init__(file, encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str):  # noqa: D102 - see class docstring
        raise AnnotationError(
            f"{_where(self._source)}: refusing to unpickle the global {module}.{name}: "
            "annotation files may only contain dicts, strings and numbers "
            "(the file is not a release annotation file, or it has been tampered with)",
            source=self._source,
        )

    def persistent_load(self, pid):  # noqa: D102 - see class docstring
        raise AnnotationError(
            f"{_where(self._source)}: refusing to unpickle a persistent id {short_repr(pid)}",
            source=self._source,
        )


def safe_load_pickle(path: str | os.PathLike) -> Any:
    """Loads a pickle with :class:`RestrictedUnpickler` (plain containers and scalars only).

    Raises:
      AnnotationError: the file needs a global, or is not a valid pickle.
      OSError: the file cannot be opened.
    """
    path = pathlib.Path(path)
    with open(path, "rb") as fh:
        try:
            return RestrictedUnpickler(fh, source=path).load()
        except AnnotationError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError,
                IndexError, AttributeError, UnicodeError, OverflowError, RecursionError,
                MemoryError) as exc:
            raise AnnotationError(
                f"{path}: not a valid annotation pickle ({type(exc).__name__}: {short_repr(str(exc), 200)})",
                source=path,
            ) from None


# ----------------------------------------------------------------------------- records


def _check_value(field: str, value: Any) -> Any:
    """Returns the normalised value of one field or raises ``ValueError(problem)``.

    Float fields: a real number (not bool), finite, positive for ``distance`` and ``f``,
    and inside :data:`FLOAT_BOUNDS` ``[field]``; returned as a Python float.
    """
    if field == "model_id":
        if not isinstance(value, str):
            raise ValueError(f"expected a str, got {type(value).__name__} {short_repr(value)}")
        if not _MODEL_ID_RE.match(value):
            raise ValueError(f"not a valid model id: {short_repr(value)}")
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"expected a float, got {type(value).__name__} {short_repr(value)}")
    try:
        value = float(value)
    except (OverflowError, ValueError, TypeError, ArithmeticError):
        raise ValueError(f"expected a float, got {type(value).__name__} {short_repr(value)} "
                         "(too large for a float)") from None
    if not math.isfinite(value):
        raise ValueError(f"expected a finite float, got {value!r}")
    if field in _POSITIVE_FIELDS and value <= 0:
        raise ValueError(f"must be positive, got {value!r}")
    low, high = FLOAT_BOUNDS[field]
    if not low <= value <= high:
        raise ValueError(f"out of the valid range [{low:g}, {high:g}] (see FLOAT_BOUNDS), got {value!r}")
    return value


def check_pose_values(values: Sequence[Any], *, source=None, key=None) -> tuple[float, ...]:
    """Validates 7 pose values given in :data:`FLOAT_FIELDS` order (e.g. from a command line).

    Args:
      values: ``(azimuth, elevation, theta, distance, f, u, v)``; radians, model units and
        pixels of the width-300 annotation frame.
      source, key: name the origin in error messages (as for records).

    Returns:
      The 7 values as Python floats.

    Raises:
      AnnotationError: not 7 values, or a value that a record's field would reject
        (:data:`FLOAT_BOUNDS`); ``field`` and ``problem`` say which and why.
    """
    values = list(values)
    if len(values) != len(FLOAT_FIELDS):
        raise _record_error(source, key, None, f"expected {len(FLOAT_FIELDS)} pose values "
                            f"{list(FLOAT_FIELDS)}, got {len(values)}")
    return tuple(_checked_field(source, key, field, v) for field, v in zip(FLOAT_FIELDS, values))


def _checked_field(source, key, field: str, value: Any) -> Any:
    """:func:`_check_value` with its ``ValueError`` turned into a record's :class:`AnnotationError`."""
    try:
        return _check_value(field, value)
    except ValueError as exc:
        raise _record_error(source, key, field, str(exc)) from None


def _validated(key: Any, record: Any, source) -> dict[str, Any]:
    """Checks one ``{field: value}`` record; returns the normalised fields."""
    if not isinstance(key, str) or not key:
        raise _record_error(source, key, None, f"image keys must be non-empty str, got {type(key).__name__}")

    if not isinstance(record, Mapping):
        raise _record_error(
            source, key, None, f"expected a dict of fields {list(FIELDS)}, got {type(record).__name__}"
        )
    for field in FIELDS:
        if field not in record:
            raise _record_error(source, key, field, "missing field")
    for field in record:
        if field not in FIELDS:
            raise _record_error(source, key, field, f"unexpected field (allowed: {list(FIELDS)})")
    return {field: _checked_field(source, key, field, record[field]) for field in FIELDS}


@dataclasses.dataclass(frozen=True)
class Annotation:
    """One validated release record.

    Attributes:
      key: image key as in the release (e.g. ``"00001.jpg"``, ``"make/model/year/hash.jpg"``);
        see :func:`image_path`.
      model_id: ShapeNet model id of the CAD model (see :func:`cad_path`).
      azimuth, elevation, theta: rotation angles in radians,
        ``R = Rz(theta) Rx(elevation) Ry(azimuth)`` (see :mod:`fgpose.camera`); not wrapped.
      distance: camera distance in model units, ``> 0``.
      f: focal length in pixels of the width-300 annotation frame, ``> 0``.
      u, v: principal-point offset from the annotation frame's centre, in its pixels.

    Construction validates every field (types, finiteness, ``distance > 0``, ``f > 0``, the
    ranges of :data:`FLOAT_BOUNDS`) and raises :class:`AnnotationError` naming the key and
    field. Integers are accepted for the
    float fields and stored as Python floats.
    """

    key: str
    model_id: str
    azimuth: float
    elevation: float
    theta: float
    distance: float
    f: float
    u: float
    v: float

    def __post_init__(self):
        values = _validated(self.key, {k: getattr(self, k) for k in FIELDS}, None)
        for k, val in values.items():
            object.__setattr__(self, k, val)

    @classmethod
    def from_record(cls, key: str, record: Mapping[str, Any], *, source=None) -> "Annotation":
        """Validates a release record ``{field: value}`` (``source`` names its file in errors)."""
        return cls(key=key, **_validated(key, record, source))

    def to_record(self) -> dict[str, Any]:
        """The release's own format: a plain dict of the 8 fields (str and Python floats)."""
        return {k: getattr(self, k) for k in FIELDS}

    def pose(self, dtype=jnp.float32) -> camera.Pose:
        """The 7 camera parameters as a scalar :class:`fgpose.camera.Pose` of ``dtype``.

        Angles in radians, ``distance`` in model units, ``f, u, v`` in pixels of the
        width-300 annotation frame. Each leaf is a 0-d ``jax.Array``; ``float64`` needs
        ``jax_enable_x64`` (otherwise JAX stores ``float32``).
        """
        return camera.Pose.from_mapping(self, dtype=dtype)


def _parse_annotations(data: Any, source) -> dict[str, Annotation]:
    if not isinstance(data, dict):
        raise AnnotationError(
            f"{_where(source)}: expected a dict {{image_key: {{field: value}}}} at top level, "
            f"got {type(data).__name__}",
            source=source,
        )
    return {key: Annotation.from_record(key, record, source=source) for key, record in data.items()}


def load_annotations(path: str | os.PathLike) -> dict[str, Annotation]:
    """Reads one release annotation pickle safely.

    Args:
      path: a ``*_anno[_v2].pkl`` file (Python 2 protocol-0 pickles and the protocol-2
        files written by :func:`save_annotations` both work).

    Returns:
      ``{image_key: Annotation}`` in the file's key order.

    Raises:
      AnnotationError: unsafe content (any global), a broken pickle, a top level that is
        not a dict of dicts, or an invalid record (message names file, key and field).
      OSError: the file cannot be read.
    """
    path = pathlib.Path(path)
    return _parse_annotations(safe_load_pickle(path), path)


def _as_annotation_dict(annotations) -> dict[str, Annotation]:
    if isinstance(annotations, Mapping):
        items = list(annotations.items())
    else:
        items = [(getattr(a, "key", None), a) for a in annotations]
    out: dict[str, Annotation] = {}
    for key, ann in items:
        if not isinstance(ann, Annotation):
            raise TypeError(f"expected Annotation records, got {type(ann).__name__} for key {key!r}")
        if key != ann.key:
            raise ValueError(f"mapping key {key!r} differs from the record's key {ann.key!r}")
        if key in out:
            raise ValueError(f"duplicate image key {key!r}")
        out[key] = ann
    return out


def save_annotations(
    path: str | os.PathLike,
    annotations: Mapping[str, Annotation] | Iterable[Annotation],
) -> None:
    """Writes annotations in the release's own format.

    The file is a pickle (protocol 2, readable by Python 2 tools; strings load there as
    ``unicode``) of ``{image_key: {field: value}}`` with plain ``str`` and ``float`` values
    and no globals, so :func:`load_annotations` reads it back. It is written to a temporary
    file in the same directory and renamed into place.

    Every record is validated again (:data:`FLOAT_BOUNDS` included) before anything is
    written, so a file this function writes always loads.

    Args:
      path: destination file.
      annotations: ``{image_key: Annotation}`` (keys must equal the records' ``key``) or an
        iterable of :class:`Annotation` (keys must be unique); order is kept.

    Raises:
      AnnotationError: a record is invalid (nothing is written).
    """
    path = pathlib.Path(path)
    data = {key: _validated(key, ann.to_record(), path) for key, ann in _as_annotation_dict(annotations).items()}
    atomic_write(path, lambda fh: pickle.dump(data, fh, protocol=2))


def poses_from_annotations(
    annotations: Sequence[Annotation] | Mapping[str, Annotation],
    dtype=np.float64,
) -> camera.Pose:
    """Stacks annotations into one batched :class:`fgpose.camera.Pose`.

    Args:
      annotations: ``N`` records (a mapping is taken in its value order).
      dtype: NumPy float dtype of the leaves.

    Returns:
      A ``Pose`` whose 7 leaves are NumPy arrays of shape ``(N,)`` (angles in radians,
      ``distance`` in model units, ``f, u, v`` in pixels of the width-300 annotation frame).
      NumPy leaves keep ``float64`` even without ``jax_enable_x64``; the camera functions
      accept them.
    """
    if isinstance(annotations, Mapping):
        annotations = list(annotations.values())
    annotations = list(annotations)
    for a in annotations:
        if not isinstance(a, Annotation):
            raise TypeError(f"expected Annotation records, got {type(a).__name__}")
    table = np.array([[getattr(a, k) for k in FLOAT_FIELDS] for a in annotations], dtype=dtype)
    table = table.reshape(len(annotations), len(FLOAT_FIELDS))
    return camera.Pose(*(np.ascontiguousarray(table[:, i]) for i in range(len(FLOAT_FIELDS))))


# ----------------------------------------------------------------------------- release layout


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """One dataset of the release.

    Attributes:
      name: directory name used in the release (``Anno3D/<name>``, ``Image/<name>``).
      synset: ShapeNetCore synset id of its CAD models (``CAD/<synset>/``).
      category: ShapeNet category name.
      versions: annotation versions in the release (1: human, 2: refined).
      train_images, test_images: image directories relative to the root; an image key is
        a path relative to them.
      class_models_file: ``CAD/<name>3D.txt``, one CAD model id per fine-grained class.
      num_train, num_test: number of annotated images per split.
      num_classes: number of fine-grained classes (lines of ``class_models_file``).
    """

    name: str
    synset: str
    category: str
    versions: tuple[int, ...]
    train_images: str
    test_images: str
    class_models_file: str
    num_train: int
    num_test: int
    num_classes: int


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo(
            name="StanfordCars",
            synset="02958343",
            category="car",
            versions=(1, 2),
            train_images="Image/StanfordCars/cars_train",
            test_images="Image/StanfordCars/cars_test",
            class_models_file="CAD/StanfordCars3D.txt",
            num_train=8144,
            num_test=8041,
            num_classes=196,
        ),
        DatasetInfo(
            name="CompCars",
            synset="02958343",
            category="car",
            versions=(1,),
            train_images="Image/CompCars/image",
            test_images="Image/CompCars/image",
            class_models_file="CAD/CompCars3D.txt",
            num_train=3798,
            num_test=1898,
            num_classes=113,
        ),
        DatasetInfo(
            name="FGVC_Aircraft",
            synset="02691156",
            category="airplane",
            versions=(1, 2),
            train_images="Image/FGVC_Aircraft",
            test_images="Image/FGVC_Aircraft",
            class_models_file="CAD/FGVC_Aircraft3D.txt",
            num_train=6667,
            num_test=3333,
            num_classes=100,
        ),
    )
}
"""The release's three datasets by release name."""

EXAMPLE_CAR_MODEL_ID = "189c2b53ef76d02978a20fe14185667"
"""The one ShapeNet car mesh shipped with the release: ``CAD/02958343/<id>/model.obj``
(:func:`cad_path` with ``"StanfordCars"``; ShapeNetCore.v1, +Y up, +X front, unit bbox
diagonal). It is the CAD model of StanfordCars ``cars_train/00001.jpg`` (the release's one
shipped photo with a mesh) and of 85 StanfordCars annotations (43 train, 42 test)."""


def release_dir() -> pathlib.Path | None:
    """The release root from ``$FGPOSE_RELEASE_DIR`` (``None`` if unset or empty).

    Existence is not checked.
    """
    value = os.environ.get(RELEASE_DIR_ENV, "").strip()
    return pathlib.Path(value).expanduser() if value else None


def require_release_dir(path: str | os.PathLike | None = None, dataset: str = "StanfordCars") -> pathlib.Path:
    """The release root from ``path`` or else ``$FGPOSE_RELEASE_DIR``, checked.

    Raises:
      ValueError: neither is given, the directory does not exist, or it has no
        ``Anno3D/<dataset>/`` (not the release root); the message says what to pass.
    """
    root = pathlib.Path(path).expanduser() if path else release_dir()
    if root is None:
        raise ValueError(
            f"no release directory: pass one or set {RELEASE_DIR_ENV} to the finegrained_pose "
            "release root (e.g. ../shared/finegrained_pose)"
        )
    if not root.is_dir():
        raise ValueError(f"release directory {root} does not exist")
    if not (root / "Anno3D" / get_dataset(dataset).name).is_dir():
        raise ValueError(f"{root} has no Anno3D/{get_dataset(dataset).name}/: not the finegrained_pose release root")
    return root


def get_dataset(dataset: str | DatasetInfo) -> DatasetInfo:
    """Looks a dataset up by its release name (``StanfordCars``, ``CompCars``, ``FGVC_Aircraft``)."""
    if isinstance(dataset, DatasetInfo):
        return dataset
    try:
        return DATASETS[dataset]
    except (KeyError, TypeError):
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(DATASETS)}") from None


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    return split


def _parse_version(info: DatasetInfo, version: int | str) -> int:
    v = version
    if isinstance(v, str) and re.fullmatch(r"[vV]?\d+", v):
        v = int(v.lstrip("vV"))
    if isinstance(v, bool) or not isinstance(v, int) or v not in info.versions:
        raise ValueError(
            f"{info.name} has no annotation version {version!r}; available: "
            f"{[f'v{x}' for x in info.versions]}"
        )
    return v


def annotation_path(
    root: str | os.PathLike, dataset: str, split: str, version: int | str
) -> pathlib.Path:
    """``<root>/Anno3D/<dataset>/<split>_anno[_v2].pkl``.

    Args:
      root: release root.
      dataset: ``StanfordCars``, ``CompCars`` or ``FGVC_Aircraft``.
      split: ``train`` or ``test``.
      version: ``1``/``"v1"`` (human annotations) or ``2``/``"v2"`` (refined; StanfordCars
        and FGVC_Aircraft only).

    Raises:
      ValueError: unknown dataset, split, or a version the dataset does not have.
    """
    info = get_dataset(dataset)
    _check_split(split)
    v = _parse_version(info, version)
    suffix = "" if v == 1 else f"_v{v}"
    return pathlib.Path(root) / "Anno3D" / info.name / f"{split}_anno{suffix}.pkl"


def load_split(
    root: str | os.PathLike, dataset: str, split: str, version: int | str
) -> dict[str, Annotation]:
    """:func:`load_annotations` of :func:`annotation_path` ``(root, dataset, split, version)``."""
    return load_annotations(annotation_path(root, dataset, split, version))


def _check_relative_key(key: str) -> pathlib.PurePosixPath:
    if not isinstance(key, str) or not key:
        raise ValueError(f"image key must be a non-empty str, got {key!r}")
    rel = pathlib.PurePosixPath(key)
    if rel.is_absolute() or "\\" in key or "\0" in key or any(p in ("..", ".") for p in key.split("/")):
        raise ValueError(f"image key must be a plain relative path inside the image directory, got {key!r}")
    return rel


def image_path(root: str | os.PathLike, dataset: str, split: str, key: str) -> pathlib.Path:
    """The photo of an annotation.

    StanfordCars: ``Image/StanfordCars/cars_{train,test}/<key>`` (the same key names occur in
    both splits and refer to different photos); FGVC_Aircraft: ``Image/FGVC_Aircraft/<key>``;
    CompCars: ``Image/CompCars/image/<key>``.

    Raises:
      ValueError: unknown dataset or split, or a key that is not a plain relative path
        (absolute, ``..`` components, backslashes).
    """
    info = get_dataset(dataset)
    _check_split(split)
    rel = _check_relative_key(key)
    base = info.train_images if split == "train" else info.test_images
    return pathlib.Path(root).joinpath(*base.split("/"), *rel.parts)


def _check_model_id(model_id: str) -> str:
    if not isinstance(model_id, str) or not _MODEL_ID_RE.match(model_id):
        raise ValueError(f"not a valid model id: {model_id!r}")
    return model_id


def cad_path(root: str | os.PathLike, dataset: str, model_id: str) -> pathlib.Path:
    """``<root>/CAD/<synset>/<model_id>/model.obj`` (cars 02958343, airplanes 02691156)."""
    info = get_dataset(dataset)
    return pathlib.Path(root) / "CAD" / info.synset / _check_model_id(model_id) / "model.obj"


def load_class_models(root: str | os.PathLike, dataset: str) -> list[str]:
    """The CAD model id of each fine-grained class, from ``CAD/<dataset>3D.txt``.

    Returns:
      ``num_classes`` model ids, index = class index (line order). Surrounding whitespace is
      stripped (the release has a stray tab) and trailing blank lines are ignored; any other
      blank line or an invalid id is an error.

    Raises:
      ValueError: malformed file.
      OSError: missing file.
    """
    info = get_dataset(dataset)
    path = pathlib.Path(root).joinpath(*info.class_models_file.split("/"))
    lines = path.read_text(encoding="ascii").splitlines()
    while lines and not lines[-1].strip():  # trailing blank lines carry no class
        lines.pop()
    ids = []
    for lineno, line in enumerate(lines, 1):
        model_id = line.strip()
        if not _MODEL_ID_RE.match(model_id):
            raise ValueError(f"{path}:{lineno}: expected one model id per line, got {line!r}")
        ids.append(model_id)
    return ids


__all__ = [
    "ANGLE_LIMIT",
    "DATASETS",
    "DISTANCE_RANGE",
    "EXAMPLE_CAR_MODEL_ID",
    "FIELDS",
    "FLOAT_BOUNDS",
    "FLOAT_FIELDS",
    "FOCAL_RANGE",
    "OFFSET_LIMIT",
    "RELEASE_DIR_ENV",
    "SPLITS",
    "Annotation",
    "AnnotationError",
    "DatasetInfo",
    "RestrictedUnpickler",
    "annotation_path",
    "cad_path",
    "check_pose_values",
    "get_dataset",
    "image_path",
    "load_annotations",
    "load_class_models",
    "load_split",
    "poses_from_annotations",
    "release_dir",
    "safe_load_pickle",
    "save_annotations",
]
