"""Whether a refinement's outputs are complete: ``<out>.complete.json``.

When ``python -m fgpose.refine`` has written its outputs, it records beside the output
pickle ``<out>`` what produced them and what they are (:func:`write_marker`):
``{"format": FORMAT, "run": {...}, "outputs": {path: sha256}, "summary": {...}}``, where
``run`` is everything the results depend on (the search settings, the input file's
SHA-256, the directories and limits of the command) and ``outputs`` the SHA-256 of the
output pickle and, if written, the JSON report. A rerun of the same command finds that
marker (:func:`find_complete`) and stops without recomputing; the outputs count as
complete only while the marker's ``run`` equals the new command's and every output file
the command asks for still has the recorded hash (an output deleted, changed or not
written by that run means: compute again).
"""

from __future__ import annotations

import json
import pathlib

from fgpose.atomic_io import atomic_write
from fgpose.atomic_io import file_sha256

COMPLETE_SUFFIX = ".complete.json"
"""The marker of a complete refinement writing ``<out>`` is ``<out><COMPLETE_SUFFIX>``."""
FORMAT = "fgpose.refine.complete/1"
"""The ``format`` of the marker."""


def marker_path(out: pathlib.Path) -> pathlib.Path:
    """``<out>.complete.json``: the completion marker of the refinement writing ``out``."""
    return out.with_name(out.name + COMPLETE_SUFFIX)


def write_marker(out: pathlib.Path, run: dict, outputs: list[pathlib.Path], summary: dict) -> None:
    """Records (atomically) that ``outputs`` (``out`` first) are the complete results of ``run``.

    Args:
      out: the output pickle; the marker goes beside it.
      run: JSON-ready description of the command (what the results depend on).
      outputs: the files written, which must exist.
      summary: JSON-ready numbers to repeat when a rerun finds the outputs complete.

    Raises:
      OSError: an output cannot be read or the marker cannot be written.
    """
    marker = {"format": FORMAT, "run": run, "outputs": {str(p): file_sha256(p) for p in outputs},
              "summary": summary}
    data = (json.dumps(marker, indent=1) + "\n").encode()
    atomic_write(marker_path(out), lambda fh: fh.write(data))


def find_complete(out: pathlib.Path, run: dict, outputs: list[pathlib.Path]) -> dict | None:
    """The marker's summary if ``outputs`` are the complete results of ``run``, else None.

    Complete: the marker of ``out`` is readable, of :data:`FORMAT`, its ``run`` equals
    ``run`` (after a JSON round trip), and each of ``outputs`` is recorded in it with the
    SHA-256 it has now. Never raises for a missing or damaged marker or output (None).
    """
    try:
        marker = json.loads(marker_path(out).read_text())
        if not isinstance(marker, dict) or marker.get("format") != FORMAT:
            return None
        if marker.get("run") != json.loads(json.dumps(run)):
            return None
        recorded = marker.get("outputs") or {}
        if any(recorded.get(str(p)) != file_sha256(p) for p in outputs):
            return None
        return marker.get("summary") or {}
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def remove_marker(out: pathlib.Path) -> None:
    """Deletes the marker of ``out`` (nothing to do if there is none)."""
    marker_path(out).unlink(missing_ok=True)
