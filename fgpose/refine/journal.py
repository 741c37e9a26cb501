"""A resumable journal of finished work, and refinement's use of it (``<out>.partial.jsonl``).

:class:`Journal` is an append-only JSON-lines file: a header line
``{"format": FORMAT, "settings": {...}}``, then one line ``{"results": [record, ...]}`` per
:meth:`Journal.append`, each record a JSON object with a string key field (``"key"``).
Every append writes a complete line (short writes are continued) and fsyncs it; a failed
append (full disk) truncates the file back to its earlier lines and raises ``OSError``. An
interruption (Ctrl-C, kill, power loss) leaves at most a torn last line, which
:meth:`Journal.load` discards (that append did not finish, its batch is recomputed); the
lines before it are kept. Rewrites (header, compaction, cutting a torn line) are atomic
(:func:`fgpose.atomic_io.atomic_write`). A later record with the same key replaces an
earlier one; :meth:`Journal.compact` rewrites the file with only the latest records.
The header's settings are those of the run that started the file: loading with other
settings is an error, so results of different settings never mix.

Refinement (``python -m fgpose.refine``) keeps its progress in :func:`refine_journal`: after
every batch its results are appended; a rerun of the same command skips the images already
there and recomputes nothing; at the end the output is written, its completion recorded
(:mod:`fgpose.refine.completion`) and the journal removed.
The settings (:func:`refine_settings`) are the search settings and the input file.
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
from typing import TYPE_CHECKING

from fgpose.atomic_io import atomic_write

if TYPE_CHECKING:  # the type only: the journal itself needs no JAX
    from fgpose.refine import search

PARTIAL_SUFFIX = ".partial.jsonl"
"""Refinement's journal is ``<out><PARTIAL_SUFFIX>`` beside the output pickle ``<out>``."""
PARTIAL_FORMAT = "fgpose.refine.partial/1"
"""The ``format`` of refinement's journal header."""


class Journal:
    """Append-only JSON-lines journal of records keyed by ``key`` (module docstring).

    Attributes:
      path: the journal file.
      format: the header's ``format`` string; another format is an error on loading.
      key: the field of each record that identifies it (a later record replaces an earlier
        one with the same value).
      what: what the file is called in error messages.
      discard_hint: how the user discards the file, for error messages (completed by
        " it" / " the file").
    """

    def __init__(self, path: pathlib.Path, format: str, *, key: str = "key", what: str = "progress file",
                 discard_hint: str = "delete it to discard"):
        self.path = pathlib.Path(path)
        self.format = format
        self.key = key
        self.what = what
        self.discard_hint = discard_hint

    def load(self, settings: dict) -> dict[str, dict]:
        """The finished records ``{key: latest record}``, in the order their keys first appear.

        A torn last line is cut from the file. A missing or empty file holds no records.

        Raises:
          ValueError: the header is unreadable or of another format, the file was started
            with other ``settings`` (the message lists the differences), or a complete line
            is corrupt.
          OSError: the file cannot be read or rewritten.
        """
        if not self.path.exists():
            return {}
        data = self.path.read_bytes()
        complete, _, torn = data.rpartition(b"\n")
        lines = complete.split(b"\n") if complete else []
        if torn:  # a line cut by an interruption: that append did not finish
            self._rewrite(complete + b"\n" if complete else b"")
        if not lines:
            return {}
        try:
            header = json.loads(lines[0])
        except json.JSONDecodeError:
            raise ValueError(f"{self.path}: not a {self.what} (unreadable header)") from None
        if not isinstance(header, dict) or header.get("format") != self.format:
            raise ValueError(f"{self.path}: not a {self.what} ({self.format})")
        if header.get("settings") != settings:
            old, new = header.get("settings") or {}, settings
            diff = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in new if old.get(k) != new.get(k))
            raise ValueError(f"{self.path} was written by a run with other settings ({diff}); rerun with the same "
                             f"settings to resume, or {self.discard_hint} it")
        done: dict[str, dict] = {}
        for n, line in enumerate(lines[1:], 2):
            try:
                for record in json.loads(line)["results"]:
                    done[record[self.key]] = record
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{self.path}:{n}: corrupt progress line ({err}); {self.discard_hint} "
                                 "the file") from None
        return done

    def start(self, settings: dict) -> None:
        """Writes the header if the file is missing or empty (else it is kept: call :meth:`load` first)."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            self._rewrite(self._header(settings))

    def append(self, records: list[dict]) -> None:
        """Appends ``records`` as one complete line, then fsyncs (the file must be started).

        The line is written completely or not at all: a short ``write`` is continued until
        every byte is written; if a write or the fsync fails (a full disk: ``ENOSPC``), the
        file is truncated back to its length before the append and the error is raised, so
        the journal keeps exactly the earlier lines.

        Raises:
          OSError: the line could not be written (the message names the file and says
            that the earlier records are kept).
        """
        line = (json.dumps({"results": records}) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            start = os.fstat(fd).st_size
            try:
                _write_all(fd, line)
                os.fsync(fd)
            except OSError as err:
                try:
                    os.ftruncate(fd, start)
                except OSError:
                    pass  # a torn last line is still cut by the next load()
                raise OSError(err.errno, f"could not append to {self.path} ({err.strerror or err}); "
                                         "the records written before are kept") from err
        finally:
            os.close(fd)

    def compact(self, settings: dict) -> dict[str, dict]:
        """Rewrites the file (atomically) as its header and one line of the latest records;
        returns them as :meth:`load` does (and raises as it does)."""
        done = self.load(settings)
        body = json.dumps({"results": list(done.values())}) + "\n" if done else ""
        self._rewrite(self._header(settings) + body.encode())
        return done

    def remove(self) -> None:
        """Deletes the file (nothing to do if it does not exist)."""
        self.path.unlink(missing_ok=True)

    def _header(self, settings: dict) -> bytes:
        return (json.dumps({"format": self.format, "settings": settings}) + "\n").encode()

    def _rewrite(self, data: bytes) -> None:
        atomic_write(self.path, lambda fh: fh.write(data))


def _write_all(fd: int, data: bytes) -> None:
    """Writes all of ``data`` to ``fd``, continuing after short writes; OSError if a write
    makes no progress (``ENOSPC``) or fails."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def partial_path(out: pathlib.Path) -> pathlib.Path:
    """``<out>.partial.jsonl``: where the refinement writing ``out`` keeps its progress."""
    return out.with_name(out.name + PARTIAL_SUFFIX)


def refine_journal(out: pathlib.Path) -> Journal:
    """The progress journal of a refinement writing ``out``: one record per refined image,
    keyed by its annotation key (:func:`fgpose.refine.report.result_records`)."""
    return Journal(partial_path(out), PARTIAL_FORMAT, what="refinement progress file",
                   discard_hint="pass --restart to discard")


def refine_settings(annotations: pathlib.Path, config: search.SearchConfig, max_faces: int | None,
                    coarse_max_faces: int | None, drop_hidden_faces: bool) -> dict:
    """What a refinement's results depend on besides each image's own inputs (JSON-ready).

    Args:
      annotations: the input annotation file (recorded resolved).
      config: the search settings.
      max_faces: the search meshes' face budget, or None.
      coarse_max_faces: the coarse pass's face budget, or None (also when the search is not
        coarse to fine).
      drop_hidden_faces: whether the faces no distant viewpoint sees are dropped.
    """
    return {"annotations": str(pathlib.Path(annotations).resolve()), "schedule": config.schedule,
            "steps": list(config.steps), "alpha0": config.alpha0, "alpha_min": config.alpha_min,
            "max_sweeps": config.max_sweeps, "coarse": config.coarse, "coarse_alpha": config.coarse_alpha,
            "max_faces": max_faces, "coarse_max_faces": coarse_max_faces, "drop_hidden_faces": drop_hidden_faces,
            "objective": config.objective.name, "min_reference_iou": config.min_reference_iou,
            "prior_scale": None if config.objective.prior_scale is None else list(config.objective.prior_scale)}
