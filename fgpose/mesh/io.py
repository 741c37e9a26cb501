"""Mesh file readers: OBJ (own reader), PLY and other formats (through trimesh).

* **OBJ** files are read by a small geometry-only reader (``v`` and ``f`` lines;
  ``vt``/``vn``/``o``/``g``/``usemtl``/``s``/... are ignored). It accepts the ``f v``,
  ``f v/vt``, ``f v//vn`` and ``f v/vt/vn`` syntaxes, negative (relative) indices, line
  continuations and files with several objects/groups (OBJ vertex indices are global, so
  the objects are simply concatenated). ``vertices`` are exactly the file's ``v`` lines, in
  file order (cast to float32), and face indices are the file's indices minus one: nothing
  is merged, reordered or dropped, so ``vertices`` can contain unreferenced or duplicated
  positions. Faces come out in file order, each polygon's triangles contiguous. Polygons
  with more than three vertices are triangulated by :mod:`fgpose.mesh.triangulate` (correct
  for non-convex polygons; trimesh 5.2's OBJ reader is not, and it also splits vertices by
  texture coordinate and reorders faces by material).
* **PLY** files are read with ``trimesh.load(path, force="mesh", process=False)`` and then
  rebuilt from the raw ``vertex``/``face`` elements trimesh keeps, so that vertices are the
  file's (in order) and polygons are triangulated as above, in file order (trimesh itself
  fans them). Limitation of trimesh 5.2: *binary* PLY files whose faces have different
  vertex counts cannot be read at all (``ValueError``); ASCII ones are fine.
* **Other formats** (STL, OFF, GLB, ...) are read with
  ``trimesh.load(path, force="mesh", process=False)``: vertex positions are exactly those
  of the file (no merging); scenes are concatenated with their transforms applied.
  Polygons in those formats are triangulated by trimesh (a fan), which is only correct
  for convex polygons.

Every problem with a file's content raises :class:`MeshError` (a ``ValueError``) naming
the file and, for OBJ, the line: unparsable or non-finite numbers, a face index beyond the
vertices (or beyond int32, e.g. ``10**20``), no faces, and a **truncated** OBJ file, i.e. one
whose last line has no newline and is an incomplete record (``v`` with fewer than 3
coordinates or an unparsable one, ``f`` with fewer than 3 vertices or a vertex reference cut
in the middle, such as ``12/`` or ``12`` after ``10/3/1 11/4/1``). A file cut exactly after
a newline, or in the middle of a number that still parses, cannot be told from a complete
one here; :mod:`fgpose.mesh.loader` records each file's hash and face count in its cache so
that a file that changes afterwards is noticed.

No post-processing and no caching here: :func:`fgpose.mesh.loader.load_mesh` adds those.
NumPy + trimesh only.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from fgpose.mesh.triangulate import triangulate_faces
from fgpose.mesh.types import Mesh
from fgpose.safe_repr import short_repr

__all__ = ["MeshError", "read_mesh_file"]

log = logging.getLogger(__name__)

MAX_VERTEX_INDEX = 2**31 - 1
"""Largest OBJ vertex index (1-based) accepted: faces are stored as int32."""


class MeshError(ValueError):
    """A mesh file whose content cannot be used (unparsable, truncated, out-of-range face
    indices, no faces, non-finite coordinates). The message names the file (and the line
    for OBJ). A ``ValueError``, which the readers raised before this type existed."""


def _truncated(path: Path, lineno: int, line: str, problem: str) -> MeshError:
    return MeshError(
        f"{path}:{lineno}: the file is truncated: its last line {short_repr(line)} has no newline "
        f"and is an incomplete record ({problem})"
    )


def _check_last_line(path: Path, lineno: int, line: str, parts: list[str]) -> None:
    """Raises :class:`MeshError` if ``line``, the unterminated last line, is a cut ``v``/``f`` record."""
    tag, args = parts[0], parts[1:]
    if tag == "v":
        if len(args) < 3:
            raise _truncated(path, lineno, line, f"{len(args)} of 3 coordinates")
        for x in args[:3]:
            try:
                float(x)
            except ValueError:
                raise _truncated(path, lineno, line, f"coordinate {short_repr(x)} is not a number") from None
    elif tag == "f":
        if len(args) < 3:
            raise _truncated(path, lineno, line, f"a face of {len(args)} vertices")
        shapes = {tuple(bool(p) for p in ref.split("/")) for ref in args}
        if len(shapes) > 1 or any(ref.endswith("/") for ref in args):
            raise _truncated(path, lineno, line, f"vertex reference {short_repr(args[-1])} is cut")


def _face_index(path: Path, lineno: int, ref: str, num_v: int) -> int:
    """The 0-based vertex index of one face reference (``v``, ``v/vt``, ``v//vn``, ``v/vt/vn``)."""
    head = ref.split("/", 1)[0]
    try:
        i = int(head)
    except ValueError:
        raise MeshError(f"{path}:{lineno}: bad face vertex {short_repr(ref)}") from None
    if i > MAX_VERTEX_INDEX:
        raise MeshError(
            f"{path}:{lineno}: face vertex index {short_repr(i)} is out of range (at most {MAX_VERTEX_INDEX})"
        )
    if i > 0:
        return i - 1
    if i < 0:
        if i + num_v < 0:
            raise MeshError(
                f"{path}:{lineno}: relative index {short_repr(i)} refers before the first vertex"
            )
        return i + num_v
    raise MeshError(f"{path}:{lineno}: OBJ indices start at 1, got 0")


def _read_obj(path: Path) -> Mesh:
    """Geometry-only Wavefront OBJ reader (module docstring)."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    if "\\\n" in text or "\\\r\n" in text:  # line continuations
        text = text.replace("\\\r\n", " ").replace("\\\n", " ")
    lines = text.splitlines()
    unterminated = bool(text) and text[-1] not in "\r\n"
    coords: list[list[str]] = []
    face_indices: list[int] = []
    face_sizes: list[int] = []
    num_v = 0
    skipped = 0
    for lineno, line in enumerate(lines, start=1):
        if not line or line[0] not in "vf":
            s = line.lstrip()
            if not s or s[0] not in "vf":
                continue
            line = s
        parts = line.split()
        tag = parts[0]
        if unterminated and lineno == len(lines) and tag in ("v", "f"):
            _check_last_line(path, lineno, line, parts)
        if tag == "v":
            if len(parts) < 4:
                raise MeshError(f"{path}:{lineno}: a 'v' line needs 3 coordinates: {short_repr(line)}")
            coords.append(parts[1:4])  # ignores w / vertex colours
            num_v += 1
        elif tag == "f":
            refs = parts[1:]
            if len(refs) < 3:
                skipped += 1
                continue
            face_indices.extend(_face_index(path, lineno, ref, num_v) for ref in refs)
            face_sizes.append(len(refs))
    if skipped:
        log.warning("%s: skipped %d face(s) with fewer than 3 vertices", path, skipped)
    try:
        vertices = np.array(coords, dtype=np.float64).reshape(-1, 3)
    except ValueError as e:
        raise MeshError(f"{path}: bad vertex coordinates: {short_repr(str(e), 200)}") from None
    if not face_sizes:
        raise MeshError(f"{path}: the OBJ file has no faces ({len(vertices)} vertices)")
    fi = np.asarray(face_indices, dtype=np.int64)
    if fi.max() >= len(vertices):
        raise MeshError(
            f"{path}: face index {fi.max() + 1} is out of range (the file has {len(vertices)} vertices)"
        )
    faces = triangulate_faces(vertices, fi, np.asarray(face_sizes))
    return Mesh(vertices=vertices.astype(np.float32), faces=faces)


def _mesh_from_ply_raw(loaded) -> Mesh | None:
    """Rebuilds a PLY mesh from trimesh's raw element data, triangulating polygons correctly.

    trimesh fans PLY polygons (wrong for non-convex ones) and may re-index vertices by
    texture coordinate; the raw ``vertex``/``face`` elements it keeps in
    ``metadata["_ply_raw"]`` give the file's vertices and polygons. Returns None if the raw
    data is missing or has an unexpected layout.
    """
    try:
        raw = loaded.metadata["_ply_raw"]
        vdata = raw["vertex"]["data"]
        vertices = np.column_stack([np.asarray(vdata[k], dtype=np.float64) for k in "xyz"])
        fdata = raw["face"]["data"]
        polys = None
        if isinstance(fdata, dict):
            for name in ("vertex_indices", "vertex_index"):
                if name in fdata:
                    polys = fdata[name]
                    break
        elif isinstance(fdata, np.ndarray) and fdata.dtype.names:
            names = [n for n in fdata.dtype.names if n in ("vertex_indices", "vertex_index")]
            name = names[0] if names else fdata.dtype.names[0]
            polys = fdata[name]["f1"] if fdata[name].dtype.names else fdata[name]
        if polys is None:
            return None
        polys = np.asarray(polys)
        if polys.dtype == object:
            sizes = np.array([len(p) for p in polys], dtype=np.int64)
            flat = np.concatenate([np.asarray(p, dtype=np.int64).ravel() for p in polys])
        else:
            polys = polys.reshape(len(polys), -1).astype(np.int64)
            sizes = np.full(len(polys), polys.shape[1], dtype=np.int64)
            flat = polys.ravel()
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        return None
    keep = sizes >= 3
    if not keep.all():  # drop points / edges stored as "faces"
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        flat = np.concatenate([flat[a : a + n] for a, n in zip(starts[keep], sizes[keep])] or [[]])
        sizes = sizes[keep]
    if len(sizes) == 0 or flat.min() < 0 or flat.max() >= len(vertices):
        return None
    faces = triangulate_faces(vertices, flat.astype(np.int64), sizes)
    return Mesh(vertices=vertices.astype(np.float32), faces=faces)


def _read_with_trimesh(path: Path) -> Mesh:
    import trimesh

    try:
        loaded = trimesh.load(str(path), force="mesh", process=False)
    except Exception as e:  # trimesh raises many different types for unreadable files
        raise MeshError(f"could not read a mesh from {path}: {type(e).__name__}: {short_repr(str(e), 200)}") from e
    faces = getattr(loaded, "faces", None)
    if faces is None or len(faces) == 0:
        raise MeshError(f"{path} contains no triangles (trimesh read {type(loaded).__name__})")
    if path.suffix.lower() == ".ply":
        mesh = _mesh_from_ply_raw(loaded)
        if mesh is not None:
            return mesh
    try:
        return Mesh(vertices=np.asarray(loaded.vertices), faces=np.asarray(faces))
    except (ValueError, TypeError, OverflowError) as e:
        raise MeshError(f"{path}: trimesh read an unusable mesh: {short_repr(str(e), 200)}") from None


def read_mesh_file(path: Path) -> Mesh:
    """Reads a mesh file as it is (module docstring): no post-processing, no caching.

    Args:
      path: an existing mesh file; ``.obj`` (any case) uses this module's OBJ reader,
        anything else trimesh.

    Returns:
      A :class:`~fgpose.mesh.types.Mesh` with the file's vertices (model units, float32) and
      at least one face.

    Raises:
      MeshError: the file cannot be parsed, is a truncated OBJ, has face indices out of
        range, no faces or non-finite coordinates (a ``ValueError``).
      OSError: the file cannot be read.
    """
    if path.suffix.lower() == ".obj":
        mesh = _read_obj(path)
    else:
        mesh = _read_with_trimesh(path)
    if mesh.num_faces == 0:
        raise MeshError(f"{path} contains no faces")
    if not np.all(np.isfinite(mesh.vertices)):
        raise MeshError(f"{path} contains non-finite vertex coordinates")
    return mesh
