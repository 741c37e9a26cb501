"""Refining scanned images batch by batch, each finished batch kept in a journal.

:func:`refine_images` is the loop of ``python -m fgpose.refine``: batches from
:func:`fgpose.refine.batching.search_batches`, one search call each
(:func:`~fgpose.refine.batching.refine_batch`), result records
(:func:`fgpose.refine.report.result_records`) drawn as overlays if asked and appended to the
journal before the next batch starts, so an interruption loses at most the batch in flight.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Callable

from fgpose.refine import batching, overlays, report, search
from fgpose.refine.inputs import ImageInput, Skip
from fgpose.refine.journal import Journal
from fgpose.refine.mesh_store import MeshStore


@dataclasses.dataclass
class RunStats:
    """What one :func:`refine_images` call did.

    Attributes:
      refined: images refined (padding rows not counted).
      seconds: wall time spent in the search calls, JIT compilation included.
      overlay_problems: one line per overlay that could not be drawn.
    """

    refined: int = 0
    seconds: float = 0.0
    overlay_problems: list[str] = dataclasses.field(default_factory=list)


def refine_images(images: list[ImageInput], config: search.SearchConfig, meshes: MeshStore, journal: Journal,
                  done: dict[str, dict], skipped: dict[str, Skip], *, batch_size: int,
                  overlay_dir: pathlib.Path | None = None, overlay_width: int = 600,
                  on_skip: Callable[[ImageInput], None] = lambda image: None,
                  on_batch: Callable[[list[dict]], None] = lambda records: None) -> RunStats:
    """Refines ``images`` in batches of ``batch_size`` (the journal must be started).

    After each batch its records are appended to ``journal``, added to ``done``
    (``{key: record}``, updated in place, so it is current even if a KeyboardInterrupt
    escapes) and passed to ``on_batch``. Images whose mask or mesh turns out unusable are
    added to ``skipped`` and passed to ``on_skip``. With ``overlay_dir``, before/after
    pictures ``overlay_width`` pixels wide are written there (:mod:`fgpose.refine.overlays`).
    """
    stats = RunStats()
    by_key = {im.key: im for im in images}
    for batch in batching.search_batches(images, batch_size, meshes, skipped, on_skip, soft=config.objective.soft):
        t0 = time.perf_counter()
        result = batching.refine_batch(batch, config)
        stats.seconds += time.perf_counter() - t0
        records = report.result_records(batch, result)
        if overlay_dir is not None:
            stats.overlay_problems += overlays.draw_overlays(batch, records, by_key, overlay_dir, overlay_width)
        journal.append(records)
        done.update((r["key"], r) for r in records)
        stats.refined += len(records)
        on_batch(records)
    return stats
