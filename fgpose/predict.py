"""Prediction on your own photos: ``python -m fgpose.predict --workdir RUN --images DIR_OR_FILES --out DIR``.

Runs the trained model of a :mod:`fgpose.train` workdir (its ``config.json`` and latest
checkpoint, :func:`fgpose.inference.load_predictor`) on photos of any size (JPEG, PNG, and
what else Pillow reads; EXIF orientation applied, greyscale/CMYK/palette converted:
:func:`fgpose.photos.read_photo`), in fixed-size jitted batches (the last one padded), with a
progress bar. Each photo is resized exactly as in evaluation. Outputs
(:mod:`fgpose.prediction_writer`): ``predictions.json`` (class, box, score, the 7 pose
parameters and ``P`` in original pixels per photo, plus the skipped files), ``poses.pkl``
(the release's annotation format, keys = photo paths relative to the images directory),
``overlay/<key>.png`` and, for a model with a location-field head, ``mask/<key>.png`` and
``field/<key>.{npy,png}``.

A photo that cannot be read (corrupt, truncated, not an image) is skipped, reported at the
end and listed in the JSON; it never stops the run. Exit status 2 with one ``error: ...``
line: no photos found, a missing or invalid workdir (no config, no checkpoint), or an
output directory that cannot be written.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys
from typing import Sequence

import numpy as np

from fgpose import inference, photos
from fgpose.atomic_io import check_writable_dir
from fgpose.prediction_writer import FIELD_KEYS, write_prediction, write_summary

log = logging.getLogger("fgpose.predict")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fgpose.predict", description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True, help="the --workdir of a training run (config.json, checkpoints/)")
    p.add_argument("--images", required=True, nargs="+",
                   help="photo files and/or directories (searched recursively for "
                        + ", ".join(photos.IMAGE_SUFFIXES) + ")")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    p.add_argument("--batch_size", type=int, default=None, help="photos per jitted call (default: eval.batch_size)")
    p.add_argument("--num_classes", type=int, default=None,
                   help="class count when the run's config does not state it and its dataset is not prepared here")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI; returns the exit status (0, or 2 with a one-line message on stderr)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    images, skipped = photos.find_images(args.images)
    if not images:
        where = ", ".join(args.images)
        return _error(f"no photos found in {where} (looked for {', '.join(photos.IMAGE_SUFFIXES)})")
    try:
        predictor = inference.load_predictor(args.workdir, step=args.step, batch_size=args.batch_size,
                                             num_classes=args.num_classes)
    except inference.WorkdirError as exc:
        return _error(str(exc))
    try:
        out = check_writable_dir(args.out)
    except OSError as exc:
        return _error(str(exc))
    classes = inference.dataset_classes(predictor.config, predictor.num_classes)
    from tqdm.auto import tqdm

    records: list[dict] = []
    has_field = None
    bar = tqdm(total=len(images), desc="predict", unit="photo", dynamic_ncols=True, disable=args.no_progress)
    pending: list[tuple[str, pathlib.Path, np.ndarray]] = []  # (key, file, photo) of the next batch

    def flush() -> None:
        nonlocal has_field
        if not pending:
            return
        rows = predictor.predict([p for _, _, p in pending])
        if has_field is None:
            has_field = all(k in rows for k in FIELD_KEYS)
            if not has_field:
                bar.write("note: the model has no location-field head: no masks or fields are written "
                          "(only overlays, predictions.json and poses.pkl)")
        for i, (key, path, photo) in enumerate(pending):
            row = {k: v[i] for k, v in rows.items()}
            try:
                records.append(write_prediction(out, key, photo, row, classes))
            except OSError as exc:
                skipped.append({"file": str(path), "reason": f"could not write its outputs: {exc}"})
        bar.update(len(pending))
        pending.clear()

    try:
        for key, path in images:
            try:
                photo = photos.read_photo(path)
            except photos.PhotoError as exc:
                skipped.append({"file": str(path), "reason": str(exc)})
                bar.update(1)
                continue
            pending.append((key, path, photo))
            if len(pending) == predictor.batch_size:
                flush()
        flush()
    finally:
        bar.close()
    meta = {"workdir": str(args.workdir), "step": predictor.step,
            "dataset": f"{predictor.config.dataset.name}/{predictor.config.dataset.builder_config}",
            "num_classes": predictor.num_classes, "field_head": bool(has_field),
            "input_size": list(predictor.config.data.input_size), "batch_size": predictor.batch_size}
    try:
        doc = write_summary(out, records, skipped, meta)
    except OSError as exc:
        return _error(f"could not write the summary to {out}: {exc}")
    counts = doc["counts"]
    print(f"fgpose.predict: {counts['predicted']} of {counts['images']} photos predicted "
          f"({counts['detected']} with a detection above the score threshold), {counts['skipped']} skipped; "
          f"outputs in {out}")
    for s in skipped:
        print(f"  skipped {s['file']}: {s['reason']}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
