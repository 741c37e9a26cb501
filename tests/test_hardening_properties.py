"""Issue 14, property-based tests (hypothesis): random and adversarial input to the
annotation reader, the mesh readers and the render command line either loads correctly
(checked against the documented invariants) or raises the project's own error type
(AnnotationError, MeshError, argparse's exit 2 / rc 2), never anything else, and quickly.

Each property runs a few dozen examples with a per-example deadline; the whole file takes
well under 20 s on one core (no rendering: the work after validation is replaced by a stub).
"""

from __future__ import annotations

import math
import pathlib
import pickle
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fgpose import annotations as A
from fgpose import mesh as mesh_lib
from fgpose import raster, render
from fgpose.mesh import MeshError
from fgpose.mesh.io import read_mesh_file
from tests.hardening_inputs import GOOD, nested_list

PROPERTY = settings(max_examples=50, deadline=5000, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
"""Deterministic (derandomize) so that CI sees the examples a developer saw; the deadline
only catches hangs (the first PLY example also imports trimesh's PLY reader)."""

# ----------------------------------------------------------------------------- annotations

_HUGE_INTS = st.sampled_from([10**400, -(10**400), 2**64, 10**20])
_FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [1e-300, 5e-45, 1e300, -1e300, 1e40, 0.0, -0.0, 1e-4, 1e6, 1e7, 1e-2, 1e3, -1e3])
_ADVERSARIAL = st.sampled_from([10**400, -(10**400), 1e-300, 1e300, -1e300, 1e40, math.nan, math.inf, -math.inf,
                                 0.0, -1.0, 5e-45, 3e38, True, None, "1.0", b"1", [1.0], (2.0,), {"x": 1.0},
                                 nested_list(50)])  # 200,000 deep: test_hardening_annotations
_SCALARS = (_FLOATS | st.integers() | _HUGE_INTS | st.booleans() | st.none() | st.text(max_size=20)
            | st.binary(max_size=10))
_VALUES = _ADVERSARIAL | st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=3) | st.tuples(inner)
    | st.dictionaries(st.text(max_size=5), inner, max_size=2), max_leaves=8)


@st.composite
def _records(draw):
    """A release record with some fields replaced, dropped or added."""
    record = dict(GOOD)
    for field in draw(st.lists(st.sampled_from(A.FIELDS), max_size=3, unique=True)):
        record[field] = draw(_VALUES)
    for field in draw(st.lists(st.sampled_from(A.FIELDS), max_size=1)):
        record.pop(field, None)
    if draw(st.booleans()) and draw(st.booleans()):
        record[draw(st.text(max_size=5))] = draw(_VALUES)
    return record


def _check_annotation(ann: A.Annotation) -> None:
    assert isinstance(ann.model_id, str)
    for field, (low, high) in A.FLOAT_BOUNDS.items():
        value = getattr(ann, field)
        assert type(value) is float and low <= value <= high
        assert math.isfinite(float(np.float32(value)))
    assert ann.distance > 0 and ann.f > 0


@PROPERTY
@given(key=st.text(min_size=1, max_size=20) | _VALUES, record=_records() | _VALUES)
@example(key="k", record=dict(GOOD, distance=10**400))
@example(key=10**400, record=GOOD)
def test_record_validation(key, record):
    try:
        ann = A.Annotation.from_record(key, record, source="mem")
    except A.AnnotationError as exc:
        assert str(exc).startswith("mem: ") and len(str(exc)) < 2000
        return
    _check_annotation(ann)


def _valid_pickle() -> bytes:
    return pickle.dumps({"00001.jpg": GOOD, "x/y.jpg": dict(GOOD, u=3.0)}, protocol=2)


@st.composite
def _mutated_pickles(draw):
    """A valid annotation pickle (protocol 0 or 2) with bytes replaced, inserted or cut."""
    blob = bytearray(pickle.dumps({"00001.jpg": GOOD}, protocol=draw(st.sampled_from([0, 2]))))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(blob)))
        op = draw(st.sampled_from(["replace", "insert", "cut"]))
        chunk = draw(st.binary(min_size=1, max_size=4))
        if op == "replace":
            blob[i:i + len(chunk)] = chunk
        elif op == "insert":
            blob[i:i] = chunk
        else:
            del blob[i:]
    return bytes(blob)


@PROPERTY
@given(blob=_mutated_pickles() | st.binary(max_size=64) | st.just(_valid_pickle()))
def test_pickle_reader(blob):
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "a.pkl"
        path.write_bytes(blob)
        try:
            table = A.load_annotations(path)
        except A.AnnotationError as exc:
            assert str(path) in str(exc)
            return
    assert isinstance(table, dict)
    for key, ann in table.items():
        assert isinstance(ann, A.Annotation) and ann.key == key
        _check_annotation(ann)


# ----------------------------------------------------------------------------- meshes

_NUMBER_TOKENS = st.sampled_from(["0", "1", "-1", "0.5", "1e3", "1e999", "-1e999", "nan", "inf", "0.", "1e",
                                  "-", "x", "1,5", "+2", "1_0"]) | st.floats().map(repr)
_INDEX_TOKENS = (st.integers(-6, 8).map(str) | _HUGE_INTS.map(str)
                 | st.sampled_from(["1/1/1", "2//2", "3/", "/1", "a", "1/2/3/4", "", "0", "9" * 5000]))
_BASE_OBJ = "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\nf 1 2 3\nf 2 4 3\nf 1/1/1 2/2/2 4/3/1 3/4/1\n"


@st.composite
def _obj_text(draw):
    """A valid small OBJ with random lines added and tokens replaced, maybe cut anywhere."""
    lines = _BASE_OBJ.splitlines() if draw(st.booleans()) else []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["v", "v", "f", "f", "vt", "#", "junk", "g"]))
        if kind == "v":
            lines.append("v " + " ".join(draw(st.lists(_NUMBER_TOKENS, max_size=5))))
        elif kind == "f":
            lines.append("f " + " ".join(draw(st.lists(_INDEX_TOKENS, max_size=6))))
        elif kind == "junk":
            lines.append(draw(st.text(max_size=12)))
        else:
            lines.append(f"{kind} {draw(st.text(max_size=6))}")
    draw(st.randoms()).shuffle(lines)
    tokens = [line.split(" ") for line in lines]
    for _ in range(draw(st.integers(0, 3)) if tokens else 0):
        row = draw(st.integers(0, len(tokens) - 1))
        col = draw(st.integers(0, len(tokens[row]) - 1))
        tokens[row][col] = draw(_INDEX_TOKENS if tokens[row][0] == "f" else _NUMBER_TOKENS)
    text = "\n".join(" ".join(t) for t in tokens)
    if draw(st.booleans()):
        text += draw(st.sampled_from(["\n", "\r\n", "\\\n"]))
    if draw(st.booleans()):
        text = text[: draw(st.integers(0, len(text)))]
    return text


def _check_mesh(mesh: mesh_lib.Mesh) -> None:
    assert mesh.vertices.dtype == np.float32 and mesh.vertices.shape[1] == 3
    assert np.isfinite(mesh.vertices).all()
    assert mesh.faces.ndim == 2 and mesh.faces.shape[1] == 3 and len(mesh.faces) > 0
    assert mesh.faces.min() >= 0 and mesh.faces.max() < len(mesh.vertices)


def _read(suffix: str, data: bytes):
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / f"m{suffix}"
        path.write_bytes(data)
        try:
            return read_mesh_file(path)
        except MeshError as exc:
            assert str(path) in str(exc)
            return None


@PROPERTY
@given(text=_obj_text())
@example(text="v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 100000000000000000000\n")
@example(text=_BASE_OBJ + "f 1 2")
def test_obj_reader(text):
    mesh = _read(".obj", text.encode("utf-8", errors="surrogateescape"))
    if mesh is not None:
        _check_mesh(mesh)


@PROPERTY
@given(data=st.binary(max_size=200))
def test_obj_reader_binary(data):
    mesh = _read(".obj", data)
    if mesh is not None:
        _check_mesh(mesh)


@st.composite
def _ply_bytes(draw):
    nv, nf = draw(st.integers(0, 4)), draw(st.integers(0, 3))
    header = ["ply", "format ascii 1.0", f"element vertex {nv}", "property float x", "property float y",
              "property float z", f"element face {nf}", "property list uchar int vertex_indices", "end_header"]
    body = [" ".join(draw(st.lists(_NUMBER_TOKENS, min_size=3, max_size=3))) for _ in range(nv)]
    for _ in range(nf):
        refs = draw(st.lists(st.integers(-2, 6), min_size=0, max_size=5))
        body.append(" ".join(map(str, [len(refs), *refs])))
    lines = header + body
    if draw(st.booleans()):  # damage one line
        i = draw(st.integers(0, len(lines) - 1))
        lines[i] = draw(st.text(max_size=10))
    return ("\n".join(lines) + "\n").encode("utf-8", errors="surrogateescape")


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # trimesh on 1e999
@PROPERTY
@given(data=_ply_bytes())
def test_ply_reader(data):
    mesh = _read(".ply", data)
    if mesh is not None:
        _check_mesh(mesh)


# ----------------------------------------------------------------------------- render CLI


class _Reached(Exception):
    """Raised by the stubbed mesh loader: validation passed and work would start."""


_OPTION_VALUES = {
    "--frame-height": st.sampled_from(["0", "-5", "200", "1e3", "x", "99999999", ""]),
    "--size": st.sampled_from(["annotation", "original", "-5x10", "20x30", "0x0", "20000x20000", "12y5", "5x",
                               " 7 x 9 ", "+3x+4", "x"]),
    "--max-faces": st.sampled_from(["0", "-1", "100", "abc"]),
    "--max-memory-gb": st.sampled_from(["0", "-1", "4", "nan", "inf", "1e-9", "x"]),
    "--image-size": st.lists(st.sampled_from(["0", "300", "-2", "q"]), min_size=0, max_size=3).map(" ".join),
    "--key": st.text(max_size=5),
}


_POSE_TOKENS = _FLOATS.map(repr) | st.sampled_from(["x", "1e400", "-1e-3", "nan", "-inf", "0", "-0"])


@st.composite
def _argv(draw):
    argv = []
    if draw(st.integers(0, 3)):  # a valid pose with 0-2 values replaced, or any list of values
        pose = ["0.1", "0.2", "0", "2", "300", "-3", "4"]
        for _ in range(draw(st.integers(0, 2))):
            pose[draw(st.integers(0, 6))] = draw(_POSE_TOKENS)
        argv += ["--pose", *pose]
    elif draw(st.booleans()):
        argv += ["--pose", *draw(st.lists(_POSE_TOKENS, max_size=8))]
    for option in draw(st.lists(st.sampled_from(sorted(_OPTION_VALUES)), max_size=3, unique=True)):
        value = draw(_OPTION_VALUES[option])
        argv += [option, *value.split(" ")] if option == "--image-size" else (
            [f"{option}={value}"] if draw(st.booleans()) else [option, value])
    if draw(st.booleans()):
        argv.append(draw(st.sampled_from(["--normalize", "--bogus", "-x", "extra"])))
    return argv


@PROPERTY
@given(argv=_argv())
@example(argv=["--pose", "0", "0", "0", "1e-300", "300", "0", "0"])
@example(argv=["--pose", "0", "0", "0", "2", "nan", "0", "0", "--size", "-5x10"])
def test_render_command_line(argv, monkeypatch_module):
    """Bad arguments exit with status 2 before any work; what reaches the mesh loader is valid."""
    reached = {}

    def load_mesh(path, **kwargs):
        reached["yes"] = True
        raise _Reached

    monkeypatch_module.setattr(mesh_lib, "load_mesh", load_mesh)
    monkeypatch_module.setattr(raster, "render", lambda *a, **k: pytest.fail("rendered"))
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "out"
        full = ["--mesh", str(pathlib.Path(tmp) / "m.obj"), *argv, "--out", str(out)]
        try:
            rc = render.main(full)
        except SystemExit as exc:  # argparse: usage error
            assert exc.code == 2
            return
        except _Reached:
            args = render.build_parser().parse_args(render._join_option_values(full))
            values = A.check_pose_values(args.pose)  # raises if an invalid pose got through
            assert len(values) == 7
            for value in (args.frame_height, args.max_faces, *(args.image_size or [])):
                assert value is None or value > 0
            assert 0 < args.max_memory_gb < math.inf
            assert out.is_dir()
            return
        assert rc == 2 and not reached


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp
