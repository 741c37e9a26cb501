"""Issue 14, refinement side (``python -m fgpose.refine``): records that cannot be refined,
nonsense reference masks, a full disk under the journal, unwritable outputs, reruns of a
complete run. Each test asserts the exact outcome: skip reasons, rc, messages, output files.

The command-line tests run on a tiny synthetic set: a 0.6 x 0.3 x 0.4 box mesh
(``tests/hardening_inputs.BOX``), 300x200 placeholder photos and reference masks rendered at
a known pose, searched from a start 0.1 rad off in azimuth.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from fgpose import annotations as anno_lib
from fgpose import camera, raster
from fgpose import mesh as mesh_lib
from fgpose.refine import __main__ as cli
from fgpose.refine import completion, journal, records, reference_checks, report, search
from fgpose.refine.batching import load_search_image
from fgpose.refine.inputs import ImageInput, read_alpha, read_mask
from fgpose.refine.mesh_store import MeshStore
from tests.hardening_inputs import BOX, GOOD

MODEL = "box"
W, H = 300, 200  # photo size = annotation frame (300 x 200)
FAST = ["--batch-size", "2", "--max-sweeps", "3", "--no-progress"]
SETTINGS = {"schedule": "paper"}


# ----------------------------------------------------------------------------- helpers


def _record(**changes) -> dict:
    return {**GOOD, "model_id": MODEL, **changes}


def _box_silhouette(tmp_mesh, rec: dict) -> np.ndarray:
    ann = anno_lib.Annotation.from_record("x.jpg", rec)
    frame_h = camera.annotation_frame_height(W, H)
    proj = camera.projection_matrix(ann.pose(), frame_h, image_size=(H, W))
    return np.asarray(raster.silhouette(tmp_mesh.vertices, tmp_mesh.faces, proj, H, W))


def _save_png(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)


@pytest.fixture
def box_set(tmp_path, monkeypatch):
    """Four good images (a..d), masks at the GOOD pose, starting 0.1 rad off in azimuth."""
    monkeypatch.setenv(mesh_lib.CACHE_DIR_ENV, str(tmp_path / "cache"))
    images, masks, cad = tmp_path / "images", tmp_path / "masks", tmp_path / "cad" / MODEL
    for d in (images, masks, cad):
        d.mkdir(parents=True)
    (cad / "model.obj").write_text(BOX)
    box = mesh_lib.load_mesh(cad / "model.obj")
    sil = _box_silhouette(box, _record())
    rng = np.random.default_rng(0)
    table = {}
    for name in ("a", "b", "c", "d"):
        _save_png(images / f"{name}.jpg", rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        _save_png(masks / f"{name}.png", sil.astype(np.uint8) * 255)
        table[f"{name}.jpg"] = _record(azimuth=GOOD["azimuth"] + 0.1)
    anno = tmp_path / "anno.pkl"
    anno.write_bytes(pickle.dumps(table, protocol=2))
    out = tmp_path / "out" / "refined.pkl"
    base = ["--annotations", str(anno), "--images", str(images), "--masks", str(masks), "--cad", str(tmp_path / "cad"),
            "--out", str(out)] + FAST
    return dict(root=tmp_path, images=images, masks=masks, anno=anno, table=table, out=out, base=base, sil=sil,
                rng=rng)


def _write_table(box_set, table):
    box_set["anno"].write_bytes(pickle.dumps(table, protocol=2))


def _count_refine_calls(monkeypatch):
    """Wraps search.refine; returns the list of starting-pose batches it was called with."""
    real, calls = search.refine, []

    def counting(*a, **kw):
        calls.append(np.asarray(a[2]).copy())
        return real(*a, **kw)

    monkeypatch.setattr(search, "refine", counting)
    return calls


# ----------------------------------------------------------------------------- item 1


def test_load_table_skips_malformed_records_one_by_one(tmp_path):
    path = tmp_path / "a.pkl"
    path.write_bytes(pickle.dumps({"good.jpg": GOOD, "tiny.jpg": {**GOOD, "distance": 1e-300},
                                   "huge.jpg": {**GOOD, "f": 10**400}, 7: GOOD, "list.jpg": [1, 2],
                                   "last.jpg": GOOD}, protocol=2))
    table, skipped = records.load_table(path)
    assert list(table) == ["good.jpg", "last.jpg"] and table["good.jpg"] == anno_lib.Annotation.from_record(
        "good.jpg", GOOD)
    assert {k: s.reason for k, s in skipped.items()} == {
        "tiny.jpg": "malformed annotation", "huge.jpg": "malformed annotation", "<int 7>": "malformed annotation",
        "list.jpg": "malformed annotation"}
    assert "distance" in skipped["tiny.jpg"].detail and "out of the valid range" in skipped["tiny.jpg"].detail
    assert "too large for a float" in skipped["huge.jpg"].detail
    # --limit counts keys of the file, valid or not.
    table, skipped = records.load_table(path, limit=2)
    assert list(table) == ["good.jpg"] and list(skipped) == ["tiny.jpg"]
    path.write_bytes(pickle.dumps([GOOD], protocol=2))
    with pytest.raises(anno_lib.AnnotationError, match="expected a dict"):
        records.load_table(path)


def _result(**changes) -> dict:
    return {"key": "a.jpg", "v1": _record(), "refined": _record(), "initial_iou": 0.5, "iou": 0.75, **changes}


def test_check_result_accepts_only_valid_refined_poses():
    assert records.check_result(_result()) is None
    for bad, words in [(_result(refined=_record(distance=float("inf"))), "distance"),
                       (_result(refined=_record(f=float("nan"))), "finite"),
                       (_result(refined=_record(u=2e6)), "out of the valid range"),
                       (_result(refined=_record(distance=1e-30)), "distance"),
                       (_result(iou=float("nan")), "non-finite IoU"),
                       (_result(refined=_record(model_id="other")), "model id"),
                       ({"key": "a.jpg"}, "not a result record"),
                       ("junk", "not a result record")]:
        skip = records.check_result(bad)
        assert skip is not None and skip.reason == "refined pose invalid" and words in skip.detail, (bad, skip)
    # A journal record with an invalid result is not reused, and refined_table never fails on one.
    table = {"a.jpg": anno_lib.Annotation.from_record("a.jpg", _record())}
    bad = _result(refined=_record(distance=float("inf")))
    assert report.reusable_records({"a.jpg": bad}, table) == {}
    assert report.reusable_records({"a.jpg": _result()}, table) == {"a.jpg": _result()}
    assert report.refined_table(table, {"a.jpg": bad}) == table


def test_unrefinable_and_malformed_records_keep_the_output(box_set, monkeypatch, capsys):
    """A malformed input record is skipped and counted; a record whose search ends in a
    non-finite pose keeps its input pose; all other records are refined and written."""
    table = dict(box_set["table"])
    table["bad.jpg"] = _record(distance=1e-300)  # passes no check: malformed
    _write_table(box_set, table)
    real = search.refine

    def overflowing(*a, **kw):  # the search overflows in row 1 of the first batch (a.jpg, b.jpg): b.jpg
        result = real(*a, **kw)
        poses = np.array(result.poses)
        if not overflowing.done:
            poses[1, 3] = np.inf
            overflowing.done = True
        return dataclasses.replace(result, poses=poses)

    overflowing.done = False
    monkeypatch.setattr(search, "refine", overflowing)
    json_path = box_set["root"] / "out" / "r.json"
    assert cli.main(box_set["base"] + ["--json", str(json_path)]) == 0
    out = anno_lib.load_annotations(box_set["out"])
    # Written for every valid record; b.jpg (the second image sorted by key) keeps its input exactly.
    assert list(out) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    assert out["b.jpg"].to_record() == table["b.jpg"]
    for key in ("a.jpg", "c.jpg", "d.jpg"):
        assert abs(out[key].azimuth - GOOD["azimuth"]) < abs(table[key]["azimuth"] - GOOD["azimuth"])
    rep = json.loads(json_path.read_text())
    assert rep["summary"]["images"] == 5 and rep["summary"]["refined"] == 3 and rep["summary"]["skipped"] == 2
    assert rep["summary"]["skipped_by_reason"] == {"malformed annotation": 1, "refined pose invalid": 1}
    skips = {s["key"]: s for s in rep["skipped"]}
    assert skips["bad.jpg"]["reason"] == "malformed annotation" and "distance" in skips["bad.jpg"]["detail"]
    assert skips["b.jpg"]["reason"] == "refined pose invalid"
    assert "distance" in skips["b.jpg"]["detail"] and "the input pose is kept" in skips["b.jpg"]["detail"]
    assert sorted(r["key"] for r in rep["images"]) == ["a.jpg", "c.jpg", "d.jpg"]
    printed = capsys.readouterr().out
    assert "refined 3 of 5 images, skipped 2" in printed
    assert "skipped, malformed annotation: 1 (bad.jpg)" in printed
    assert "skipped, refined pose invalid: 1 (b.jpg)" in printed


# ----------------------------------------------------------------------------- item 5


def test_check_aspect_and_foreground():
    assert reference_checks.check_aspect((200, 300), 300, 200) is None
    assert reference_checks.check_aspect((400, 600), 300, 200) is None  # another resolution
    assert reference_checks.check_aspect((133, 200), 601, 401) is None  # rounded: 401 * 200 / 601 = 133.4
    skip = reference_checks.check_aspect((300, 200), 300, 200)  # transposed
    assert skip.reason == "mask size mismatch"
    assert "the mask is 200x300 (aspect 0.6667), the photo 300x200 (aspect 1.5)" in skip.detail
    assert reference_checks.check_aspect((190, 300), 300, 200).reason == "mask size mismatch"  # 10 rows short
    checks = reference_checks.ReferenceChecks(0.01, 0.9)
    ref = np.zeros((200, 300), bool)
    ref[:20, :30] = True  # 600 of 60,000 pixels: exactly 1%
    assert reference_checks.check_foreground(ref, checks) is None
    ref[0, 0] = False
    skip = reference_checks.check_foreground(ref, checks)
    assert skip.reason == "mask implausible"
    assert skip.detail == "foreground covers 0.998% of the annotation frame, below the minimum 1% (--min-foreground)"
    skip = reference_checks.check_foreground(np.ones((200, 300), bool), checks)
    assert skip.detail == "foreground covers 100% of the annotation frame, above the maximum 90% (--max-foreground)"
    with pytest.raises(ValueError, match="0 <= min <= max <= 1"):
        reference_checks.ReferenceChecks(0.5, 0.4)


def test_alpha_only_masks(tmp_path):
    obj = np.zeros((4, 6), bool)
    obj[1:3, 2:5] = True
    # RGB all zero, the object in the alpha channel: read from the alpha channel.
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 3] = obj * 255
    _save_png(tmp_path / "black.png", rgba, "RGBA")
    assert not read_mask(tmp_path / "black.png").any()  # read_mask sees colours only
    got = reference_checks.alpha_foreground(read_mask(tmp_path / "black.png"), lambda: read_alpha(tmp_path / "black.png"))
    np.testing.assert_array_equal(got, obj)
    # Constant white RGB, object in alpha: the same.
    rgba[..., :3] = 255
    _save_png(tmp_path / "white.png", rgba, "RGBA")
    got = reference_checks.alpha_foreground(read_mask(tmp_path / "white.png"), lambda: read_alpha(tmp_path / "white.png"))
    np.testing.assert_array_equal(got, obj)
    # Grey + alpha (LA): the same.
    la = np.zeros((4, 6, 2), np.uint8)
    la[..., 1] = obj * 200
    _save_png(tmp_path / "la.png", la, "LA")
    got = reference_checks.alpha_foreground(read_mask(tmp_path / "la.png"), lambda: read_alpha(tmp_path / "la.png"))
    np.testing.assert_array_equal(got, obj)
    # Colours that vary: the colours are the mask, alpha is ignored (and not even read).
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[0, 0, 1] = 9
    _save_png(tmp_path / "colour.png", rgba, "RGBA")
    got = reference_checks.alpha_foreground(read_mask(tmp_path / "colour.png"), lambda: pytest.fail("alpha read"))
    assert got.sum() == 1 and got[0, 0]
    # No alpha channel: a constant mask stays as it is.
    _save_png(tmp_path / "grey.png", np.zeros((4, 6), np.uint8))
    assert read_alpha(tmp_path / "grey.png") is None
    assert not reference_checks.alpha_foreground(read_mask(tmp_path / "grey.png"),
                                                 lambda: read_alpha(tmp_path / "grey.png")).any()


def test_load_search_image_checks_references(box_set):
    masks, sil = box_set["masks"], box_set["sil"]
    _save_png(masks / "t.png", np.ascontiguousarray(sil.T).astype(np.uint8) * 255)  # transposed
    _save_png(masks / "ones.png", np.full((H, W), 255, np.uint8))
    _save_png(masks / "dot.png", np.full((1, 1), 255, np.uint8))
    alpha = np.zeros((H, W, 4), np.uint8)
    alpha[..., 3] = sil * 255
    _save_png(masks / "alpha.png", alpha, "RGBA")
    meshes = MeshStore(None, drop_hidden=False)
    checks = reference_checks.ReferenceChecks()
    ann = anno_lib.Annotation.from_record("a.jpg", _record())

    def load(name, checks=checks):
        image = ImageInput(f"{name}.jpg", ann, box_set["images"] / "a.jpg", masks / f"{name}.png", W, H, H,
                           box_set["root"] / "cad" / MODEL / "model.obj")
        return load_search_image(image, meshes, checks)

    assert load("t").reason == "mask size mismatch" and str(masks / "t.png") in load("t").detail
    assert load("ones").reason == "mask implausible" and "foreground covers 100% of" in load("ones").detail
    assert load("dot").reason == "mask implausible"  # a 1x1 mask fills the whole frame
    np.testing.assert_array_equal(load("alpha").reference, sil)
    np.testing.assert_array_equal(load("a").reference, sil)
    # Without checks (the library default) nothing is checked, as before.
    assert load("ones", None).reference.all()


def test_nonsense_masks_are_skipped_with_reasons(box_set, monkeypatch, capsys):
    masks, sil = box_set["masks"], box_set["sil"]
    _save_png(masks / "a.png", np.ascontiguousarray(sil.T).astype(np.uint8) * 255)  # transposed
    _save_png(masks / "b.png", np.full((H, W), 255, np.uint8))  # all ones
    _save_png(masks / "c.png", np.full((1, 1), 255, np.uint8))  # 1x1
    alpha = np.zeros((H, W, 4), np.uint8)
    alpha[..., 3] = sil * 255
    _save_png(masks / "d.png", alpha, "RGBA")  # alpha only: refined
    json_path = box_set["root"] / "out" / "r.json"
    assert cli.main(box_set["base"] + ["--json", str(json_path)]) == 0
    rep = json.loads(json_path.read_text())
    assert {s["key"]: s["reason"] for s in rep["skipped"]} == {
        "a.jpg": "mask size mismatch", "b.jpg": "mask implausible", "c.jpg": "mask implausible"}
    assert [r["key"] for r in rep["images"]] == ["d.jpg"] and rep["images"][0]["iou"] > 0.9
    printed = capsys.readouterr().out
    assert "skipped, mask size mismatch: 1 (a.jpg)" in printed and "skipped, mask implausible: 2 (b.jpg, c.jpg)" in printed
    # The limits are flags: --max-foreground 1 accepts the all-ones masks.
    out2 = box_set["root"] / "out" / "r2.pkl"
    json2 = box_set["root"] / "out" / "r2.json"
    args = box_set["base"][:box_set["base"].index("--out")] + ["--out", str(out2), "--json", str(json2)] + FAST
    assert cli.main(args + ["--max-foreground", "1"]) == 0
    assert {s["key"]: s["reason"] for s in json.loads(json2.read_text())["skipped"]} == {"a.jpg": "mask size mismatch"}
    for bad in (["--min-foreground", "-0.1"], ["--max-foreground", "1.5"], ["--min-foreground", "nan"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(args + bad)
        assert exc.value.code == 2 and "expected a fraction in [0, 1]" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(args + ["--min-foreground", "0.5", "--max-foreground", "0.4"])
    assert exc.value.code == 2 and "0 <= min <= max <= 1" in capsys.readouterr().err


# ----------------------------------------------------------------------------- item 8


def _enospc_after_half(monkeypatch, path, fail_on: int = 1):
    """Patches os.write: the ``fail_on``-th (1-based) write burst to ``path`` writes half its
    bytes, then the next write raises ENOSPC (other files are unaffected)."""
    real = os.write
    state = {"bursts": 0, "half_written": False}

    def write(fd, data):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if target != os.path.realpath(path):
            return real(fd, data)
        if state["half_written"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        state["bursts"] += 1
        if state["bursts"] < fail_on:
            return real(fd, data)
        state["half_written"] = True
        return real(fd, bytes(data)[: len(data) // 2])

    monkeypatch.setattr(os, "write", write)
    return state


def test_journal_short_write_is_completed_or_undone(tmp_path, monkeypatch):
    path = tmp_path / "j.jsonl"
    j = journal.Journal(path, "test/1")
    j.start(SETTINGS)
    j.append([{"key": "a", "x": 1}])
    before = path.read_bytes()
    # Short writes without an error: the line is completed.
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real(fd, bytes(data)[: max(1, len(data) // 2)]))
    j.append([{"key": "b", "x": 2}])
    monkeypatch.setattr(os, "write", real)
    assert path.read_bytes() == before + b'{"results": [{"key": "b", "x": 2}]}\n'
    before = path.read_bytes()
    # Half a line, then ENOSPC: OSError, and the file is back to its earlier lines.
    _enospc_after_half(monkeypatch, path)
    with pytest.raises(OSError, match="could not append to .*j.jsonl .*No space left on device.*records written "
                                      "before are kept") as exc:
        j.append([{"key": "c", "x": 3}])
    assert exc.value.errno == errno.ENOSPC
    monkeypatch.setattr(os, "write", real)
    assert path.read_bytes() == before
    assert j.load(SETTINGS) == {"a": {"key": "a", "x": 1}, "b": {"key": "b", "x": 2}}
    # If even the truncation fails, the torn last line is dropped on reading, the rest kept.
    _enospc_after_half(monkeypatch, path)
    monkeypatch.setattr(os, "ftruncate", lambda fd, n: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OSError):
        j.append([{"key": "c", "x": 3}])
    monkeypatch.undo()
    assert path.read_bytes() != before and path.read_bytes().startswith(before)  # torn
    assert list(journal.Journal(path, "test/1").load(SETTINGS)) == ["a", "b"]
    assert path.read_bytes() == before


def test_full_disk_stops_the_run_and_keeps_earlier_batches(box_set, monkeypatch, capsys):
    partial = journal.partial_path(box_set["out"])
    _enospc_after_half(monkeypatch, partial, fail_on=2)  # the header is written atomically: 2nd burst = 2nd batch
    calls = _count_refine_calls(monkeypatch)
    assert cli.main(box_set["base"]) == 2
    err = capsys.readouterr().err
    assert (f"error: [Errno 28] could not append to {partial} (No space left on device); the records written "
            "before are kept\n") in err
    assert "stopped: 2 of 4 images refined and kept in" in err and "rerun the same command to continue" in err
    assert len(calls) == 2 and not box_set["out"].exists()
    lines = partial.read_bytes().split(b"\n")
    assert len(lines) == 3 and lines[2] == b""  # header + the first batch, complete
    assert [r["key"] for r in json.loads(lines[1])["results"]] == ["a.jpg", "b.jpg"]
    monkeypatch.undo()
    monkeypatch.setenv(mesh_lib.CACHE_DIR_ENV, str(box_set["root"] / "cache"))
    calls = _count_refine_calls(monkeypatch)
    assert cli.main(box_set["base"]) == 0  # resumes: only the second batch is searched
    assert len(calls) == 1
    assert list(anno_lib.load_annotations(box_set["out"])) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    assert "refined 4 of 4 images (2 from a previous run), skipped 0" in capsys.readouterr().out


# ----------------------------------------------------------------------------- item 9


def test_unwritable_outputs_fail_before_any_work(box_set, monkeypatch, capsys):
    blocker = box_set["root"] / "file"
    blocker.write_text("not a directory")
    monkeypatch.setattr(search, "refine", lambda *a, **kw: pytest.fail("searched"))
    for extra in (["--overlays", str(blocker / "overlays")], ["--json", str(blocker / "r.json")]):
        assert cli.main(box_set["base"] + extra) == 2
        err = capsys.readouterr().err
        assert f"error: cannot write to the output directory {blocker}" in err
        assert not box_set["out"].exists()
        assert not journal.partial_path(box_set["out"]).exists()
    args = box_set["base"][:box_set["base"].index("--out")] + ["--out", str(blocker / "o.pkl")] + FAST
    assert cli.main(args) == 2
    assert f"error: cannot write to the output directory {blocker}" in capsys.readouterr().err


def test_failed_overlay_is_a_warning(box_set, monkeypatch, capsys):
    from fgpose.refine import overlays

    def full_disk(path, write):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(overlays, "atomic_write", full_disk)
    overlay_dir = box_set["root"] / "overlays"
    assert cli.main(box_set["base"] + ["--overlays", str(overlay_dir)]) == 0
    out = capsys.readouterr().out
    for key in ("a", "b", "c", "d"):
        assert f"warning: {key}.jpg: overlay not written to {overlay_dir / (key + '.png')} (No space left on device)" \
            in out
    assert list(anno_lib.load_annotations(box_set["out"])) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    assert list(overlay_dir.iterdir()) == []  # no partial PNG
    # A failure of a whole batch's drawing is a warning too, and no result is lost.
    monkeypatch.setattr(overlays, "draw_overlays", lambda *a, **kw: (_ for _ in ()).throw(RuntimeError("boom")))
    assert cli.main(box_set["base"] + ["--overlays", str(overlay_dir), "--restart"]) == 0
    out = capsys.readouterr().out
    assert "warning: overlays of a.jpg, b.jpg not drawn (RuntimeError: boom)" in out
    assert "warning: overlays of c.jpg, d.jpg not drawn (RuntimeError: boom)" in out
    assert "refined 4 of 4 images, skipped 0" in out


def test_json_report_is_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    path.write_text("previous")
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(OSError):
        report.write_json(path, {"n": 1}, {}, {}, {})
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert path.read_text() == "previous" and [p.name for p in tmp_path.iterdir()] == ["r.json"]


# ----------------------------------------------------------------------------- item 10


def test_rerun_of_a_complete_run(box_set, monkeypatch, capsys):
    json_path = box_set["root"] / "out" / "r.json"
    args = box_set["base"] + ["--json", str(json_path)]
    assert cli.main(args) == 0
    marker = completion.marker_path(box_set["out"])
    assert marker.exists() and not journal.partial_path(box_set["out"]).exists()
    written = box_set["out"].read_bytes(), json_path.read_bytes()
    capsys.readouterr()
    calls = _count_refine_calls(monkeypatch)
    assert cli.main(args) == 0
    assert capsys.readouterr().out == (f"{box_set['out']} is complete: written by the same command from the same "
                                       "annotation file (4 of 4 images refined); nothing to do (pass --restart to "
                                       "recompute)\n")
    assert calls == [] and (box_set["out"].read_bytes(), json_path.read_bytes()) == written
    # --restart recomputes.
    assert cli.main(args + ["--restart"]) == 0
    assert len(calls) == 2 and "refined 4 of 4 images, skipped 0" in capsys.readouterr().out
    # An output that is gone or changed, other settings or another input: computed again.
    calls.clear()
    json_path.unlink()
    assert cli.main(args) == 0 and len(calls) == 2 and json_path.exists()
    calls.clear()
    assert cli.main(args + ["--max-sweeps", "2"]) == 0 and len(calls) == 2
    calls.clear()
    table = dict(box_set["table"])
    table["a.jpg"] = _record(azimuth=GOOD["azimuth"] + 0.05)
    _write_table(box_set, table)
    assert cli.main(args + ["--max-sweeps", "2"]) == 0 and len(calls) == 2
    calls.clear()
    assert cli.main(args + ["--max-sweeps", "2"]) == 0 and calls == []
    # A damaged marker means: not known to be complete.
    marker.write_text("{")
    assert cli.main(args + ["--max-sweeps", "2"]) == 0 and len(calls) == 2
