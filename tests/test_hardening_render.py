"""Issue 14, items 2, 3 and 9 (render side): `python -m fgpose.render` refuses bad poses,
sizes, meshes, annotation records and output directories up front with rc 2 and one clear
line, and writes every output atomically."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from fgpose import atomic_io, raster, render
from fgpose import mesh as mesh_lib
from tests.hardening_inputs import BOX, GOOD, nested_value_pickle, records_pickle

POSE = ["0", "0", "0", "2", "300", "0", "0"]


@pytest.fixture
def box(tmp_path) -> pathlib.Path:
    path = tmp_path / "box.obj"
    path.write_text(BOX)
    return path


@pytest.fixture
def no_work(monkeypatch):
    """Fails the test if the command reads a mesh or renders (the refusal must come first)."""

    def fail(*args, **kwargs):
        raise AssertionError("work started before the input was refused")

    monkeypatch.setattr(raster, "render", fail)
    monkeypatch.setattr(mesh_lib, "load_mesh", fail)


def _run(args, capsys) -> tuple[int, str]:
    try:
        rc = render.main([str(a) for a in args])
    except SystemExit as exc:  # argparse errors
        rc = exc.code
    return rc, capsys.readouterr().err


@pytest.mark.parametrize(
    "index,value,message",
    [
        (3, "0", "--pose distance: must be positive, got 0.0"),
        (3, "-1", "--pose distance: must be positive, got -1.0"),
        (3, "1e-300", "--pose distance: out of the valid range [0.0001, 1e+06] (see FLOAT_BOUNDS), got 1e-300"),
        (4, "0", "--pose f: must be positive, got 0.0"),
        (4, "-300", "--pose f: must be positive, got -300.0"),
        (4, "inf", "--pose f: expected a finite float, got inf"),
        (1, "nan", "--pose elevation: expected a finite float, got nan"),
        (5, "1e40", "--pose u: out of the valid range [-1e+06, 1e+06] (see FLOAT_BOUNDS), got 1e+40"),
    ],
)
def test_bad_pose(tmp_path, box, capsys, no_work, index, value, message):
    pose = list(POSE)
    pose[index] = value
    out = tmp_path / "out"
    rc, err = _run(["--mesh", box, "--pose", *pose, "--out", out], capsys)
    assert (rc, err) == (2, f"error: {message}\n")
    assert not out.exists()


@pytest.mark.parametrize(
    "option,value,message",
    [
        ("--frame-height", "0", "argument --frame-height: must be a positive integer, got '0'"),
        ("--frame-height", "-200", "argument --frame-height: must be a positive integer, got '-200'"),
        ("--frame-height", "2.5", "argument --frame-height: expected a positive integer, got '2.5'"),
        ("--max-faces", "0", "argument --max-faces: must be a positive integer, got '0'"),
        ("--max-memory-gb", "-1", "argument --max-memory-gb: must be a positive number, got '-1'"),
        ("--max-memory-gb", "nan", "argument --max-memory-gb: must be a positive number, got 'nan'"),
        ("--size", "-5x10", "argument --size: --size must be positive (HxW, e.g. 200x300), got '-5x10'"),
        ("--size", "0x10", "argument --size: --size must be positive (HxW, e.g. 200x300), got '0x10'"),
        ("--size", "10x-5", "argument --size: --size must be positive (HxW, e.g. 200x300), got '10x-5'"),
        ("--size", "12y5", "argument --size: --size must be 'annotation', 'original' or HxW, got '12y5'"),
    ],
)
@pytest.mark.parametrize("joined", [False, True])
def test_bad_option_values(tmp_path, box, capsys, no_work, option, value, message, joined):
    """Both `--size -5x10` (argparse alone: 'expected one argument') and `--size=-5x10`."""
    opt = [f"{option}={value}"] if joined else [option, value]
    rc, err = _run(["--mesh", box, "--pose", *POSE, *opt, "--out", tmp_path / "out"], capsys)
    assert rc == 2
    assert err.splitlines()[-1] == f"python -m fgpose.render: error: {message}"


def test_bad_image_size(tmp_path, box, capsys, no_work):
    rc, err = _run(["--mesh", box, "--pose", *POSE, "--image-size", "0", "200", "--out", tmp_path], capsys)
    assert rc == 2 and err.splitlines()[-1].endswith("argument --image-size: must be a positive integer, got '0'")


def test_huge_size_is_refused_before_any_allocation(tmp_path, box, capsys, no_work):
    out = tmp_path / "out"
    rc, err = _run(["--mesh", box, "--pose", *POSE, "--size", "20000x20000", "--out", out], capsys)
    need = 20000 * 20000 * render.RENDER_BYTES_PER_PIXEL / 2**30
    assert f"{need:.3g}" == "47.7"
    assert (rc, err) == (2, "error: a 20000x20000 render of 0 faces needs about 47.7 GiB of memory, more than "
                            "--max-memory-gb 4: choose a smaller --size or raise --max-memory-gb\n")
    assert not out.exists()
    # --frame-height sets the annotation-size output: the same limit applies.
    rc, err = _run(["--mesh", box, "--pose", *POSE, "--frame-height", "10000000", "--out", out], capsys)
    assert rc == 2 and err.startswith("error: a 10000000x300 render of 0 faces needs about 358 GiB")


def test_memory_limit_counts_the_mesh_faces(tmp_path, box, capsys, monkeypatch):
    monkeypatch.setattr(raster, "render", lambda *a, **k: pytest.fail("rendered"))
    pixels = 100 * 100 * render.RENDER_BYTES_PER_PIXEL
    limit = (pixels + 11 * render.RENDER_BYTES_PER_FACE) / 2**30  # room for 11 of the box's 12 faces
    rc, err = _run(["--mesh", box, "--pose", *POSE, "--size", "100x100", "--max-memory-gb", repr(limit),
                    "--out", tmp_path / "out"], capsys)
    assert rc == 2 and err.startswith("error: a 100x100 render of 12 faces needs about 0.00119 GiB of memory")
    assert render.render_memory_bytes(100, 100, 12) == pixels + 12 * render.RENDER_BYTES_PER_FACE


def test_unwritable_output_directory(tmp_path, box, capsys, no_work):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    rc, err = _run(["--mesh", box, "--pose", *POSE, "--out", blocker / "out"], capsys)
    assert rc == 2
    assert err == f"error: cannot write to the output directory {blocker / 'out'}: Not a directory\n"


def test_full_disk_is_refused_up_front(tmp_path, box, capsys, no_work, monkeypatch):
    class Usage:
        free = 1000

    monkeypatch.setattr(atomic_io.shutil, "disk_usage", lambda path: Usage)
    out = tmp_path / "out"
    rc, err = _run(["--mesh", box, "--pose", *POSE, "--frame-height", "100", "--out", out], capsys)
    need = 100 * 300 * render.OUTPUT_BYTES_PER_PIXEL / 2**20
    assert (rc, err) == (2, f"error: not enough free space in {out}: the outputs need about {need:.1f} MiB, "
                            "0.0 MiB are free\n")
    assert not out.exists()  # the directory made for the check is removed again


def test_bad_mesh_files(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(raster, "render", lambda *a, **k: pytest.fail("rendered"))
    huge = tmp_path / "huge.obj"
    huge.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 100000000000000000000\n")
    rc, err = _run(["--mesh", huge, "--pose", *POSE, "--out", tmp_path / "o"], capsys)
    assert (rc, err) == (2, f"error: {huge}:4: face vertex index 100000000000000000000 is out of range "
                            "(at most 2147483647)\n")
    cut = tmp_path / "cut.obj"
    cut.write_text(BOX + "f 1 2")
    rc, err = _run(["--mesh", cut, "--pose", *POSE, "--out", tmp_path / "o"], capsys)
    assert (rc, err) == (2, f"error: {cut}:15: the file is truncated: its last line 'f 1 2' has no newline "
                            "and is an incomplete record (a face of 2 vertices)\n")
    assert not (tmp_path / "o").exists()


def test_bad_annotation_records(tmp_path, box, capsys, no_work):
    path = tmp_path / "anno.pkl"
    path.write_bytes(records_pickle({"00001.jpg": dict(GOOD, distance=10**400)}))
    rc, err = _run(["--annotations", path, "--key", "00001.jpg", "--mesh", box, "--out", tmp_path / "o"], capsys)
    assert (rc, err) == (2, f"error: {path}: image key '00001.jpg': field 'distance': expected a float, "
                            "got int <int of about 401 digits> (too large for a float)\n")
    path.write_bytes(nested_value_pickle("00001.jpg", "u"))
    rc, err = _run(["--annotations", path, "--key", "00001.jpg", "--mesh", box, "--out", tmp_path / "o"], capsys)
    assert (rc, err) == (2, f"error: {path}: image key '00001.jpg': field 'u': expected a float, "
                            "got list [[[[...]]]]\n")
    path.write_bytes(records_pickle({"00001.jpg": dict(GOOD, distance=1e-300)}))
    rc, err = _run(["--annotations", path, "--key", "00001.jpg", "--mesh", box, "--out", tmp_path / "o"], capsys)
    assert rc == 2 and "field 'distance': out of the valid range" in err


def test_outputs_are_written_atomically(tmp_path, box, capsys, monkeypatch):
    out = tmp_path / "out"
    args = ["--mesh", box, "--pose", *POSE, "--size", "20x30", "--frame-height", "100", "--out", out]
    rc, _ = _run(args, capsys)
    assert rc == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(before) == ["depth.npy", "depth.png", "face_id.npy", "location.npy", "location.png",
                              "mask.png", "render.json"]
    # A second render to the same directory hits a full disk while writing location.npy.
    real_save = np.save

    def save(fh, array, *a, **k):
        if array.ndim == 3:  # location.npy: write part of it, then fail like a full disk
            fh.write(b"\x93NUMPY partial")
            raise OSError(28, "No space left on device")
        return real_save(fh, array, *a, **k)

    monkeypatch.setattr(np, "save", save)
    rc, err = _run([*args[:3], "0.5", *args[4:]], capsys)  # another pose: different outputs
    assert (rc, err) == (2, f"error: could not write the outputs to {out}: [Errno 28] No space left on device\n")
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(after) == sorted(before)  # no temporary file left, nothing missing
    assert after["location.npy"] == before["location.npy"]  # the old file, whole
    assert after["render.json"] == before["render.json"]  # written last: still the first run's
    assert after["depth.npy"] != before["depth.npy"]  # written before the failure: the new one, whole
    assert np.load(out / "depth.npy").shape == (20, 30)
    assert np.asarray(Image.open(out / "mask.png")).shape == (20, 30)
    assert json.loads(after["render.json"])["pose"]["azimuth"] == 0.0


def test_unreadable_photo(tmp_path, box, capsys, no_work):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0 not a JPEG")
    rc, err = _run(["--mesh", box, "--pose", *POSE, "--image", photo, "--out", tmp_path / "o"], capsys)
    assert (rc, err) == (2, f"error: cannot read the photo {photo}: Truncated File Read\n")
    assert err.count("\n") == 1 and not (tmp_path / "o").exists()
