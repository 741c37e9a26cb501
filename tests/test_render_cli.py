"""`python -m fgpose.render`: files written, what they hold, and errors on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh
from PIL import Image

from fgpose import render


def _write_box(path):
    box = trimesh.creation.box(extents=(0.6, 0.3, 0.4))
    box.export(path)
    return box


def test_pose_on_command_line(tmp_path):
    _write_box(tmp_path / "box.obj")
    out = tmp_path / "out"
    rc = render.main(["--mesh", str(tmp_path / "box.obj"), "--pose", "0", "0", "0", "2", "300", "0", "0",
                      "--frame-height", "100", "--out", str(out)])
    assert rc == 0
    mask = np.asarray(Image.open(out / "mask.png")) > 0
    assert mask.shape == (100, 300)
    # a = e = theta = 0: the box's +-0.3 x +-0.15 face at depth 2 - 0.2 = 1.8 (nearest face,
    # z = +0.2 faces the camera) spans f * 0.3 / 1.8 = 50 px either side of the centre.
    ys, xs = np.nonzero(mask)
    assert xs.min() == 100 and xs.max() == 199
    assert ys.min() == 25 and ys.max() == 74
    depth = np.load(out / "depth.npy")
    np.testing.assert_allclose(depth[50, 150], 1.8, rtol=1e-5)
    loc = np.load(out / "location.npy")
    np.testing.assert_allclose(loc[mask][:, 2], 0.2, atol=1e-5)  # all on the z = +0.2 face
    assert (np.load(out / "face_id.npy")[~mask] == -1).all()
    summary = json.loads((out / "render.json").read_text())
    assert summary["box_yxyx"] == [25, 100, 75, 200]


def test_release_key_on_photo(tmp_path, release_dir):
    out = tmp_path / "out"
    rc = render.main([
        "--annotations", str(release_dir / "Anno3D/StanfordCars/train_anno_v2.pkl"), "--key", "00001.jpg",
        "--cad-dir", str(release_dir / "CAD"), "--image", str(release_dir / "Image/StanfordCars/cars_train/00001.jpg"),
        "--size", "original", "--out", str(out),
    ])
    assert rc == 0
    mask = np.asarray(Image.open(out / "mask.png")) > 0
    assert mask.shape == (400, 600)  # original resolution: 2x the 300x200 annotation frame
    y0, x0, y1, x1 = json.loads((out / "render.json").read_text())["box_yxyx"]
    # The reference box at 300x200 is about (23, 60)-(284, 187): doubled here.
    assert abs(x0 - 46) <= 2 and abs(x1 - 568) <= 2 and abs(y0 - 120) <= 2 and abs(y1 - 374) <= 2
    overlay = np.asarray(Image.open(out / "overlay.png"))
    photo = np.asarray(Image.open(release_dir / "Image/StanfordCars/cars_train/00001.jpg").convert("RGB"))
    changed = np.any(overlay != photo, axis=-1)
    assert changed[mask].mean() > 0.95 and changed[~mask].mean() < 0.05


def test_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit):
        render.main(["--out", str(tmp_path)])  # neither --pose nor --annotations
    assert "exactly one of" in capsys.readouterr().err
    rc = render.main(["--mesh", str(tmp_path / "missing.obj"), "--pose", "0", "0", "0", "2", "300", "0", "0",
                      "--out", str(tmp_path / "o")])
    assert rc == 2 and "missing.obj" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        render.main(["--mesh", "x.obj", "--pose", "0", "0", "0", "2", "300", "0", "0", "--size", "12y5",
                     "--out", str(tmp_path)])
