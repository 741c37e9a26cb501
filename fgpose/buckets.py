"""Shape buckets: every rule that rounds a size up to decide a compiled (``jax.jit``) shape.

A jitted function compiles once per input shape, so sizes that vary from call to call
(image sides, mesh vertex and face counts, batch lengths) are rounded up to a few
*buckets* and the arrays padded (masked-out faces, cropped canvases, dropped rows). Each
rule below trades padding (wasted work per call) against the number of compilations, and
its docstring says where it is used. All sizes are Python ``int`` counts (pixels, rows,
vertices, faces, samples); every rule returns an ``int >= n``. Pure Python: this module
imports nothing from fgpose.

Three shapes of rule:

* multiples: :func:`round_up` (``HEIGHT_MULTIPLE`` rows, ``PHOTO_CANVAS_MULTIPLE`` pixels,
  ``VISIBILITY_FACE_MULTIPLE`` faces);
* steps per octave: :func:`octave_round_up` rounds ``n`` in ``[2**k, 2**(k+1))`` up to a
  multiple of ``2**k / steps``, so the padding is below ``1 / steps`` of ``n`` while the
  number of buckets grows only with ``log2`` of the largest size (:func:`canvas_side`,
  :func:`count_bucket`, :func:`refine_count_bucket`);
* powers of two: :func:`pow2_sample_count`.
"""

from __future__ import annotations

from typing import Sequence

__all__ = [
    "HEIGHT_MULTIPLE",
    "PHOTO_CANVAS_MULTIPLE",
    "VISIBILITY_FACE_MULTIPLE",
    "canvas_hw",
    "canvas_side",
    "count_bucket",
    "frame_height_bucket",
    "octave_round_up",
    "photo_canvas_side",
    "pow2_sample_count",
    "refine_count_bucket",
    "round_up",
    "visibility_face_bucket",
]

HEIGHT_MULTIPLE = 16
"""Rows: the refine CLI pads annotation-frame heights (and overlay heights) to this multiple."""

PHOTO_CANVAS_MULTIPLE = 256
"""Pixels: the canvas sides of the cached pyrender photo renderers are multiples of this."""

VISIBILITY_FACE_MULTIPLE = 4096
"""Faces: :mod:`fgpose.visibility` pads its triangle soup to a multiple of this."""


def round_up(n: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is ``>= n`` (``multiple >= 1``).

    E.g. ``round_up(301, 16) = 304``, ``round_up(0, 16) = 0``, ``round_up(-5, 16) = 0``.
    """
    return -(-int(n) // int(multiple)) * int(multiple)


def octave_round_up(n: int, steps_per_octave: int) -> int:
    """Rounds ``n >= 1`` up to ``steps_per_octave`` buckets per octave.

    For ``2**k <= n < 2**(k+1)`` the result is the smallest multiple of
    ``max(1, 2**k // steps_per_octave)`` that is ``>= n``: with 4 steps, 300 -> 320,
    427 -> 448, 480 -> 512; with 2 steps the buckets are ``2**k`` and ``1.5 * 2**k``. The
    padding is below ``1 / steps_per_octave`` of ``n``.

    Args:
      n: the size, ``>= 1``.
      steps_per_octave: a power of two ``>= 1``.
    """
    n, steps = int(n), int(steps_per_octave)
    if n < 1:
        raise ValueError(f"octave_round_up needs n >= 1, got {n}")
    if steps < 1 or steps & (steps - 1):
        raise ValueError(f"steps_per_octave must be a power of two >= 1, got {steps}")
    step = 1 << max(0, n.bit_length() - steps.bit_length())
    return round_up(n, step)


def canvas_side(side: int, minimum: int = 32) -> int:
    """Canvas side (pixels) ``>= side`` into which :mod:`fgpose.record_geometry` renders.

    Four buckets per octave (:func:`octave_round_up`: a multiple of
    ``2**(floor(log2(side)) - 2)``, e.g. 427 -> 448, 480 -> 512, 640 -> 640, 300 -> 320), so
    a canvas wastes under 25 % per side. Sides below ``minimum`` (``>= 1``) use ``minimum``.
    """
    if int(minimum) < 1:
        raise ValueError(f"minimum must be >= 1, got {minimum}")
    return octave_round_up(max(int(side), int(minimum)), 4)


def canvas_hw(field_hw: Sequence[int], field_max_side: int | None = None) -> tuple[int, int]:
    """Canvas ``(Hc, Wc)`` (pixels) into which an ``h x w`` field is rendered, then cropped.

    Used by :func:`fgpose.record_geometry.record_geometry`. ``(S, S)`` with
    ``S = canvas_side(max(field_max_side, h, w))`` when a cap is given (every field of that
    cap fits one canvas: one compiled program per mesh-size bucket), else
    ``(canvas_side(h), canvas_side(w))``.
    """
    h, w = (int(x) for x in field_hw)
    if field_max_side is not None:
        side = canvas_side(max(int(field_max_side), h, w))
        return side, side
    return canvas_side(h), canvas_side(w)


def count_bucket(n: int, minimum: int = 1024) -> int:
    """Padded vertex or face count ``>= n`` of a mesh for :mod:`fgpose.record_geometry`.

    Two buckets per octave (:func:`octave_round_up`): ``2**k`` or ``1.5 * 2**k``, e.g.
    1025 -> 1536, 1537 -> 2048, 20000 -> 24576. Counts below ``minimum`` (``>= 1``) use
    ``minimum``. The TFDS builders pad every mesh (``pad_mesh``) to these sizes.
    """
    if int(minimum) < 1:
        raise ValueError(f"minimum must be >= 1, got {minimum}")
    return octave_round_up(max(int(n), int(minimum)), 2)


def refine_count_bucket(n: int) -> int:
    """Padded vertex or face count ``>= n`` of the meshes in one refine search batch.

    Eight buckets per octave (:func:`octave_round_up`, at most 12.5 % padding), at least 16:
    e.g. 17 -> 18, 100 -> 104, 3000 -> 3072, 3073 -> 3328. The refine CLI packs each batch's
    meshes (:func:`fgpose.mesh.pack_meshes`) to ``refine_count_bucket`` of the largest
    count; finer than :func:`count_bucket` because the search renders each mesh thousands
    of times.
    """
    return octave_round_up(max(int(n), 16), 8)


def frame_height_bucket(height: int) -> int:
    """Padded height (rows) ``>= height`` of a refine batch's masks and overlays.

    ``round_up(height, HEIGHT_MULTIPLE)``: the refine CLI pads the reference masks of a batch
    (annotation frames, 300 px wide) to this height, e.g. 225 -> 240, 256 -> 256.
    """
    return round_up(height, HEIGHT_MULTIPLE)


def photo_canvas_side(side: int) -> int:
    """Canvas side (pixels) of the cached pyrender renderer for a photo side ``side``.

    ``max(256, round_up(side, 256))``: :func:`fgpose.synthetic.scene.render_photo` keeps a
    renderer per ``(photo_canvas_side(H), photo_canvas_side(W))``, which draws photos of any
    smaller size into its top-left corner (e.g. 200 -> 256, 257 -> 512, 640 -> 768).
    """
    return max(PHOTO_CANVAS_MULTIPLE, round_up(side, PHOTO_CANVAS_MULTIPLE))


def visibility_face_bucket(num_faces: int) -> int:
    """Padded face count of the triangle soup :mod:`fgpose.visibility` renders.

    ``round_up(num_faces, VISIBILITY_FACE_MULTIPLE)``: meshes whose face counts round up to
    the same multiple of 4096 share one compiled render, whatever their vertex counts (the
    soup has three vertices per face). E.g. 29000 -> 32768, 4096 -> 4096, 4097 -> 8192.
    """
    return round_up(num_faces, VISIBILITY_FACE_MULTIPLE)


def pow2_sample_count(n: int, minimum_log2: int = 6) -> int:
    """Candidate batch length for ``n`` pending rejection-sampling slots: the smallest power
    of two ``>= 1.5 * n`` and ``>= 2**minimum_log2``.

    :func:`fgpose.synthetic.poses.sample_poses` draws candidate poses in batches of this
    length (few distinct shapes for its eager JAX projection), e.g. 1 -> 64, 43 -> 128,
    100 -> 256. Integer arithmetic: ``2**k >= 1.5 n`` exactly when ``2**k >= ceil(3 n / 2)``.
    """
    need = -(-3 * int(n) // 2)  # ceil(1.5 n)
    return 1 << max(int(minimum_log2), (need - 1).bit_length() if need > 0 else 0)
