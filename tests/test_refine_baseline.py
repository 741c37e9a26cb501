"""fgpose.refine.baseline (the published one-pose loop) with a renderer whose answer is known.

The silhouette is a flat rectangle facing the camera, drawn in NumPy: centre
``(150 + u, h/2 + v)``, half sizes ``40 s x 25 s`` pixels with ``s = f / (200 d)``; the three
angles do not change it. So ties between candidates are exact and the schedules' tie rules
(module docstring of fgpose.refine.baseline) decide every angle move. Fast: no rasterizer,
no compilation. (The step-by-step comparison with the jitted search on the real car is
``test_refine.py::test_same_moves_as_the_plain_published_loop``, in the slow tier.)
"""

from __future__ import annotations

import numpy as np
import pytest

from fgpose.refine import baseline
from fgpose.refine.search import DEFAULT_STEPS

H = 120
TARGET = np.array([0.3, 0.1, 0.0, 2.0, 400.0, 0.0, 0.0], np.float32)  # s = 1
START = np.array([0.3, 0.1, 0.0, 2.0, 400.0, 6.0, -5.0], np.float32)


def rectangle(params) -> np.ndarray:
    a, e, t, d, f, u, v = (float(x) for x in params)
    s = f / (200.0 * d)
    ys, xs = np.mgrid[0:H, 0:300] + 0.5  # pixel centres
    return (np.abs(xs - 150.0 - u) < 40.0 * s) & (np.abs(ys - H / 2 - v) < 25.0 * s)


REFERENCE = rectangle(TARGET)


def _replay(pose0, history) -> np.ndarray:
    """The pose reached by applying the recorded moves in float32, as the search does."""
    p = np.array(pose0, np.float32)
    eps = np.asarray(DEFAULT_STEPS, np.float32)
    for mv in history:
        delta = np.float32(np.float32(mv.alpha) * eps[mv.param])
        p[mv.param] = p[mv.param] + delta if mv.sign > 0 else p[mv.param] - delta
    return p


def test_iou_is_float32_and_checks_shapes():
    a = np.zeros((2, 3), bool)
    b = a.copy()
    a[0, :2] = True
    b[0, 1:] = True
    assert baseline.iou(a, b) == np.float32(1) / np.float32(3) and baseline.iou(a, b).dtype == np.float32
    assert baseline.iou(np.zeros((2, 3)), np.zeros((2, 3))) == 0.0
    with pytest.raises(ValueError, match="differs"):
        baseline.iou(a, np.zeros((3, 2), bool))


def _check_common(res, schedule):
    assert res.initial_iou == float(baseline.iou(rectangle(START), REFERENCE))
    assert res.iou == float(baseline.iou(rectangle(res.params), REFERENCE)) > res.initial_iou
    assert res.moves == len(res.history) and [mv.iou for mv in res.history] == sorted(mv.iou for mv in res.history)
    np.testing.assert_array_equal(_replay(START, res.history), res.params)
    assert res.renders == 1 + 14 * res.sweeps  # 2 x 7 per sweep, or 14 per parallel step
    if schedule != "release":
        # The angles change nothing, and a tie never beats the current pose.
        np.testing.assert_array_equal(res.params[:3], START[:3])
        assert all(mv.param >= 3 for mv in res.history)
        assert res.alpha < 0.125 and res.sweeps < 50  # stopped by alpha, not by the bound


def test_parallel_recovers_the_reference_exactly():
    res = baseline.refine_one(rectangle, START, REFERENCE, schedule="parallel", record=True)
    _check_common(res, "parallel")
    np.testing.assert_array_equal(res.params, TARGET)
    assert res.iou == 1.0


def test_paper_stops_where_no_step_of_its_last_alpha_helps():
    """Sequential greedy sweeps may end in a local optimum (here: a grown rectangle that
    still overlaps the offset reference); the stopping rule guarantees only that no single
    move of the last alpha improves the IoU."""
    res = baseline.refine_one(rectangle, START, REFERENCE, schedule="paper", record=True)
    _check_common(res, "paper")
    last_alpha = np.float32(res.alpha * 2)
    for i, eps in enumerate(np.asarray(DEFAULT_STEPS, np.float32)):
        for sign in (1, -1):
            p = res.params.copy()
            p[i] = p[i] + sign * np.float32(last_alpha * eps)
            assert baseline.iou(rectangle(p), REFERENCE) <= res.iou, (i, sign)


def test_release_ties_move_plus_so_it_runs_to_the_bound():
    """``release``: a tie prefers a move, and ``+`` over ``-``: every sweep moves each angle by
    ``+eps``, so there is never a sweep without a move and the search runs ``max_sweeps``."""
    res = baseline.refine_one(rectangle, START, REFERENCE, schedule="release", max_sweeps=9, record=True)
    _check_common(res, "release")
    assert res.sweeps == 9 and res.alpha == 1.0
    expected = START.copy()
    for _ in range(9):
        for i in range(3):
            expected[i] = expected[i] + np.float32(DEFAULT_STEPS[i])
    np.testing.assert_array_equal(res.params[:3], expected[:3])
    assert (res.params[5], res.params[6]) == (0.0, 0.0)
    np.testing.assert_array_equal(_replay(START, res.history), res.params)


def test_bad_arguments():
    for kwargs, message in [
        (dict(schedule="greedy"), "schedule"),
        (dict(steps=(1.0,) * 6), "7 positive"),
        (dict(alpha0=0.0), "positive"),
        (dict(max_sweeps=0), "max_sweeps"),
    ]:
        with pytest.raises(ValueError, match=message):
            baseline.refine_one(rectangle, START, REFERENCE, **kwargs)
    with pytest.raises(ValueError, match="7 parameters"):
        baseline.refine_one(rectangle, START[:6], REFERENCE)
    with pytest.raises(ValueError, match="reference must be"):
        baseline.refine_one(rectangle, START, REFERENCE[:, :200])
