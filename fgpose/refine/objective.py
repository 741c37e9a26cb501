"""What the refinement search maximises: the plain IoU, or a robust variant of it.

An :class:`Objective` is static (hashable) search configuration
(``SearchConfig.objective``); :func:`parse_objective` reads the command-line spelling.
Terms, freely combined with ``+`` (e.g. ``band:2+map``):

* ``iou`` (the default, the published objective): IoU of the rendered silhouette ``S`` with
  the binary reference ``R`` over the image's frame. Alone it runs the exact published loop.
* ``band[:K]`` -- uncertainty band: pixels within ``K`` px (Euclidean, default
  :data:`DEFAULT_BAND_PX`) of the reference boundary are ignored, where a segmentation
  network is least reliable. A foreground pixel is in the band when its distance to the
  nearest background pixel of the frame is ``<= K``, a background pixel when its distance to
  the nearest foreground pixel is ``<= K`` (the definition of
  ``scipy.ndimage.distance_transform_edt`` on the frame; :func:`boundary_band`).
* ``soft`` -- soft references: the reference is a probability map ``p`` in [0, 1] (an 8-bit
  PNG read as ``p = grey / 255``, or a float NPY), and the score is the soft IoU
  ``sum(S p) / sum(S + p - S p)`` = E|S & R| / E|S | R| for a reference ``R`` drawn pixel by
  pixel with probabilities ``p`` (the ratio of the expected intersection to the expected
  union; for masks of thousands of pixels it is the expected IoU to within far less than a
  search step). On a 0/1 reference it is the IoU.
* ``offset[:K]`` -- boundary-offset invariant: the best IoU of ``S`` with the reference grown
  or shrunk by a uniform boundary offset ``delta`` in ``-K..K`` px (dilation by the Euclidean
  disk of radius ``delta``, erosion for negative ``delta``; default ``K`` =
  :data:`DEFAULT_OFFSET_PX`): a segmentation network's systematic bias (masks a pixel or two
  too fat or too thin) is absorbed by ``delta`` instead of by the pose's distance and focal
  length. Binary references only (not with ``soft``).
* ``map[:W]`` -- anchored to the human pose (maximum a posteriori): the score minus
  ``W * sum_i |p_i - p0_i| / b_i``, with ``p0`` the input annotation (the search's start)
  and ``b`` the per-parameter Laplace scales of the release's own refinements v2 - v1
  (:mod:`fgpose.refine.prior`, fitted by ``scripts/fit_refine_prior.py``). The penalty is the
  negative log of that Laplace prior, in units of ``W`` IoU: a move as large as a typical
  human error on one parameter must gain ``W`` IoU to pay for itself. Default ``W`` =
  :data:`DEFAULT_PRIOR_WEIGHT`.

Pixels outside the image's frame (rows beyond its frame height) never count. Every term is
evaluated inside the jitted search (:mod:`fgpose.refine.search`) on the same rendered
silhouettes, so the coarse-to-fine path and every schedule apply unchanged.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from fgpose.refine import prior

DEFAULT_BAND_PX = 2.0
"""Default half-width of the ignored band around the reference boundary, px of the width-300 frame."""
DEFAULT_OFFSET_PX = 2
"""Default largest boundary offset of the ``offset`` term, px of the width-300 frame."""
DEFAULT_PRIOR_WEIGHT = 0.002
"""Default IoU cost of one Laplace scale of movement away from the input annotation (``map``)."""
TERMS = ("iou", "band", "soft", "offset", "map")


@dataclasses.dataclass(frozen=True)
class Objective:
    """The search objective (module docstring); hashable, static for jit.

    Attributes:
      band: half-width in px of the ignored band around the reference boundary; 0 = off.
      soft: use the reference as probabilities (soft IoU); False = binary at 0.5.
      offset: largest uniform boundary offset ``K`` (px, integer) the reference may be
        grown or shrunk by (the best of the ``2K + 1`` IoUs counts); 0 = off.
      prior_weight: ``W`` of the ``map`` term, IoU per Laplace scale; 0 = off.
      prior_scale: the 7 Laplace scales ``b`` (a, e, theta in radians, d in model units,
        f, u, v in px of the width-300 frame); required when ``prior_weight > 0``.
    """

    band: float = 0.0
    soft: bool = False
    offset: int = 0
    prior_weight: float = 0.0
    prior_scale: tuple[float, ...] | None = None

    def __post_init__(self):
        if not (self.band >= 0 and math.isfinite(self.band)):
            raise ValueError(f"band must be a finite number of pixels >= 0, got {self.band}")
        if int(self.offset) != self.offset or self.offset < 0:
            raise ValueError(f"offset must be a whole number of pixels >= 0, got {self.offset}")
        object.__setattr__(self, "offset", int(self.offset))
        if self.offset and self.soft:
            raise ValueError("the offset term needs binary references: it cannot be combined with soft")
        if not (self.prior_weight >= 0 and math.isfinite(self.prior_weight)):
            raise ValueError(f"prior weight must be finite and >= 0, got {self.prior_weight}")
        if self.prior_scale is not None:
            scale = tuple(float(s) for s in self.prior_scale)
            if len(scale) != 7 or any(not (s > 0 and math.isfinite(s)) for s in scale):
                raise ValueError(f"prior_scale must be 7 positive finite numbers, got {self.prior_scale}")
            object.__setattr__(self, "prior_scale", scale)
        if self.prior_weight > 0 and self.prior_scale is None:
            raise ValueError("a prior weight needs prior_scale (fgpose.refine.prior.load_prior_scale())")
        object.__setattr__(self, "band", float(self.band))
        object.__setattr__(self, "prior_weight", float(self.prior_weight))

    @property
    def plain(self) -> bool:
        """True for the published objective (the plain IoU of binary masks)."""
        return self.band == 0 and not self.soft and self.offset == 0 and self.prior_weight == 0

    @property
    def name(self) -> str:
        """The :func:`parse_objective` spelling (``iou``, ``band:2+soft+map:0.002``, ...)."""
        terms = []
        if self.band:
            terms.append(f"band:{self.band:g}")
        if self.soft:
            terms.append("soft")
        if self.offset:
            terms.append(f"offset:{self.offset}")
        if self.prior_weight:
            terms.append(f"map:{self.prior_weight:g}")
        return "+".join(terms) or "iou"


def parse_objective(spec: str, prior_scale: tuple[float, ...] | None = None) -> Objective:
    """An :class:`Objective` from its spelling: ``+``-separated terms ``iou``, ``band[:PX]``,
    ``soft``, ``map[:WEIGHT]`` (module docstring); ``iou`` alone is the plain objective.

    Args:
      spec: e.g. ``"iou"``, ``"band"``, ``"band:3+map:0.001"``, ``"soft+map"``.
      prior_scale: the 7 Laplace scales for ``map``; default: the shipped fit
        (:func:`fgpose.refine.prior.load_prior_scale`).

    Raises:
      ValueError: unknown term, repeated term, or a bad number.
    """
    band, soft, offset, weight = 0.0, False, 0, 0.0
    seen = set()
    for term in str(spec).split("+"):
        name, _, value = term.strip().partition(":")
        if name not in TERMS:
            raise ValueError(f"unknown objective term {name!r} in {spec!r}; terms: {', '.join(TERMS)} "
                             "(joined with '+', e.g. band:2+map)")
        if name in seen:
            raise ValueError(f"objective term {name!r} given twice in {spec!r}")
        seen.add(name)
        if value and name in ("iou", "soft"):
            raise ValueError(f"objective term {name!r} takes no value, got {term!r}")
        try:
            number = float(value) if value else None
        except ValueError:
            raise ValueError(f"objective term {term!r}: {value!r} is not a number") from None
        if name == "band":
            band = DEFAULT_BAND_PX if number is None else number
            if not band > 0:
                raise ValueError(f"band width must be > 0 px, got {term!r}")
        elif name == "soft":
            soft = True
        elif name == "offset":
            offset = DEFAULT_OFFSET_PX if number is None else number
            if not (offset >= 1 and offset == int(offset)):
                raise ValueError(f"offset must be a whole number of pixels >= 1, got {term!r}")
        elif name == "map":
            weight = DEFAULT_PRIOR_WEIGHT if number is None else number
            if not weight > 0:
                raise ValueError(f"map weight must be > 0, got {term!r}")
    if weight and prior_scale is None:
        prior_scale = prior.load_prior_scale()
    return Objective(band=band, soft=soft, offset=int(offset), prior_weight=weight,
                     prior_scale=prior_scale if weight else None)


def band_offsets(radius: float) -> list[tuple[int, int]]:
    """Integer offsets ``(dy, dx)`` with ``dy**2 + dx**2 <= radius**2`` (the Euclidean disk)."""
    r = int(math.floor(radius))
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx <= radius * radius]


def _dilate(mask: jax.Array, offsets: list[tuple[int, int]]) -> jax.Array:
    """Binary dilation of ``(N, H, W)`` bool by the offsets (outside the array counts as False)."""
    r = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    h, w = mask.shape[-2:]
    padded = jnp.pad(mask, ((0, 0), (r, r), (r, r)))
    out = jnp.zeros_like(mask)
    for dy, dx in offsets:
        out = out | padded[:, r + dy: r + dy + h, r + dx: r + dx + w]
    return out


def boundary_band(reference: jax.Array, valid: jax.Array, radius: float) -> jax.Array:
    """Pixels within ``radius`` px of the reference boundary.

    Args:
      reference: ``(N, H, W)`` bool foreground.
      valid: ``(N, H, W)`` (or broadcastable) bool, the image's frame; pixels outside it are
        neither foreground nor background.
      radius: px (Euclidean); 0 gives an empty band.

    Returns:
      ``(N, H, W)`` bool: valid foreground pixels at distance ``<= radius`` from a valid
      background pixel, and valid background pixels at distance ``<= radius`` from a valid
      foreground pixel.
    """
    valid = jnp.broadcast_to(valid, reference.shape)
    if radius < 1:
        return jnp.zeros(reference.shape, bool)
    fg, bg = reference & valid, ~reference & valid
    offsets = band_offsets(radius)
    return (fg & _dilate(bg, offsets)) | (bg & _dilate(fg, offsets))


def offset_levels(reference: jax.Array, valid: jax.Array, k: int) -> jax.Array:
    """Per pixel, the smallest boundary offset ``delta`` in ``-k..k`` at which it belongs to the
    offset reference (``k + 1`` if at none): pixel ``x`` is in the reference grown by
    ``delta >= 0`` iff a valid foreground pixel lies within ``delta`` px of it, and in the
    reference shrunk by ``-delta > 0`` iff it is valid foreground with no valid background
    pixel within ``-delta`` px.

    Args:
      reference: ``(N, H, W)`` bool; valid: broadcastable bool frame; k: largest offset, px.

    Returns:
      ``(N, H, W)`` int8 levels (invalid pixels ``k + 1``).
    """
    valid = jnp.broadcast_to(valid, reference.shape)
    fg, bg = reference & valid, ~reference & valid
    level = jnp.full(reference.shape, k + 1, jnp.int8)
    for delta in range(k, -k - 1, -1):  # the smallest delta is written last
        if delta > 0:
            member = _dilate(fg, band_offsets(delta))
        elif delta == 0:
            member = fg
        else:
            member = fg & ~_dilate(bg, band_offsets(-delta))
        level = jnp.where(member & valid, jnp.int8(delta), level)
    return level


@dataclasses.dataclass(frozen=True)
class PreparedReference:
    """A batch of references ready for scoring (built once per search call).

    Attributes:
      prob: ``(N, H, W)`` float32 foreground probability (0/1 unless ``soft``), 0 outside the frame.
      weight: ``(N, H, W)`` bool, the pixels that count (the frame minus the band).
      prob_sum: ``(N,)`` float32 ``sum(prob * weight)``.
      levels: ``(N, H, W)`` int8 :func:`offset_levels` (``offset`` term), else None.
      level_areas: ``(N, 2K + 1)`` float32 counted pixels of each offset reference, else None.
    """

    prob: jax.Array
    weight: jax.Array
    prob_sum: jax.Array
    levels: jax.Array | None = None
    level_areas: jax.Array | None = None

    def subsampled(self, s: int) -> "PreparedReference":
        """Every ``s``-th row and column (the coarse pass's pixels)."""
        if s == 1:
            return self
        prob, weight = self.prob[:, ::s, ::s], self.weight[:, ::s, ::s]
        levels = None if self.levels is None else self.levels[:, ::s, ::s]
        return PreparedReference(prob, weight, jnp.sum(jnp.where(weight, prob, 0.0), axis=(-2, -1)), levels,
                                 None if levels is None else _level_areas(levels, weight, self.level_areas.shape[1]))


def _level_areas(levels: jax.Array, weight: jax.Array, count: int) -> jax.Array:
    """``(N, count)`` counted pixels at level ``<= delta`` for ``delta = -(count // 2) .. count // 2``."""
    k = count // 2
    return jnp.stack([jnp.sum(weight & (levels <= d), axis=(-2, -1)) for d in range(-k, k + 1)], 1).astype(
        jnp.float32)


jax.tree_util.register_dataclass(PreparedReference, data_fields=["prob", "weight", "prob_sum", "levels",
                                                                 "level_areas"], meta_fields=[])


def prepare_reference(reference: jax.Array, valid: jax.Array, objective: Objective) -> PreparedReference:
    """Probabilities and counted pixels of ``(N, H, W)`` references (bool, or float in [0, 1]).

    A float reference is thresholded at 0.5 unless ``objective.soft``; the band is taken
    around the 0.5 level set.
    """
    valid = jnp.broadcast_to(valid, reference.shape)
    prob = jnp.clip(reference.astype(jnp.float32), 0.0, 1.0)
    hard = prob >= 0.5
    if not objective.soft:
        prob = hard.astype(jnp.float32)
    weight = valid & ~boundary_band(hard, valid, objective.band)
    prob = jnp.where(valid, prob, 0.0)
    levels = areas = None
    if objective.offset:
        levels = offset_levels(hard, valid, objective.offset)
        areas = _level_areas(levels, weight, 2 * objective.offset + 1)
    return PreparedReference(prob, weight, jnp.sum(jnp.where(weight, prob, 0.0), axis=(-2, -1)), levels, areas)


def offset_score(sil: jax.Array, ref: PreparedReference, img: jax.Array) -> jax.Array:
    """The ``offset`` term: the best IoU, on counted pixels, of silhouettes with their images'
    references grown or shrunk by ``delta`` in ``-K..K`` px.

    Args:
      sil: ``(B, H, W)`` bool; ref: prepared with ``levels``; img: ``(B,)`` int.

    Returns:
      ``(B,)`` float32 ``max_delta |S & R_delta| / |S | R_delta|`` (0 for an empty union).
    """
    k = ref.level_areas.shape[1] // 2
    s = sil & ref.weight[img]
    lv = ref.levels[img]
    inter = jnp.stack([jnp.sum(s & (lv <= d), axis=(-2, -1)) for d in range(-k, k + 1)], 1).astype(jnp.float32)
    union = jnp.sum(s, axis=(-2, -1)).astype(jnp.float32)[:, None] + ref.level_areas[img] - inter
    return jnp.max(jnp.where(union > 0, inter / jnp.maximum(union, 1.0), 0.0), axis=1).astype(jnp.float32)


def silhouette_score(sil: jax.Array, ref: PreparedReference, img: jax.Array) -> jax.Array:
    """Soft IoU of silhouettes with their images' prepared references, on counted pixels.

    Args:
      sil: ``(B, H, W)`` bool silhouettes; img: ``(B,)`` int, the image of each.

    Returns:
      ``(B,)`` float32 ``I / (|S| + P - I)``, ``I = sum(S p w)``, ``|S| = sum(S w)``,
      ``P = sum(p w)``; 0 for an empty union. On 0/1 references this is the IoU on the
      counted pixels.
    """
    w = ref.weight[img]
    s = sil & w
    inter = jnp.sum(jnp.where(s, ref.prob[img], 0.0), axis=(-2, -1))
    area = jnp.sum(s, axis=(-2, -1)).astype(jnp.float32)
    union = area + ref.prob_sum[img] - inter
    return jnp.where(union > 0, inter / jnp.maximum(union, 1e-12), 0.0).astype(jnp.float32)


def prior_penalty(params: jax.Array, anchor: jax.Array, objective: Objective) -> jax.Array:
    """``W * sum_i |params_i - anchor_i| / b_i`` over the last axis (``(..., 7)`` -> ``(...)``),
    0 without a ``map`` term."""
    if objective.prior_weight == 0:
        return jnp.zeros(params.shape[:-1], jnp.float32)
    scale = jnp.asarray(objective.prior_scale, jnp.float32)
    return objective.prior_weight * jnp.sum(jnp.abs(params - anchor) / scale, axis=-1)

