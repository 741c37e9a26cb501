"""Issue 14, items 2 and 6 (mesh side): huge face indices, truncated OBJ files and faces
without vertices raise MeshError; the cache records each file's hash and face count and
notices a file that changed on disk."""

from __future__ import annotations

import hashlib
import logging
import os

import numpy as np
import pytest

from fgpose import mesh as fm
from fgpose.annotations import EXAMPLE_CAR_MODEL_ID
from fgpose.mesh import MeshError, load_mesh
from fgpose.mesh import io as mesh_io

CAR_REL = f"CAD/02958343/{EXAMPLE_CAR_MODEL_ID}/model.obj"
CAR_FACES = 29226  # 'f' lines of the real car, all triangles (grep -c '^f')
TRI = "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\n"


def test_mesh_error_is_a_value_error_and_exported():
    assert issubclass(MeshError, ValueError) and fm.MeshError is mesh_io.MeshError


def test_face_index_beyond_int32(tmp_path):
    path = tmp_path / "huge.obj"
    path.write_text(TRI + "f 1 2 100000000000000000000\n")
    with pytest.raises(MeshError) as info:
        load_mesh(path, cache_dir=False)
    assert str(info.value) == (
        f"{path}:5: face vertex index 100000000000000000000 is out of range (at most 2147483647)"
    )
    path.write_text(TRI + "f 1 2 -100000000000000000000\n")
    with pytest.raises(MeshError, match=r"huge.obj:5: relative index -100000000000000000000 refers before the first vertex"):
        load_mesh(path, cache_dir=False)
    path.write_text(TRI + "f 1 2 " + "9" * 5000 + "\n")  # beyond Python's int-from-str limit
    with pytest.raises(MeshError, match=r"huge.obj:5: bad face vertex '9999+\.\.\.9999+'$"):
        load_mesh(path, cache_dir=False)


def test_faces_referencing_missing_vertices(tmp_path):
    path = tmp_path / "missing_v.obj"
    path.write_text(TRI + "f 1 2 3\nf 2 4 7\n")
    with pytest.raises(MeshError) as info:
        load_mesh(path, cache_dir=False)
    assert str(info.value) == f"{path}: face index 7 is out of range (the file has 4 vertices)"


@pytest.mark.parametrize(
    "last,problem",
    [
        ("f 1 2", "a face of 2 vertices"),
        ("f", "a face of 0 vertices"),
        ("v 0.1 0.", "2 of 3 coordinates"),
        ("v 0.1 0.2 0.3e", "coordinate '0.3e' is not a number"),
        ("v 0.1 0.2 -", "coordinate '-' is not a number"),
        ("f 1/1/1 2/2/2 3/", "vertex reference '3/' is cut"),
        ("f 1/1/1 2/2/2 3", "vertex reference '3' is cut"),
        ("f 1//1 2//2 3/", "vertex reference '3/' is cut"),
    ],
)
def test_truncated_last_line(tmp_path, last, problem):
    path = tmp_path / "cut.obj"
    path.write_text(TRI + "f 1 2 3\n" + last)  # no newline after the last line
    with pytest.raises(MeshError) as info:
        load_mesh(path, cache_dir=False)
    assert str(info.value) == (
        f"{path}:6: the file is truncated: its last line {last!r} has no newline and is an incomplete record ({problem})"
    )


def test_complete_last_line_without_newline_loads(tmp_path):
    path = tmp_path / "ok.obj"
    for last, faces in [("f 2 4 3", 2), ("f 2/1/1 4/2/1 3/3/1", 2), ("v 2 2 2", 1), ("# end", 1), ("vt 0.5", 1)]:
        path.write_text(TRI + "f 1 2 3\n" + last)
        assert load_mesh(path, cache_dir=False).num_faces == faces, last


def test_incomplete_lines_ending_in_newline_keep_their_old_meaning(tmp_path, caplog):
    path = tmp_path / "old.obj"
    path.write_text(TRI + "f 1 2 3\nf 1 2\n")  # a 2-vertex face: skipped with a warning, as before
    with caplog.at_level(logging.WARNING, logger="fgpose.mesh.io"):
        assert load_mesh(path, cache_dir=False).num_faces == 1
    assert "skipped 1 face(s) with fewer than 3 vertices" in caplog.text
    path.write_text(TRI + "f 1/1/1 2/2/2 3\n")  # mixed reference syntax inside the file: allowed
    np.testing.assert_array_equal(load_mesh(path, cache_dir=False).faces, [[0, 1, 2]])


def _car_lines(release_dir):
    return (release_dir / CAR_REL).read_bytes().split(b"\n")


def test_real_car_cut_mid_face_is_truncated(tmp_path, release_dir):
    """The real car cut at every byte of its 2,033rd face line (2,032 faces in, as in the
    issue): every cut is detected except those inside the line's very last number, which
    still parse as a complete face."""
    lines = _car_lines(release_dir)
    row = [i for i, line in enumerate(lines) if line.startswith(b"f ")][2032]
    full = lines[row].decode()
    assert full == "f 1122/2905/816 1120/2906/813 1151/2904/847"
    head = b"\n".join(lines[:row]) + b"\n"
    path = tmp_path / "model.obj"
    for cut in range(1, len(full)):
        path.write_bytes(head + full[:cut].encode())
        if cut <= full.rindex("/") + 1:
            with pytest.raises(MeshError, match=rf"model.obj:{row + 1}: the file is truncated"):
                load_mesh(path, cache_dir=False)
        else:  # 'f ... 1151/2904/8': a face as valid as the real one
            assert load_mesh(path, cache_dir=False).num_faces == 2033


def _entry(cache):
    (file,) = cache.glob("*.npz")
    with np.load(file, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def test_cache_records_hash_and_face_counts(tmp_path, release_dir):
    car = release_dir / CAR_REL
    cache = tmp_path / "cache"
    mesh = load_mesh(car, max_faces=5000, cache_dir=cache)
    entry = _entry(cache)
    assert str(entry["source_sha256"]) == hashlib.sha256(car.read_bytes()).hexdigest()
    assert int(entry["source_faces"]) == CAR_FACES
    assert int(entry["num_faces"]) == mesh.num_faces == len(entry["faces"]) <= 5000


def test_cache_notices_a_truncated_file_with_the_same_mtime(tmp_path, release_dir, caplog):
    lines = _car_lines(release_dir)
    face_rows = [i for i, line in enumerate(lines) if line.startswith(b"f ")]
    path = tmp_path / "model.obj"
    path.write_bytes((release_dir / CAR_REL).read_bytes())
    st = path.stat()
    cache = tmp_path / "cache"
    assert load_mesh(path, cache_dir=cache).num_faces == CAR_FACES
    # Truncated just after a newline (undetectable from the file alone), mtime restored.
    path.write_bytes(b"\n".join(lines[: face_rows[2032]]) + b"\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    with caplog.at_level(logging.WARNING, logger="fgpose.mesh.loader"):
        mesh = load_mesh(path, cache_dir=cache)
    assert mesh.num_faces == 2032
    assert f"mesh file {path} changed on disk since it was cached" in caplog.text
    assert f"{CAR_FACES} faces read then" in caplog.text and "2032 faces)" in caplog.text
    assert int(_entry(cache)["source_faces"]) == 2032  # the entry was replaced
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fgpose.mesh.loader"):
        assert load_mesh(path, cache_dir=cache).num_faces == 2032
    assert caplog.text == ""


def test_cache_notices_same_size_same_mtime_change(tmp_path, monkeypatch):
    path = tmp_path / "tri.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    st = path.stat()
    cache = tmp_path / "cache"
    assert load_mesh(path, cache_dir=cache).vertices[1, 0] == 1
    path.write_text("v 0 0 0\nv 5 0 0\nv 0 1 0\nf 1 2 3\n")  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime
    assert path.stat().st_size == st.st_size
    assert load_mesh(path, cache_dir=cache).vertices[1, 0] == 5
    # A touched but unchanged file is still a hit: the hash decides.
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    monkeypatch.setattr(mesh_io, "_read_obj", lambda *a: (_ for _ in ()).throw(AssertionError("read again")))
    assert load_mesh(path, cache_dir=cache).vertices[1, 0] == 5


def test_cache_entry_with_wrong_face_count_is_recomputed(tmp_path, caplog):
    path = tmp_path / "quad.obj"
    path.write_text(TRI + "f 1 2 4 3\n")
    cache = tmp_path / "cache"
    load_mesh(path, cache_dir=cache)
    (file,) = cache.glob("*.npz")
    data = _entry(cache)
    data["num_faces"] = np.int64(7)
    np.savez(file, **data)
    with caplog.at_level(logging.WARNING, logger="fgpose.mesh.loader"):
        assert load_mesh(path, cache_dir=cache).num_faces == 2
    assert "ignoring unreadable mesh cache entry" in caplog.text and "its header says 7" in caplog.text
    assert int(_entry(cache)["num_faces"]) == 2
