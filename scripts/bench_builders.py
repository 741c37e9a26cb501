"""Throughput (examples/s) of the fgpose TFDS builders.

    .venv/bin/python scripts/bench_builders.py [--synthetic-config tiny] [--out out/bench_builders.json]

* ``synthetic_pose3d`` (config ``tiny`` by default): the whole ``download_and_prepare``.
* With ``FGPOSE_RELEASE_DIR`` set: ``stanford_cars3d`` (v2), ``compcars3d`` (v1) and
  ``fgvc_aircraft3d`` (v2) on a manual directory made from the release: its real
  annotation records (StanfordCars: the 85 that use the one available car mesh, the real
  photo ``cars_train/00001.jpg`` and placeholder photos of 640 x 480; CompCars /
  FGVC-Aircraft: the first 40 train + 20 test records re-pointed at that mesh, placeholder
  photos of the release's sizes 908 x 626 / 900 x 687), a fake devkit / label files, and the
  builders' default ``field_max_side=640``, ``max_faces=20000``.

Each builder runs in a fresh process and is timed around ``download_and_prepare`` twice:
``cold`` (first build: JAX compilation, mesh decimation into an empty mesh cache, class
meshes) and ``warm`` (the same build again into another directory: compiled programs and
meshes reused, i.e. the steady-state rate of a large build). Prints a table and writes JSON
to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import pickle
import platform
import subprocess
import sys
import tempfile
import time

import _bench_common as common  # puts this checkout's packages first on sys.path

REPO = common.REPO


def _placeholder(path: pathlib.Path, hw, seed: int) -> None:
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, (hw[0] // 16 + 1, hw[1] // 16 + 1, 3)).astype(np.uint8)
    img = np.kron(base, np.ones((16, 16, 1), np.uint8))[: hw[0], : hw[1]]
    Image.fromarray(img).save(path, quality=90)


def make_manual_dir(release: pathlib.Path, root: pathlib.Path) -> None:
    """The benchmark's manual directory (see the module docstring)."""
    import numpy as np
    import scipy.io

    from fgpose import annotations as A

    car_id = A.EXAMPLE_CAR_MODEL_ID  # the one mesh every record is pointed at
    cad = A.cad_path(root, "StanfordCars", car_id)
    cad.parent.mkdir(parents=True)
    os.symlink(A.cad_path(release, "StanfordCars", car_id), cad)
    plane_cad = A.cad_path(root, "FGVC_Aircraft", car_id)
    plane_cad.parent.mkdir(parents=True)
    os.symlink(A.cad_path(release, "StanfordCars", car_id), plane_cad)

    # StanfordCars v2: every record of the available car mesh.
    labelled = {}
    for split in A.SPLITS:
        table = {k: a for k, a in A.load_split(release, "StanfordCars", split, 2).items() if a.model_id == car_id}
        path = A.annotation_path(root, "StanfordCars", split, 2)
        path.parent.mkdir(parents=True, exist_ok=True)
        A.save_annotations(path, table)
        for i, k in enumerate(table):
            dst = A.image_path(root, "StanfordCars", split, k)
            if (split, k) == ("train", "00001.jpg"):
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(A.image_path(release, "StanfordCars", split, k), dst)
            else:
                _placeholder(dst, (480, 640), i)
        labelled[split] = list(table)
    devkit = root / "Image" / "StanfordCars" / "devkit"
    devkit.mkdir(parents=True)
    n_cars = A.DATASETS["StanfordCars"].num_classes
    names = np.array([f"class {i:03d}" for i in range(n_cars)], dtype=object).reshape(1, -1)
    scipy.io.savemat(devkit / "cars_meta.mat", {"class_names": names})
    for split, fname in (("train", "cars_train_annos.mat"), ("test", "cars_test_annos_withlabels.mat")):
        rec = np.zeros((1, len(labelled[split])), dtype=[("class", "O"), ("fname", "O")])
        for i, k in enumerate(labelled[split]):
            rec[0, i] = (np.uint8(1 + i % n_cars), k)
        scipy.io.savemat(devkit / fname, {"annotations": rec})

    # CompCars v1 and FGVC_Aircraft v2: real records re-pointed at the car mesh.
    ids = []
    for dataset, version, hw in (("CompCars", 1, (626, 908)), ("FGVC_Aircraft", 2, (687, 900))):
        for split, n in (("train", 40), ("test", 20)):
            table = A.load_split(release, dataset, split, version)
            records = {}
            for i, (k, a) in enumerate(list(table.items())[:n]):
                rec = a.to_record()
                rec["model_id"] = car_id
                records[k] = rec
                _placeholder(A.image_path(root, dataset, split, k), hw, i)
                if dataset == "FGVC_Aircraft":
                    ids.append(k.rsplit(".", 1)[0])
            path = A.annotation_path(root, dataset, split, version)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as fh:
                pickle.dump(records, fh, protocol=2)
    data = root / "fgvc-aircraft-2013b" / "data"
    data.mkdir(parents=True)
    n_planes = A.DATASETS["FGVC_Aircraft"].num_classes
    (data / "variants.txt").write_text("".join(f"variant {i}\n" for i in range(n_planes)))
    (data / "images_variant_trainval.txt").write_text(
        "".join(f"{x} variant {i % n_planes}\n" for i, x in enumerate(ids)))
    (data / "images_variant_test.txt").write_text("")
    (root / "CAD" / "CompCars3D.txt").write_text(
        "".join(f"{car_id}\n" for _ in range(A.DATASETS["CompCars"].num_classes)))


CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import tensorflow_datasets as tfds
import tfds_builders
name, config, data_dir, manual = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] or None
runs = []
for attempt in ("cold", "warm"):
    builder = tfds.builder(name, data_dir=f"{data_dir}/{attempt}", config=config)
    t = time.perf_counter()
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual))
    runs.append(time.perf_counter() - t)
splits = builder.skipped["splits"]
n = sum(s["generated"] for s in splits.values())
print(json.dumps({"name": name, "config": config, "examples": n,
                  "seconds_cold": runs[0], "examples_per_s_cold": n / runs[0],
                  "seconds_warm": runs[1], "examples_per_s_warm": n / runs[1],
                  "skipped": {k: v["skipped"] for k, v in splits.items()},
                  "field_max_side": builder.builder_config.field_max_side,
                  "max_faces": builder.builder_config.max_faces}))
"""


def run_build(name: str, config: str, data_dir: pathlib.Path, manual: pathlib.Path | None, cache: pathlib.Path) -> dict:
    env = dict(os.environ, FGPOSE_CACHE_DIR=str(cache))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(REPO), name, config, str(data_dir), str(manual or "")],
        env=env, capture_output=True, text=True, cwd=REPO,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{name}/{config} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--synthetic-config", default="tiny")
    p.add_argument("--out", type=pathlib.Path, default=REPO / "out" / "bench_builders.json")
    p.add_argument("--skip-synthetic", action="store_true")
    args = p.parse_args(argv)

    from fgpose.annotations import release_dir

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_builders_") as tmp:
        tmp = pathlib.Path(tmp)
        if not args.skip_synthetic:
            rows.append(run_build("synthetic_pose3d", args.synthetic_config, tmp / "data", None, tmp / "cache"))
        release = release_dir()
        if release is not None and release.is_dir():
            manual = tmp / "manual"
            make_manual_dir(release, manual)
            for name, config in (("stanford_cars3d", "v2"), ("compcars3d", "v1"), ("fgvc_aircraft3d", "v2")):
                rows.append(run_build(name, config, tmp / "data", manual, tmp / "cache"))
        else:
            print("FGPOSE_RELEASE_DIR not set: real builders not benchmarked", file=sys.stderr)

    print(common.text_table(
        [("builder", "<26"), ("examples", ">9"), ("cold s", ">8.1f"), ("cold ex/s", ">10.2f"), ("warm s", ">8.1f"),
         ("warm ex/s", ">10.2f"), ("skipped", "")],
        [[r["name"] + "/" + r["config"], r["examples"], r["seconds_cold"], r["examples_per_s_cold"], r["seconds_warm"],
          r["examples_per_s_warm"], str(r["skipped"])] for r in rows]))
    result = {
        "rows": rows,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_1m_at_end": os.getloadavg()[0]},
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    common.write_json(args.out, result, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
