"""Synthetic photos: a mesh rendered with pyrender at a release pose over a random background.

Geometry is exactly the release's camera (see :mod:`fgpose.pyrender_backend`): for an
original photo of ``H x W`` pixels and a pose ``(azimuth, elevation, theta, distance, f, u,
v)`` (f, u, v in width-300 pixels), ``K = frame_transform((h300, 300), (H, W)) @
intrinsics(pose, h300)`` with ``h300 = int(H * 300 / W)``, and pyrender's
``IntrinsicsCamera(fx=-K00, fy=K11, cx=K02, cy=K12)`` (the release's mirror) placed at
``camera_pose(R, d)``. So the object's pixels are those of
``fgpose.raster.render(mesh, projection_matrix(pose, h300, image_size=(H, W)), H, W).mask``
(pixel centres at +0.5; tested at IoU > 0.99).

Appearance, all drawn from the ``rng`` passed to each call:

* body: a car-paint-like or livery colour (palette of common colours plus random hues),
  pyrender ``MetallicRoughnessMaterial`` with random metallic / roughness, flat shading,
  both sides lit (faces are never culled);
* car parts (when ``parts`` is given, see :data:`fgpose.synthetic.shapes.CAR_PARTS`): dark
  blue-grey glass, black tyres, grey rims, white head lamps, red tail lamps and a dark
  grille, so a car's front and back look different;
* lights: ambient (``scene.ambient_light``), a key directional light from the camera's
  front hemisphere (mostly from above), a fill directional light, and a point light near the
  camera; random colours (near white) and intensities;
* background: a mix of a linear colour gradient, low-frequency colour noise and random
  rectangles / stripes, optionally blurred, composited behind the object with the render's
  depth (``depth > 0``: the object); mild pixel noise on the whole photo.

Rendering uses one OSMesa (or EGL) context per :class:`PhotoRenderer`; a renderer of canvas
size ``(height, width)`` renders any photo up to that size (it draws into the canvas'
top-left corner, which leaves the pixel geometry unchanged, and crops), so one renderer
serves photos of many sizes. :func:`render_photo` keeps a few renderers (canvas sides
:func:`fgpose.buckets.photo_canvas_side` of the photo's) alive per process.
"""

from __future__ import annotations

import collections
import weakref
from typing import Any

import cv2
import jax.numpy as jnp
import numpy as np

from fgpose import camera
from fgpose.buckets import photo_canvas_side
from fgpose.mesh import Mesh
from fgpose.pyrender_backend import _pyrender, camera_pose
from fgpose.synthetic.shapes import CAR_PARTS

__all__ = ["PhotoRenderer", "random_background", "render_photo", "photo_intrinsics"]

# Car paints: white, black, silver, grey, red, blue, dark blue, green, beige, yellow, orange.
_CAR_COLOURS = np.array(
    [
        [0.92, 0.92, 0.92], [0.03, 0.03, 0.035], [0.62, 0.63, 0.65], [0.32, 0.33, 0.35],
        [0.60, 0.04, 0.04], [0.08, 0.20, 0.55], [0.05, 0.08, 0.20], [0.10, 0.28, 0.14],
        [0.70, 0.64, 0.50], [0.85, 0.70, 0.10], [0.85, 0.35, 0.05],
    ]
)
_CAR_WEIGHTS = np.array([5, 5, 4, 3, 3, 2, 1, 1, 1, 0.5, 0.5])
# Aircraft liveries are mostly white / light grey.
_AIR_COLOURS = np.array(
    [[0.93, 0.93, 0.94], [0.80, 0.81, 0.83], [0.55, 0.57, 0.60], [0.35, 0.38, 0.33], [0.15, 0.25, 0.50]]
)
_AIR_WEIGHTS = np.array([6, 3, 2, 1, 1])


def photo_intrinsics(pose: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """``K`` ``(3, 3)`` float64 in original-photo pixels for a release pose ``(7,)``."""
    h, w = int(image_hw[0]), int(image_hw[1])
    fh = camera.annotation_frame_height(w, h)
    p = camera.Pose.from_array(jnp.asarray(np.asarray(pose, np.float32)))
    k = camera.frame_transform((fh, camera.ANNOTATION_WIDTH), (h, w)) @ camera.intrinsics(p, fh)
    return np.asarray(k, np.float64)


def _rotation(pose: np.ndarray) -> np.ndarray:
    a, e, t = (float(x) for x in np.asarray(pose, np.float64)[:3])
    return np.asarray(camera.rotation_matrix(jnp.float32(a), jnp.float32(e), jnp.float32(t)), np.float64)


def _random_colour(rng: np.random.Generator, category: str | None) -> np.ndarray:
    if category == "airplane":
        palette, weights = _AIR_COLOURS, _AIR_WEIGHTS
    else:
        palette, weights = _CAR_COLOURS, _CAR_WEIGHTS
    if rng.random() < 0.2:  # any saturated hue
        hsv = np.uint8([[[rng.integers(0, 180), rng.integers(120, 255), rng.integers(60, 230)]]])
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0] / 255.0
    c = palette[rng.choice(len(palette), p=weights / weights.sum())]
    return np.clip(c * rng.uniform(0.9, 1.1) + rng.normal(0, 0.02, 3), 0, 1)


def random_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random ``(height, width, 3)`` uint8 background (gradient + noise + shapes, blurred).

    A linear gradient between two random colours (random direction), plus low-frequency
    colour noise (random amplitude), plus 0-12 random axis-aligned rectangles or
    full-length stripes, then with probability 1/2 a Gaussian blur (sigma 1-6 px).
    """
    h, w = int(height), int(width)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    ang = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (np.cos(ang) * xx / max(w, 1) + np.sin(ang) * yy / max(h, 1))
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    img = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]
    gh, gw = int(rng.integers(2, 12)), int(rng.integers(2, 12))
    noise = rng.normal(0, 1, (gh, gw, 3)).astype(np.float32)
    img += rng.uniform(0, 50) * cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(0, 13))):
        colour = rng.uniform(0, 255, 3)
        alpha = rng.uniform(0.3, 1.0)
        if rng.random() < 0.4:  # stripe across the whole photo
            if rng.random() < 0.5:
                y0 = int(rng.integers(0, h)); y1 = min(h, y0 + int(rng.integers(1, max(2, h // 6))))
                img[y0:y1] = (1 - alpha) * img[y0:y1] + alpha * colour
            else:
                x0 = int(rng.integers(0, w)); x1 = min(w, x0 + int(rng.integers(1, max(2, w // 6))))
                img[:, x0:x1] = (1 - alpha) * img[:, x0:x1] + alpha * colour
        else:
            y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
            y1 = min(h, y0 + int(rng.integers(2, max(3, h // 2))))
            x1 = min(w, x0 + int(rng.integers(2, max(3, w // 2))))
            img[y0:y1, x0:x1] = (1 - alpha) * img[y0:y1, x0:x1] + alpha * colour
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(1, 6)))
    return np.clip(img, 0, 255).astype(np.uint8)


def _look_from(direction: np.ndarray) -> np.ndarray:
    """``(4, 4)`` pose whose -Z axis points along ``-direction`` (a light shining from there)."""
    z = direction / np.linalg.norm(direction)
    helper = np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(helper, z); x /= np.linalg.norm(x)
    y = np.cross(z, x)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([x, y, z], 1)
    return pose


_PART_COLOURS = {
    "glass": (18, 22, 28),  # dark blue-grey
    "tyre": (12, 12, 12),
    "rim": (80, 80, 84),
    "head_lamp": (240, 240, 228),
    "tail_lamp": (200, 16, 16),
    "grille": (22, 22, 24),
}
"""sRGB colour of each non-body :data:`fgpose.synthetic.shapes.CAR_PARTS` entry (the trim);
the body is painted per photo."""

_PART_RGBA = np.array([(*_PART_COLOURS.get(name, (0, 0, 0)), 255) for name in CAR_PARTS], np.uint8)
"""``_PART_COLOURS`` as RGBA rows indexed by part id."""

CONTEXT_DRAWS = 100
"""Draw calls after which :class:`PhotoRenderer` replaces its OpenGL context (memory bound)."""


class PhotoRenderer:
    """Renders synthetic photos up to ``height x width`` with one reusable OpenGL context.

    Args:
      height, width: canvas size in pixels (the largest photo this renderer can produce).
      mesh_cache: number of uploaded meshes kept (by identity of the :class:`Mesh` object).
    """

    def __init__(self, height: int, width: int, mesh_cache: int = 64):
        pr = self._pr = _pyrender()
        self.height, self.width = int(height), int(width)
        self._renderer = pr.OffscreenRenderer(self.width, self.height)
        self._draws_in_context = 0
        self._scene = pr.Scene(ambient_light=np.full(3, 0.3), bg_color=np.zeros(4))
        self._camera_node = self._scene.add(pr.IntrinsicsCamera(1.0, 1.0, 0.0, 0.0, 0.01, 100.0))
        self._key = self._scene.add(pr.DirectionalLight(color=np.ones(3), intensity=3.0))
        self._fill = self._scene.add(pr.DirectionalLight(color=np.ones(3), intensity=1.0))
        self._point = self._scene.add(pr.PointLight(color=np.ones(3), intensity=1.0))
        self._meshes: collections.OrderedDict[int, tuple[Any, Any]] = collections.OrderedDict()
        self._mesh_cache = int(mesh_cache)
        self._node = None

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.delete()
            self._renderer = None

    def __enter__(self) -> "PhotoRenderer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _pyrender_mesh(self, mesh: Mesh, parts: np.ndarray | None):
        """pyrender mesh of ``mesh`` (cached): one primitive (the body), plus with ``parts``
        a second "trim" primitive holding every non-body face with its part's colour.

        Two primitives, not one per part: every draw call costs llvmpipe a full pass (and
        memory, see ``CONTEXT_DRAWS``), so the parts share one draw via vertex colours.
        """
        key = (id(mesh), None if parts is None else np.asarray(parts).tobytes())
        entry = self._meshes.get(key)
        if entry is not None and entry[0]() is mesh:
            self._meshes.move_to_end(key)
            return entry[1]
        import trimesh  # noqa: PLC0415

        vertices, faces = np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces)
        if parts is None:
            tms = [trimesh.Trimesh(vertices, faces, process=False)]
        else:
            parts = np.asarray(parts)
            if parts.shape != (len(faces),):
                raise ValueError(f"parts must have one entry per face ({len(faces)}), got shape {parts.shape}")
            if parts.min() < 0 or parts.max() >= len(CAR_PARTS):
                raise ValueError(f"parts must be indices into CAR_PARTS (0..{len(CAR_PARTS) - 1})")
            body, trim = parts == 0, parts != 0
            tms = [trimesh.Trimesh(vertices, faces[body], process=False)]
            if trim.any():
                tms.append(trimesh.Trimesh(vertices, faces[trim], face_colors=_PART_RGBA[parts[trim]], process=False))
        pm = self._pr.Mesh.from_trimesh(tms, smooth=False)  # the trim keeps its colours
        self._meshes[key] = (weakref.ref(mesh), pm)
        while len(self._meshes) > self._mesh_cache:
            self._meshes.popitem(last=False)
        return pm

    def render(
        self,
        mesh: Mesh,
        pose: np.ndarray,
        image_hw: tuple[int, int] | None = None,
        rng: np.random.Generator | None = None,
        *,
        category: str | None = None,
        background: np.ndarray | None = None,
        noise_std: float | None = None,
        return_mask: bool = False,
        parts: np.ndarray | None = None,
    ):
        """Renders one photo.

        Args:
          mesh: the object (model space, ShapeNet frame).
          pose: ``(7,)`` release pose (f, u, v in width-300 pixels).
          image_hw: photo size ``(H, W)``, at most the canvas; default the canvas size.
          rng: randomness for colours, lights, background and noise (default: a fresh
            ``default_rng()``; pass one for reproducible photos).
          category: ``'car'`` / ``'airplane'`` picks the colour palette (default car).
          background: optional ``(H, W, 3)`` uint8 background instead of a random one.
          noise_std: std of the additive Gaussian pixel noise (default uniform 0-4).
          return_mask: also return the object mask.
          parts: optional ``(F,)`` part index of each face (:data:`fgpose.synthetic.shapes.
            CAR_PARTS`, e.g. :attr:`SyntheticClass.parts`): part 0 gets the random paint,
            the others glass, tyre, rim, lamp and grille colours. ``None``: paint it all.

        Returns:
          ``(H, W, 3)`` uint8 RGB photo, and with ``return_mask`` the ``(H, W)`` bool mask
          (pixels whose centre sees the object, depth > 0).
        """
        if self._renderer is None:
            raise RuntimeError("renderer is closed")
        rng = np.random.default_rng() if rng is None else rng
        h, w = (self.height, self.width) if image_hw is None else (int(image_hw[0]), int(image_hw[1]))
        if h > self.height or w > self.width or h <= 0 or w <= 0:
            raise ValueError(f"photo {h}x{w} does not fit the {self.height}x{self.width} canvas")
        pose = np.asarray(pose, np.float64)
        rot = _rotation(pose)
        d = float(pose[3])
        k = photo_intrinsics(pose, (h, w))
        cam = self._camera_node.camera
        cam.fx, cam.fy, cam.cx, cam.cy = -k[0, 0], k[1, 1], k[0, 2], k[1, 2]
        radius = float(np.linalg.norm(mesh.vertices, axis=1).max()) + 1e-3
        cam.znear, cam.zfar = max(d - radius, 1e-3) * 0.9, d + radius + 0.1
        cam_to_world = camera_pose(rot, d)
        self._scene.set_pose(self._camera_node, cam_to_world)

        # Materials: the random paint on the body, fixed-looking materials on the other parts.
        pm = self._pyrender_mesh(mesh, parts)
        colour = _random_colour(rng, category)
        metallic = float(rng.uniform(0.0, 0.9))
        material = self._pr.MetallicRoughnessMaterial(
            doubleSided=True,
            baseColorFactor=np.append(colour, 1.0),
            metallicFactor=metallic,
            roughnessFactor=float(rng.uniform(0.15, 0.8)),
        )
        if self._node is not None:
            self._scene.remove_node(self._node)
        self._node = self._scene.add(pm)

        # Lights, directions drawn in camera coordinates (camera looks along -Z, +Y up).
        cam_rot = cam_to_world[:3, :3]
        key_dir = np.array([rng.uniform(-1, 1), rng.uniform(0.2, 1.2), rng.uniform(0.3, 1.2)])
        fill_dir = np.array([rng.uniform(-1, 1), rng.uniform(-0.3, 0.6), rng.uniform(0.2, 1.0)])
        tint = lambda: np.clip(1 + rng.normal(0, 0.06, 3), 0.8, 1.0)  # noqa: E731
        self._key.light.color, self._key.light.intensity = tint(), float(rng.uniform(1.5, 5.0))
        self._fill.light.color, self._fill.light.intensity = tint(), float(rng.uniform(0.2, 1.5))
        self._scene.set_pose(self._key, _look_from(cam_rot @ key_dir))
        self._scene.set_pose(self._fill, _look_from(cam_rot @ fill_dir))
        point = np.eye(4)
        point[:3, 3] = cam_to_world[:3, 3] + cam_rot @ (rng.normal(0, 0.5, 3) * d * 0.5)
        self._point.light.color = tint()
        self._point.light.intensity = float(rng.uniform(0.0, 3.0) * max(d, 0.5) ** 2)
        self._scene.set_pose(self._point, point)
        self._scene.ambient_light = np.clip(rng.uniform(0.15, 0.45) * tint(), 0, 1)

        bg = random_background(rng, h, w) if background is None else np.asarray(background, np.uint8)
        if bg.shape != (h, w, 3):
            raise ValueError(f"background must be ({h}, {w}, 3), got {bg.shape}")
        std = float(rng.uniform(0, 4)) if noise_std is None else float(noise_std)
        noise = rng.normal(0, std, (h, w, 3)).astype(np.float32) if std > 0 else None
        # The trim's material is drawn last, so paint, lights, background and noise are the
        # same draws with or without parts.
        pm.primitives[0].material = material
        if len(pm.primitives) > 1:
            pm.primitives[1].material = self._pr.MetallicRoughnessMaterial(
                doubleSided=True,
                baseColorFactor=np.ones(4),  # times the parts' vertex colours
                metallicFactor=float(rng.uniform(0.0, 0.3)),
                roughnessFactor=float(rng.uniform(0.2, 0.5)),
            )

        # Mesa's OSMesa context (llvmpipe) keeps ~3 MB per draw call until the context is
        # destroyed (measured: 1 primitive at 256x256, 3.2 MB/render), so a long build would
        # run out of memory: start a fresh context every CONTEXT_DRAWS draw calls.
        self._draws_in_context += len(pm.primitives)
        if self._draws_in_context > CONTEXT_DRAWS:
            self._renderer.delete()
            self._renderer = self._pr.OffscreenRenderer(self.width, self.height)
            self._draws_in_context = len(pm.primitives)
        color, depth = self._renderer.render(self._scene, flags=self._pr.RenderFlags.SKIP_CULL_FACES)
        color, depth = color[:h, :w], depth[:h, :w]
        mask = depth > 0
        out = np.where(mask[..., None], color[..., :3], bg).astype(np.float32)
        if noise is not None:
            out += noise
        photo = np.clip(np.round(out), 0, 255).astype(np.uint8)
        return (photo, mask) if return_mask else photo


_RENDERERS: collections.OrderedDict[tuple[int, int], PhotoRenderer] = collections.OrderedDict()
_MAX_RENDERERS = 3


def render_photo(
    mesh: Mesh,
    pose: np.ndarray,
    image_hw: tuple[int, int],
    rng: np.random.Generator,
    **kwargs,
):
    """Renders one synthetic photo with a cached :class:`PhotoRenderer` (see its ``render``).

    Args:
      mesh: the object. pose: ``(7,)`` release pose. image_hw: photo ``(H, W)``.
      rng: randomness of the appearance. kwargs: ``category``, ``background``,
        ``noise_std``, ``return_mask`` of :meth:`PhotoRenderer.render`.

    Returns:
      ``(H, W, 3)`` uint8 (and the ``(H, W)`` bool mask with ``return_mask=True``).
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    key = (photo_canvas_side(h), photo_canvas_side(w))
    r = _RENDERERS.get(key)
    if r is None:
        r = _RENDERERS[key] = PhotoRenderer(*key)
        while len(_RENDERERS) > _MAX_RENDERERS:
            _, old = _RENDERERS.popitem(last=False)
            old.close()
    else:
        _RENDERERS.move_to_end(key)
    return r.render(mesh, pose, (h, w), rng, **kwargs)
