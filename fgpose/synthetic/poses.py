"""Pose and photo-size distributions for synthetic data, fitted to the release's annotations.

Pose prior
----------
Per category (``'car'``: StanfordCars v2 + CompCars v1 train annotations; ``'airplane'``:
FGVC_Aircraft v2 train) a **Gaussian copula** is fitted to the 7 release parameters,
transformed to

    azimuth mod 2 pi,  elevation and theta wrapped to [-pi, pi),  log(f / distance),  log(f),  u,  v

(``f, u, v`` in pixels of the width-300 annotation frame, i.e. already scaled by the photo
width; ``v`` is kept in those pixels because the real photos' heights are not in the
release). Each marginal is stored as an empirical quantile table (:data:`PosePrior.probs`,
0.2 % ... 99.8 %: the extreme 0.2 % tails of the release — e.g. ``f = 22917`` with
``d = 60``, "orthographic" annotations — are clamped to those quantiles) and the dependence
as the correlation matrix of the normal scores ``Phi^-1(rank / (N + 1))``. The image scale
``f / d`` (pixels per model unit, i.e. the object's size in the photo) is modelled directly
— ``f`` and ``d`` are strongly and non-linearly coupled in the release (a copula on
``log d, log f`` spreads ``f/d`` three times too wide) — and ``d = f / exp(log_scale)``.
Sampling draws ``z ~ N(0, C)`` and maps ``Phi(z)`` through the quantile tables (linear
interpolation). The fitted tables ship as package data, ``fgpose/synthetic/pose_prior.json``
(:data:`PRIOR_FILE`, written by ``scripts/fit_pose_prior.py`` through :func:`priors_to_json`)
— no annotations are needed at run time.

Photo sizes and rejection
-------------------------
:func:`sample_poses` draws poses for given original photo sizes ``(H, W)`` and rejects
(re-draws) those whose projected object box — the box of the projected ``points``
(:func:`extent_points` of the mesh, i.e. its silhouette's box; default: those of a typical
procedural mesh of the category, :func:`default_points`) — is not in front of the
camera, lies less than ``min_visible`` inside the photo, or is smaller than ``min_size`` of
the photo's longer side. ``f, u, v`` of the result are in width-300 pixels whatever the
photo size (release convention); ``P`` in original pixels is
``camera.projection_matrix(pose, int(H*300/W), image_size=(H, W))``.
:func:`sample_image_hw` draws release-like photo sizes from :data:`IMAGE_SIZES`.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
from typing import Mapping, Sequence

import jax.numpy as jnp
import numpy as np
from scipy import special

from fgpose import camera
from fgpose.buckets import pow2_sample_count

__all__ = [
    "default_points",
    "extent_points",
    "IMAGE_SIZES",
    "PRIOR_VARIABLES",
    "PRIOR_FILE",
    "PosePrior",
    "default_prior",
    "fit_prior",
    "from_prior_space",
    "priors_from_json",
    "priors_to_json",
    "projected_boxes",
    "sample_image_hw",
    "sample_poses",
    "to_prior_space",
]

PRIOR_VARIABLES = ("azimuth", "elevation", "theta", "log_scale", "log_f", "u", "v")
"""The copula's variables, in pose order (see the module docstring)."""

PROBS = np.concatenate([[0.002], np.linspace(0.005, 0.995, 199), [0.998]])
"""Probabilities at which the marginal quantile tables are stored (201 values)."""

IMAGE_SIZES = {
    # StanfordCars / CompCars web photos: ~300-1300 px wide, 4:3 .. 16:9 (and 3:2). The first
    # two are the release's own photos (cars_train/00001.jpg 600x400 and CompCars
    # 100/213/2010/27bb6c344896a5.jpg 908x626); weights favour the common 640/800 sizes.
    "car": (
        ((400, 600), 3), ((626, 908), 2), ((480, 640), 4), ((600, 800), 3), ((768, 1024), 2),
        ((375, 500), 2), ((427, 640), 3), ((533, 800), 2), ((576, 1024), 1), ((720, 1280), 1),
        ((300, 400), 1), ((466, 700), 2), ((360, 640), 1), ((683, 1024), 2), ((240, 320), 1),
    ),
    # FGVC-Aircraft: photos ~ 800-1600 px wide with the 20-px copyright banner removed; the
    # release's 0034309.jpg is 900x687.
    "airplane": (
        ((687, 900), 3), ((668, 1024), 3), ((748, 1024), 2), ((580, 900), 2), ((780, 1200), 2),
        ((533, 800), 2), ((833, 1280), 2), ((600, 900), 2), ((1044, 1600), 1), ((662, 1000), 2),
    ),
}
"""Release-like original photo sizes ``((H, W), weight)`` per category."""


# ----------------------------------------------------------------------------- transforms


def _wrap_pi(x: np.ndarray) -> np.ndarray:
    return (np.asarray(x, np.float64) + np.pi) % (2 * np.pi) - np.pi


def to_prior_space(poses: np.ndarray) -> np.ndarray:
    """``(N, 7)`` release poses -> ``(N, 7)`` copula variables (:data:`PRIOR_VARIABLES`)."""
    p = np.asarray(poses, np.float64)
    return np.stack(
        [
            np.mod(p[:, 0], 2 * np.pi),
            _wrap_pi(p[:, 1]),
            _wrap_pi(p[:, 2]),
            np.log(p[:, 4] / p[:, 3]),
            np.log(p[:, 4]),
            p[:, 5],
            p[:, 6],
        ],
        -1,
    )


def from_prior_space(x: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_prior_space` (angles stay wrapped)."""
    x = np.asarray(x, np.float64)
    f = np.exp(x[:, 4])
    return np.stack([x[:, 0], x[:, 1], x[:, 2], f / np.exp(x[:, 3]), f, x[:, 5], x[:, 6]], -1)


# ----------------------------------------------------------------------------- prior


@dataclasses.dataclass(frozen=True)
class PosePrior:
    """A fitted Gaussian-copula pose prior (see the module docstring).

    Attributes:
      category: ``'car'`` or ``'airplane'``.
      probs: ``(Q,)`` increasing probabilities of the quantile tables.
      quantiles: ``(7, Q)`` quantiles of each :data:`PRIOR_VARIABLES` variable.
      correlation: ``(7, 7)`` correlation of the normal scores.
      num_samples: number of annotations it was fitted to.
      sources: description of the annotation files used.
    """

    category: str
    probs: np.ndarray
    quantiles: np.ndarray
    correlation: np.ndarray
    num_samples: int = 0
    sources: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """JSON-able dict (exact floats: the quantile tables have point masses, e.g. the
        release's default ``f = 200 sqrt(3)``, which rounding would shift off the data)."""
        r = lambda a: [float(v) for v in np.ravel(a)]  # noqa: E731
        return {
            "category": self.category,
            "probs": r(self.probs),
            "quantiles": {k: r(q) for k, q in zip(PRIOR_VARIABLES, self.quantiles)},
            "correlation": [r(row) for row in self.correlation],
            "num_samples": int(self.num_samples),
            "sources": list(self.sources),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "PosePrior":
        return cls(
            category=str(d["category"]),
            probs=np.asarray(d["probs"], np.float64),
            quantiles=np.stack([np.asarray(d["quantiles"][k], np.float64) for k in PRIOR_VARIABLES]),
            correlation=np.asarray(d["correlation"], np.float64),
            num_samples=int(d.get("num_samples", 0)),
            sources=tuple(d.get("sources", ())),
        )

    def sample_raw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``(n, 7)`` float64 release poses from the copula, without any rejection."""
        chol = np.linalg.cholesky(self.correlation + 1e-9 * np.eye(7))
        z = rng.standard_normal((n, 7)) @ chol.T
        u = np.clip(special.ndtr(z), self.probs[0], self.probs[-1])
        x = np.stack([np.interp(u[:, i], self.probs, self.quantiles[i]) for i in range(7)], -1)
        return from_prior_space(x)


def fit_prior(poses: np.ndarray, category: str, sources: Sequence[str] = (), probs: np.ndarray = PROBS) -> PosePrior:
    """Fits a :class:`PosePrior` to ``(N, 7)`` release poses (any wrapping of the angles)."""
    x = to_prior_space(poses)
    n = len(x)
    if n < 10:
        raise ValueError(f"need at least 10 poses to fit a prior, got {n}")
    quantiles = np.stack([np.quantile(x[:, i], probs) for i in range(7)])
    ranks = np.argsort(np.argsort(x, axis=0, kind="stable"), axis=0, kind="stable") + 1
    scores = special.ndtri(ranks / (n + 1))
    corr = np.corrcoef(scores, rowvar=False)
    return PosePrior(category, np.asarray(probs, np.float64), quantiles, corr, n, tuple(sources))


PRIOR_FILE = "pose_prior.json"
"""Package data of :mod:`fgpose.synthetic` holding the fitted priors (:func:`priors_to_json`)."""


def priors_to_json(priors: Mapping[str, PosePrior]) -> str:
    """The text of :data:`PRIOR_FILE`: ``{category: PosePrior.to_dict()}`` as JSON.

    JSON writes each float as its shortest round-tripping repr, so :func:`priors_from_json`
    gives back the very same float64 values.
    """
    return json.dumps({k: p.to_dict() for k, p in priors.items()}, indent=1, sort_keys=True) + "\n"


def priors_from_json(text: str) -> dict[str, PosePrior]:
    """Inverse of :func:`priors_to_json`: ``{category: PosePrior}``."""
    return {k: PosePrior.from_dict(d) for k, d in json.loads(text).items()}


_DEFAULT: dict[str, PosePrior] = {}


def default_prior(category: str) -> PosePrior:
    """The shipped prior of a category (read once from :data:`PRIOR_FILE`)."""
    if category not in ("car", "airplane"):
        raise ValueError(f"unknown category {category!r}; expected 'car' or 'airplane'")
    if not _DEFAULT:
        text = importlib.resources.files("fgpose.synthetic").joinpath(PRIOR_FILE).read_text(encoding="utf-8")
        _DEFAULT.update(priors_from_json(text))
    return _DEFAULT[category]


# ----------------------------------------------------------------------------- sampling


def _as_hw(image_hw, n: int) -> np.ndarray:
    hw = np.asarray(image_hw)
    if hw.shape == (2,):
        hw = np.broadcast_to(hw, (n, 2))
    if hw.shape != (n, 2):
        raise ValueError(f"image_hw must be (2,) or ({n}, 2), got {hw.shape}")
    if np.any(hw <= 0):
        raise ValueError("image sizes must be positive")
    return hw.astype(np.int64)


def _box_corners(bounds: np.ndarray) -> np.ndarray:
    """``(..., 2, 3)`` bounds -> ``(..., 8, 3)`` corners."""
    b = np.asarray(bounds, np.float64)
    sel = np.array([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)])
    return np.stack([b[..., sel[:, k], k] for k in range(3)], -1)


def default_points(category: str) -> np.ndarray:
    """``(P, 3)`` default extent points of a category: the convex-hull vertices of its
    first procedural mesh (``class_mesh(category, 0)``: a sedan / an airliner)."""
    if category not in _POINTS:
        from scipy.spatial import ConvexHull  # noqa: PLC0415

        from fgpose.synthetic.shapes import class_mesh  # noqa: PLC0415

        v = class_mesh(category, 0).vertices.astype(np.float64)
        _POINTS[category] = v[ConvexHull(v).vertices]
    return _POINTS[category]


_POINTS: dict[str, np.ndarray] = {}


def extent_points(mesh_or_bounds) -> np.ndarray:
    """Points whose projections bound a mesh's silhouette: its convex-hull vertices
    (for a :class:`fgpose.mesh.Mesh`) or the 8 corners of a ``(2, 3)`` box."""
    if hasattr(mesh_or_bounds, "vertices"):
        from scipy.spatial import ConvexHull  # noqa: PLC0415

        v = np.asarray(mesh_or_bounds.vertices, np.float64)
        return v[ConvexHull(v).vertices]
    return _box_corners(mesh_or_bounds)


def projected_boxes(
    poses: np.ndarray, image_hw, points: np.ndarray | None = None, category: str = "car"
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes of projected object points in original-photo pixels.

    Args:
      poses: ``(n, 7)`` release poses.
      image_hw: ``(2,)`` or ``(n, 2)`` original photo sizes ``(H, W)``.
      points: ``(P, 3)`` or ``(n, P, 3)`` model-space points (e.g. :func:`extent_points` of
        the mesh: then the box is the silhouette's box); default
        :func:`default_points` ``(category)``.

    Returns:
      ``(boxes (n, 4) float64 (y0, x0, y1, x1), unclipped; in_front (n,) bool)`` —
      ``in_front`` is False when a point is closer than 0.02 model units to the camera
      plane (then the box is meaningless).
    """
    poses = np.asarray(poses, np.float64)
    n = len(poses)
    hw = _as_hw(image_hw, n)
    pts = default_points(category) if points is None else np.asarray(points, np.float64)
    fh = camera.annotation_frame_height(hw[:, 1], hw[:, 0])
    proj = camera.projection_matrix(
        camera.Pose.from_array(jnp.asarray(poses, jnp.float32)), jnp.asarray(fh, jnp.float32),
        image_size=(jnp.asarray(hw[:, 0], jnp.float32), jnp.asarray(hw[:, 1], jnp.float32)),
    )
    if pts.ndim == 2:
        pts = pts[None]
    xy, depth = camera.project_points(proj, jnp.asarray(pts, jnp.float32))
    xy, depth = np.asarray(xy, np.float64), np.asarray(depth, np.float64)
    in_front = np.all(depth > 0.02, axis=1)
    xy = np.where(in_front[:, None, None], xy, 0.0)
    boxes = np.stack([xy[:, :, 1].min(1), xy[:, :, 0].min(1), xy[:, :, 1].max(1), xy[:, :, 0].max(1)], -1)
    return boxes, in_front


def _acceptable(boxes, in_front, hw, min_visible: float, min_size: float) -> np.ndarray:
    h, w = hw[:, 0].astype(np.float64), hw[:, 1].astype(np.float64)
    y0, x0, y1, x1 = (np.clip(boxes[:, 0], 0, h), np.clip(boxes[:, 1], 0, w), np.clip(boxes[:, 2], 0, h), np.clip(boxes[:, 3], 0, w))
    area = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    inside = np.maximum(y1 - y0, 0) * np.maximum(x1 - x0, 0)
    frac = inside / np.maximum(area, 1e-9)
    size = np.maximum(y1 - y0, x1 - x0) / np.maximum(h, w)
    return in_front & (frac >= min_visible) & (size >= min_size)


def sample_poses(
    rng: np.random.Generator,
    n: int,
    category: str,
    image_hw,
    *,
    points: np.ndarray | None = None,
    min_visible: float = 0.6,
    min_size: float = 0.15,
    prior: PosePrior | None = None,
    max_rounds: int = 100,
) -> np.ndarray:
    """Draws release-like poses for photos of given sizes.

    Args:
      rng: NumPy generator (the result is a pure function of its state and the arguments).
      n: number of poses.
      category: ``'car'`` or ``'airplane'`` (selects the embedded prior and default points).
      image_hw: original photo size(s) ``(H, W)``: ``(2,)`` or ``(n, 2)`` ints.
      points: object extent points for the rejection test, ``(P, 3)`` or ``(n, P, 3)`` model
        units (e.g. :func:`extent_points` of the mesh; default :func:`default_points`).
      min_visible: minimum fraction of the projected box's area inside the photo.
      min_size: minimum longer side of the (clipped) projected box, as a fraction of the
        photo's longer side.
      prior: a :class:`PosePrior` (default :func:`default_prior` ``(category)``).
      max_rounds: re-draw rounds for rejected poses; if some are still rejected after that,
        ``RuntimeError`` (the size/box combination is unreachable).

    Returns:
      ``(n, 7)`` float64 poses (azimuth, elevation, theta, distance, f, u, v): radians with
      azimuth in ``[0, 2 pi)`` and elevation/theta in ``[-pi, pi)``; distance in model units;
      ``f, u, v`` in pixels of the width-300 annotation frame of each photo (release
      convention, independent of the photo size).
    """
    prior = default_prior(category) if prior is None else prior
    hw = _as_hw(image_hw, n)
    b = None if points is None else np.asarray(points, np.float64)
    if b is not None and b.ndim == 3 and b.shape[0] != n:
        raise ValueError(f"points must be (P, 3) or ({n}, P, 3), got {b.shape}")
    out = np.zeros((n, 7), np.float64)
    todo = np.arange(n)
    for _ in range(max_rounds):
        if todo.size == 0:
            break
        # Candidates in power-of-two batches (few distinct shapes for the eager JAX
        # projection); candidate j is tried for slot todo[j % len(todo)].
        m = pow2_sample_count(todo.size)
        slot = np.arange(m) % todo.size
        cand = prior.sample_raw(rng, m)
        bb = None if b is None else (b if b.ndim == 2 else b[todo[slot]])
        boxes, front = projected_boxes(cand, hw[todo[slot]], bb, category)
        ok = _acceptable(boxes, front, hw[todo[slot]], min_visible, min_size)
        first = np.full(todo.size, -1)
        okj = np.nonzero(ok)[0][::-1]
        first[slot[okj]] = okj  # reversed assignment keeps the first accepted candidate
        done = first >= 0
        out[todo[done]] = cand[first[done]]
        todo = todo[~done]
    if todo.size:
        raise RuntimeError(f"{todo.size} poses still rejected after {max_rounds} rounds; relax min_visible/min_size")
    return out


def sample_image_hw(rng: np.random.Generator, n: int, category: str, max_side: int | None = None) -> np.ndarray:
    """Release-like original photo sizes.

    Args:
      rng: NumPy generator.
      n: number of sizes.
      category: ``'car'`` or ``'airplane'`` (:data:`IMAGE_SIZES`).
      max_side: if given, sizes whose longer side exceeds it are scaled down (aspect kept,
        rounded, at least 1) so that the longer side is ``max_side``.

    Returns:
      ``(n, 2)`` int64 ``(H, W)``.
    """
    if category not in IMAGE_SIZES:
        raise ValueError(f"unknown category {category!r}; expected 'car' or 'airplane'")
    sizes = np.array([s for s, _ in IMAGE_SIZES[category]], np.float64)
    weights = np.array([w for _, w in IMAGE_SIZES[category]], np.float64)
    hw = sizes[rng.choice(len(sizes), size=n, p=weights / weights.sum())]
    if max_side is not None:
        scale = np.minimum(1.0, float(max_side) / hw.max(axis=1))
        hw = np.maximum(np.round(hw * scale[:, None]), 1)
    return hw.astype(np.int64)
