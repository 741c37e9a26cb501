"""Plausibility checks of reference masks before they are searched against (pure NumPy).

A reference mask that is the wrong picture, or no picture of the object at all, still gives
the search something to maximise: against an all-ones mask it "improves" a pose by
blowing the silhouette up, against a transposed mask it fits a distorted outline. These
checks reject such references before the search, each as a :class:`~fgpose.refine.inputs.Skip`
whose reason is one of :data:`REFERENCE_SKIP_REASONS`:

* ``mask size mismatch`` (:func:`check_aspect`): the mask's aspect ratio differs from the
  photo's by more than rounding, i.e. the mask cannot be the photo scaled by one factor
  with each side rounded to whole pixels (e.g. a transposed mask);
* ``mask implausible`` (:func:`check_foreground`): the foreground covers less than
  ``min_foreground`` or more than ``max_foreground`` of the width-300 annotation frame
  (a 1 x 1 mask or an all-ones mask covers all of it).

:func:`alpha_foreground` handles masks that keep their object only in an alpha channel
(e.g. a cut-out saved as RGBA with black or constant colour):
:func:`fgpose.refine.inputs.read_mask` reads colour channels only, which see nothing (or
everything) in such a mask; then the alpha channel, ``alpha > 0``, is the foreground.

:class:`ReferenceChecks` holds the limits (the command line's ``--min-foreground`` and
``--max-foreground``); :func:`fgpose.refine.batching.load_search_image` applies them.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from fgpose.refine.inputs import Skip

SIZE_MISMATCH = "mask size mismatch"
"""Skip reason: the mask's aspect ratio is not the photo's (:func:`check_aspect`)."""
IMPLAUSIBLE = "mask implausible"
"""Skip reason: the mask's foreground fraction is outside the limits (:func:`check_foreground`)."""
REFERENCE_SKIP_REASONS = (SIZE_MISMATCH, IMPLAUSIBLE)
"""The skip reasons of this module, in the order the summary lists them."""

DEFAULT_MIN_FOREGROUND = 0.005
"""Default least fraction of the annotation frame a reference's foreground must cover."""
DEFAULT_MAX_FOREGROUND = 0.95
"""Default largest fraction of the annotation frame a reference's foreground may cover."""


@dataclasses.dataclass(frozen=True)
class ReferenceChecks:
    """Limits a reference mask must meet (module docstring).

    Attributes:
      min_foreground, max_foreground: the closed range of the foreground fraction of the
        annotation frame (pixels of the ``(frame_height, 300)`` reference that are
        foreground, over all its pixels), ``0 <= min_foreground <= max_foreground <= 1``.
    """

    min_foreground: float = DEFAULT_MIN_FOREGROUND
    max_foreground: float = DEFAULT_MAX_FOREGROUND

    def __post_init__(self):
        if not 0.0 <= self.min_foreground <= self.max_foreground <= 1.0:
            raise ValueError(f"foreground limits must satisfy 0 <= min <= max <= 1, got min {self.min_foreground!r}, "
                             f"max {self.max_foreground!r}")


def alpha_foreground(colour_mask: np.ndarray, read_alpha: Callable[[], np.ndarray | None]) -> np.ndarray:
    """The mask's foreground, taken from its alpha channel when its colours say nothing.

    Args:
      colour_mask: ``(H, W)`` mask from the colour (or grey, or palette) channels,
        :func:`fgpose.refine.inputs.read_mask`; nonzero = foreground.
      read_alpha: returns the file's ``(H, W)`` alpha channel, or None when it has none;
        called only when ``colour_mask`` is constant (all background or all foreground).

    Returns:
      ``alpha > 0`` (bool) when ``colour_mask`` is constant and the alpha channel is not
      (the object lives in the alpha channel only), else ``colour_mask`` unchanged.
    """
    colour_mask = np.asarray(colour_mask)
    if colour_mask.size == 0 or colour_mask.min() != colour_mask.max():
        return colour_mask
    alpha = read_alpha()
    if alpha is None:
        return colour_mask
    alpha = np.asarray(alpha)
    if alpha.shape != colour_mask.shape or alpha.min() == alpha.max():
        return colour_mask
    return alpha > 0


def check_aspect(mask_shape: tuple[int, ...], photo_width: int, photo_height: int) -> Skip | None:
    """A :data:`SIZE_MISMATCH` skip unless the mask has the photo's aspect ratio up to rounding.

    A mask of ``h x w`` pixels (``mask_shape = (h, w)``) for a ``W x H`` photo passes when
    ``|h * W - w * H| <= W + H``: the mask is the photo scaled by some factor ``s`` with
    each side rounded (or truncated) to whole pixels, ``h = H s + e_h``, ``w = W s + e_w``,
    ``|e_h|, |e_w| <= 1``. A transposed mask of a non-square photo fails.
    """
    h, w = int(mask_shape[0]), int(mask_shape[1])
    if abs(h * photo_width - w * photo_height) <= photo_width + photo_height:
        return None
    return Skip(SIZE_MISMATCH, f"the mask is {w}x{h} (aspect {w / h:.4g}), the photo {photo_width}x{photo_height} "
                               f"(aspect {photo_width / photo_height:.4g}); a mask must cover the photo at its aspect "
                               "ratio (transposed?)")


def check_foreground(reference: np.ndarray, checks: ReferenceChecks) -> Skip | None:
    """A :data:`IMPLAUSIBLE` skip unless the reference's foreground fraction is within ``checks``.

    Args:
      reference: ``(frame_height, 300)`` reference in the annotation frame (bool, or
        foreground probabilities in [0, 1]: the fraction is then their mean).
      checks: the limits.
    """
    fraction = float(np.mean(np.asarray(reference, np.float64)))
    if checks.min_foreground <= fraction <= checks.max_foreground:
        return None
    side = "below the minimum" if fraction < checks.min_foreground else "above the maximum"
    limit = checks.min_foreground if fraction < checks.min_foreground else checks.max_foreground
    flag = "--min-foreground" if fraction < checks.min_foreground else "--max-foreground"
    return Skip(IMPLAUSIBLE, f"foreground covers {100 * fraction:.3g}% of the annotation frame, {side} "
                             f"{100 * limit:.3g}% ({flag})")
