"""The search meshes of refinement: each CAD model loaded once, kept in a small LRU.

Each model is loaded through the mesh cache (:func:`fgpose.mesh.load_mesh`:
``$FGPOSE_CACHE_DIR`` or ``~/.cache/fgpose/meshes``), without the faces no distant viewpoint
sees unless asked to keep them (:mod:`fgpose.visibility`: they never change a silhouette;
about 2 s per model the first time), and decimated to a face budget if one is given. A model
that fails to load is remembered, so its other images are skipped without retrying.
"""

from __future__ import annotations

import collections
import pathlib

from fgpose import mesh as mesh_lib

MESH_LRU = 8
"""Meshes kept in memory (per face budget); images come sorted by model, so a few suffice."""


class MeshStore:
    """Loads each model once (a small LRU; images come sorted by model) and remembers failures.

    Attributes:
      max_faces: face budget of the search meshes, or None for the full meshes.
      coarse_max_faces: face budget of the coarse pass's meshes, or None for no separate
        coarse mesh.
      drop_hidden: drop the faces no distant viewpoint sees before decimating.
      loads: how many meshes were loaded (or failed to load) so far, cache hits excluded.
    """

    def __init__(self, max_faces: int | None, coarse_max_faces: int | None = None, drop_hidden: bool = True):
        self.max_faces = max_faces
        self.coarse_max_faces = coarse_max_faces
        self.drop_hidden = drop_hidden
        self.meshes: collections.OrderedDict[tuple, mesh_lib.Mesh] = collections.OrderedDict()
        self.failed: dict[pathlib.Path, str] = {}
        self.loads = 0

    def get(self, path: pathlib.Path) -> mesh_lib.Mesh:
        """The search mesh (hidden faces dropped unless kept, decimated to ``max_faces`` if set).

        Raises:
          ValueError: the file cannot be read or parsed (now or on an earlier call); the
            message names the file and the error.
        """
        return self._get(path, self.max_faces)

    def get_coarse(self, path: pathlib.Path) -> mesh_lib.Mesh | None:
        """The coarse pass's mesh (decimated to ``coarse_max_faces``), or None if not set."""
        return None if self.coarse_max_faces is None else self._get(path, self.coarse_max_faces)

    def _get(self, path: pathlib.Path, max_faces: int | None) -> mesh_lib.Mesh:
        if path in self.failed:
            raise ValueError(self.failed[path])
        key = (path, max_faces)
        if key in self.meshes:
            self.meshes.move_to_end(key)
            return self.meshes[key]
        self.loads += 1
        try:
            m = mesh_lib.load_mesh(path, max_faces=max_faces, drop_hidden=self.drop_hidden)
        except Exception as err:  # noqa: BLE001 - any parse failure skips the images of that model
            self.failed[path] = f"{path}: {type(err).__name__}: {err}"
            raise ValueError(self.failed[path]) from None
        self.meshes[key] = m
        while len(self.meshes) > MESH_LRU:
            self.meshes.popitem(last=False)
        return m
