"""Algorithm 1 as the published loop: plain Python/NumPy, one pose at a time.

This is the reference implementation of the greedy search for tests (its decisions can be
compared step by step with the jitted :func:`fgpose.refine.search.refine`) and the baseline
for benchmarks (one OpenGL render per candidate pose, as the released code did).

The schedules, tie rules and stopping rules are exactly those documented in
:mod:`fgpose.refine.search`:

* ``paper``: for each parameter ``i`` in the order a, e, theta, d, f, u, v render
  ``p_i + alpha*eps_i`` and ``p_i - alpha*eps_i`` and keep the best of (current, +, -);
  ties prefer the current pose, then ``+``. After a sweep (7 parameters) without a move,
  ``alpha`` is halved; the search stops once ``alpha < alpha_min``.
* ``release``: the same sweeps with a fixed ``alpha``; ties prefer a move over the current
  pose and ``+`` over ``-``; the search stops after the first sweep without a move.
* ``parallel``: the 14 moves are rendered at once and the best (first maximum in the order
  a+, a-, e+, e-, ...) is taken if it strictly improves the IoU; otherwise ``alpha`` is
  halved as in ``paper``. One step counts as one sweep.

Every schedule also stops after ``max_sweeps`` sweeps (parallel steps).

Arithmetic follows the jitted version so that decisions agree: the pose is float32, a
move is ``p_i +- np.float32(alpha * eps_i)`` computed in float32, ``alpha`` is float32 and
halved in float32, and the IoU is ``np.float32(inter) / np.float32(union)`` (0 for an
empty union).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, NamedTuple

import numpy as np

from fgpose import camera
from fgpose.refine.search import DEFAULT_STEPS, SCHEDULES

SilhouetteFn = Callable[[np.ndarray], np.ndarray]
"""``render_silhouette(params) -> mask``: ``params`` is a ``(7,)`` float32 pose in
``POSE_FIELDS`` order, ``mask`` an ``(H, 300)`` bool silhouette in the annotation frame."""


class Move(NamedTuple):
    """One accepted move.

    Attributes:
      sweep: 0-based sweep (or parallel step) in which it was taken.
      param: index into ``POSE_FIELDS`` (0 = azimuth ... 6 = v).
      sign: ``+1`` or ``-1``.
      alpha: the step multiplier at the time (the move is ``sign * alpha * eps[param]``).
      iou: the IoU after the move.
    """

    sweep: int
    param: int
    sign: int
    alpha: float
    iou: float


class Step(NamedTuple):
    """One search step (a parameter of a sequential sweep, or one parallel step).

    Attributes:
      sweep: 0-based sweep (or parallel step).
      param: the parameter tried (``-1`` for a parallel step, which tries all 7).
      alpha: the step multiplier.
      candidate_ious: float32 IoUs of the candidates: ``(2,)`` ``[+, -]`` for a sequential
        step, ``(14,)`` in the order a+, a-, e+, e-, ... for a parallel step.
      iou: the current IoU after the step (unchanged when no move was taken).
    """

    sweep: int
    param: int
    alpha: float
    candidate_ious: np.ndarray
    iou: float


@dataclasses.dataclass(frozen=True)
class BaselineResult:
    """Outcome of :func:`refine_one` for one image.

    Attributes:
      params: ``(7,)`` float32 refined pose in ``POSE_FIELDS`` order (radians, model units,
        pixels of the width-300 annotation frame).
      iou: final IoU (float32 value as a Python float); initial_iou: IoU at ``pose0``.
      sweeps: sweeps run (a ``parallel`` step counts as a sweep).
      moves: number of accepted moves.
      alpha: final step multiplier.
      renders: silhouettes rendered (1 for the start, then 2 per sequential step or 14 per
        parallel step).
      history: with ``record=True``, the accepted moves in order (:class:`Move`), else None.
      steps: with ``record=True``, every step (:class:`Step`) in order, else None.
    """

    params: np.ndarray
    iou: float
    initial_iou: float
    sweeps: int
    moves: int
    alpha: float
    renders: int
    history: list[Move] | None = None
    steps: list[Step] | None = None


def iou(mask: np.ndarray, reference: np.ndarray) -> np.float32:
    """IoU of two same-shape boolean masks as float32 (``inter / union``; 0 if the union is empty)."""
    a = np.asarray(mask, bool)
    b = np.asarray(reference, bool)
    if a.shape != b.shape:
        raise ValueError(f"silhouette shape {a.shape} differs from the reference's {b.shape}")
    inter = np.count_nonzero(a & b)
    union = np.count_nonzero(a | b)
    if union == 0:
        return np.float32(0.0)
    return np.float32(inter) / np.float32(union)


def refine_one(
    render_silhouette: SilhouetteFn,
    pose0,
    reference: np.ndarray,
    *,
    schedule: str = "paper",
    steps=DEFAULT_STEPS,
    alpha0: float = 1.0,
    alpha_min: float = 0.125,
    max_sweeps: int = 50,
    record: bool = False,
) -> BaselineResult:
    """Refines one annotation with the greedy search of Algorithm 1.

    Args:
      render_silhouette: any single-pose renderer ``params (7,) float32 -> (H, 300) bool``
        (e.g. :func:`pyrender_silhouette_fn` or :func:`raster_silhouette_fn`).
      pose0: the starting pose, ``(7,)`` in ``POSE_FIELDS`` order (a, e, theta in radians,
        d in model units, f, u, v in pixels of the width-300 annotation frame), or a scalar
        :class:`fgpose.camera.Pose`; converted to float32.
      reference: ``(H, 300)`` bool reference mask in the image's annotation frame
        (``H = int(H_photo * 300 / W_photo)``; see :func:`fgpose.refine.to_annotation_frame`).
      schedule: ``paper``, ``release`` or ``parallel`` (module docstring).
      steps: the 7 step sizes eps (radians, radians, radians, model units, px, px, px).
      alpha0: initial step multiplier; alpha_min: ``paper``/``parallel`` stop once alpha
        has been halved below it.
      max_sweeps: bound on sweeps (parallel steps).
      record: keep the accepted moves and every step's candidate IoUs.

    Returns:
      :class:`BaselineResult`.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if len(steps) != 7 or any(not (s > 0 and math.isfinite(s)) for s in steps):
        raise ValueError(f"steps must be 7 positive finite numbers (a, e, theta, d, f, u, v), got {steps}")
    if not alpha0 > 0 or not alpha_min > 0:
        raise ValueError(f"alpha0 and alpha_min must be positive, got {alpha0}, {alpha_min}")
    if max_sweeps < 1:
        raise ValueError(f"max_sweeps must be at least 1, got {max_sweeps}")
    if isinstance(pose0, camera.Pose):
        pose0 = pose0.as_array()
    params = np.array(pose0, dtype=np.float32).reshape(-1)
    if params.shape != (7,):
        raise ValueError(f"pose0 must have 7 parameters, got shape {np.shape(pose0)}")
    reference = np.asarray(reference, bool)
    if reference.ndim != 2 or reference.shape[1] != camera.ANNOTATION_WIDTH:
        raise ValueError(f"reference must be (H, {camera.ANNOTATION_WIDTH}), got {reference.shape}")

    eps = np.asarray(steps, np.float32)
    alpha = np.float32(alpha0)
    alpha_min32 = np.float32(alpha_min)
    renders = 0

    def evaluate(p: np.ndarray) -> np.float32:
        nonlocal renders
        renders += 1
        return iou(render_silhouette(p), reference)

    def candidate(i: int, sign: int) -> np.ndarray:
        p = params.copy()
        delta = np.float32(alpha * eps[i])
        p[i] = params[i] + delta if sign > 0 else params[i] - delta
        return p

    current = evaluate(params)
    initial = current
    sweeps = moves = 0
    history: list[Move] | None = [] if record else None
    trace: list[Step] | None = [] if record else None

    while True:
        changed = False
        if schedule == "parallel":
            cands = [candidate(i, s) for i in range(7) for s in (1, -1)]
            ious = np.array([evaluate(c) for c in cands], np.float32)
            best = int(np.argmax(ious))  # first maximum: earlier parameter, + before -
            if ious[best] > current:
                params, current, changed = cands[best], ious[best], True
                moves += 1
                if record:
                    history.append(Move(sweeps, best // 2, 1 if best % 2 == 0 else -1, float(alpha), float(current)))
            if record:
                trace.append(Step(sweeps, -1, float(alpha), ious, float(current)))
        else:
            for i in range(7):
                plus, minus = candidate(i, 1), candidate(i, -1)
                iou_p, iou_m = evaluate(plus), evaluate(minus)
                take_plus = iou_p >= iou_m
                best_iou = iou_p if take_plus else iou_m
                better = best_iou >= current if schedule == "release" else best_iou > current
                if better:
                    params, current, changed = (plus if take_plus else minus), best_iou, True
                    moves += 1
                    if record:
                        history.append(Move(sweeps, i, 1 if take_plus else -1, float(alpha), float(current)))
                if record:
                    trace.append(Step(sweeps, i, float(alpha), np.array([iou_p, iou_m], np.float32), float(current)))
        sweeps += 1
        if schedule == "release":
            finished = not changed
        else:
            finished = False
            if not changed:
                alpha = np.float32(alpha * np.float32(0.5))
                finished = bool(alpha < alpha_min32)
        if finished or sweeps >= max_sweeps:
            break

    return BaselineResult(
        params=params,
        iou=float(current),
        initial_iou=float(initial),
        sweeps=sweeps,
        moves=moves,
        alpha=float(alpha),
        renders=renders,
        history=history,
        steps=trace,
    )


# ----------------------------------------------------------------------------- renderers


def pyrender_silhouette_fn(renderer, frame_height: int) -> SilhouetteFn:
    """Single-pose OpenGL silhouettes through :class:`fgpose.pyrender_backend.PyrenderRenderer`.

    Args:
      renderer: a ``PyrenderRenderer(frame_height, 300)`` whose mesh is already uploaded
        (:meth:`~fgpose.pyrender_backend.PyrenderRenderer.set_mesh`); only the camera moves.
      frame_height: the annotation frame's height ``h`` (pixels).

    Returns:
      ``fn(params (7,)) -> (h, 300) bool``: ``depth > 0`` of the render with ``R`` and ``K``
      from :mod:`fgpose.camera` (``u' = u + 150``, ``v' = v + h/2``).
    """
    h = int(frame_height)
    if (renderer.height, renderer.width) != (h, camera.ANNOTATION_WIDTH):
        raise ValueError(
            f"renderer is {renderer.height}x{renderer.width}, expected the annotation frame {h}x{camera.ANNOTATION_WIDTH}"
        )

    def render(params: np.ndarray) -> np.ndarray:
        pose = camera.Pose.from_array(np.asarray(params, np.float32).reshape(7))
        rotation = np.asarray(pose.rotation(), np.float64)
        k = np.asarray(camera.intrinsics(pose, h), np.float64)
        return renderer.render_depth(rotation, float(pose.distance), k) > 0

    return render


def raster_silhouette_fn(vertices, faces, frame_height: int, *, face_mask=None) -> SilhouetteFn:
    """Single-pose silhouettes with :func:`fgpose.raster.silhouette`, jit-compiled once.

    The projection is computed exactly as in the jitted search
    (``camera.projection_matrix`` of the float32 params with a float32 frame height).

    Args:
      vertices: ``(V, 3)`` float32 model-space vertices; faces: ``(F, 3)`` int32;
        face_mask: optional ``(F,)`` bool (padded faces).
      frame_height: the annotation frame's height ``h`` (pixels).

    Returns:
      ``fn(params (7,)) -> (h, 300) bool`` (a NumPy array).
    """
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    from fgpose import raster  # noqa: PLC0415

    h = int(frame_height)
    verts = jnp.asarray(vertices, jnp.float32)
    tris = jnp.asarray(faces, jnp.int32)
    fmask = jnp.ones(tris.shape[:-1], bool) if face_mask is None else jnp.asarray(face_mask, bool)

    @jax.jit
    def silhouette(verts, tris, fmask, params):
        proj = camera.projection_matrix(camera.Pose.from_array(params), jnp.float32(h))
        return raster.silhouette(verts, tris, proj, h, camera.ANNOTATION_WIDTH, face_mask=fmask)

    def render(params: np.ndarray) -> np.ndarray:
        return np.asarray(silhouette(verts, tris, fmask, jnp.asarray(params, jnp.float32)))

    return render


__all__ = [
    "BaselineResult",
    "Move",
    "SilhouetteFn",
    "Step",
    "iou",
    "pyrender_silhouette_fn",
    "raster_silhouette_fn",
    "refine_one",
]
