"""Refinement's records one at a time: the input table read record by record, and the check
that a result record holds a valid refined pose.

One bad record must not cost the others their refinement or their output:

* :func:`load_table` reads the input annotation pickle safely
  (:func:`fgpose.annotations.safe_load_pickle`) and validates each record on its own
  (:meth:`fgpose.annotations.Annotation.from_record`), as the dataset builders do. A record
  that fails (wrong type, NaN, a value outside :data:`fgpose.annotations.FLOAT_BOUNDS`, a
  non-string key, ...) is skipped as :data:`MALFORMED`; only a file that cannot be read at
  all (unsafe or broken pickle, not a dict) stops the run.
* :func:`check_result` checks a result record (:func:`fgpose.refine.report.result_records`,
  or one read back from the journal): its refined pose must pass
  :func:`fgpose.annotations.check_pose_values` (finite, inside ``FLOAT_BOUNDS``) and its
  IoUs must be finite. A record that fails is not kept: its image keeps its input pose in
  the output and is reported as :data:`INVALID_RESULT`.
"""

from __future__ import annotations

import itertools
import math
import numbers
import os
from typing import Any

from fgpose import annotations as anno_lib
from fgpose import camera
from fgpose.refine.inputs import Skip
from fgpose.safe_repr import short_repr

MALFORMED = "malformed annotation"
"""Skip reason: the input record fails validation (:func:`load_table`)."""
INVALID_RESULT = "refined pose invalid"
"""Skip reason: the search's result is not a valid pose (:func:`check_result`); the input pose is kept."""
RECORD_SKIP_REASONS = (MALFORMED, INVALID_RESULT)
"""The skip reasons of this module, in the order the summary lists them."""


def key_text(key: Any) -> str:
    """``key`` itself if it is a str, else a short printable stand-in (skips are keyed by str)."""
    return key if isinstance(key, str) else f"<{type(key).__name__} {short_repr(key)}>"


def load_table(path: str | os.PathLike, limit: int | None = None) -> tuple[dict[str, anno_lib.Annotation],
                                                                          dict[str, Skip]]:
    """Reads an annotation pickle record by record.

    Args:
      path: a release annotation pickle (``{image_key: {field: value}}``).
      limit: only the first ``limit`` keys of the file (valid or not), or None for all.

    Returns:
      ``(table, skipped)``: ``{key: Annotation}`` of the valid records in the file's order,
      and ``{key: Skip(MALFORMED, message)}`` of the others (non-str keys by
      :func:`key_text`).

    Raises:
      AnnotationError: the file is not a safe, readable pickle of a dict.
      OSError: it cannot be read.
    """
    data = anno_lib.safe_load_pickle(path)
    if not isinstance(data, dict):
        raise anno_lib.AnnotationError(f"{path}: expected a dict {{image_key: {{field: value}}}} at top level, "
                                       f"got {type(data).__name__}", source=path)
    table: dict[str, anno_lib.Annotation] = {}
    skipped: dict[str, Skip] = {}
    for key, record in itertools.islice(data.items(), limit):
        try:
            table[key] = anno_lib.Annotation.from_record(key, record, source=path)
        except anno_lib.AnnotationError as err:
            skipped[key_text(key)] = Skip(MALFORMED, str(err))
        except Exception as err:  # noqa: BLE001 - one record must never stop the run
            skipped[key_text(key)] = Skip(MALFORMED, f"{path}: {key_text(key)}: {type(err).__name__}: {err}")
    return table, skipped


def _finite_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_result(record: Any) -> Skip | None:
    """None if ``record`` is a usable result record, else an :data:`INVALID_RESULT` skip.

    Usable: a dict with a ``refined`` release record whose pose passes
    :func:`fgpose.annotations.check_pose_values` and whose model id is that of ``v1``, and
    finite ``initial_iou`` and ``iou``. Never raises (journal lines can hold anything).
    """
    try:
        key, refined, v1 = record["key"], record["refined"], record["v1"]
        anno_lib.check_pose_values([refined[k] for k in camera.POSE_FIELDS], key=key)
        if refined.get("model_id") != v1.get("model_id"):
            return Skip(INVALID_RESULT, f"{key_text(key)}: the refined record's model id differs from the input's")
        if not (_finite_number(record["initial_iou"]) and _finite_number(record["iou"])):
            return Skip(INVALID_RESULT, f"{key_text(key)}: non-finite IoU {short_repr(record['iou'])}; "
                                        "the input pose is kept")
    except anno_lib.AnnotationError as err:
        return Skip(INVALID_RESULT, f"{err}; the input pose is kept")
    except Exception as err:  # noqa: BLE001 - a damaged record of any shape
        return Skip(INVALID_RESULT, f"not a result record ({type(err).__name__}: {short_repr(str(err), 200)})")
    return None
