"""Algorithm 1 as one jitted, batched greedy search.

Objective (``SearchConfig.objective``): by default the IoU between the silhouette rendered
at a pose and a binary reference mask, both in the width-300 annotation frame of each image
(reference masks of any resolution are first resized to it with nearest neighbour:
:func:`to_annotation_frame`); robust variants (an uncertainty band around the reference
boundary, soft references, a prior anchoring the pose to the input annotation) are in
:mod:`fgpose.refine.objective`. Every schedule maximises the objective's score; the
reported ``iou`` and ``initial_iou`` are always the plain IoU with the binary reference
(a soft reference binarised at 0.5).

Reference check (``SearchConfig.min_reference_iou``): an image whose input pose's
silhouette has an IoU below this with its reference is *flagged* (reference and annotation
disagree) and left at its input pose instead of being forced onto the reference.

Schedules (``SearchConfig.schedule``), each move being ``p_i +- alpha * eps_i`` with the
parameters in the order a, e, theta, d, f, u, v (``fgpose.camera.POSE_FIELDS``):

* ``paper`` (the published Algorithm 1): for each parameter in turn render ``+`` and ``-``
  and keep the best of (current, +, -) at once; ties prefer the current pose, then ``+``.
  After a full sweep with no change, halve ``alpha``; stop when it falls below
  ``alpha_min``.
* ``release`` (what the released refinement code ran): the same sweeps with a single
  ``alpha``, stopping after the first sweep without change; ties prefer the move over the
  current pose and ``+`` over ``-``.
* ``parallel``: all 14 moves rendered in one batch per step and the best one taken if it
  improves the IoU (ties: the earlier parameter, ``+`` before ``-``); otherwise halve
  ``alpha`` as in ``paper``. One step renders as much as one sweep.

Every image has its own (padded) mesh, pose, reference mask and frame height; the whole
search runs inside one ``lax.while_loop`` with per-image convergence (finished images stop
changing, and are no longer rendered, while the others go on), bounded by ``max_sweeps``.
In ``paper`` and ``release`` a parameter already tried without a move from the current
pose at the current alpha (in the previous sweep, after the last move) is not rendered
again: the same candidates would fail again, so the moves are those of the published loop,
step for step, with fewer renders.

``SearchConfig.coarse`` > 1 runs ``paper`` or ``parallel`` coarse to fine: first on every
``coarse``-th row and column of the frame (the same pixel rays), then on the whole frame
from ``coarse_alpha`` down. Faster at the same final IoU, but not the published loop
step for step.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from fgpose import camera, raster
from fgpose.refine import objective as objective_lib

SCHEDULES = ("paper", "release", "parallel")
DEFAULT_STEPS = (math.pi / 100, math.pi / 100, math.pi / 100, 0.01, 10.0, 1.0, 1.0)
"""Default steps eps: radians for a, e, theta; model units for d; pixels (width-300 frame)
for f, u, v."""


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Search settings (hashable: they are static for jit).

    Attributes:
      schedule: ``paper``, ``release`` or ``parallel`` (module docstring).
      steps: the 7 step sizes eps in the annotation's own units (``DEFAULT_STEPS``).
      alpha0: initial step multiplier.
      alpha_min: ``paper``/``parallel`` stop once alpha has been halved below this.
      max_sweeps: bound on sweeps per image (a ``parallel`` step counts as a sweep).
      slice_size: candidate poses rendered per rasterizer call (only those of images still
        searching are rendered; the last few go ``slice_size // 8`` per call); it trades
        per-call overhead against wasted slots.
      coarse: 1, or a coarse-to-fine search: the schedule first runs on every ``coarse``-th
        row and column of the frame (the same pixel rays, ``coarse**2`` times fewer pixels)
        from ``alpha0`` until alpha falls below ``coarse_alpha``, then on the whole frame from
        ``coarse_alpha`` down to ``alpha_min``. Sweeps and moves add up over both passes and
        the history holds the coarse pass's steps, then the fine pass's; ``max_sweeps``
        bounds each pass. Not for ``release`` (it has no alpha schedule).
      coarse_alpha: the alpha at which the full-frame pass takes over.
      objective: what the search maximises: an :class:`fgpose.refine.objective.Objective`
        or its spelling (``"iou"``, ``"band:2+map"``, ...; :func:`~fgpose.refine.objective.parse_objective`),
        stored as an ``Objective``. ``"iou"`` (the default) is the published loop step for step.
      min_reference_iou: images whose input pose has a plain IoU below this with the reference
        are flagged and not refined (0 = never: the published behaviour).
    """

    schedule: str = "paper"
    steps: tuple[float, ...] = DEFAULT_STEPS
    alpha0: float = 1.0
    alpha_min: float = 0.125
    max_sweeps: int = 50
    slice_size: int = 32
    coarse: int = 1
    coarse_alpha: float = 0.25
    objective: objective_lib.Objective | str = "iou"
    min_reference_iou: float = 0.0

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if len(self.steps) != 7 or any(not (s > 0 and math.isfinite(s)) for s in self.steps):
            raise ValueError(f"steps must be 7 positive finite numbers (a, e, theta, d, f, u, v), got {self.steps}")
        object.__setattr__(self, "steps", tuple(float(s) for s in self.steps))
        if not self.alpha0 > 0 or not self.alpha_min > 0:
            raise ValueError(f"alpha0 and alpha_min must be positive, got {self.alpha0}, {self.alpha_min}")
        if self.max_sweeps < 1:
            raise ValueError(f"max_sweeps must be at least 1, got {self.max_sweeps}")
        if self.slice_size < 1:
            raise ValueError(f"slice_size must be at least 1, got {self.slice_size}")
        if self.coarse < 1:
            raise ValueError(f"coarse must be at least 1, got {self.coarse}")
        if self.coarse > 1 and self.schedule == "release":
            raise ValueError("coarse-to-fine search needs an alpha schedule: use 'paper' or 'parallel', not 'release'")
        if isinstance(self.objective, str):
            object.__setattr__(self, "objective", objective_lib.parse_objective(self.objective))
        elif not isinstance(self.objective, objective_lib.Objective):
            raise ValueError(f"objective must be an Objective or its spelling, got {self.objective!r}")
        if not 0 <= self.min_reference_iou <= 1:
            raise ValueError(f"min_reference_iou must lie in [0, 1], got {self.min_reference_iou}")
        if self.coarse > 1 and not self.alpha_min <= self.coarse_alpha <= self.alpha0:
            raise ValueError(f"coarse_alpha must lie in [alpha_min, alpha0] = [{self.alpha_min}, {self.alpha0}], "
                             f"got {self.coarse_alpha}")


@dataclasses.dataclass(frozen=True)
class RefineResult:
    """Per-image outcome (NumPy arrays, first axis = image).

    Attributes:
      poses: ``(N, 7)`` float32 refined parameters in ``POSE_FIELDS`` order.
      iou: ``(N,)`` final plain IoU with the binary reference; initial_iou: ``(N,)`` the same
        at the starting pose (how far the reference is from the input annotation).
      sweeps: ``(N,)`` sweeps (or parallel steps) run; moves: ``(N,)`` accepted moves.
      alpha: ``(N,)`` final step multiplier.
      history: ``(N, steps)`` int8, the move taken at each step: for ``paper``/``release``
        step ``7 * sweep + i`` tries parameter ``i`` and holds +1, -1 or 0 (no move); for
        ``parallel`` step ``k`` holds ``+-(i + 1)`` for the move on parameter ``i``, or 0.
      score, initial_score: ``(N,)`` the objective's final and initial score (equal to
        ``iou``/``initial_iou`` for the plain objective).
      flagged: ``(N,)`` bool, ``initial_iou < min_reference_iou``: reference and annotation
        disagree; the image was left at its input pose.
    """

    poses: np.ndarray
    iou: np.ndarray
    initial_iou: np.ndarray
    sweeps: np.ndarray
    moves: np.ndarray
    alpha: np.ndarray
    history: np.ndarray
    score: np.ndarray | None = None
    initial_score: np.ndarray | None = None
    flagged: np.ndarray | None = None


def to_annotation_frame(mask: np.ndarray, image_width: int | None = None, image_height: int | None = None) -> np.ndarray:
    """Resizes a mask to the width-300 annotation frame (nearest neighbour).

    Args:
      mask: ``(H, W)`` mask of the photo: float = foreground probabilities (kept as such),
        any other dtype = binary (nonzero = foreground).
      image_width, image_height: the photo's size when the mask has another resolution
        (default: the mask's own size).

    Returns:
      ``(int(H_photo * 300 / W_photo), 300)`` bool, or float32 for a float mask.
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    w = m.shape[1] if image_width is None else image_width
    h = m.shape[0] if image_height is None else image_height
    frame_h = camera.annotation_frame_height(w, h)
    if np.issubdtype(m.dtype, np.floating):
        return cv2.resize(m.astype(np.float32), (camera.ANNOTATION_WIDTH, frame_h), interpolation=cv2.INTER_NEAREST)
    out = cv2.resize((m != 0).astype(np.uint8), (camera.ANNOTATION_WIDTH, frame_h), interpolation=cv2.INTER_NEAREST)
    return out > 0


def mask_iou(a: jax.Array, b: jax.Array, valid: jax.Array | None = None) -> jax.Array:
    """IoU of boolean masks over their last two axes, on ``valid`` pixels only.

    Shapes ``(..., H, W)`` (``valid`` broadcastable). An empty union gives 0.
    """
    a, b = jnp.asarray(a, bool), jnp.asarray(b, bool)
    if valid is not None:
        a, b = a & valid, b & valid
    inter = jnp.sum(a & b, axis=(-2, -1))
    union = jnp.sum(a | b, axis=(-2, -1))
    return jnp.where(union > 0, inter / jnp.maximum(union, 1), 0.0).astype(jnp.float32)


def _candidate_ious(vertices, faces, face_mask, candidates, frame_heights, reference, valid_rows, active, slice_size,
                    subsample=1, score=None):
    """IoU (or another score) of the silhouettes of candidate poses with each image's reference.

    Args:
      vertices, faces, face_mask: ``(N, V, 3)``, ``(N, F, 3)``, ``(N, F)`` per-image meshes,
        or ``(V, 3)``, ``(F, 3)``, ``(F,)`` for one mesh shared by all images.
      candidates: ``(M, N, 7)`` poses, M per image; frame_heights: ``(N,)``.
      reference, valid_rows: ``(N, H, 300)`` masks; active: ``(N,)`` images still searching.
      subsample: render only every ``subsample``-th row and column of the annotation frame
        (pixel ``(i, j)`` of the render is pixel ``(s i, s j)`` of the frame, the same ray);
        ``reference`` and ``valid_rows`` are then the frame's masks subsampled likewise.
      score: optional ``score(silhouettes (B, h, w) bool, images (B,) int) -> (B,)`` used
        instead of the IoU with ``reference`` (e.g. :func:`fgpose.refine.objective.silhouette_score`).

    Returns:
      ``(M, N)`` IoUs (scores); 0 for inactive images (never used).

    Only the candidates of active images are rendered: they are put first (a stable sort)
    and a ``while_loop`` renders them ``slice_size`` at a time (``slice_size // 8`` at a time
    for the last few), so finished images cost nothing, not even the rasterizer's per-image
    fixed costs.
    """
    m, n = candidates.shape[:2]
    total = m * n
    flat_active = jnp.broadcast_to(active, (m, n)).reshape(total)
    order = jnp.argsort(~flat_active, stable=True).astype(jnp.int32)  # active candidates first
    # `total` marks an empty slot; the padding makes room for a slice starting at any live one.
    order = jnp.concatenate([order, jnp.full((slice_size,), total, jnp.int32)])
    poses = candidates.reshape(total, 7)
    height, width = reference.shape[-2:]

    def render(start, ious, size):
        idx = jax.lax.dynamic_slice(order, (start,), (size,))
        img = idx % n
        live = (idx < total) & flat_active[jnp.minimum(idx, total - 1)]
        proj = camera.projection_matrix(camera.Pose.from_array(poses[idx]), frame_heights[img].astype(poses.dtype))
        if subsample > 1:  # frame pixel centre X = s x + 0.5 <-> subsampled centre x + 0.5
            shift = 0.5 - 0.5 / subsample
            to_sub = jnp.array([[1 / subsample, 0, shift], [0, 1 / subsample, shift], [0, 0, 1]], proj.dtype)
            proj = jnp.einsum("ij,bjk->bik", to_sub, proj, precision=jax.lax.Precision.HIGHEST)
        # A zero projection puts every vertex on the camera plane: the slot draws nothing.
        proj = jnp.where(live[:, None, None], proj, 0.0)
        per_image = lambda x, nd: x[img] if x.ndim > nd else x  # noqa: E731
        sil = raster.silhouette(per_image(vertices, 2), per_image(faces, 2), proj, height, width,
                                face_mask=per_image(face_mask, 1))
        iou = mask_iou(sil, reference[img], valid_rows[img]) if score is None else score(sil, img)
        return start + size, ious.at[idx].set(iou, mode="drop")

    # Full slices while many candidates remain, then slices an eighth as large: a slot costs
    # its share of the rasterizer's set-up even when empty, so the few candidates of the
    # last images still searching should not pay for a whole slice.
    tail = max(1, slice_size // 8)

    def body(carry):
        start, ious = carry
        if tail == slice_size:
            return render(start, ious, slice_size)
        return jax.lax.cond(n_live - start > tail, lambda: render(start, ious, slice_size),
                            lambda: render(start, ious, tail))

    n_live = jnp.sum(flat_active)
    _, ious = jax.lax.while_loop(lambda c: c[0] < n_live, body, (jnp.int32(0), jnp.zeros((total,), jnp.float32)))
    return jnp.where(flat_active, ious, 0.0).reshape(m, n)


@functools.partial(jax.jit, static_argnames=("config",))
def _search(vertices, faces, face_mask, params, frame_heights, reference, coarse_mesh=None, *, config: SearchConfig):
    n = params.shape[0]
    height = reference.shape[-2]
    valid_rows = (jnp.arange(height)[None, :, None] < frame_heights[:, None, None])
    objective = config.objective
    prepared = None if objective.plain else objective_lib.prepare_reference(reference, valid_rows, objective)
    reference = (reference if reference.dtype == jnp.bool_ else reference >= 0.5) & valid_rows

    def per_image(v, f, fm):
        if v.ndim == 3 or f.ndim == 3 or fm.ndim == 2:  # per-image meshes
            return (jnp.broadcast_to(v, (n,) + v.shape[-2:]), jnp.broadcast_to(f, (n,) + f.shape[-2:]),
                    jnp.broadcast_to(fm, (n,) + fm.shape[-1:]))
        return v, f, fm

    def evaluator(sub, mesh, plain=objective.plain):
        ref_sub, rows_sub = reference[:, ::sub, ::sub], valid_rows[:, ::sub]  # once, outside the loops
        score = None
        if not plain and (objective.soft or objective.offset):
            prep = prepared.subsampled(sub)
            score_fn = objective_lib.offset_score if objective.offset else objective_lib.silhouette_score

            def score(sil, img):
                return score_fn(sil, prep, img)
        elif not plain and objective.band > 0:  # binary masks: the plain IoU on the pixels outside the band
            rows_sub = prepared.weight[:, ::sub, ::sub]

        def evaluate(cands, active):  # (M, N, 7) -> (M, N)
            s = _candidate_ious(*mesh, cands, frame_heights, ref_sub, rows_sub, active,
                                min(config.slice_size, cands.shape[0] * n), sub, score)
            if not plain and objective.prior_weight > 0:  # anchored to the input annotation
                s = s - objective_lib.prior_penalty(cands, params[None], objective)
            return s
        return evaluate

    everyone = jnp.ones((n,), bool)
    mesh = per_image(vertices, faces, face_mask)
    full = evaluator(1, mesh)
    plain_iou = full if objective.plain else evaluator(1, mesh, plain=True)
    iou0 = plain_iou(params[None], everyone)[0]
    score0 = iou0 if objective.plain else full(params[None], everyone)[0]
    flagged = iou0 < config.min_reference_iou  # reference and annotation disagree: not refined
    if config.coarse == 1:
        out = _greedy(full, params, score0, config.alpha0, config.alpha_min, config, flagged)
        sweeps, moves, history = out["sweeps"], out["moves"], out["history"]
    else:
        # Coarse to fine: the same schedule on every `coarse`-th pixel down to coarse_alpha,
        # then on the whole frame from there.
        coarse = evaluator(config.coarse, mesh if coarse_mesh is None else per_image(*coarse_mesh))
        first = _greedy(coarse, params, coarse(params[None], everyone)[0], config.alpha0, config.coarse_alpha, config,
                        flagged)
        score1 = full(first["params"][None], everyone)[0]
        out = _greedy(full, first["params"], score1, config.coarse_alpha, config.alpha_min, config, flagged)
        sweeps, moves = first["sweeps"] + out["sweeps"], first["moves"] + out["moves"]
        history = jnp.concatenate([first["history"], out["history"]], axis=1)
    iou = out["iou"] if objective.plain else plain_iou(out["params"][None], everyone)[0]
    return out["params"], iou, iou0, sweeps, moves, out["alpha"], history, out["iou"], score0, flagged


def _only_poses(candidates, scores):
    """``scores (..., N)`` with ``-inf`` where ``candidates (..., N, 7)`` is not a pose: a
    non-finite value, ``d <= 0`` or ``f <= 0`` (an overflowing step on an extreme record).
    Such a candidate is never accepted; finite scores of real poses are unchanged."""
    valid = jnp.all(jnp.isfinite(candidates), axis=-1) & (candidates[..., 3] > 0) & (candidates[..., 4] > 0)
    return jnp.where(valid & ~jnp.isnan(scores), scores, -jnp.inf)


def _greedy(evaluate, params, iou, alpha0, alpha_min, config, done):
    """One greedy search (module docstring) from ``params`` (N, 7) with scores ``iou`` (N,);
    images with ``done`` (N,) bool set are left as they are.

    ``evaluate(candidates (M, N, 7), active (N,)) -> (M, N)`` scores poses. Returns the final
    state: params, iou, alpha, sweeps, moves and history (N, max_sweeps x 7, or x 1 for
    ``parallel``).
    """
    n = params.shape[0]
    eps = jnp.asarray(config.steps, jnp.float32)
    state = dict(
        params=params, iou=iou, alpha=jnp.full((n,), alpha0, jnp.float32),
        changed=jnp.zeros((n,), bool), done=done, known=jnp.zeros((n, 7), bool),
        sweeps=jnp.zeros((n,), jnp.int32), moves=jnp.zeros((n,), jnp.int32), param=jnp.int32(0),
        step=jnp.int32(0),
        history=jnp.zeros((n, config.max_sweeps * (1 if config.schedule == "parallel" else 7)), jnp.int8),
    )

    def record(s, code):
        return dict(s, history=s["history"].at[:, s["step"]].set(code.astype(jnp.int8)), step=s["step"] + 1)

    def end_of_sweep(s, improved_somewhere):
        active = ~s["done"]
        sweeps = s["sweeps"] + active
        if config.schedule == "release":
            finished = ~improved_somewhere
            alpha = s["alpha"]
        else:
            halve = active & ~improved_somewhere
            alpha = jnp.where(halve, s["alpha"] * 0.5, s["alpha"])
            finished = halve & (alpha < alpha_min)
        done = s["done"] | (active & (finished | (sweeps >= config.max_sweeps)))
        known = s["known"] & (alpha == s["alpha"])[:, None]  # a new alpha makes new candidates
        return dict(s, sweeps=sweeps, alpha=alpha, done=done, changed=jnp.zeros_like(s["changed"]), known=known)

    def sequential_step(s):
        i = s["param"]
        delta = (s["alpha"] * eps[i])[:, None] * jax.nn.one_hot(i, 7, dtype=jnp.float32)[None, :]
        plus, minus = s["params"] + delta, s["params"] - delta
        # Parameter i already tried, without a move, from this very pose at this alpha (in
        # the previous sweep, after its last move): the same candidates would fail again.
        # Skipping their render changes no decision, only the work.
        tried = ~s["done"] & ~s["known"][:, i]
        iou_p, iou_m = evaluate(jnp.stack([plus, minus]), tried)
        iou_p, iou_m = _only_poses(plus, iou_p), _only_poses(minus, iou_m)
        take_plus = iou_p >= iou_m
        best_iou = jnp.where(take_plus, iou_p, iou_m)
        better = best_iou >= s["iou"] if config.schedule == "release" else best_iou > s["iou"]
        move = better & tried
        s = record(s, jnp.where(move, jnp.where(take_plus, 1, -1), 0))
        s = dict(
            s,
            params=jnp.where(move[:, None], jnp.where(take_plus[:, None], plus, minus), s["params"]),
            iou=jnp.where(move, best_iou, s["iou"]),
            changed=s["changed"] | move,
            moves=s["moves"] + move,
            param=(i + 1) % 7,
            # A move makes every parameter's candidates new; no move adds parameter i.
            known=jnp.where(move[:, None], False, s["known"] | (jax.nn.one_hot(i, 7) > 0)[None, :]),
        )
        return jax.lax.cond(i == 6, lambda t: end_of_sweep(t, t["changed"]), lambda t: t, s)

    def parallel_step(s):
        signs = jnp.array([1.0, -1.0], jnp.float32)
        # Candidates in the order a+, a-, e+, e-, ...: (14, N, 7).
        delta = jnp.einsum("p,k,n->pkn", eps, signs, s["alpha"]).reshape(14, n)
        one_hot = jnp.repeat(jnp.eye(7, dtype=jnp.float32), 2, axis=0)  # (14, 7)
        cands = s["params"][None] + delta[:, :, None] * one_hot[:, None, :]
        ious = _only_poses(cands, evaluate(cands, ~s["done"]))  # (14, N)
        best = jnp.argmax(ious, axis=0)  # first maximum: earlier parameter, + before -
        best_iou = jnp.take_along_axis(ious, best[None], axis=0)[0]
        move = (best_iou > s["iou"]) & ~s["done"]
        chosen = jnp.take_along_axis(cands, best[None, :, None], axis=0)[0]
        code = jnp.where(best % 2 == 0, best // 2 + 1, -(best // 2 + 1))
        s = record(s, jnp.where(move, code, 0))
        s = dict(s, params=jnp.where(move[:, None], chosen, s["params"]), iou=jnp.where(move, best_iou, s["iou"]),
                 moves=s["moves"] + move)
        return end_of_sweep(s, move)

    step = parallel_step if config.schedule == "parallel" else sequential_step
    return jax.lax.while_loop(lambda s: ~jnp.all(s["done"]), step, state)


def refine(
    vertices,
    faces,
    poses,
    reference_masks,
    frame_heights,
    *,
    face_mask=None,
    coarse_mesh=None,
    config: SearchConfig = SearchConfig(),
) -> RefineResult:
    """Refines a batch of annotations.

    Args:
      vertices: ``(N, V, 3)`` padded model-space vertices per image, or ``(V, 3)`` shared.
        Only silhouettes matter, so meshes are best loaded without their hidden faces and
        then decimated: ``fgpose.mesh.load_mesh(path, drop_hidden=True, max_faces=K)`` (what
        the CLI does).
      faces: ``(N, F, 3)`` or ``(F, 3)`` int32; face_mask: ``(N, F)`` bool for padded faces.
      poses: ``(N, 7)`` starting parameters in ``POSE_FIELDS`` order (radians, model units,
        pixels of the width-300 frame), or a batched :class:`fgpose.camera.Pose`.
      reference_masks: ``(N, H, 300)`` references in each image's annotation frame, padded
        to a common height ``H >= max(frame_heights)`` (rows beyond an image's own frame
        height are ignored): bool (or integer, nonzero = foreground) masks, or float
        foreground probabilities in [0, 1] (used as such by a ``soft`` objective, binarised
        at 0.5 otherwise).
      frame_heights: ``(N,)`` int, ``int(H_photo * 300 / W_photo)`` per image.
      coarse_mesh: optional ``(vertices, faces, face_mask)`` (shapes as above, ``face_mask``
        may be None) for the coarse pass of a coarse-to-fine search, e.g. the meshes
        decimated further; default: the search meshes.
      config: the schedule and its parameters.

    Returns:
      :class:`RefineResult`.
    """
    if isinstance(poses, camera.Pose):
        poses = poses.as_array()
    params = jnp.asarray(poses, jnp.float32)
    ref = np.asarray(reference_masks)
    if not np.issubdtype(ref.dtype, np.floating):
        ref = ref != 0  # bool or integer masks: nonzero = foreground
    else:
        ref = ref.astype(np.float32)
        if not (np.all(np.isfinite(ref)) and ref.min(initial=0) >= 0 and ref.max(initial=0) <= 1):
            raise ValueError("float reference masks must hold probabilities in [0, 1]")
    ref = jnp.asarray(ref)
    heights = jnp.asarray(frame_heights, jnp.int32).reshape(-1)
    if params.ndim != 2 or params.shape[1] != 7:
        raise ValueError(f"poses must be (N, 7), got {params.shape}")
    n = params.shape[0]
    if ref.ndim != 3 or ref.shape[0] != n or ref.shape[2] != camera.ANNOTATION_WIDTH:
        raise ValueError(f"reference_masks must be (N={n}, H, {camera.ANNOTATION_WIDTH}), got {ref.shape}")
    if heights.shape != (n,):
        raise ValueError(f"frame_heights must have shape ({n},), got {heights.shape}")
    if int(jnp.max(heights)) > ref.shape[1] or int(jnp.min(heights)) <= 0:
        raise ValueError(f"frame heights must be in 1..{ref.shape[1]} (the masks' height), got {np.asarray(heights)}")
    verts = jnp.asarray(vertices, jnp.float32)
    tris = jnp.asarray(faces, jnp.int32)
    if face_mask is None:
        face_mask = jnp.ones(tris.shape[:-1], bool)
    if coarse_mesh is not None:
        if config.coarse == 1:
            raise ValueError("coarse_mesh is only used by a coarse-to-fine search: set SearchConfig(coarse=...) > 1")
        cv, cf, cm = coarse_mesh
        cv, cf = jnp.asarray(cv, jnp.float32), jnp.asarray(cf, jnp.int32)
        coarse_mesh = (cv, cf, jnp.ones(cf.shape[:-1], bool) if cm is None else jnp.asarray(cm, bool))
    out = _search(verts, tris, jnp.asarray(face_mask, bool), params, heights, ref, coarse_mesh, config=config)
    return RefineResult(*(np.asarray(x) for x in out))
