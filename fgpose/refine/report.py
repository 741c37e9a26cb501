"""What refinement reports: per-image result records, the refined table, the summary.

* :func:`result_records` — one JSON-ready record per refined image: the poses before
  (``v1``) and after (``refined``, a release record, :func:`refined_record`), IoUs (plain,
  with the binary reference: ``initial_iou`` says how far the reference is from the input
  annotation), the objective's final score, whether the image was ``flagged`` (reference
  and annotation disagree: left at its input pose), sweeps, moves, final alpha and frame
  height. These are what the progress journal holds
  (:func:`fgpose.refine.journal.refine_journal`).
* :func:`refined_table` — the output annotation table: the input's keys in its order, refined
  records where there are results, the original records elsewhere (skipped images);
  :func:`write_outputs` saves it in the release's own pickle format (readable by the
  release's tools and :func:`fgpose.annotations.load_annotations`) beside the JSON report.
* :func:`reusable_records` — the journal's records still valid for an input table (and valid
  results: :func:`fgpose.refine.records.check_result`).
* :func:`summarize`, :func:`print_summary` — the summary numbers and their printout.
* :func:`write_json` — the JSON report: the summary, the per-image records and the skips.
"""

from __future__ import annotations

import json
import math
import pathlib
import sys
from typing import TextIO

import numpy as np

from fgpose import annotations as anno_lib
from fgpose import camera
from fgpose.atomic_io import atomic_write
from fgpose.refine import search
from fgpose.refine.batching import SearchBatch
from fgpose.refine.inputs import SKIP_REASONS, Skip
from fgpose.refine.records import check_result

UNITS = {"azimuth": "deg", "elevation": "deg", "theta": "deg", "distance": "model units", "f": "px", "u": "px",
         "v": "px"}
"""Units of the reported mean absolute changes per pose parameter."""
ANGLES = ("azimuth", "elevation", "theta")
"""The parameters whose changes are reported in degrees, wrapped to [-180, 180)."""


def refined_record(ann: anno_lib.Annotation, params32: np.ndarray) -> dict:
    """The refined release record. Moves are applied as float32 differences to the float64 originals,
    so a parameter the search did not move keeps its exact original value.

    Args:
      ann: the starting record.
      params32: ``(7,)`` float32 refined pose in ``camera.POSE_FIELDS`` order.
    """
    rec = ann.to_record()
    for k, p in zip(camera.POSE_FIELDS, params32):
        delta = float(np.float32(p) - np.float32(rec[k]))
        rec[k] = rec[k] + delta
    return rec


def result_records(batch: SearchBatch, result: search.RefineResult) -> list[dict]:
    """One record per real image of ``batch`` (the padding rows of ``result`` are dropped)."""
    records = []
    for i, im in enumerate(batch.images):
        records.append({
            "key": im.key, "model_id": im.annotation.model_id,
            "v1": im.annotation.to_record(), "refined": refined_record(im.annotation, result.poses[i]),
            "initial_iou": float(result.initial_iou[i]), "iou": float(result.iou[i]),
            "sweeps": int(result.sweeps[i]), "moves": int(result.moves[i]), "alpha": float(result.alpha[i]),
            "frame_height": im.frame_height,
            "score": float(result.score[i]), "flagged": bool(result.flagged[i]),
        })
    return records


def reusable_records(records: dict[str, dict], table: dict[str, anno_lib.Annotation]) -> dict[str, dict]:
    """The ``{key: record}`` of ``records`` (e.g. from a journal) whose image is still in
    ``table`` with the same starting record (``v1``) and that are valid results
    (:func:`fgpose.refine.records.check_result`); the others must be recomputed."""
    return {k: r for k, r in records.items()
            if k in table and isinstance(r, dict) and r.get("v1") == table[k].to_record() and check_result(r) is None}


def refined_table(table: dict[str, anno_lib.Annotation], done: dict[str, dict]) -> dict[str, anno_lib.Annotation]:
    """``table`` with the refined record of every key in ``done`` (same keys, same order).

    ``done`` should hold valid results only (:func:`fgpose.refine.records.check_result`);
    a refined record that is not a valid annotation all the same keeps the input record,
    so the output is always written.
    """
    def refined(key: str, ann: anno_lib.Annotation) -> anno_lib.Annotation:
        try:
            return anno_lib.Annotation.from_record(key, done[key]["refined"])
        except (anno_lib.AnnotationError, KeyError, TypeError):
            return ann

    return {key: refined(key, ann) if key in done else ann for key, ann in table.items()}


def _angle_diff(a: float, b: float) -> float:
    return (a - b + math.pi) % (2 * math.pi) - math.pi


def _by_reason(skipped: dict[str, Skip]) -> dict[str, list[str]]:
    by_reason: dict[str, list[str]] = {}
    for key, (reason, _) in skipped.items():
        by_reason.setdefault(reason, []).append(key)
    return by_reason


def summarize(table: dict[str, anno_lib.Annotation], done: dict[str, dict], skipped: dict[str, Skip],
              seconds: float, refined_now: int, extra: dict) -> dict:
    """The summary numbers (JSON-ready).

    Args:
      table: the input table (valid records); done: ``{key: result record}`` of the refined
        images (this run's and resumed ones); skipped: ``{key: Skip}``, also of records not in
        ``table`` (malformed ones), which count as images.
      seconds: wall time of this run's search calls; refined_now: images refined in this run.
      extra: more entries for the summary (e.g. ``mesh_loads``, ``settings``,
        ``overlay_problems``).

    Returns:
      counts (``images``, ``refined``, ``refined_this_run``, ``resumed``, ``skipped``,
      ``skipped_by_reason``), ``mean_iou_before``/``mean_iou_after``, ``improved``,
      ``flagged`` (the keys of the images whose reference disagreed with the annotation),
      ``mean_sweeps``, ``mean_abs_delta`` (``{field: {"mean_abs_delta", "unit"}}``, :data:`UNITS`),
      ``search_seconds``, ``seconds_per_image``; means are None without refined images.
    """
    keys = [k for k in table if k in done]
    initial = np.array([done[k]["initial_iou"] for k in keys], np.float64)
    final = np.array([done[k]["iou"] for k in keys], np.float64)
    moved = {}
    for field in camera.POSE_FIELDS:
        if field in ANGLES:
            d = [abs(math.degrees(_angle_diff(done[k]["refined"][field], done[k]["v1"][field]))) for k in keys]
        else:
            d = [abs(done[k]["refined"][field] - done[k]["v1"][field]) for k in keys]
        moved[field] = {"mean_abs_delta": float(np.mean(d)) if d else None, "unit": UNITS[field]}
    return {
        "images": len(table.keys() | skipped.keys()),
        "refined": len(keys),
        "refined_this_run": refined_now,
        "resumed": len(keys) - refined_now,
        "skipped": len(skipped),
        "skipped_by_reason": {r: len(v) for r, v in _by_reason(skipped).items()},
        "mean_iou_before": float(initial.mean()) if keys else None,
        "mean_iou_after": float(final.mean()) if keys else None,
        "improved": int((final > initial).sum()),
        "flagged": [k for k in keys if done[k].get("flagged", False)],
        "mean_sweeps": float(np.mean([done[k]["sweeps"] for k in keys])) if keys else None,
        "mean_abs_delta": moved,
        "search_seconds": seconds,
        "seconds_per_image": seconds / refined_now if refined_now else None,
        **extra,
    }


def _first_keys(keys: list[str], shown: int = 5) -> str:
    """``"k1, k2, ..., k5, ... (N more)"``: the first ``shown`` keys and how many are left out."""
    return ", ".join(keys[:shown]) + (f", ... ({len(keys) - shown} more)" if len(keys) > shown else "")


def print_summary(summary: dict, skipped: dict[str, Skip], file: TextIO | None = None) -> None:
    """Prints the summary for people (default to stdout): counts, skips by reason (those of
    :data:`~fgpose.refine.inputs.SKIP_REASONS` first, then the others as they first occur)
    with up to five keys and one detail each, IoUs, mean changes, flagged images, speed and
    overlay warnings."""
    p = lambda *a: print(*a, file=file or sys.stdout)  # noqa: E731
    p(f"refined {summary['refined']} of {summary['images']} images"
      + (f" ({summary['resumed']} from a previous run)" if summary["resumed"] else "")
      + f", skipped {summary['skipped']}")
    by_reason = _by_reason(skipped)
    for reason in list(SKIP_REASONS) + [r for r in by_reason if r not in SKIP_REASONS]:
        keys = by_reason.get(reason)
        if keys:
            p(f"  skipped, {reason}: {len(keys)} ({_first_keys(keys)}); e.g. {skipped[keys[0]][1]}")
    if summary["refined"]:
        p(f"mean IoU: {summary['mean_iou_before']:.4f} before -> {summary['mean_iou_after']:.4f} after "
          f"({summary['improved']} improved; {summary['mean_sweeps']:.1f} sweeps on average)")
        p("mean |change| per parameter: " + ", ".join(
            f"{k} {v['mean_abs_delta']:.4g} {v['unit']}" for k, v in summary["mean_abs_delta"].items()))
    flagged = summary.get("flagged", [])
    if flagged:
        p(f"flagged, reference and annotation disagree (IoU below the minimum), left unrefined: {len(flagged)} "
          f"({_first_keys(flagged)})")
    if summary["refined_this_run"]:
        p(f"search: {summary['search_seconds']:.1f} s for {summary['refined_this_run']} images, "
          f"{summary['seconds_per_image']:.3f} s/image (including JIT compilation)")
    for problem in summary.get("overlay_problems", []):
        p(f"warning: {problem}")


def write_outputs(out: pathlib.Path, json_path: pathlib.Path | None, summary: dict,
                  table: dict[str, anno_lib.Annotation], done: dict[str, dict], skipped: dict[str, Skip]) -> None:
    """Writes the refined table to ``out`` (:func:`refined_table`, in the release's own pickle
    format: :func:`fgpose.annotations.save_annotations`) and, if ``json_path`` is given, the
    JSON report there (:func:`write_json`); both atomically (a failure leaves the previous
    file or none, never a partial one); OSError on failure."""
    anno_lib.save_annotations(out, refined_table(table, done))
    if json_path is not None:
        write_json(json_path, summary, table, done, skipped)


def write_json(path: pathlib.Path, summary: dict, table: dict[str, anno_lib.Annotation], done: dict[str, dict],
               skipped: dict[str, Skip]) -> None:
    """Writes ``{"summary", "images": [records in table order], "skipped": [{"key", "reason",
    "detail"}]}`` to ``path`` atomically (a temporary file, then a rename); OSError on failure."""
    report = {
        "summary": summary,
        "images": [done[k] for k in table if k in done],
        "skipped": [{"key": k, "reason": r, "detail": d} for k, (r, d) in skipped.items()],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=1).encode()
    atomic_write(path, lambda fh: fh.write(text))
