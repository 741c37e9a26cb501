"""Tests of fgpose.synthetic: procedural meshes, pose prior, photos and location fields.

References are independent of the code under test: float64 NumPy projections written from
the release's formula, trimesh's mesh checks, the release's own annotations and real meshes
(SciPy KS statistics), and fgpose.raster vs pyrender.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from fgpose import annotations
from fgpose.mesh import Mesh
from fgpose.synthetic import poses as P
from fgpose.synthetic import shapes as S
from tests import reference


# ----------------------------------------------------------------------------- references


def _edge_check(mesh: Mesh):
    """Every directed edge once and its reverse once: closed, consistently oriented."""
    f = mesh.faces.astype(np.int64)
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    key = directed[:, 0] * (mesh.num_vertices + 1) + directed[:, 1]
    rkey = directed[:, 1] * (mesh.num_vertices + 1) + directed[:, 0]
    assert len(np.unique(key)) == len(key), "a directed edge is used twice (inconsistent winding)"
    assert np.isin(rkey, key).all(), "an edge has no twin (open boundary)"


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("category,count", [("car", 8), ("airplane", 6)])
def test_class_meshes_are_valid(category, count):
    import trimesh

    for i in range(count):
        m = S.class_mesh(category, i)
        assert 500 <= m.num_faces <= 6000
        assert abs(m.diagonal - 1.0) < 1e-5
        np.testing.assert_allclose(m.center, 0.0, atol=1e-6)
        assert m.face_areas.min() > 1e-9
        _edge_check(m)
        tm = trimesh.Trimesh(m.vertices.astype(np.float64), m.faces, process=False)
        for part in tm.split(only_watertight=False):
            assert part.is_watertight and part.volume > 0, f"{category} {i}: a part is open or inside out"


def _front_low_length(m: Mesh, frac: float = 0.8):
    """Lengths (front, rear) of the car's ends whose top is below frac * roof height."""
    v = m.vertices.astype(np.float64)
    xs = np.linspace(v[:, 0].min(), v[:, 0].max(), 81)
    centre = (xs[:-1] + xs[1:]) / 2
    top = np.array([v[(v[:, 0] >= a) & (v[:, 0] < b), 1].max(initial=-1) for a, b in zip(xs[:-1], xs[1:])])
    low = top < v[:, 1].min() + frac * np.ptp(v[:, 1])
    high = np.nonzero(~low)[0]
    step = xs[1] - xs[0]
    return (len(centre) - 1 - high.max()) * step, high.min() * step


def test_car_frame_matches_shapenet():
    for i in range(8):
        m = S.class_mesh("car", i)
        v = m.vertices
        ext = m.extents
        assert ext[0] > ext[2] > 0 and ext[0] > ext[1]  # length along X, width along Z
        # The lowest points are wheel bottoms: near the axles, off the centre plane.
        low = v[v[:, 1] < v[:, 1].min() + 0.005]
        assert np.all(np.abs(low[:, 2]) > 0.2 * ext[2]) and np.all(np.abs(low[:, 0]) > 0.15 * ext[0])
        # Hood (+X) longer than the trunk / rear deck (a pickup's bed is longer than its hood).
        front, rear = _front_low_length(m)
        if S.class_type("car", i) != "pickup":
            assert front > rear + 0.03, (S.class_type("car", i), front, rear)
        # Left/right symmetric.
        np.testing.assert_allclose(v[:, 2].max(), -v[:, 2].min(), atol=1e-6)


def test_real_car_has_the_same_frame(example_car_path):
    from fgpose.mesh import load_mesh

    real = load_mesh(example_car_path, max_faces=4000)
    front, rear = _front_low_length(real)
    assert front > rear + 0.03  # the property tested above holds on ShapeNet's car
    low = real.vertices[real.vertices[:, 1] < real.vertices[:, 1].min() + 0.005]
    assert np.all(np.abs(low[:, 2]) > 0.2 * real.extents[2])


def test_airplane_frame():
    for i in range(6):
        m = S.class_mesh("airplane", i)
        v = m.vertices
        top = v[np.argmax(v[:, 1])]
        assert top[0] < -0.1 and abs(top[2]) < 0.1  # the fin (or T-tail) is at the rear, on the centre plane
        nose = v[np.argmax(v[:, 0])]
        assert abs(nose[2]) < 0.01  # the nose is on the centre plane
        assert m.extents[2] > 2 * m.extents[1]  # span across Z, flat in Y


def test_classes_differ_in_proportions():
    ratio = {}
    for i in range(8):
        m = S.class_mesh("car", i)
        ratio[S.class_type("car", i)] = m.extents[1] / m.extents[0]
    assert ratio["van"] > ratio["suv"] > ratio["sedan"] > ratio["sports"]
    span = {S.class_type("airplane", i): S.class_mesh("airplane", i).extents for i in range(6)}
    assert span["light"][2] / span["light"][0] > 1.2 > span["fighter"][2] / span["fighter"][0]
    # Same type, different class index: proportions jittered.
    a, b = S.class_mesh("car", 0), S.class_mesh("car", 8)
    assert S.class_type("car", 8) == "sedan"
    assert np.abs(a.extents - b.extents).max() > 1e-3


def test_meshes_are_deterministic():
    a, b = S.class_mesh("airplane", 3, seed=5), S.class_mesh("airplane", 3, seed=5)
    np.testing.assert_array_equal(a.vertices, b.vertices)
    np.testing.assert_array_equal(a.faces, b.faces)
    c = S.class_mesh("airplane", 3, seed=6)
    assert a.vertices.shape != c.vertices.shape or np.abs(a.vertices - c.vertices).max() > 1e-3
    cl = S.synthetic_classes(3, 2, seed=1)
    assert [c.name for c in cl] == ["car_sedan_00", "car_suv_01", "car_hatchback_02", "airplane_airliner_00", "airplane_widebody_01"]
    assert len({c.model_id for c in cl}) == 5
    assert [c.model_id for c in cl] == [c.model_id for c in S.synthetic_classes(3, 2, seed=1)]
    with pytest.raises(ValueError):
        S.class_mesh("boat", 0)


def test_real_mesh_sources(release_dir):
    sources = S.real_mesh_sources(release_dir)
    assert [s[1] for s in sources] == ["car", "airplane"]
    cl = S.synthetic_classes(0, 0, real_meshes=sources)
    car, plane = cl[0], cl[1]
    assert car.model_id == sources[0][2].parent.name == annotations.EXAMPLE_CAR_MODEL_ID
    assert car.mesh.num_faces <= 4000
    assert abs(plane.mesh.diagonal - 1) < 1e-5
    v = plane.mesh.vertices
    # Rotated into ShapeNet's frame like the procedural aircraft: fin up at the rear, span in Z.
    top = v[np.argmax(v[:, 1])]
    assert top[0] < -0.1 and abs(top[2]) < 0.05
    assert plane.mesh.extents[2] > 2 * plane.mesh.extents[1]
    assert S.real_mesh_sources(None) == [] and S.real_mesh_sources(release_dir / "nowhere") == []


# ----------------------------------------------------------------------------- poses


def test_sample_image_hw():
    rng = np.random.default_rng(0)
    hw = P.sample_image_hw(rng, 200, "car")
    allowed = {s for s, _ in P.IMAGE_SIZES["car"]}
    assert hw.shape == (200, 2) and all(tuple(x) in allowed for x in hw)
    capped = P.sample_image_hw(np.random.default_rng(0), 200, "airplane", max_side=160)
    assert capped.max() == 160 and capped.min() >= 1
    full = P.sample_image_hw(np.random.default_rng(0), 200, "airplane")
    np.testing.assert_allclose(capped[:, 0] / capped[:, 1], full[:, 0] / full[:, 1], rtol=0.02)


@pytest.mark.parametrize("category", ["car", "airplane"])
def test_sampled_poses_are_in_the_image(category):
    rng = np.random.default_rng(1)
    mesh = S.class_mesh(category, 2)
    hw = P.sample_image_hw(rng, 64, category)
    poses = P.sample_poses(rng, 64, category, hw, points=P.extent_points(mesh))
    assert poses.shape == (64, 7) and poses.dtype == np.float64
    assert np.all((poses[:, 0] >= 0) & (poses[:, 0] < 2 * np.pi)) and np.all(poses[:, 3] > 0) and np.all(poses[:, 4] > 0)
    for pose, (h, w) in zip(poses, hw):
        px, depth = reference.project_pose(pose, mesh.vertices.astype(np.float64), (h, w))
        assert depth.min() > 0
        x0, y0 = px.min(0)
        x1, y1 = px.max(0)
        inside = max(0, min(x1, w) - max(x0, 0)) * max(0, min(y1, h) - max(y0, 0))
        assert inside / ((x1 - x0) * (y1 - y0)) >= 0.6 - 1e-3
        assert max(min(x1, w) - max(x0, 0), min(y1, h) - max(y0, 0)) >= 0.15 * max(h, w) - 1e-3
    again = P.sample_poses(np.random.default_rng(1), 3, category, (480, 640))
    np.testing.assert_array_equal(again, P.sample_poses(np.random.default_rng(1), 3, category, (480, 640)))


def _real(release_split, category):
    srcs = {"car": [("StanfordCars", 2), ("CompCars", 1)], "airplane": [("FGVC_Aircraft", 2)]}[category]
    rows = [
        [getattr(a, k) for k in annotations.FLOAT_FIELDS]
        for ds, ver in srcs
        for a in release_split(ds, "train", ver).values()
    ]
    return np.asarray(rows)


@pytest.mark.parametrize("category", ["car", "airplane"])
def test_pose_prior_matches_real_annotations(release_split, category):
    real = _real(release_split, category)
    rng = np.random.default_rng(2)
    raw = P.default_prior(category).sample_raw(rng, 4000)
    hw = P.sample_image_hw(rng, 3000, category)
    sampled = P.sample_poses(rng, 3000, category, hw)

    def variables(x):
        return {
            "azimuth": np.mod(x[:, 0], 2 * np.pi),
            "elevation": (x[:, 1] + np.pi) % (2 * np.pi) - np.pi,
            "theta": (x[:, 2] + np.pi) % (2 * np.pi) - np.pi,
            "log f/d": np.log(x[:, 4] / x[:, 3]),
            "log f": np.log(x[:, 4]),
            "u": x[:, 5],
            "v": x[:, 6],
            "log d": np.log(x[:, 3]),
        }

    r, a, s = variables(real), variables(raw), variables(sampled)
    for k in r:
        ks_raw = stats.ks_2samp(r[k], a[k]).statistic
        ks_sampled = stats.ks_2samp(r[k], s[k]).statistic
        assert ks_raw < (0.12 if k == "log d" else 0.04), (k, ks_raw)
        assert ks_sampled < (0.3 if k == "log d" else 0.2), (k, ks_sampled)
    # The image scale f/d and f are jointly right (their Spearman correlation).
    rho_real = stats.spearmanr(r["log f/d"], r["log f"]).statistic
    rho_raw = stats.spearmanr(a["log f/d"], a["log f"]).statistic
    assert abs(rho_real - rho_raw) < 0.05


# ----------------------------------------------------------------------------- photos


@pytest.fixture(scope="module")
def photo_renderer():
    from fgpose.synthetic.scene import PhotoRenderer

    r = PhotoRenderer(160, 192)
    yield r
    r.close()


@pytest.mark.parametrize("category,hw", [("car", (160, 192)), ("airplane", (150, 100))])
def test_photo_mask_matches_raster(photo_renderer, category, hw):
    import jax.numpy as jnp

    from fgpose import camera, raster

    from fgpose.mesh import pack_mesh

    rng = np.random.default_rng(3)
    for i in range(2):
        mesh = S.class_mesh(category, i + 1)
        packed = pack_mesh(mesh, 3000, 6000)  # one raster compilation for all meshes
        pose = P.sample_poses(rng, 1, category, hw, points=P.extent_points(mesh))[0]
        photo, mask = photo_renderer.render(mesh, pose, hw, rng, category=category, return_mask=True)
        assert photo.shape == hw + (3,) and photo.dtype == np.uint8
        fh = camera.annotation_frame_height(hw[1], hw[0])
        proj = camera.projection_matrix(camera.Pose.from_array(jnp.asarray(pose, jnp.float32)), fh, image_size=hw)
        ref = np.asarray(raster.render(packed.vertices, packed.faces, proj, *hw, face_mask=packed.face_mask, location=False).mask)
        iou = (ref & mask).sum() / (ref | mask).sum()
        assert ref.sum() > 100 and iou > 0.99, iou
        # The object is drawn over a background that differs from it.
        assert photo[mask].std() > 0 and np.abs(photo[~mask].mean(0) - photo[mask].mean(0)).max() > 0


def test_car_parts_sit_on_the_right_faces():
    """Part labels agree with the geometry (ShapeNet frame: +X front, +Y up, Z across)."""
    for i in range(8):
        mesh, parts = S.class_mesh_and_parts("car", i)
        assert parts.shape == (mesh.num_faces,) and parts.dtype == np.int8
        assert set(np.unique(parts)) == set(range(len(S.CAR_PARTS))), i
        c = mesh.vertices[mesh.faces].astype(np.float64).mean(1)
        x, y, z = c[:, 0], c[:, 1], c[:, 2]
        lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
        length, height = hi[0] - lo[0], hi[1] - lo[1]
        name = dict(enumerate(S.CAR_PARTS))
        at = {n: parts == k for k, n in name.items()}
        assert np.all(x[at["head_lamp"]] > hi[0] - 0.08 * length) and np.all(x[at["grille"]] > hi[0] - 0.08 * length)
        assert np.all(x[at["tail_lamp"]] < lo[0] + 0.08 * length)
        assert np.median(np.abs(z[at["head_lamp"]])) > 2 * np.median(np.abs(z[at["grille"]]))  # lamps outboard
        assert np.all(y[at["glass"]] > lo[1] + 0.4 * height)  # greenhouse above the belt
        for wheel in ("tyre", "rim"):  # wheels touch the ground
            assert np.all(y[at[wheel]] < lo[1] + 0.7 * height) and np.median(y[at[wheel]]) < lo[1] + 0.4 * height
        assert S.class_mesh_and_parts("airplane", i % 6)[1] is None


def test_car_parts_show_in_the_photo(photo_renderer):
    """Same paint and lights with and without parts: the pixels that see tail-lamp faces
    (from the JAX rasterizer's face ids) turn red, glass pixels blue-grey, the body is equal."""
    import jax.numpy as jnp

    from fgpose import camera, raster

    mesh, parts = S.class_mesh_and_parts("car", 0)
    hw = (160, 192)
    pose = np.array([np.pi + 0.5, 0.3, 0.0, 2.0, 500.0, 0.0, 0.0])  # rear three-quarter view
    bg = np.full(hw + (3,), 128, np.uint8)
    plain = photo_renderer.render(mesh, pose, hw, np.random.default_rng(0), background=bg, noise_std=0)
    dressed = photo_renderer.render(mesh, pose, hw, np.random.default_rng(0), background=bg, noise_std=0, parts=parts)
    fh = camera.annotation_frame_height(hw[1], hw[0])
    proj = camera.projection_matrix(camera.Pose.from_array(jnp.asarray(pose, jnp.float32)), fh, image_size=hw)
    face = np.asarray(raster.render(mesh.vertices, mesh.faces, proj, *hw).face_id)
    part = np.where(face >= 0, parts[np.maximum(face, 0)], -1)
    # Interior pixels only (edges may be covered by a neighbouring part's face).
    def interior(m):
        import cv2

        return cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)

    tail = interior(part == S.CAR_PARTS.index("tail_lamp"))
    glass = interior(part == S.CAR_PARTS.index("glass"))
    body = interior(part == S.CAR_PARTS.index("body"))
    assert tail.sum() > 20 and glass.sum() > 100 and body.sum() > 500
    d = dressed.astype(float)
    redness = d[..., 0] - d[..., 1:].max(-1)
    assert np.median(redness[tail]) > 60
    # Glass: a blue-grey tint (base colour (0.04, 0.05, 0.06)), unlike the plain paint there.
    assert np.median(d[glass][:, 2] - d[glass][:, 0]) > 8
    assert np.median(np.abs(d[glass] - plain[glass]).max(-1)) > 15
    np.testing.assert_array_equal(dressed[body], plain[body])


def test_render_photo_is_deterministic_and_cached():
    from fgpose.synthetic import scene

    mesh = S.class_mesh("car", 5)
    pose = P.sample_poses(np.random.default_rng(0), 1, "car", (60, 80))[0]
    a = scene.render_photo(mesh, pose, (60, 80), np.random.default_rng(7))
    b = scene.render_photo(mesh, pose, (60, 80), np.random.default_rng(7))
    c = scene.render_photo(mesh, pose, (60, 80), np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c).mean() > 1
    assert (256, 256) in scene._RENDERERS


def test_photos_survive_opengl_context_replacement(monkeypatch):
    """PhotoRenderer replaces its OSMesa context every CONTEXT_DRAWS draws (Mesa keeps memory
    per draw until the context goes): photos after a replacement equal those before."""
    from fgpose.synthetic import scene

    mesh, parts = S.class_mesh_and_parts("car", 2)
    pose = P.sample_poses(np.random.default_rng(1), 1, "car", (60, 80))[0]
    monkeypatch.setattr(scene, "CONTEXT_DRAWS", 3)
    with scene.PhotoRenderer(64, 96) as r:
        first = r.render(mesh, pose, (60, 80), np.random.default_rng(5), parts=parts)
        context = r._renderer
        again = [r.render(mesh, pose, (60, 80), np.random.default_rng(5), parts=parts) for _ in range(3)]
        assert r._renderer is not context  # replaced (2 draws per photo with parts)
    for photo in again:
        np.testing.assert_array_equal(photo, first)


# ----------------------------------------------------------------------------- fields


@pytest.fixture(scope="module")
def pool():
    return S.synthetic_classes(3, 2, seed=0)


@pytest.mark.parametrize("crop,fhw", [(True, (48, 64)), (False, (48, 64)), (True, (72, 40))])
def test_location_field_reprojects(pool, crop, fhw):
    from fgpose.synthetic.fields import location_field_stream

    fh_, fw_ = fhw
    batch = next(location_field_stream(pool, batch_size=6, field_hw=fhw, seed=0, crop_to_box=crop, image_max_side=320))
    assert batch["field"].shape == (6, fh_, fw_, 3) and batch["field"].dtype == np.float32
    assert batch["mask"].shape == (6, fh_, fw_) and batch["pose"].shape == (6, 7) and batch["box"].shape == (6, 4)
    assert batch["image_hw"].max() <= 320
    for b in range(6):
        mask, field, proj = batch["mask"][b], batch["field"][b].astype(np.float64), batch["projection"][b]
        mesh = pool[batch["mesh_index"][b]].mesh
        assert mask.sum() > 50
        assert np.all(field[~mask] == 0)
        lo, hi = mesh.bounds
        assert np.all(field[mask] >= lo - 1e-4) and np.all(field[mask] <= hi + 1e-4)
        iy, ix = np.nonzero(mask)
        h = np.c_[field[mask], np.ones(len(iy))] @ proj.astype(np.float64).T
        px = h[:, :2] / h[:, 2:]
        err = np.hypot(px[:, 0] - (ix + 0.5), px[:, 1] - (iy + 0.5))
        assert err.max() < 0.05, err.max()
        # The projection is the documented one: reference built from the pose, image and box.
        H, W = batch["image_hw"][b]
        fh = int(H * 300 / W)
        _, _, p300 = reference.camera(batch["pose"][b], (H, W), (fh, 300))
        if crop:
            y0, x0, y1, x1 = batch["box"][b].astype(np.float64) * [fh / H, 300 / W, fh / H, 300 / W]
        else:
            y0, x0, y1, x1 = 0, 0, fh, 300
        a_map = np.array([[fw_ / (x1 - x0), 0, -fw_ * x0 / (x1 - x0)], [0, fh_ / (y1 - y0), -fh_ * y0 / (y1 - y0)], [0, 0, 1]])
        ref = a_map @ p300
        np.testing.assert_allclose(proj / proj[2, 3], ref / ref[2, 3], rtol=2e-4, atol=2e-4 * np.abs(ref / ref[2, 3]).max())
        if crop:
            # The box is the silhouette's: the mask touches every side not clipped by the photo.
            box = batch["box"][b]
            px_all, _ = reference.project_pose(batch["pose"][b], mesh.vertices.astype(np.float64), (H, W))
            if px_all[:, 1].min() > 0:
                assert iy.min() == 0
            if px_all[:, 0].max() < W:
                assert ix.max() == fw_ - 1
            assert box[0] >= 0 and box[3] <= W


def test_location_field_stream_is_deterministic(pool):
    from fgpose.synthetic.fields import location_field_stream

    from fgpose.synthetic.fields import _pool

    kw = dict(batch_size=6, field_hw=(48, 64), image_max_side=320)  # shapes compiled above
    a = list(location_field_stream(pool, seed=3, num_batches=2, **kw))
    b = list(location_field_stream(pool, seed=3, num_batches=2, **kw))
    c = next(location_field_stream(pool, seed=4, **kw))
    assert len(a) == 2
    for x, y in zip(a, b):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    assert not np.array_equal(a[0]["pose"], a[1]["pose"])
    assert not np.array_equal(a[0]["pose"], c["pose"])
    meshes, cats, index = _pool(pool, "airplane")
    assert cats == ["airplane", "airplane"] and list(index) == [3, 4] and meshes[0] is pool[3].mesh
