"""Dataset statistics of the release: Table 1 counts and Figure 7 pose histograms.

Reproduces, from the release's annotation pickles (read safely with
:mod:`fgpose.annotations`), for StanfordCars3D, CompCars3D and FGVC-Aircraft3D:

* Table 1 of Wang et al. 2018: number of fine-grained classes (lines of
  ``CAD/<Dataset>3D.txt``), train / test / total images, and the number of distinct CAD models
  the annotations use; printed as a table and written to ``dataset_stats.json``;
* Figure 7: polar histograms of azimuth, elevation and in-plane rotation θ and histograms of
  distance d, focal length f and principal point u, v (train + test poses), one PNG per
  dataset (``<Dataset>3D.png``) drawn by :func:`fgpose.viz.pose_histograms`.

Usage::

    python scripts/dataset_stats.py [--release-dir DIR] [--version v1|v2] [--out out/dataset_stats]

``--release-dir`` defaults to ``$FGPOSE_RELEASE_DIR``. CompCars has v1 annotations only: with
``--version v2`` it falls back to v1 (the JSON records the version used per dataset). Image
counts do not depend on the version.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

from fgpose import annotations as anno
from fgpose import viz

PAPER_TABLE1 = {
    "StanfordCars": {"classes": 196, "train": 8144, "test": 8041},
    "CompCars": {"classes": 113, "train": 3798, "test": 1898},
    "FGVC_Aircraft": {"classes": 100, "train": 6667, "test": 3333},
}
"""Table 1 of the paper (classes, train and test images per dataset)."""
PAPER_TOTAL_IMAGES = 31881
PAPER_TOTAL_CLASSES = 409

DISPLAY_NAMES = {"StanfordCars": "StanfordCars3D", "CompCars": "CompCars3D", "FGVC_Aircraft": "FGVC-Aircraft3D"}


def version_for(dataset: str, version: int | str) -> int:
    """The annotation version used for ``dataset``: ``version`` if it has it, else v1."""
    info = anno.get_dataset(dataset)
    v = int(str(version).lstrip("vV"))
    return v if v in info.versions else 1


def load_dataset(root, dataset: str, version) -> dict[str, dict[str, anno.Annotation]]:
    """``{split: {key: Annotation}}`` for both splits of one dataset."""
    v = version_for(dataset, version)
    return {split: anno.load_split(root, dataset, split, v) for split in anno.SPLITS}


def dataset_counts(root, dataset: str, splits: dict[str, dict[str, anno.Annotation]], version) -> dict:
    """Table 1 row of one dataset.

    Returns:
      ``{"name", "version", "classes", "train", "test", "total", "cad_models",
      "cad_models_train", "cad_models_test", "model_ids"}``: classes = lines of the class
      model list; cad_models = distinct model ids used by the annotations of both splits.
    """
    classes = anno.load_class_models(root, dataset)
    used = {split: {a.model_id for a in recs.values()} for split, recs in splits.items()}
    all_used = set().union(*used.values())
    return {
        "name": DISPLAY_NAMES[dataset],
        "version": f"v{version_for(dataset, version)}",
        "classes": len(classes),
        "train": len(splits["train"]),
        "test": len(splits["test"]),
        "total": len(splits["train"]) + len(splits["test"]),
        "cad_models": len(all_used),
        "cad_models_train": len(used["train"]),
        "cad_models_test": len(used["test"]),
        "class_models_distinct": len(set(classes)),
        "model_ids": sorted(all_used),
    }


def poses_array(splits: dict[str, dict[str, anno.Annotation]], which=("train", "test")) -> np.ndarray:
    """``(N, 7)`` float64 raw poses of the chosen splits (train first, file order)."""
    rows = []
    for split in which:
        p = anno.poses_from_annotations(splits[split])
        rows.append(np.stack([np.asarray(getattr(p, k)) for k in anno.FLOAT_FIELDS], axis=1))
    return np.concatenate(rows, axis=0)


def format_table(rows: dict[str, dict], totals: dict) -> str:
    header = f"{'dataset':<18}{'classes':>9}{'train':>8}{'test':>8}{'total':>8}{'CAD models':>12}  paper"
    lines = [header, "-" * len(header)]
    for ds, r in rows.items():
        paper = PAPER_TABLE1[ds]
        ok = (r["classes"], r["train"], r["test"]) == (paper["classes"], paper["train"], paper["test"])
        lines.append(f"{r['name']:<18}{r['classes']:>9}{r['train']:>8}{r['test']:>8}{r['total']:>8}"
                     f"{r['cad_models']:>12}  {'matches' if ok else 'DIFFERS: ' + str(paper)}")
    if set(rows) == set(PAPER_TABLE1):
        ok = (totals["classes"], totals["total"]) == (PAPER_TOTAL_CLASSES, PAPER_TOTAL_IMAGES)
        verdict = "matches" if ok else f"DIFFERS: {PAPER_TOTAL_CLASSES} classes, {PAPER_TOTAL_IMAGES} images"
    else:
        verdict = "(subset of the datasets)"
    lines.append("-" * len(header))
    lines.append(f"{'total':<18}{totals['classes']:>9}{totals['train']:>8}{totals['test']:>8}"
                 f"{totals['total']:>8}{totals['cad_models']:>12}  {verdict}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--release-dir", default=None,
                        help=f"release root (default: ${anno.RELEASE_DIR_ENV})")
    parser.add_argument("--version", default="v1", help="annotation version v1 or v2 (CompCars: v1 only)")
    parser.add_argument("--out", default="out/dataset_stats", help="output directory")
    parser.add_argument("--datasets", nargs="+", default=list(anno.DATASETS), choices=list(anno.DATASETS))
    parser.add_argument("--splits", nargs="+", default=["train", "test"], choices=list(anno.SPLITS),
                        help="splits whose poses go into the histograms")
    parser.add_argument("--no-figures", action="store_true", help="only counts")
    args = parser.parse_args(argv)
    if not str(args.version).lstrip("vV").isdigit():
        parser.error(f"--version must be v1 or v2, got {args.version!r}")
    try:
        root = anno.require_release_dir(args.release_dir)
    except ValueError as exc:
        parser.error(str(exc))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    rows, figures = {}, {}
    for ds in args.datasets:
        splits = load_dataset(root, ds, args.version)
        rows[ds] = dataset_counts(root, ds, splits, args.version)
        if not args.no_figures:
            fig = viz.pose_histograms(
                poses_array(splits, args.splits),
                f"{DISPLAY_NAMES[ds]} ({rows[ds]['version']}, {'+'.join(args.splits)}): pose distribution",
            )
            path = out / f"{DISPLAY_NAMES[ds]}.png"
            fig.savefig(path, dpi=100)
            figures[ds] = str(path)
    totals = {k: sum(r[k] for r in rows.values()) for k in ("classes", "train", "test", "total")}
    totals["cad_models"] = len(set().union(*(r["model_ids"] for r in rows.values())))
    print(format_table(rows, totals))
    summary = {
        "release_dir": str(root),
        "requested_version": args.version,
        "datasets": {ds: {k: v for k, v in r.items() if k != "model_ids"} for ds, r in rows.items()},
        "total": totals,
        "paper_table1": PAPER_TABLE1,
        "paper_total": {"classes": PAPER_TOTAL_CLASSES, "images": PAPER_TOTAL_IMAGES},
        "figures": figures,
    }
    (out / "dataset_stats.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {out / 'dataset_stats.json'}" + (f" and {len(figures)} figures" if figures else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
