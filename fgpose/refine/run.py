"""Refining scanned images batch by batch, each finished batch kept in a journal.

:func:`refine_images` is the loop of ``python -m fgpose.refine``: batches from
:func:`fgpose.refine.batching.search_batches`, one search call each
(:func:`~fgpose.refine.batching.refine_batch`), result records
(:func:`fgpose.refine.report.result_records`) appended to the journal before the next batch
starts, so an interruption loses at most the batch in flight, then drawn as overlays if asked
(a failed overlay is a warning: the results are already kept). A result that is not a valid
pose (:func:`fgpose.refine.records.check_result`) is not kept: its image is skipped and keeps
its input pose.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Callable

from fgpose.refine import batching, overlays, records as records_lib, report, search
from fgpose.refine.inputs import ImageInput, Skip
from fgpose.refine.journal import Journal
from fgpose.refine.mesh_store import MeshStore
from fgpose.refine.reference_checks import ReferenceChecks


@dataclasses.dataclass
class RunStats:
    """What one :func:`refine_images` call did.

    Attributes:
      refined: images refined (padding rows not counted).
      seconds: wall time spent in the search calls, JIT compilation included.
      overlay_problems: one line per overlay that could not be drawn or written.
    """

    refined: int = 0
    seconds: float = 0.0
    overlay_problems: list[str] = dataclasses.field(default_factory=list)


def refine_images(images: list[ImageInput], config: search.SearchConfig, meshes: MeshStore, journal: Journal,
                  done: dict[str, dict], skipped: dict[str, Skip], *, batch_size: int,
                  overlay_dir: pathlib.Path | None = None, overlay_width: int = 600,
                  on_skip: Callable[[ImageInput], None] = lambda image: None,
                  on_batch: Callable[[list[dict]], None] = lambda records: None,
                  checks: ReferenceChecks | None = None) -> RunStats:
    """Refines ``images`` in batches of ``batch_size`` (the journal must be started).

    After each batch its valid records are appended to ``journal``, added to ``done``
    (``{key: record}``, updated in place, so it is current even if a KeyboardInterrupt or
    an ``OSError`` of the journal escapes) and passed to ``on_batch``. Images whose mask or
    mesh turns out unusable (with ``checks``: also implausible references,
    :func:`fgpose.refine.batching.load_search_image`), or whose result is not a valid pose,
    are added to ``skipped`` and passed to ``on_skip``. With ``overlay_dir``, before/after
    pictures ``overlay_width`` pixels wide are written there (:mod:`fgpose.refine.overlays`)
    after the batch is journaled; any failure there is added to ``overlay_problems``.

    Raises:
      OSError: the journal could not be appended to (full disk); ``done`` holds every
        batch journaled before.
    """
    stats = RunStats()
    by_key = {im.key: im for im in images}
    for batch in batching.search_batches(images, batch_size, meshes, skipped, on_skip, checks,
                                         soft=config.objective.soft):
        t0 = time.perf_counter()
        result = batching.refine_batch(batch, config)
        stats.seconds += time.perf_counter() - t0
        records = []
        for record in report.result_records(batch, result):
            if (invalid := records_lib.check_result(record)) is not None:
                skipped[record["key"]] = invalid
                on_skip(by_key[record["key"]])
            else:
                records.append(record)
        if not records:
            continue
        journal.append(records)
        done.update((r["key"], r) for r in records)
        stats.refined += len(records)
        on_batch(records)
        if overlay_dir is not None:
            stats.overlay_problems += _draw_overlays(batch, records, by_key, overlay_dir, overlay_width)
    return stats


def _draw_overlays(batch: batching.SearchBatch, records: list[dict], by_key: dict[str, ImageInput],
                   overlay_dir: pathlib.Path, overlay_width: int) -> list[str]:
    """:func:`fgpose.refine.overlays.draw_overlays` for the kept records of ``batch``; a
    failure of the whole batch's drawing becomes one problem line instead of an error."""
    try:
        return overlays.draw_overlays(batch, records, by_key, overlay_dir, overlay_width)
    except Exception as err:  # noqa: BLE001 - an overlay never costs a result (they are journaled)
        keys = ", ".join(r["key"] for r in records)
        return [f"overlays of {keys} not drawn ({type(err).__name__}: {err})"]
