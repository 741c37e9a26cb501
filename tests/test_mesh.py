"""Tests for fgpose.mesh against independent references (shoelace areas, plain-Python
parsing of the real files, point-in-polygon coverage)."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest

from fgpose import mesh as fm
from fgpose.mesh import io as mesh_io
from fgpose.mesh import (
    Mesh,
    decimate,
    load_mesh,
    normalize_mesh,
    pack_mesh,
    pack_meshes,
    triangulate_polygon,
    unpack,
    unpack_mesh,
)

# ---------------------------------------------------------------------------------------
# Independent reference helpers (plain NumPy, float64)
# ---------------------------------------------------------------------------------------


def shoelace(poly2d: np.ndarray) -> float:
    x, y = np.asarray(poly2d, np.float64).T
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def tri_area_2d(a, b, c) -> np.ndarray:
    """Signed areas of 2D triangles given as (..., 2) arrays."""
    ab, ac = b - a, c - a
    return 0.5 * (ab[..., 0] * ac[..., 1] - ab[..., 1] * ac[..., 0])


def inside_polygon(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd ray casting (points exactly on edges are avoided by the callers)."""
    x, y = points[:, 0:1], points[:, 1:2]
    x0, y0 = poly[:, 0][None], poly[:, 1][None]
    x1, y1 = np.roll(poly[:, 0], -1)[None], np.roll(poly[:, 1], -1)[None]
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xint = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return (np.sum(crosses & (x < xint), axis=1) % 2) == 1


def inside_triangles(points: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """(P, T) bool: point strictly inside (either winding) triangle."""
    p = points[:, None, :]
    a, b, c = tris[None, :, 0], tris[None, :, 1], tris[None, :, 2]
    d1, d2, d3 = tri_area_2d(a, b, p), tri_area_2d(b, c, p), tri_area_2d(c, a, p)
    return ((d1 > 0) & (d2 > 0) & (d3 > 0)) | ((d1 < 0) & (d2 < 0) & (d3 < 0))


def sample_grid(poly: np.ndarray, n: int = 80) -> np.ndarray:
    lo, hi = poly.min(0) - 0.1, poly.max(0) + 0.1
    # irrational offsets keep samples off the polygon's (rational) edges and diagonals
    xs = lo[0] + (np.arange(n) + 0.5 * np.sqrt(2) - 0.2) * (hi[0] - lo[0]) / n
    ys = lo[1] + (np.arange(n) + 0.5 * np.sqrt(3) - 0.3) * (hi[1] - lo[1]) / n
    return np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)


def assert_exact_triangulation(poly2d: np.ndarray, tris_local: np.ndarray):
    """``tris_local`` (n-2, 3) local indices triangulate the simple polygon ``poly2d``."""
    n = len(poly2d)
    assert tris_local.shape == (n - 2, 3)
    assert tris_local.min() >= 0 and tris_local.max() < n
    tris = poly2d[tris_local]
    signed = tri_area_2d(tris[:, 0], tris[:, 1], tris[:, 2])
    ref = shoelace(poly2d)
    # same winding as the polygon, and unsigned areas add up to the polygon's area
    assert np.all(signed * np.sign(ref) >= -1e-12)
    np.testing.assert_allclose(np.abs(signed).sum(), abs(ref), rtol=1e-9)
    # coverage: inside points are in exactly one triangle, outside points in none
    pts = sample_grid(poly2d)
    count = inside_triangles(pts, tris).sum(axis=1)
    inside = inside_polygon(pts, poly2d)
    assert inside.any() and (~inside).any()
    np.testing.assert_array_equal(count[inside], 1)
    np.testing.assert_array_equal(count[~inside], 0)


# ---------------------------------------------------------------------------------------
# OBJ triangulation
# ---------------------------------------------------------------------------------------

TRIANGLE = np.array([[0, 0], [1, 0], [0, 1]], float)
SQUARE = np.array([[0, 0], [2, 0], [2, 2], [0, 2]], float)
DART = np.array([[0, 0], [3, 1], [0, 2], [1, 1]], float)  # reflex corner is the last one
PENTAGON = np.array([[np.cos(t), np.sin(t)] for t in np.linspace(0, 2 * np.pi, 6)[:-1]]) * 1.5
L_HEX = np.array([[2, 0], [2, 1], [1, 1], [1, 2], [0, 2], [0, 0]], float)  # fan from (2,0) fails
POLYGONS = {"triangle": TRIANGLE, "square": SQUARE, "dart": DART, "pentagon": PENTAGON, "L": L_HEX}


def _rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _embed(poly2d: np.ndarray, seed: int) -> np.ndarray:
    """Places a 2D polygon on a tilted plane in 3D (an isometry, so areas are kept)."""
    rot = _rotation(seed)
    pts = np.c_[poly2d, np.zeros(len(poly2d))]
    return pts @ rot.T + np.array([seed, -0.5 * seed, 0.25 * seed])


@pytest.fixture
def polygon_obj(tmp_path):
    """An OBJ with two objects, v/vt/vn, v//vn and v/vt syntaxes and negative indices."""
    lines = ["# test", "mtllib none.mtl", "o first", "vt 0 0", "vn 0 0 1", "usemtl a"]
    spans = {}
    nv = 0
    for k, (name, poly) in enumerate(POLYGONS.items()):
        if k == 3:
            lines.append("o second")
            lines.append("g group2")
        pts = _embed(poly, k + 1)
        for p in pts:
            lines.append("v " + " ".join(repr(float(c)) for c in p))
        n = len(poly)
        first = nv
        nv += n
        spans[name] = list(range(first, first + n))
        if name == "triangle":
            refs = [f"{i + 1}/1/1" for i in spans[name]]  # positive, v/vt/vn
        elif name == "square":
            refs = [f"{i + 1}//1" for i in spans[name]]  # positive, v//vn
        elif name == "pentagon":
            refs = [f"{i + 1}/1" for i in spans[name]]  # positive, v/vt
        else:
            refs = [f"{i - nv}/1/1" for i in spans[name]]  # negative (relative) indices
        lines.append("f " + " ".join(refs))
    path = tmp_path / "polygons.obj"
    path.write_text("\n".join(lines) + "\n")
    return path, spans


def test_obj_polygons_triangulated_exactly(polygon_obj):
    path, spans = polygon_obj
    mesh = load_mesh(path, cache_dir=False)
    assert mesh.vertices.dtype == np.float32 and mesh.faces.dtype == np.int32
    assert mesh.num_vertices == sum(len(p) for p in POLYGONS.values())
    expected_faces = sum(len(p) - 2 for p in POLYGONS.values())
    assert mesh.num_faces == expected_faces

    # total area equals the analytic (shoelace) areas
    total_ref = sum(abs(shoelace(p)) for p in POLYGONS.values())
    np.testing.assert_allclose(mesh.area, total_ref, rtol=1e-6)

    start = 0
    for k, (name, poly) in enumerate(POLYGONS.items()):
        n = len(poly)
        tris = mesh.faces[start : start + n - 2]  # polygons' triangles are contiguous, in order
        start += n - 2
        idx = np.array(spans[name])
        # every triangle's corners are corners of its polygon
        assert np.isin(tris, idx).all(), name
        # vertex positions are the file's
        np.testing.assert_allclose(mesh.vertices[idx], _embed(poly, k + 1), atol=1e-6)
        # in the polygon's own 2D coordinates: exact, non-overlapping, same-winding cover
        assert_exact_triangulation(poly, tris - idx[0])


def test_ascii_ply_polygons_triangulated_exactly(tmp_path):
    """trimesh fans PLY polygons; load_mesh re-triangulates them from the raw face lists."""
    verts, faces = [], []
    for k, poly in enumerate(POLYGONS.values()):
        faces.append(list(range(len(verts), len(verts) + len(poly))))
        verts.extend(_embed(poly, k + 1).tolist())
    header = (
        f"ply\nformat ascii 1.0\nelement vertex {len(verts)}\nproperty double x\n"
        f"property double y\nproperty double z\nelement face {len(faces)}\n"
        "property list uchar int vertex_indices\nend_header\n"
    )
    body = "".join(" ".join(repr(c) for c in v) + "\n" for v in verts)
    body += "".join(f"{len(f)} " + " ".join(map(str, f)) + "\n" for f in faces)
    path = tmp_path / "polygons.ply"
    path.write_text(header + body)
    mesh = load_mesh(path, cache_dir=False)
    np.testing.assert_allclose(mesh.vertices, np.array(verts), atol=1e-6)
    np.testing.assert_allclose(mesh.area, sum(abs(shoelace(p)) for p in POLYGONS.values()), rtol=1e-6)
    start = 0
    for poly, idx in zip(POLYGONS.values(), faces):
        tris = mesh.faces[start : start + len(poly) - 2]
        start += len(poly) - 2
        assert_exact_triangulation(poly, tris - idx[0])


def test_fan_reference_detects_nonconvex_errors():
    """Sanity check of the reference: fanning the L-hexagon or the dart is wrong."""
    for poly in (L_HEX, DART):
        n = len(poly)
        fan = np.stack([np.zeros(n - 2, int), np.arange(1, n - 1), np.arange(2, n)], 1)
        with pytest.raises(AssertionError):
            assert_exact_triangulation(poly, fan)


@pytest.mark.parametrize(
    "poly",
    [
        # comb with 4 teeth
        np.array([[0, 0], [9, 0], [9, 3], [8, 3], [8, 1], [6, 1], [6, 3], [5, 3], [5, 1],
                  [3, 1], [3, 3], [2, 3], [2, 1], [1, 1], [1, 3], [0, 3]], float),
        # star (simple, non-convex)
        np.array([[np.cos(t) * r, np.sin(t) * r]
                  for t, r in zip(np.linspace(0, 2 * np.pi, 15)[:-1], [3, 1] * 7)]),
        # square with collinear mid-edge vertices, clockwise
        np.array([[0, 0], [0, 1], [0, 2], [1, 2], [2, 2], [2, 1], [2, 0], [1, 0]], float),
        # U shape, clockwise
        np.array([[0, 0], [0, 3], [1, 3], [1, 1], [2, 1], [2, 3], [3, 3], [3, 0]], float),
    ],
    ids=["comb", "star", "collinear", "U-clockwise"],
)
def test_triangulate_polygon_nonconvex(poly):
    tris = triangulate_polygon(_embed(poly, 7))
    assert_exact_triangulation(poly, tris)


def test_obj_malformed(tmp_path):
    bad = tmp_path / "bad_index.obj"
    bad.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n")
    with pytest.raises(ValueError, match="bad_index.obj"):
        load_mesh(bad, cache_dir=False)
    empty = tmp_path / "empty.obj"
    empty.write_text("# nothing\n")
    with pytest.raises(ValueError, match="empty.obj"):
        load_mesh(empty, cache_dir=False)
    garbage = tmp_path / "garbage.ply"
    garbage.write_bytes(b"this is not a ply file\x00\x01")
    with pytest.raises(ValueError, match="garbage.ply"):
        load_mesh(garbage, cache_dir=False)
    missing = tmp_path / "missing.obj"
    with pytest.raises(FileNotFoundError, match="missing.obj"):
        load_mesh(missing, cache_dir=False)


def test_drop_degenerate(tmp_path):
    path = tmp_path / "degenerate.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 2 0 0\nf 1 2 3\nf 1 1 2\nf 1 2 4\n")
    assert load_mesh(path, cache_dir=False).num_faces == 3
    clean = load_mesh(path, cache_dir=False, drop_degenerate=True)
    np.testing.assert_array_equal(clean.faces, [[0, 1, 2]])


# ---------------------------------------------------------------------------------------
# Real data
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def car_path(example_car_path) -> pathlib.Path:
    return example_car_path  # conftest: the release's car, skipped when absent


@pytest.fixture(scope="module")
def airplane_path(release_dir) -> pathlib.Path:
    path = release_dir.parent / "meshes" / "airplane.ply"
    if not path.is_file():
        pytest.skip(f"{path} is missing (expected next to the release)")
    return path


@pytest.fixture(scope="module")
def car(example_car_mesh) -> Mesh:
    return example_car_mesh  # conftest: load_mesh(car_path, cache_dir=False), loaded once per session


@pytest.fixture(scope="module")
def airplane(airplane_path) -> Mesh:
    return load_mesh(airplane_path, normalize=True, cache_dir=False)


def test_real_car(car, car_path):
    v_lines, f_lines = [], []
    with open(car_path) as fh:
        for line in fh:
            if line.startswith("v "):
                v_lines.append([float(x) for x in line.split()[1:4]])
            elif line.startswith("f "):
                f_lines.append([int(r.split("/")[0]) - 1 for r in line.split()[1:]])
    ref_v = np.array(v_lines)
    assert car.num_faces == 29226
    assert car.num_vertices == len(ref_v)
    np.testing.assert_array_equal(car.bounds, np.stack([ref_v.min(0), ref_v.max(0)]).astype(np.float32))
    np.testing.assert_array_equal(car.vertices, ref_v.astype(np.float32))
    np.testing.assert_array_equal(car.faces, np.array(f_lines))  # the file is all triangles
    assert car.diagonal == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(car.center, 0.0, atol=1e-5)
    # ShapeNet axes: +X front (longest), +Y up (car is lower than it is wide)
    assert np.argmax(car.extents) == 0 and car.extents[1] < car.extents[2]


def test_real_airplane_normalized(airplane, airplane_path):
    raw = load_mesh(airplane_path, cache_dir=False)
    # independent parse of the ASCII PLY's vertex block
    lines = airplane_path.read_text().splitlines()
    nv = int(next(l for l in lines if l.startswith("element vertex")).split()[-1])
    body = lines[lines.index("end_header") + 1 :]
    ref_v = np.array([[float(x) for x in l.split()[:3]] for l in body[:nv]])
    ref_f = np.array([[int(x) for x in l.split()[1:]] for l in body[nv:] if l.strip()])
    assert raw.num_faces == 2452 and airplane.num_faces == 2452
    np.testing.assert_array_equal(raw.vertices, ref_v.astype(np.float32))
    np.testing.assert_array_equal(raw.faces, ref_f)  # the file is all triangles
    assert raw.diagonal > 10  # really not ShapeNet-normalised
    assert airplane.diagonal == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(airplane.center, 0.0, atol=1e-6)
    # a uniform scale + translation of the file's vertices
    lo, hi = ref_v.min(0), ref_v.max(0)
    expected = (ref_v - (lo + hi) / 2) / np.linalg.norm(hi - lo)
    np.testing.assert_allclose(airplane.vertices, expected, atol=1e-6)
    np.testing.assert_array_equal(airplane.faces, raw.faces)
    again = normalize_mesh(airplane)
    np.testing.assert_allclose(again.vertices, airplane.vertices, atol=1e-6)


def test_decimate_car(car):
    small = decimate(car, 5000)
    assert 0 < small.num_faces <= 5000
    assert small.num_faces >= 4000  # reaches close to the budget, not far under it
    np.testing.assert_allclose(small.bounds, car.bounds, atol=0.02 * car.diagonal)
    assert small.area == pytest.approx(car.area, rel=0.1)
    assert decimate(car, 30000) is car  # under budget: no-op
    tiny = decimate(car, 300)  # beyond what quadric decimation reaches: falls back
    assert 0 < tiny.num_faces <= 300
    np.testing.assert_allclose(tiny.bounds, car.bounds, atol=0.1 * car.diagonal)


def test_load_with_max_faces(airplane_path, tmp_path):
    m = load_mesh(airplane_path, normalize=True, max_faces=1000, cache_dir=tmp_path)
    assert m.num_faces <= 1000
    assert m.diagonal == pytest.approx(1.0, abs=0.05)


# ---------------------------------------------------------------------------------------
# Packing
# ---------------------------------------------------------------------------------------


def test_pack_meshes(car, airplane):
    packed = pack_meshes([car, airplane])
    vmax, fmax = car.num_vertices, car.num_faces
    assert packed.vertices.shape == (2, vmax, 3) and packed.vertices.dtype == np.float32
    assert packed.faces.shape == (2, fmax, 3) and packed.faces.dtype == np.int32
    assert packed.face_mask.shape == (2, fmax) and packed.face_mask.dtype == bool
    assert packed.vertex_mask.shape == (2, vmax) and packed.vertex_mask.dtype == bool
    np.testing.assert_array_equal(packed.num_faces, [car.num_faces, airplane.num_faces])
    np.testing.assert_array_equal(packed.num_vertices, [car.num_vertices, airplane.num_vertices])
    na, fa = airplane.num_vertices, airplane.num_faces
    np.testing.assert_array_equal(packed.vertices[1, :na], airplane.vertices)
    np.testing.assert_array_equal(packed.faces[1, :fa], airplane.faces)
    assert packed.face_mask[1, :fa].all() and not packed.face_mask[1, fa:].any()
    assert packed.vertex_mask[1, :na].all() and not packed.vertex_mask[1, na:].any()
    np.testing.assert_array_equal(packed.faces[1, fa:], 0)  # padding faces are (0, 0, 0)
    np.testing.assert_array_equal(packed.vertices[1, na:], 0)
    pad = packed.vertices[1][packed.faces[1, fa:]]
    assert np.all(pad == pad[:, :1])  # degenerate: all three corners coincide

    back = unpack(packed)
    for orig, rt in zip([car, airplane], back):
        np.testing.assert_array_equal(rt.vertices, orig.vertices)
        np.testing.assert_array_equal(rt.faces, orig.faces)

    # explicit budgets
    bigger = pack_meshes([airplane], max_vertices=2000, max_faces=3000)
    assert bigger.vertices.shape == (1, 2000, 3) and bigger.faces.shape == (1, 3000, 3)
    with pytest.raises(ValueError, match="decimate"):
        pack_meshes([car, airplane], max_faces=5000)

    single = pack_mesh(airplane)
    assert single.vertices.shape == (na, 3) and single.faces.shape == (fa, 3)
    np.testing.assert_array_equal(unpack_mesh(single).faces, airplane.faces)


def test_packed_meshes_is_a_pytree_under_jit(car, airplane):
    import jax
    import jax.numpy as jnp

    packed = pack_meshes([car, airplane])

    @jax.jit
    def masked_area(p):
        t = jnp.take_along_axis(p.vertices[:, :, None, :], p.faces[..., None], axis=1)
        a = 0.5 * jnp.linalg.norm(jnp.cross(t[:, :, 1] - t[:, :, 0], t[:, :, 2] - t[:, :, 0]), axis=-1)
        return jnp.sum(jnp.where(p.face_mask, a, 0.0), axis=1), jnp.sum(a, axis=1)

    masked, unmasked = masked_area(packed)
    np.testing.assert_allclose(masked, [car.area, airplane.area], rtol=1e-4)
    np.testing.assert_allclose(unmasked, masked, rtol=1e-6)  # padding faces have zero area
    leaves = jax.tree_util.tree_leaves(packed)
    assert len(leaves) == 4


# ---------------------------------------------------------------------------------------
# Disk cache
# ---------------------------------------------------------------------------------------


def _fail(*args, **kwargs):
    raise AssertionError("the mesh file was read again instead of the cache")


def test_cache_hit_ply(airplane_path, tmp_path, monkeypatch):
    import trimesh

    first = load_mesh(airplane_path, normalize=True, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    monkeypatch.setattr(trimesh, "load", _fail)
    second = load_mesh(airplane_path, normalize=True, cache_dir=tmp_path)
    np.testing.assert_array_equal(second.vertices, first.vertices)
    np.testing.assert_array_equal(second.faces, first.faces)
    # different options are a different key: a miss, which reads the file
    with pytest.raises(Exception, match="read again"):  # wrapped in ValueError
        load_mesh(airplane_path, normalize=False, cache_dir=tmp_path)
    # cache_dir=False never touches the cache
    with pytest.raises(Exception, match="read again"):  # wrapped in ValueError
        load_mesh(airplane_path, normalize=True, cache_dir=False)


def test_cache_hit_obj_and_env_default(car_path, tmp_path, monkeypatch):
    cache = tmp_path / "env_cache"
    monkeypatch.setenv(fm.CACHE_DIR_ENV, str(cache))
    assert fm.default_cache_dir() == cache
    first = load_mesh(car_path, max_faces=5000)  # default cache dir from the env var
    assert len(list(cache.glob("*.npz"))) == 1
    monkeypatch.setattr(mesh_io, "_read_obj", _fail)
    second = load_mesh(car_path, max_faces=5000)
    np.testing.assert_array_equal(second.vertices, first.vertices)
    np.testing.assert_array_equal(second.faces, first.faces)


def test_cache_invalidated_when_file_changes(tmp_path):
    path = tmp_path / "tri.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    cache = tmp_path / "cache"
    assert load_mesh(path, cache_dir=cache).vertices[1, 0] == 1
    path.write_text("v 0 0 0\nv 5 0 0\nv 0 1 0\nf 1 2 3\n")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert load_mesh(path, cache_dir=cache).vertices[1, 0] == 5


# ---------------------------------------------------------------------------------------
# Package layering: fgpose.visibility sits between fgpose.mesh.types and fgpose.mesh.loader
# ---------------------------------------------------------------------------------------


def _fgpose_imports(path: pathlib.Path) -> set[str]:
    """Every ``fgpose...`` module named by an import statement of ``path`` (any depth)."""
    import ast  # noqa: PLC0415

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in names if n.split(".")[0] == "fgpose"}


def test_package_layering():
    root = pathlib.Path(fm.__file__).parent
    # visibility imports the Mesh type from its own module, never the package facade
    # (whose loader uses visibility); within the package only the loader uses visibility.
    vis = _fgpose_imports(root.parent / "visibility.py")
    assert {n for n in vis if n.startswith("fgpose.mesh")} == {"fgpose.mesh.types", "fgpose.mesh.types.Mesh"}
    users = sorted(p.name for p in root.glob("*.py") if any("visibility" in n for n in _fgpose_imports(p)))
    assert users == ["loader.py"]
    # Either import order works, and importing the package does not load the rasterizer.
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    code = (
        "import sys\n"
        "import fgpose.mesh\n"
        "assert 'fgpose.raster' not in sys.modules and 'fgpose.visibility' not in sys.modules\n"
        "import fgpose.visibility\n"
        "assert fgpose.visibility.Mesh is fgpose.mesh.Mesh\n"
    )
    reverse = "import fgpose.visibility\nfrom fgpose.mesh import load_mesh, Mesh\nassert fgpose.visibility.Mesh is Mesh\n"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root.parent.parent), os.environ.get("PYTHONPATH", "")]))
    for src in (code, reverse):
        subprocess.run([sys.executable, "-c", src], check=True, env=env, timeout=300)
