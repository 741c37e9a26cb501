"""Triangle meshes: the type, triangulation, file readers, simplification, packing, loading.

One module per concept, each importing only those listed before it:

* :mod:`fgpose.mesh.types` — :class:`Mesh` (``vertices (V, 3) float32`` in model units,
  ``faces (F, 3) int32``; ShapeNet models: unit bounding-box diagonal, ``+Y`` up, ``+X``
  front) and the conventions;
* :mod:`fgpose.mesh.triangulate` — correct triangulation of (non-convex) polygons;
* :mod:`fgpose.mesh.io` — OBJ / PLY / trimesh readers that keep the file's vertices, and
  :class:`MeshError`, the error for any unusable mesh file (truncated, bad indices, ...);
* :mod:`fgpose.mesh.simplify` — normalisation, welding, degenerate faces, decimation;
* :mod:`fgpose.mesh.pack` — :class:`PackedMeshes`, meshes padded to common sizes for jit;
* :mod:`fgpose.mesh.loader` — :func:`load_mesh` with its disk cache (the only one that uses
  :mod:`fgpose.visibility`, imported when hidden faces are to be dropped).

The names below are re-exported here, so ``from fgpose.mesh import load_mesh`` and
``fgpose.mesh.Mesh`` keep working. Code below :mod:`fgpose.visibility` in the layering
imports the submodule it needs (``from fgpose.mesh.types import Mesh``).
"""

from fgpose.mesh.types import Mesh
from fgpose.mesh.triangulate import triangulate_polygon
from fgpose.mesh.io import MeshError
from fgpose.mesh.simplify import decimate, normalize_mesh, remove_degenerate_faces, weld_vertices
from fgpose.mesh.pack import PackedMeshes, pack_mesh, pack_meshes, unpack, unpack_mesh
from fgpose.mesh.loader import CACHE_DIR_ENV, default_cache_dir, load_mesh

__all__ = [
    "Mesh",
    "MeshError",
    "PackedMeshes",
    "load_mesh",
    "normalize_mesh",
    "decimate",
    "remove_degenerate_faces",
    "weld_vertices",
    "triangulate_polygon",
    "pack_meshes",
    "pack_mesh",
    "unpack",
    "unpack_mesh",
    "default_cache_dir",
    "CACHE_DIR_ENV",
]
