"""Command line: refine release annotations against segmentation masks (Algorithm 1).

Example (StanfordCars train, v1 annotations, masks from any segmentation model)::

    R=$FGPOSE_RELEASE_DIR
    python -m fgpose.refine --annotations $R/Anno3D/StanfordCars/train_anno.pkl \\
        --images $R/Image/StanfordCars/cars_train --masks masks/cars_train --cad $R/CAD \\
        --out out/train_anno_refined.pkl --json out/train_refined.json --overlays out/overlays

Only the arguments and the wiring live here: photo, mask and mesh paths and skips in
:mod:`~fgpose.refine.inputs`, meshes in :mod:`~fgpose.refine.mesh_store`, batches in
:mod:`~fgpose.refine.batching`, resuming from ``<out>.partial.jsonl`` in
:mod:`~fgpose.refine.journal`, the loop in :mod:`~fgpose.refine.run`, the outputs in
:mod:`~fgpose.refine.report` and :mod:`~fgpose.refine.overlays`, the input records in
:mod:`~fgpose.refine.records`, the reference checks in :mod:`~fgpose.refine.reference_checks`,
the completion marker in :mod:`~fgpose.refine.completion`.

Every output directory is checked before any work starts. A rerun of a command whose outputs
are complete says so and exits 0 without recomputing (``--restart`` recomputes).

Exit status: 0 when done (or already complete), 1 when no image could be refined, 2 on bad
arguments, unreadable inputs (annotation file, partial file), unwritable output directories,
or when progress or outputs cannot be written (full disk; finished batches are kept), 130
when interrupted (progress kept).
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys

from tqdm import tqdm

from fgpose import annotations as anno_lib
from fgpose.atomic_io import check_writable_dir
from fgpose.refine import (completion, device, inputs, journal, objective, records, reference_checks, report, run,
                           search)
from fgpose.refine.mesh_store import MeshStore


def _positive(cast, what: str):
    """An argparse type: ``cast(text)``, which must be finite and > 0."""
    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            value = None
        if value is None or not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"expected a positive {what}, got {text!r}")
        return value
    return parse


_positive_int, _positive_float = _positive(int, "integer"), _positive(float, "number")


def _objective(text: str) -> objective.Objective:
    """An argparse type: :func:`fgpose.refine.objective.parse_objective`."""
    try:
        return objective.parse_objective(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _fraction(text: str) -> float:
    """An argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1], got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fgpose.refine",
        description="Refine 3D pose annotations by a greedy search maximising the IoU between the CAD "
                    "silhouette and a segmentation mask (Algorithm 1 of Wang et al. 2018).",
        epilog="Paths: photo = IMAGES/<key>; mask = MASKS/<key with .png>; mesh = CAD/<synset>/<model_id>/model.obj "
               "or CAD/<model_id>/model.obj. Progress is kept in <out>.partial.jsonl: rerun the same command to resume.",
    )
    io = p.add_argument_group("inputs and outputs")
    io.add_argument("--annotations", type=pathlib.Path, required=True, help="release annotation pickle to refine")
    io.add_argument("--images", type=pathlib.Path, required=True,
                    help="directory the annotation keys are relative to (photo = IMAGES/<key>)")
    io.add_argument("--masks", type=pathlib.Path, required=True,
                    help="reference masks: MASKS/<key with its extension replaced by .png>, nonzero = foreground "
                         "(or <key>.npy, foreground probabilities in [0, 1])")
    io.add_argument("--cad", type=pathlib.Path, required=True,
                    help="CAD directory: CAD/<synset>/<model_id>/model.obj or CAD/<model_id>/model.obj")
    io.add_argument("--dataset", choices=sorted(anno_lib.DATASETS),
                    help="dataset of --annotations; picks the ShapeNet synset under --cad "
                         "(default: any known synset, then CAD/<model_id>)")
    io.add_argument("--out", type=pathlib.Path, required=True, help="refined annotation pickle (release format)")
    io.add_argument("--json", type=pathlib.Path, help="also write the summary and per-image results as JSON")
    io.add_argument("--overlays", type=pathlib.Path,
                    help="write before/after overlays to OVERLAYS/<key with .png> (v1 red, refined green)")
    io.add_argument("--overlay-width", type=_positive_int, default=600,
                    help="width of the overlays in pixels; height int(H*width/W) (default 600)")
    c = p.add_argument_group("reference checks (an image that fails one is skipped, with the reason)")
    c.add_argument("--min-foreground", type=_fraction, default=reference_checks.DEFAULT_MIN_FOREGROUND,
                   help="skip a reference mask whose foreground covers less than this fraction of the frame "
                        "(default %(default)s)")
    c.add_argument("--max-foreground", type=_fraction, default=reference_checks.DEFAULT_MAX_FOREGROUND,
                   help="skip a reference mask whose foreground covers more than this fraction of the frame "
                        "(default %(default)s)")
    s = p.add_argument_group("search")
    s.add_argument("--schedule", choices=search.SCHEDULES, default="paper",
                   help="paper: Algorithm 1 with step halving; release: the released code's single-step loop; "
                        "parallel: all 14 moves per step (default paper)")
    s.add_argument("--steps", nargs=7, type=float, metavar=("A", "E", "THETA", "D", "F", "U", "V"),
                   default=list(search.DEFAULT_STEPS),
                   help="step sizes eps: radians for a, e, theta; model units for d; px of the width-300 frame "
                        "for f, u, v (default pi/100 x3, 0.01, 10, 1, 1)")
    s.add_argument("--alpha0", type=_positive_float, default=search.SearchConfig.alpha0,
                   help="initial step multiplier (default %(default)s)")
    s.add_argument("--alpha-min", type=_positive_float, default=search.SearchConfig.alpha_min,
                   help="stop once alpha is halved below this (paper, parallel; default %(default)s)")
    s.add_argument("--max-sweeps", type=_positive_int, default=search.SearchConfig.max_sweeps,
                   help="bound on sweeps per image (default %(default)s)")
    s.add_argument("--objective", type=_objective, default=objective.Objective(), metavar="SPEC",
                   help="what the search maximises, terms joined with '+': iou (the published objective), "
                        "band[:PX] (ignore pixels within PX of the mask boundary, default "
                        f"{objective.DEFAULT_BAND_PX:g}), soft (masks as probabilities: .npy maps, greyscale PNGs "
                        "as grey/255), offset[:K] (best IoU over the mask grown or shrunk by up to K px, default "
                        f"{objective.DEFAULT_OFFSET_PX}), map[:W] (penalise moves away from the input annotation, W "
                        f"IoU per typical human error, default {objective.DEFAULT_PRIOR_WEIGHT:g}). With network "
                        "masks whose boundaries are biased use offset:2+map (docs/refine_robust.md). Default: iou")
    s.add_argument("--min-reference-iou", type=_fraction, default=0.5, metavar="IOU",
                   help="flag, and leave unrefined, images whose input pose's silhouette has an IoU below this with "
                        "the mask: reference and annotation disagree (0 = refine every image; default %(default)s)")
    s.add_argument("--coarse", type=_positive_int, default=search.SearchConfig.coarse,
                   help="coarse-to-fine: search first on every COARSE-th row and column of the frame, then on all "
                        "of it (paper, parallel; 1 = off; default %(default)s)")
    s.add_argument("--coarse-alpha", type=_positive_float, default=search.SearchConfig.coarse_alpha,
                   help="alpha at which the coarse search hands over to the full frame (default %(default)s)")
    s.add_argument("--coarse-max-faces", type=_positive_int,
                   help="decimate meshes to at most this many faces for the coarse pass (default: the search meshes)")
    s.add_argument("--max-faces", type=_positive_int,
                   help="decimate meshes to at most this many faces for the search (default: full meshes)")
    s.add_argument("--keep-hidden-faces", action="store_true",
                   help="keep the faces no distant viewpoint sees (default: drop them before decimating; "
                        "they never change a silhouette)")
    r = p.add_argument_group("run")
    r.add_argument("--batch-size", type=_positive_int, default=16, help="images per jitted call (default 16)")
    r.add_argument("--limit", type=_positive_int, help="only the first N keys of --annotations (output holds those)")
    r.add_argument("--device", choices=device.DEVICES, default="default",
                   help="cpu: force the CPU (like JAX_PLATFORMS=cpu); gpu: require a GPU; default: JAX's choice")
    r.add_argument("--restart", action="store_true",
                   help="discard an existing <out>.partial.jsonl instead of resuming, and recompute outputs that "
                        "are complete")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = search.SearchConfig(schedule=args.schedule, steps=tuple(args.steps), alpha0=args.alpha0,
                                     alpha_min=args.alpha_min, max_sweeps=args.max_sweeps, coarse=args.coarse,
                                     coarse_alpha=args.coarse_alpha, objective=args.objective,
                                     min_reference_iou=args.min_reference_iou)
        checks = reference_checks.ReferenceChecks(args.min_foreground, args.max_foreground)
    except ValueError as err:
        parser.error(str(err))
    for name in ("images", "masks", "cad"):
        if not getattr(args, name).is_dir():
            parser.error(f"--{name} {getattr(args, name)} is not a directory")
    if args.out.resolve() == args.annotations.resolve():
        parser.error("--out must not overwrite --annotations")
    coarse_max_faces = args.coarse_max_faces if config.coarse > 1 else None
    settings = journal.refine_settings(args.annotations, config, args.max_faces, coarse_max_faces,
                                       not args.keep_hidden_faces)
    progress = journal.refine_journal(args.out)
    outputs = [args.out] + ([args.json] if args.json else [])
    try:
        for directory in dict.fromkeys([p.parent for p in outputs] + ([args.overlays] if args.overlays else [])):
            check_writable_dir(directory)
        run_description = {"settings": settings, "annotations_sha256": completion.file_sha256(args.annotations),
                           **{k: str(getattr(args, k).resolve()) for k in ("images", "masks", "cad")},
                           "dataset": args.dataset, "limit": args.limit, "min_foreground": checks.min_foreground,
                           "max_foreground": checks.max_foreground, "overlay_width": args.overlay_width,
                           "overlays": str(args.overlays.resolve()) if args.overlays else None}
        if args.restart:
            completion.remove_marker(args.out)
        elif (finished := completion.find_complete(args.out, run_description, outputs)) is not None:
            print(f"{args.out} is complete: written by the same command from the same annotation file "
                  f"({finished.get('refined')} of {finished.get('images')} images refined); nothing to do "
                  "(pass --restart to recompute)")
            return 0
        device.select_device(args.device)
        table, skipped = records.load_table(args.annotations, args.limit)
        if args.restart:
            progress.remove()
        done = report.reusable_records(progress.load(settings), table)
        progress.start(settings)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    todo, scan_skips = inputs.scan({k: a for k, a in table.items() if k not in done}, args.images, args.masks,
                                   args.cad, args.dataset)
    skipped.update(scan_skips)
    meshes = MeshStore(args.max_faces, coarse_max_faces, drop_hidden=not args.keep_hidden_faces)
    bar = tqdm(total=len(todo) + len(done), initial=len(done), unit="img", disable=args.no_progress,
               file=sys.stderr, desc="refine")

    def on_skip(image: inputs.ImageInput) -> None:
        bar.total -= 1
        bar.refresh()

    try:
        stats = run.refine_images(todo, config, meshes, progress, done, skipped, batch_size=args.batch_size,
                                  overlay_dir=args.overlays, overlay_width=args.overlay_width, on_skip=on_skip,
                                  on_batch=lambda batch_records: bar.update(len(batch_records)), checks=checks)
    except KeyboardInterrupt:
        bar.close()
        print(f"\ninterrupted: {len(done)} of {len(table)} images refined and kept in {progress.path}; "
              "rerun the same command to continue", file=sys.stderr)
        return 130
    except OSError as err:  # the journal could not be appended to (full disk)
        bar.close()
        print(f"error: {err}\nstopped: {len(done)} of {len(table)} images refined and kept in {progress.path}; "
              "free some space and rerun the same command to continue", file=sys.stderr)
        return 2
    bar.close()

    summary = report.summarize(table, done, skipped, stats.seconds, stats.refined, {
        "mesh_loads": meshes.loads, "settings": settings, "overlay_problems": stats.overlay_problems})
    try:
        report.write_outputs(args.out, args.json, summary, table, done, skipped)
    except OSError as err:
        print(f"error: {err} (progress kept in {progress.path})", file=sys.stderr)
        return 2
    try:
        completion.write_marker(args.out, run_description, outputs,
                                {k: summary[k] for k in ("images", "refined", "skipped")})
    except OSError as err:  # the outputs are fine; a rerun just recomputes
        print(f"warning: could not record that {args.out} is complete ({err})", file=sys.stderr)
    progress.remove()
    report.print_summary(summary, skipped)
    print(f"wrote {args.out}" + (f" and {args.json}" if args.json else ""))
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
