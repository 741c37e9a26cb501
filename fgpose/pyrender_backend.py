"""OpenGL rendering through pyrender in the release's camera convention.

Used as the independent reference for the JAX rasterizer (tests, benchmarks). Headless: set ``PYOPENGL_PLATFORM`` to ``osmesa`` (CPU, Debian's
``libosmesa6``) or ``egl`` (GPU) *before* OpenGL is imported; :func:`ensure_headless` picks
``osmesa`` when nothing is set and there is no display.

The release's camera maps a camera-space point ``Xc`` to ``x = u' + f Xc/Zc`` and
``y = v' + f Yc/Zc`` with visible ``Zc < 0``; pyrender's ``IntrinsicsCamera`` maps it to
``x = cx - fx Xc/Zc`` and ``y = cy + fy Yc/Zc``. So the release's camera is pyrender's with
``fx = -f`` (a mirror in x), placed at the camera-to-world pose ``[R^T | R^T (0, 0, d)]``.
The mesh is uploaded once (:meth:`PyrenderRenderer.set_mesh`) and only the camera moves per
render. Every triangle is submitted with both windings, because pyrender's depth-only pass
culls back faces whatever its flags say and ShapeNet meshes are not consistently oriented.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np


def ensure_headless() -> str:
    """Sets ``PYOPENGL_PLATFORM=osmesa`` unless a platform is set or a display exists, then
    loads OpenGL isolated from TensorFlow (see :func:`_import_opengl_isolated`)."""
    if "PYOPENGL_PLATFORM" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["PYOPENGL_PLATFORM"] = "osmesa"
    _import_opengl_isolated()
    return os.environ.get("PYOPENGL_PLATFORM", "")


def _import_opengl_isolated() -> None:
    """Imports PyOpenGL with its GL libraries loaded ``RTLD_LOCAL | RTLD_DEEPBIND``.

    PyOpenGL loads ``libOSMesa``/``libGL``/``libEGL`` with ``RTLD_GLOBAL``, which puts Mesa's
    ``libLLVM`` in the global symbol scope; TensorFlow (loaded before or after, e.g. by
    TFDS) carries its own LLVM, and the two then bind to each other's symbols: importing
    TensorFlow after OpenGL segfaults, and the reverse order aborts at exit
    (``free(): invalid pointer``). Local, deep-bound loading keeps each library's symbols to
    itself. PyOpenGL only calls GL through its own handles, so nothing needs them global.
    """
    import sys  # noqa: PLC0415

    if "OpenGL.GL" in sys.modules or not hasattr(os, "RTLD_DEEPBIND"):
        return
    import ctypes  # noqa: PLC0415

    original = ctypes.CDLL.__init__

    def local_init(self, name, mode=ctypes.DEFAULT_MODE, *args, **kwargs):
        original(self, name, (mode & ~os.RTLD_GLOBAL) | os.RTLD_DEEPBIND, *args, **kwargs)

    ctypes.CDLL.__init__ = local_init
    try:
        import OpenGL.GL  # noqa: F401, PLC0415
    finally:
        ctypes.CDLL.__init__ = original


def _pyrender():
    ensure_headless()
    import pyrender  # noqa: PLC0415  (import after the platform is chosen)

    return pyrender


def camera_pose(rotation: np.ndarray, distance: float) -> np.ndarray:
    """pyrender's camera-to-world ``(4, 4)`` for the release's ``[R | -(0, 0, d)]``."""
    r = np.asarray(rotation, np.float64)
    pose = np.eye(4)
    pose[:3, :3] = r.T
    pose[:3, 3] = r.T @ np.array([0.0, 0.0, float(distance)])
    return pose


class PyrenderRenderer:
    """Renders one mesh at many poses with one OpenGL context and one uploaded mesh.

    Args:
      height, width: output size in pixels.
      znear, zfar: clipping planes in model units.
    """

    def __init__(self, height: int, width: int, znear: float = 0.01, zfar: float = 100.0):
        pr = self._pr = _pyrender()
        self.height, self.width = int(height), int(width)
        self.znear, self.zfar = znear, zfar
        self._renderer = pr.OffscreenRenderer(self.width, self.height)
        self._scene = pr.Scene(ambient_light=np.full(3, 0.3), bg_color=np.zeros(4))
        self._mesh_node = None
        self._camera_node = self._scene.add(pr.IntrinsicsCamera(1.0, 1.0, 0.0, 0.0, znear, zfar))

    def close(self) -> None:
        self._renderer.delete()

    def __enter__(self) -> "PyrenderRenderer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def set_mesh(self, vertices: np.ndarray, faces: np.ndarray, color=(0.7, 0.7, 0.7, 1.0)) -> None:
        """Uploads ``(V, 3)`` model-space vertices and ``(F, 3)`` faces (replacing any mesh)."""
        import trimesh  # noqa: PLC0415

        pr = self._pr
        faces = np.asarray(faces)
        both = np.concatenate([faces, faces[:, ::-1]], axis=0)
        mesh = trimesh.Trimesh(np.asarray(vertices, np.float64), both, process=False)
        material = pr.MetallicRoughnessMaterial(doubleSided=True, baseColorFactor=color)
        if self._mesh_node is not None:
            self._scene.remove_node(self._mesh_node)
        self._mesh_node = self._scene.add(pr.Mesh.from_trimesh(mesh, material=material, smooth=False))

    def _place_camera(self, rotation, distance, intrinsics) -> None:
        k = np.asarray(intrinsics, np.float64)
        cam = self._camera_node.camera
        cam.fx, cam.fy, cam.cx, cam.cy = -k[0, 0], k[1, 1], k[0, 2], k[1, 2]
        pose = camera_pose(rotation, distance)
        self._scene.set_pose(self._camera_node, pose)

    def render_depth(self, rotation: np.ndarray, distance: float, intrinsics: np.ndarray) -> np.ndarray:
        """Depth ``(H, W)`` float32 along the optical axis (0 where empty) of the current mesh.

        Args:
          rotation, distance: the release's ``R`` (``(3, 3)``) and ``d`` (model units).
          intrinsics: ``(3, 3)`` K in pixels of this ``H x W`` image, release convention
            (``[[f, 0, cx], [0, f, cy], [0, 0, 1]]``).
        """
        if self._mesh_node is None:
            raise RuntimeError("call set_mesh() before rendering")
        self._place_camera(rotation, distance, intrinsics)
        flags = self._pr.RenderFlags.DEPTH_ONLY | self._pr.RenderFlags.SKIP_CULL_FACES
        return np.asarray(self._renderer.render(self._scene, flags=flags), np.float32)
