"""The cached mesh loader: :func:`load_mesh` (read, clean, normalise, drop hidden faces,
decimate) with an ``.npz`` disk cache of the result.

Processing order in :func:`load_mesh`: read (:mod:`fgpose.mesh.io`) -> (optionally) drop
degenerate faces -> (optionally) normalise using the full-resolution bounding box ->
(optionally) drop the faces no distant viewpoint sees (:mod:`fgpose.visibility`) ->
(optionally) decimate (:mod:`fgpose.mesh.simplify`). The result is cached on disk, keyed by
the file's absolute path, size and mtime, the options and a format version.

This is the only module of :mod:`fgpose.mesh` that uses :mod:`fgpose.visibility`, which
sits above :mod:`fgpose.mesh.types` and :mod:`fgpose.raster` in the layering. It imports it
inside :func:`load_mesh`, when ``drop_hidden=True`` asks for it: the package
``fgpose/mesh/__init__.py`` imports this module, and :mod:`fgpose.visibility` imports
:mod:`fgpose.mesh.types` (which runs that ``__init__``), so an import at the top of this
module would close a cycle; and importing :mod:`fgpose.mesh` does not load the rasterizer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from fgpose.mesh.io import read_mesh_file
from fgpose.mesh.simplify import decimate, normalize_mesh, remove_degenerate_faces
from fgpose.mesh.types import Mesh

__all__ = ["load_mesh", "default_cache_dir", "CACHE_DIR_ENV"]

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "FGPOSE_CACHE_DIR"
"""Environment variable naming the default mesh cache directory."""

_CACHE_VERSION = 1  # bump when the preprocessing changes, to invalidate old cache entries


def default_cache_dir() -> Path:
    """``$FGPOSE_CACHE_DIR`` if set (non-empty), else ``~/.cache/fgpose/meshes``."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "fgpose" / "meshes"


def _cache_file(path: Path, stat: os.stat_result, options: dict, cache_dir: Path) -> Path:
    key = json.dumps(
        {
            "path": str(path),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "options": options,
            "version": _CACHE_VERSION,
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return cache_dir / f"{path.stem}-{digest}.npz"


def _load_cached(file: Path) -> Mesh | None:
    try:
        with np.load(file, allow_pickle=False) as data:
            return Mesh(vertices=data["vertices"], faces=data["faces"])
    except FileNotFoundError:
        return None
    except Exception as e:  # corrupt / truncated entry: recompute and overwrite
        log.warning("ignoring unreadable mesh cache entry %s: %s", file, e)
        return None


def _store_cached(file: Path, mesh: Mesh) -> None:
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=file.stem, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, vertices=mesh.vertices, faces=mesh.faces)
            os.replace(tmp, file)  # atomic: concurrent readers never see a partial file
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except OSError as e:
        warnings.warn(f"could not write mesh cache entry {file}: {e}", stacklevel=3)


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
        absolute path, size and mtime of the file and the options; ``None`` (default) uses
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
      ValueError: the file cannot be parsed or contains no triangles.
    """
    path = Path(path).expanduser().absolute()
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"mesh file not found: {path}") from None
    if path.is_dir():
        raise ValueError(f"expected a mesh file, got a directory: {path}")
    if max_faces is not None:
        max_faces = int(max_faces)
        if max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {max_faces}")
    options = {
        "normalize": bool(normalize),
        "max_faces": max_faces,
        "drop_degenerate": bool(drop_degenerate),
    }
    if drop_hidden:  # only when set, so that earlier cache entries keep their keys
        options["drop_hidden"] = True
    cache_file = None
    if cache_dir is not False and cache_dir is not True:
        directory = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
        cache_file = _cache_file(path, stat, options, directory)
    elif cache_dir is True:
        cache_file = _cache_file(path, stat, options, default_cache_dir())
    if cache_file is not None:
        cached = _load_cached(cache_file)
        if cached is not None:
            return cached

    if drop_hidden and max_faces is not None:
        # The visible faces, cached on their own: meshes decimated to other budgets share them.
        mesh = load_mesh(path, normalize, None, cache_dir, drop_degenerate=drop_degenerate, drop_hidden=True)
        mesh = decimate(mesh, max_faces)
        if cache_file is not None:
            _store_cached(cache_file, mesh)
        return mesh

    mesh = read_mesh_file(path)
    if drop_degenerate:
        mesh = remove_degenerate_faces(mesh)
        if mesh.num_faces == 0:
            raise ValueError(f"{path}: every face is degenerate")
    if normalize:
        mesh = normalize_mesh(mesh)
    if drop_hidden:
        from fgpose import visibility  # noqa: PLC0415 - imports the rasterizer (JAX)

        mesh = visibility.drop_hidden_faces(mesh)
        if mesh.num_faces == 0:
            raise ValueError(f"{path}: no face is visible from outside the mesh")
    if max_faces is not None:
        mesh = decimate(mesh, max_faces)

    if cache_file is not None:
        _store_cached(cache_file, mesh)
    return mesh
