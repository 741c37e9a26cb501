"""The cached mesh loader: :func:`load_mesh` (read, clean, normalise, drop hidden faces,
decimate) with an ``.npz`` disk cache of the result.

Processing order in :func:`load_mesh`: read (:mod:`fgpose.mesh.io`) -> (optionally) drop
degenerate faces -> (optionally) normalise using the full-resolution bounding box ->
(optionally) drop the faces no distant viewpoint sees (:mod:`fgpose.visibility`) ->
(optionally) decimate (:mod:`fgpose.mesh.simplify`). The result is cached on disk, keyed by
the file's absolute path, the options and a format version. Each entry also records the
SHA-256 of the file's bytes and the number of faces read from it: an entry whose hash differs
from the file's is stale (the file changed on disk, even if its size and mtime did not); it
is recomputed and overwritten, with a warning that gives the face counts then and now (a
mesh file truncated after it was cached shows up there as a drop in faces).

This is the only module of :mod:`fgpose.mesh` that uses :mod:`fgpose.visibility`, which
sits above :mod:`fgpose.mesh.types` and :mod:`fgpose.raster` in the layering. It imports it
inside :func:`load_mesh`, when ``drop_hidden=True`` asks for it: the package
``fgpose/mesh/__init__.py`` imports this module, and :mod:`fgpose.visibility` imports
:mod:`fgpose.mesh.types` (which runs that ``__init__``), so an import at the top of this
module would close a cycle; and importing :mod:`fgpose.mesh` does not load the rasterizer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np

from fgpose.atomic_io import atomic_write, file_sha256
from fgpose.mesh.io import MeshError, read_mesh_file
from fgpose.mesh.simplify import decimate, normalize_mesh, remove_degenerate_faces
from fgpose.mesh.types import Mesh

__all__ = ["load_mesh", "default_cache_dir", "CACHE_DIR_ENV"]

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "FGPOSE_CACHE_DIR"
"""Environment variable naming the default mesh cache directory."""

_CACHE_VERSION = 2  # bump when the preprocessing or the entry format changes (2: hash + face counts)


def default_cache_dir() -> Path:
    """``$FGPOSE_CACHE_DIR`` if set (non-empty), else ``~/.cache/fgpose/meshes``."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "fgpose" / "meshes"


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One cache entry: the preprocessed mesh and what it was made from.

    Attributes:
      mesh: the preprocessed mesh.
      source_sha256: hex SHA-256 of the mesh file's bytes when the entry was made.
      source_faces: triangles read from the file (before any preprocessing).
    """

    mesh: Mesh
    source_sha256: str
    source_faces: int


def _cache_file(path: Path, options: dict, cache_dir: Path) -> Path:
    key = json.dumps({"path": str(path), "options": options, "version": _CACHE_VERSION}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return cache_dir / f"{path.stem}-{digest}.npz"


def _load_cached(file: Path) -> _Entry | None:
    """The entry in ``file``, or None if there is none or it is unreadable or inconsistent."""
    try:
        with np.load(file, allow_pickle=False) as data:
            mesh = Mesh(vertices=data["vertices"], faces=data["faces"])
            entry = _Entry(mesh, str(data["source_sha256"]), int(data["source_faces"]))
            if int(data["num_faces"]) != mesh.num_faces:
                raise ValueError(f"holds {mesh.num_faces} faces, its header says {int(data['num_faces'])}")
            return entry
    except FileNotFoundError:
        return None
    except Exception as e:  # corrupt / truncated entry: recompute and overwrite
        log.warning("ignoring unreadable mesh cache entry %s: %s", file, e)
        return None


def _store_cached(file: Path, entry: _Entry) -> None:
    """Writes ``entry`` to ``file`` atomically (concurrent readers never see a partial file)."""
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(
            file,
            lambda fh: np.savez(
                fh,
                vertices=entry.mesh.vertices,
                faces=entry.mesh.faces,
                num_faces=np.int64(entry.mesh.num_faces),
                source_sha256=np.str_(entry.source_sha256),
                source_faces=np.int64(entry.source_faces),
            ),
        )
    except OSError as e:
        warnings.warn(f"could not write mesh cache entry {file}: {e}", stacklevel=4)


def load_mesh(
    path: str | os.PathLike,
    normalize: bool = False,
    max_faces: int | None = None,
    cache_dir: str | os.PathLike | None | bool = None,
    *,
    drop_degenerate: bool = False,
    drop_hidden: bool = False,
) -> Mesh:
    """Loads a triangle mesh (OBJ, PLY or any format trimesh reads) and preprocesses it.

    Args:
      path: mesh file. ``.obj`` files use :mod:`fgpose.mesh.io`'s reader (correct
        triangulation of quads and non-convex n-gons, ``v/vt/vn`` syntax, negative indices,
        several objects); other formats go through ``trimesh.load(force="mesh",
        process=False)`` (PLY polygons re-triangulated correctly from the raw data; see
        :mod:`fgpose.mesh.io`).
        Vertex positions are those of the file (as float32); vertices are not merged.
      normalize: centre the bounding box and scale it to unit diagonal
        (:func:`normalize_mesh`), for meshes that are not ShapeNet-normalised.
      max_faces: if given, :func:`decimate` to at most this many faces (after
        normalisation; the normalisation uses the full-resolution bounding box).
      cache_dir: directory for the ``.npz`` cache of the preprocessed mesh, keyed by the
        absolute path of the file and the options, and valid while the file's SHA-256
        matches the one recorded in the entry (a changed file is re-read, with a warning
        giving the face counts then and now); ``None`` (default) uses
        :func:`default_cache_dir` (``$FGPOSE_CACHE_DIR`` or ``~/.cache/fgpose/meshes``),
        ``False`` disables caching. A cache that cannot be written only warns.
      drop_degenerate: drop faces with a repeated index or zero area
        (:func:`remove_degenerate_faces`) before anything else.
      drop_hidden: drop the faces that no distant viewpoint sees
        (:func:`fgpose.visibility.drop_hidden_faces`: silhouettes seen from outside the
        mesh are unchanged) before decimation, so that the face budget goes to the visible
        surface. For silhouette work (annotation refinement), not for rendering interiors.

    Returns:
      A :class:`Mesh` (``vertices (V, 3) float32`` in model units, ``faces (F, 3) int32``).

    Raises:
      FileNotFoundError: ``path`` does not exist.
      fgpose.mesh.io.MeshError: the file cannot be parsed, is truncated, has face indices
        out of range or contains no triangles (a ``ValueError``).
      ValueError: a directory, or ``max_faces < 1``.
    """
    path = Path(path).expanduser().absolute()
    if not path.exists():
        raise FileNotFoundError(f"mesh file not found: {path}")
    if path.is_dir():
        raise ValueError(f"expected a mesh file, got a directory: {path}")
    if max_faces is not None:
        max_faces = int(max_faces)
        if max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {max_faces}")
    if cache_dir is False:
        directory = None
    elif cache_dir is None or cache_dir is True:
        directory = default_cache_dir()
    else:
        directory = Path(cache_dir).expanduser()
    digest = file_sha256(path) if directory is not None else ""
    options = {"normalize": bool(normalize), "drop_degenerate": bool(drop_degenerate)}
    return _load(path, digest, directory, options, max_faces, drop_hidden).mesh


def _load(
    path: Path, digest: str, directory: Path | None, options: dict, max_faces: int | None, drop_hidden: bool
) -> _Entry:
    """:func:`load_mesh` after the argument checks; ``digest`` is the file's SHA-256 (``""``
    without cache, ``directory=None``). Returns the entry (mesh and where it came from)."""
    key = dict(options, max_faces=max_faces)
    if drop_hidden:  # only when set, so that the other options keep their keys
        key["drop_hidden"] = True
    cache_file = _cache_file(path, key, directory) if directory is not None else None
    stale = None
    if cache_file is not None:
        cached = _load_cached(cache_file)
        if cached is not None and cached.source_sha256 == digest:
            return cached
        stale = cached

    if drop_hidden and max_faces is not None:
        # The visible faces, cached on their own: meshes decimated to other budgets share them.
        visible = _load(path, digest, directory, options, None, True)
        entry = _Entry(decimate(visible.mesh, max_faces), digest, visible.source_faces)
    else:
        entry = _read_and_process(path, digest, options, max_faces, drop_hidden)
    if stale is not None:
        log.warning(
            "mesh file %s changed on disk since it was cached (sha256 %s..., %d faces read then; "
            "now sha256 %s..., %d faces): the cache entry %s is replaced",
            path, stale.source_sha256[:12], stale.source_faces, digest[:12], entry.source_faces, cache_file,
        )
    if cache_file is not None:
        _store_cached(cache_file, entry)
    return entry


def _read_and_process(path: Path, digest: str, options: dict, max_faces: int | None, drop_hidden: bool) -> _Entry:
    """Reads ``path`` and applies the preprocessing of :func:`load_mesh` in its order."""
    mesh = read_mesh_file(path)
    source_faces = mesh.num_faces
    if options["drop_degenerate"]:
        mesh = remove_degenerate_faces(mesh)
        if mesh.num_faces == 0:
            raise MeshError(f"{path}: every face is degenerate")
    if options["normalize"]:
        mesh = normalize_mesh(mesh)
    if drop_hidden:
        from fgpose import visibility  # noqa: PLC0415 - imports the rasterizer (JAX)

        mesh = visibility.drop_hidden_faces(mesh)
        if mesh.num_faces == 0:
            raise MeshError(f"{path}: no face is visible from outside the mesh")
    if max_faces is not None:
        mesh = decimate(mesh, max_faces)
    return _Entry(mesh, digest, source_faces)
