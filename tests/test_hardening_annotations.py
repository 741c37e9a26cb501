"""Issue 14, items 1 and 2 (annotation side): float32-safe ranges, huge integers and deep
nesting in annotation records give AnnotationError, on reading and on writing."""

from __future__ import annotations

import math
import pickle
import sys

import numpy as np
import pytest

from fgpose import annotations as A
from fgpose.safe_repr import short_repr
from tests.hardening_inputs import GOOD, NEST_DEPTH, nested_list, nested_value_pickle, records_pickle

RELEASE_FILES = [
    (name, split, version)
    for name, info in A.DATASETS.items()
    for split in A.SPLITS
    for version in info.versions
]


def test_every_release_record_passes_the_ranges(release_dir):
    """Zero rejections over all 10 release pickles, checked record by record."""
    total = 0
    rejected = []
    for name, split, version in RELEASE_FILES:
        path = A.annotation_path(release_dir, name, split, version)
        raw = pickle.load(open(path, "rb"), encoding="latin1")  # the trusted release itself
        for key, record in raw.items():
            try:
                A.Annotation.from_record(key, record, source=path)
            except A.AnnotationError as exc:
                rejected.append(str(exc))
        total += len(raw)
    assert rejected == []
    assert total == 8144 * 2 + 8041 * 2 + 3798 + 1898 + 6667 * 2 + 3333 * 2


def test_release_extremes_leave_a_wide_margin(release_dir):
    """Every bound is at least 10x beyond the release's most extreme value of its field."""
    for name, split, version in RELEASE_FILES:
        raw = pickle.load(open(A.annotation_path(release_dir, name, split, version), "rb"), encoding="latin1")
        for field, (low, high) in A.FLOAT_BOUNDS.items():
            values = np.array([r[field] for r in raw.values()])
            assert values.max() * 10 <= high, (name, field)
            if low < 0:
                assert values.min() * 10 >= low, (name, field)
            else:
                assert values.min() >= low * 10, (name, field)


def test_bounds_are_normal_float32():
    f32 = np.finfo(np.float32)
    for field, (low, high) in A.FLOAT_BOUNDS.items():
        for bound in (low, high):
            as32 = np.float32(bound)
            assert np.isfinite(as32) and abs(float(as32)) >= f32.tiny, (field, bound)
        assert low < high
    assert A.FLOAT_BOUNDS["distance"][0] > 0 and A.FLOAT_BOUNDS["f"][0] > 0


@pytest.mark.parametrize(
    "field,value,problem",
    [
        ("distance", 1e-300, "out of the valid range [0.0001, 1e+06]"),  # 0 in float32
        ("distance", 1e300, "out of the valid range [0.0001, 1e+06]"),  # inf in float32
        ("distance", 5e-45, "out of the valid range"),  # a float32 denormal
        ("f", 1e300, "out of the valid range [0.01, 1e+07]"),
        ("f", 1e-40, "out of the valid range"),
        ("u", 1e40, "out of the valid range [-1e+06, 1e+06]"),  # inf in float32
        ("v", -1e7, "out of the valid range [-1e+06, 1e+06]"),
        ("azimuth", 1e4, "out of the valid range [-1000, 1000]"),
        ("theta", -3e38, "out of the valid range [-1000, 1000]"),
        ("distance", 0.0, "must be positive, got 0.0"),
        ("f", -1e-300, "must be positive"),
        ("elevation", math.nan, "expected a finite float, got nan"),
        ("u", -math.inf, "expected a finite float, got -inf"),
        ("distance", 10**400, "expected a float, got int <int of about 401 digits> (too large for a float)"),
        ("u", -(10**400), "expected a float, got int <-int of about 401 digits> (too large for a float)"),
    ],
)
def test_out_of_range_values_are_malformed(tmp_path, field, value, problem):
    record = dict(GOOD, **{field: value})
    with pytest.raises(A.AnnotationError) as info:  # in memory
        A.Annotation(key="k.jpg", **record)
    assert info.value.field == field and problem in str(info.value)
    path = tmp_path / "a.pkl"  # and from a file, naming file, key and field
    path.write_bytes(records_pickle({"00001.jpg": dict(GOOD), "00002.jpg": record}))
    with pytest.raises(A.AnnotationError) as info:
        A.load_annotations(path)
    assert (info.value.source, info.value.key, info.value.field) == (path, "00002.jpg", field)
    assert str(info.value) == f"{path}: image key '00002.jpg': field '{field}': {info.value.problem}"
    assert problem in info.value.problem


def test_values_on_the_bounds_are_accepted():
    for field, (low, high) in A.FLOAT_BOUNDS.items():
        for value in (low, high):
            a = A.Annotation(key="k.jpg", **dict(GOOD, **{field: value}))
            assert getattr(a, field) == value
            assert np.isfinite(np.float32(getattr(a, field)))


@pytest.mark.parametrize("field", ["distance", "model_id"])
def test_nested_field_is_malformed_without_recursion_error(tmp_path, field):
    """A value nested 200,000 deep: AnnotationError with a short message, in memory and from a file."""
    assert NEST_DEPTH > 100 * sys.getrecursionlimit()
    with pytest.raises(A.AnnotationError) as info:
        A.Annotation.from_record("k.jpg", dict(GOOD, **{field: nested_list()}))
    assert info.value.field == field and "got list [[[[...]]]]" in str(info.value)
    path = tmp_path / "nested.pkl"
    path.write_bytes(nested_value_pickle("00001.jpg", field))
    with pytest.raises(A.AnnotationError) as info:
        A.load_annotations(path)
    msg = str(info.value)
    assert msg == f"{path}: image key '00001.jpg': field '{field}': {info.value.problem}"
    assert "got list [[[[...]]]]" in msg and len(msg) < len(str(path)) + 200


def test_nested_or_huge_key_is_shown_short(tmp_path):
    key = (((((("deep",),),),),),)
    path = tmp_path / "key.pkl"
    path.write_bytes(records_pickle({key: dict(GOOD)}))
    with pytest.raises(A.AnnotationError, match=r"image key \(\(\(\(\.\.\.\),\),\),\): image keys must be non-empty str"):
        A.load_annotations(path)
    path.write_bytes(records_pickle({10**400: dict(GOOD)}))
    with pytest.raises(A.AnnotationError, match=r"image key <int of about 401 digits>: image keys must be non-empty str, got int"):
        A.load_annotations(path)


def test_save_revalidates_and_writes_nothing_when_invalid(tmp_path):
    good = A.Annotation(key="a.jpg", **GOOD)
    bad = A.Annotation(key="b.jpg", **GOOD)
    object.__setattr__(bad, "distance", 1e-300)  # bypasses the frozen dataclass's checks
    path = tmp_path / "out.pkl"
    with pytest.raises(A.AnnotationError) as info:
        A.save_annotations(path, [good, bad])
    assert (info.value.key, info.value.field) == ("b.jpg", "distance")
    assert str(path) in str(info.value) and "out of the valid range" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary one
    A.save_annotations(path, [good])
    assert A.load_annotations(path) == {"a.jpg": good}


def test_check_pose_values():
    values = [GOOD[k] for k in A.FLOAT_FIELDS]
    assert A.check_pose_values(values) == tuple(float(v) for v in values)
    assert all(type(v) is float for v in A.check_pose_values([0, 0, 0, 2, 300, 0, 0]))
    with pytest.raises(A.AnnotationError) as info:
        A.check_pose_values(values[:3] + [-1.0] + values[4:], source="--pose")
    assert info.value.field == "distance" and info.value.problem == "must be positive, got -1.0"
    with pytest.raises(A.AnnotationError, match=r"expected 7 pose values .* got 6"):
        A.check_pose_values(values[:6])


def test_short_repr_never_fails_and_stays_short():
    class Broken:
        def __repr__(self):
            raise RuntimeError("no")

    for value in (nested_list(), 10**5000, "x" * 10**6, {i: [i] * 100 for i in range(100)}, Broken()):
        text = short_repr(value)
        assert isinstance(text, str) and 0 < len(text) <= 90
    assert short_repr(1.5) == "1.5" and short_repr("abc") == "'abc'" and short_repr(-(10**300)) == "<-int of about 301 digits>"
