"""The harness shared by the benchmark scripts (``scripts/bench_*.py``).

A benchmark runs as ``python scripts/bench_x.py``, which puts ``scripts/`` on ``sys.path``,
so it imports this module as ``import _bench_common as common`` — before anything from
``fgpose``: importing it puts the repository root first on ``sys.path``, so that a benchmark
measures this checkout's ``fgpose`` and ``tfds_builders`` even when an editable install is
stale. Nothing here imports JAX or ``fgpose`` at import time (``--help`` stays quick).

It holds what the benchmarks share: the release root and its one real car
(:func:`resolve_release_dir`, :func:`example_car_path`, :func:`example_car_annotations`),
progress lines on stderr (:func:`log`), device-synchronised timing (:func:`timed_calls`,
:func:`median_time`), tables (:func:`markdown_table`, :func:`text_table`) and the JSON
result file (:func:`write_json`).
"""

from __future__ import annotations

import json
import pathlib
import re
import statistics
import sys
import time
from typing import Any, Callable, Iterable, Sequence

REPO = pathlib.Path(__file__).resolve().parents[1]
"""The repository root (the parent of ``scripts/``)."""

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

EXAMPLE_DATASET = "StanfordCars"
"""The dataset whose annotations use the release's one car mesh."""


def log(msg: str) -> None:
    """One progress line on stderr (stdout is left to the result tables)."""
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- release data


def resolve_release_dir(arg: str | None, dataset: str = EXAMPLE_DATASET) -> pathlib.Path:
    """The release root from ``--release-dir`` (``arg``) or ``$FGPOSE_RELEASE_DIR``.

    Exits (``SystemExit`` with a message naming both) when neither gives a directory with
    ``Anno3D/<dataset>/`` (:func:`fgpose.annotations.require_release_dir`).
    """
    from fgpose.annotations import require_release_dir  # noqa: PLC0415 - keeps --help free of JAX

    try:
        return require_release_dir(arg, dataset)
    except ValueError as err:
        raise SystemExit(f"error: {err} (--release-dir / FGPOSE_RELEASE_DIR)") from None


def example_car_path(root: pathlib.Path) -> pathlib.Path:
    """``<root>/CAD/02958343/<id>/model.obj`` of the release's one car mesh
    (:data:`fgpose.annotations.EXAMPLE_CAR_MODEL_ID`); existence is not checked."""
    from fgpose import annotations  # noqa: PLC0415

    return annotations.cad_path(root, EXAMPLE_DATASET, annotations.EXAMPLE_CAR_MODEL_ID)


def example_car_annotations(root: pathlib.Path, version: int) -> list[tuple[str, Any]]:
    """``(split, Annotation)`` of every StanfordCars annotation (train, then test, each by key)
    whose CAD model is the release's car (85 of them in the release, for v1 and v2 alike).

    Exits with a message when an annotation file cannot be read or none uses the car.
    """
    from fgpose import annotations  # noqa: PLC0415

    model_id = annotations.EXAMPLE_CAR_MODEL_ID
    out = []
    for split in annotations.SPLITS:
        try:
            table = annotations.load_split(root, EXAMPLE_DATASET, split, version)
        except (OSError, ValueError) as err:
            raise SystemExit(f"error: {err}") from None
        out += [(split, a) for _, a in sorted(table.items()) if a.model_id == model_id]
    if not out:
        raise SystemExit(f"error: no {EXAMPLE_DATASET} v{version} annotation uses model {model_id}")
    return out


# ----------------------------------------------------------------------------- timing


def timed_calls(fn: Callable[[], Any], repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn``, each waited for with
    ``jax.block_until_ready`` on its result (asynchronous dispatch is not timed as done)."""
    import jax  # noqa: PLC0415

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return times


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    """Median of :func:`timed_calls` (seconds)."""
    return statistics.median(timed_calls(fn, repeats))


# ----------------------------------------------------------------------------- tables and files


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub markdown table.

    Args:
      header: column titles.
      rows: cells per row (formatted with ``str``).
      align: one letter per column, ``l`` (``---``) or ``r`` (``---:``); default all ``l``.
    """
    align = align or "l" * len(header)
    if len(align) != len(header) or set(align) - {"l", "r"}:
        raise ValueError(f"align needs one of 'l'/'r' per column, got {align!r} for {len(header)} columns")

    def line(cells) -> str:
        return "| " + " | ".join(str(c) for c in cells) + " |"

    lines = [line(header), "|" + "".join("---|" if a == "l" else "---:|" for a in align)]
    lines += [line(r) for r in rows]
    return "\n".join(lines)


_SPEC_RE = re.compile(r"^([<>^]?)(\d*)")


def text_table(columns: Sequence[tuple[str, str]], rows: Iterable[Sequence[Any]], sep: str = " ") -> str:
    """A fixed-width plain-text table with a rule under the header.

    Args:
      columns: ``(title, format spec)`` per column, e.g. ``("config", "<16")``,
        ``("img/s", ">12.3f")``; the spec's alignment and width also place the title.
      rows: values per row, formatted with the column's spec.
      sep: text between columns.
    """
    def title(name: str, spec: str) -> str:
        align, width = _SPEC_RE.match(spec).groups()
        return format(name, f"{align or '<'}{width}")

    head = sep.join(title(name, spec) for name, spec in columns)
    lines = [head, "-" * len(head)]
    lines += [sep.join(format(v, spec) for v, (_, spec) in zip(r, columns)) for r in rows]
    return "\n".join(lines)


def write_json(path: str | pathlib.Path, payload: Any, indent: int = 2) -> pathlib.Path:
    """Writes ``payload`` as JSON (parent directories created) and logs ``wrote <path>``."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=indent))
    log(f"wrote {path}")
    return path
