"""Refinement batches (:mod:`fgpose.refine.batching`): the bucketing rules, the typed batch's
padded shapes and contents against hand-computed values, and the order and skips of
:func:`search_batches`."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fgpose import annotations as anno_lib
from fgpose import buckets
from fgpose import mesh as mesh_lib
from fgpose.refine import batching
from fgpose.refine.inputs import ImageInput, Skip
from fgpose.refine.mesh_store import MeshStore


def _annotation(key: str, model_id: str = "m", azimuth: float = 0.1) -> anno_lib.Annotation:
    return anno_lib.Annotation(key=key, model_id=model_id, azimuth=azimuth, elevation=0.2, theta=-0.3,
                               distance=2.5, f=300.0, u=1.5, v=-2.0)


def _mesh(num_vertices: int, num_faces: int) -> mesh_lib.Mesh:
    v = np.random.default_rng(num_vertices).normal(size=(num_vertices, 3))
    f = [(i % num_vertices, (i + 1) % num_vertices, (i + 2) % num_vertices) for i in range(num_faces)]
    return mesh_lib.Mesh(v, np.array(f))


def test_round_up_and_octave_bucket():
    assert [buckets.round_up(n, 16) for n in (0, 1, 16, 17, 200, 225)] == [0, 16, 16, 32, 208, 240]
    # 8 steps per octave: [16, 32) in steps of 2, [32, 64) in steps of 4, [2048, 4096) in steps of 256.
    assert [buckets.refine_count_bucket(n) for n in (1, 16, 17, 31, 33, 37, 40, 2049, 4096)] == [
        16, 16, 18, 32, 36, 40, 40, 2304, 4096]


def test_pack_batch_shapes_and_padding():
    rng = np.random.default_rng(0)
    small, big = _mesh(4, 4), _mesh(17, 37)
    ref_a, ref_b = rng.random((200, 300)) < 0.5, rng.random((225, 300)) < 0.5
    a = batching.SearchImage("a.jpg", _annotation("a.jpg", azimuth=0.1), 200, ref_a, small)
    b = batching.SearchImage("b.jpg", _annotation("b.jpg", azimuth=0.7), 225, ref_b, big)
    batch = batching.pack_batch([a, b], 4)
    assert batch.images == (a, b)
    # By hand: V = bucket(17) = 18 (steps of 2), F = bucket(37) = 40 (steps of 4), Hp = 240.
    assert batch.mesh.vertices.shape == (4, 18, 3) and batch.mesh.faces.shape == (4, 40, 3)
    assert batch.mesh.face_mask.shape == (4, 40)
    assert batch.mesh.face_mask.sum(axis=1).tolist() == [4, 37, 37, 37]  # rows 2, 3 repeat b
    np.testing.assert_array_equal(batch.mesh.vertices[0, :4], small.vertices)
    np.testing.assert_array_equal(batch.mesh.faces[3, :37], big.faces)
    assert batch.poses.shape == (4, 7) and batch.poses.dtype == np.float64
    np.testing.assert_array_equal(batch.poses[0], [0.1, 0.2, -0.3, 2.5, 300.0, 1.5, -2.0])
    np.testing.assert_array_equal(batch.poses[1:], [[0.7, 0.2, -0.3, 2.5, 300.0, 1.5, -2.0]] * 3)
    assert batch.references.shape == (4, 240, 300) and batch.references.dtype == bool
    np.testing.assert_array_equal(batch.references[0, :200], ref_a)
    assert not batch.references[0, 200:].any()
    for row in (1, 2, 3):
        np.testing.assert_array_equal(batch.references[row, :225], ref_b)
        assert not batch.references[row, 225:].any()
    assert batch.frame_heights.dtype == np.int32 and batch.frame_heights.tolist() == [200, 225, 225, 225]
    assert batch.coarse_mesh is None
    with pytest.raises(AttributeError):  # frozen
        batch.poses = None  # type: ignore[misc]


def test_pack_batch_coarse_meshes_and_limits():
    ref = np.ones((20, 300), bool)
    images = [batching.SearchImage(f"{i}.jpg", _annotation(f"{i}.jpg"), 20, ref, _mesh(40, 70), _mesh(5, 3))
              for i in range(3)]
    batch = batching.pack_batch(images, 3)
    # Coarse meshes get their own buckets: V = bucket(5) = 16, F = bucket(3) = 16.
    assert batch.coarse_mesh.vertices.shape == (3, 16, 3) and batch.coarse_mesh.faces.shape == (3, 16, 3)
    assert batch.mesh.vertices.shape == (3, 40, 3) and batch.mesh.faces.shape == (3, 72, 3)
    assert batch.references.shape == (3, 32, 300)
    for bad in ([], images + images[:1]):
        with pytest.raises(ValueError, match="1 to 3 images"):
            batching.pack_batch(bad, 3)


def _write_obj(path, mesh: mesh_lib.Mesh) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"v {x} {y} {z}" for x, y, z in mesh.vertices] + [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in mesh.faces]
    path.write_text("\n".join(lines) + "\n")


def test_search_batches_order_and_skips(tmp_path, monkeypatch):
    monkeypatch.setenv(mesh_lib.CACHE_DIR_ENV, str(tmp_path / "cache"))
    tetra = mesh_lib.Mesh(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float),
                          np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]]))
    _write_obj(tmp_path / "cad/m1/model.obj", tetra)
    _write_obj(tmp_path / "cad/m2/model.obj", tetra)
    (tmp_path / "cad/bad").mkdir()
    (tmp_path / "cad/bad/model.obj").write_text("v 0 0 0\nf 1 2 9\n")
    masks = tmp_path / "masks"
    masks.mkdir()
    full = np.full((40, 60), 255, np.uint8)
    for name in ("p", "q", "r", "s", "t"):
        Image.fromarray(full).save(masks / f"{name}.png")
    Image.fromarray(np.zeros((40, 60), np.uint8)).save(masks / "empty.png")
    (masks / "broken.png").write_bytes(b"not a png")

    def image(key, model, height):  # a 60 x height photo: frame height int(height * 300 / 60)
        mask = masks / (key[:-4] + ".png")
        return ImageInput(key, _annotation(key, model), tmp_path / key, mask, 60, height, height * 5,
                          tmp_path / "cad" / model / "model.obj")

    todo = [image("p.jpg", "m2", 40), image("q.jpg", "m1", 40), image("empty.jpg", "m1", 40),
            image("r.jpg", "m1", 30), image("s.jpg", "bad", 40), image("broken.jpg", "m2", 40),
            image("t.jpg", "m1", 40)]
    skipped: dict[str, Skip] = {}
    seen_skips = []
    meshes = MeshStore(None, drop_hidden=False)
    batches = list(batching.search_batches(todo, 2, meshes, skipped, seen_skips.append))
    # Sorted by (model id, frame height, key): bad/s; m1: r (150 rows), then empty, q, t (200 rows); m2: broken, p.
    assert [[im.key for im in b.images] for b in batches] == [["r.jpg", "q.jpg"], ["t.jpg", "p.jpg"]]
    assert [b.frame_heights.tolist() for b in batches] == [[150, 200], [200, 200]]
    assert batches[0].references.shape == (2, 208, 300) and batches[0].references[0, :150].all()
    assert {k: s.reason for k, s in skipped.items()} == {
        "s.jpg": "mesh unreadable", "empty.jpg": "mask empty", "broken.jpg": "mask unreadable"}
    assert [im.key for im in seen_skips] == ["s.jpg", "empty.jpg", "broken.jpg"]
    assert str(tmp_path / "cad/bad/model.obj") in skipped["s.jpg"].detail
    assert meshes.loads == 3  # m1, m2 and the failed one, each once
