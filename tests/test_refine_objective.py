"""Refinement objectives: band, soft IoU and the MAP penalty against float64 NumPy/SciPy
references, the prior file against a re-fit on the release, and the objectives inside the
jitted search (same moves as ``iou`` where they must be, no move where the prior forbids it,
flagged references left alone)."""

from __future__ import annotations

import json
import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from fgpose import camera, raster
from fgpose.refine import SearchConfig, objective, prior, refine
from fgpose.synthetic import shapes


def _random_masks(n, h, w, seed):
    """Blobby random masks: thresholded smoothed noise."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.standard_normal((n, h, w)), (0, 3, 3))
    return noise > 0.02


def _band_reference(mask, radius):
    """Pixels within ``radius`` of the boundary by SciPy's exact Euclidean distance transform."""
    d_in = ndimage.distance_transform_edt(mask)  # fg pixel -> nearest bg pixel
    d_out = ndimage.distance_transform_edt(~mask)  # bg pixel -> nearest fg pixel
    return (mask & (d_in <= radius)) | (~mask & (d_out <= radius))


@pytest.mark.parametrize("radius", [1, 1.5, 2, 3])
def test_boundary_band_matches_scipy_distance_transform(radius):
    masks = _random_masks(3, 40, 50, seed=int(radius * 10))
    heights = np.array([40, 31, 17])
    valid = np.arange(40)[None, :, None] < heights[:, None, None]
    got = np.asarray(objective.boundary_band(jnp.asarray(masks), jnp.asarray(valid), radius))
    for i, h in enumerate(heights):
        ref = _band_reference(masks[i, :h], radius)
        assert 0 < ref.sum() < ref.size
        np.testing.assert_array_equal(got[i, :h], ref)
        assert not got[i, h:].any()  # rows outside the frame are never in the band
    assert not np.asarray(objective.boundary_band(jnp.asarray(masks), jnp.asarray(valid), 0.0)).any()


def test_soft_score_matches_numpy_and_hard_iou():
    rng = np.random.default_rng(1)
    n, h, w = 4, 24, 30
    sil = rng.random((n, h, w)) < 0.4
    prob = np.round(rng.random((n, h, w)), 3).astype(np.float32)
    heights = np.array([24, 20, 12, 24])
    valid = np.broadcast_to(np.arange(h)[None, :, None] < heights[:, None, None], (n, h, w))
    obj = objective.Objective(soft=True)
    prep = objective.prepare_reference(jnp.asarray(prob), jnp.asarray(valid), obj)
    img = np.array([0, 1, 2, 3, 1])
    got = np.asarray(objective.silhouette_score(jnp.asarray(sil[img]), prep, jnp.asarray(img)))
    s, p, v = sil[img].astype(np.float64), prob[img].astype(np.float64), valid[img]
    inter = (s * p * v).sum((1, 2))
    union = ((s + p - s * p) * v).sum((1, 2))
    np.testing.assert_allclose(got, inter / union, rtol=1e-5)
    # A hard reference: the soft IoU is the plain IoU; so is a soft objective's on a 0/1 map.
    hard = prob >= 0.5
    for o, ref in ((objective.Objective(), hard), (objective.Objective(soft=True), hard.astype(np.float32)),
                   (objective.Objective(), prob)):
        prep = objective.prepare_reference(jnp.asarray(ref), jnp.asarray(valid), o)
        got = np.asarray(objective.silhouette_score(jnp.asarray(sil[img]), prep, jnp.asarray(img)))
        a, b = sil[img] & v, hard[img] & v
        np.testing.assert_allclose(got, (a & b).sum((1, 2)) / (a | b).sum((1, 2)), rtol=1e-6)


def test_band_score_ignores_band_pixels():
    masks = _random_masks(2, 36, 48, seed=5)
    sil = _random_masks(2, 36, 48, seed=6)
    valid = np.ones_like(masks)
    obj = objective.Objective(band=2.0)
    prep = objective.prepare_reference(jnp.asarray(masks), jnp.asarray(valid), obj)
    got = np.asarray(objective.silhouette_score(jnp.asarray(sil), prep, jnp.arange(2)))
    keep = np.stack([~_band_reference(m, 2.0) for m in masks])
    a, b = sil & keep, masks & keep
    np.testing.assert_allclose(got, (a & b).sum((1, 2)) / (a | b).sum((1, 2)), rtol=1e-6)


def test_offset_score_is_the_best_iou_over_grown_and_shrunk_references():
    masks = _random_masks(3, 36, 48, seed=7)
    sil = _random_masks(3, 36, 48, seed=8)
    heights = np.array([36, 30, 36])
    valid = np.arange(36)[None, :, None] < heights[:, None, None]
    obj = objective.Objective(offset=2, band=1.0)
    prep = objective.prepare_reference(jnp.asarray(masks), jnp.asarray(valid), obj)
    got = np.asarray(objective.offset_score(jnp.asarray(sil), prep, jnp.arange(3)))
    for i, h in enumerate(heights):
        m, s = masks[i, :h], sil[i, :h]
        d_in, d_out = ndimage.distance_transform_edt(m), ndimage.distance_transform_edt(~m)
        keep = ~_band_reference(m, 1.0)
        ious = []
        for delta in range(-2, 3):  # grown: within delta of the mask; shrunk: farther than -delta from background
            r = (d_out <= delta) if delta > 0 else m if delta == 0 else (d_in > -delta)
            ious.append(np.sum(s & r & keep) / np.sum((s | r) & keep))
        assert got[i] == pytest.approx(max(ious), rel=1e-6)
    # A reference 2 px too fat: the true silhouette still scores (almost) a perfect match.
    fat = np.stack([ndimage.distance_transform_edt(~m) <= 2 for m in masks])
    prep = objective.prepare_reference(jnp.asarray(fat), jnp.ones(fat.shape, bool), objective.Objective(offset=2))
    best = np.asarray(objective.offset_score(jnp.asarray(masks), prep, jnp.arange(3)))
    plain = (masks & fat).sum((1, 2)) / (masks | fat).sum((1, 2))
    assert np.all(best > 0.97) and np.all(best > plain + 0.1), (best, plain)


def test_prior_penalty_matches_numpy():
    scale = (0.05, 0.04, 0.03, 0.02, 10.0, 3.0, 2.0)
    obj = objective.Objective(prior_weight=0.003, prior_scale=scale)
    rng = np.random.default_rng(2)
    p, a = rng.normal(size=(5, 3, 7)), rng.normal(size=(1, 3, 7))
    expected = 0.003 * (np.abs(p - a) / np.asarray(scale)).sum(-1)
    np.testing.assert_allclose(np.asarray(objective.prior_penalty(jnp.asarray(p, jnp.float32),
                                                                  jnp.asarray(a, jnp.float32), obj)), expected,
                               rtol=1e-5)
    assert np.all(np.asarray(objective.prior_penalty(jnp.asarray(p), jnp.asarray(a), objective.Objective())) == 0)


def test_parse_objective_spellings_and_errors():
    scale = prior.load_prior_scale()
    assert objective.parse_objective("iou") == objective.Objective()
    assert objective.parse_objective("iou").plain
    assert objective.parse_objective("band") == objective.Objective(band=objective.DEFAULT_BAND_PX)
    o = objective.parse_objective("band:3+soft+map:0.01")
    assert o == objective.Objective(band=3.0, soft=True, prior_weight=0.01, prior_scale=scale)
    assert o.name == "band:3+soft+map:0.01" and objective.parse_objective(o.name) == o
    assert objective.parse_objective("map").prior_weight == objective.DEFAULT_PRIOR_WEIGHT
    assert objective.parse_objective("offset+map:0.003").offset == objective.DEFAULT_OFFSET_PX
    with pytest.raises(ValueError, match="binary references"):
        objective.parse_objective("soft+offset")
    for bad, match in (("offset:1.5", "whole number"), ("ioux", "unknown objective term"), ("band:x", "not a number"), ("band:0", "> 0"),
                       ("map:-1", "> 0"), ("band+band", "twice"), ("soft:1", "takes no value"), ("", "unknown")):
        with pytest.raises(ValueError, match=match):
            objective.parse_objective(bad)
    with pytest.raises(ValueError, match="prior_scale"):
        objective.Objective(prior_weight=0.1)
    assert SearchConfig(objective="band:2").objective == objective.Objective(band=2.0)
    with pytest.raises(ValueError, match="min_reference_iou"):
        SearchConfig(min_reference_iou=1.5)


def test_prior_file_matches_a_refit_on_the_release(release_dir):
    shipped = prior.load_prior()
    refit = json.loads(json.dumps(prior.fit_release_prior(release_dir)))
    assert shipped == refit
    fits = shipped["fits"]
    assert fits["StanfordCars"]["records"] == 8144 + 8041 and fits["FGVC_Aircraft"]["records"] == 6667 + 3333
    assert fits["pooled"]["records"] == fits["StanfordCars"]["records"] + fits["FGVC_Aircraft"]["records"]
    # Independent check of one scale: mean |v2 - v1| of the car azimuths, angles wrapped.
    from fgpose import annotations

    d = []
    for split in ("train", "test"):
        v1 = annotations.load_split(release_dir, "StanfordCars", split, 1)
        v2 = annotations.load_split(release_dir, "StanfordCars", split, 2)
        d += [math.remainder(v2[k].azimuth - v1[k].azimuth, 2 * math.pi) for k in v2 if k in v1]
    assert fits["StanfordCars"]["scale"][0] == pytest.approx(np.mean(np.abs(d)), rel=1e-9)
    assert prior.load_prior_scale() == tuple(fits["pooled"]["scale"])
    with pytest.raises(ValueError, match="no prior fit"):
        prior.load_prior_scale("CompCars")


# ----------------------------------------------------------------------------- in the search


@pytest.fixture(scope="module")
def toy_case():
    """A procedural car (no release needed), 4 start poses and references rendered at moved poses."""
    car = shapes.class_mesh("car", 0, seed=0)
    truth = np.array([[0.6, 0.25, 0.02, 2.4, 300.0, 2.0, -3.0], [2.2, 0.15, -0.03, 2.2, 280.0, -4.0, 1.0],
                      [4.0, 0.30, 0.00, 2.6, 320.0, 0.0, 2.0], [5.5, 0.20, 0.04, 2.3, 300.0, 3.0, 0.0]], np.float32)
    start = truth + np.array([0.06, -0.04, 0.03, 0.03, 20.0, 3.0, -2.0], np.float32)
    proj = camera.projection_matrix(camera.Pose.from_array(truth), 120)
    ref = np.asarray(raster.silhouette(car.vertices, car.faces, proj, 128, 300))
    return car, start, ref, np.array([120, 120, 110, 120])


def _run(case, **config):
    car, start, ref, heights = case
    return refine(car.vertices, car.faces, start, config.pop("ref", ref), heights,
                  config=SearchConfig(max_sweeps=8, **config))


def test_soft_objective_on_a_hard_reference_takes_the_iou_moves(toy_case):
    plain = _run(toy_case)
    soft = _run(toy_case, objective="soft", ref=toy_case[2].astype(np.float32))
    assert plain.moves.sum() > 4
    np.testing.assert_array_equal(soft.history, plain.history)
    np.testing.assert_array_equal(soft.poses, plain.poses)
    np.testing.assert_allclose(soft.score, plain.iou, atol=1e-6)
    np.testing.assert_array_equal(plain.score, plain.iou)


def test_band_search_reports_plain_iou_and_its_own_score(toy_case):
    car, start, ref, heights = toy_case
    out = _run(toy_case, objective="band:2", schedule="parallel")
    proj = camera.projection_matrix(camera.Pose.from_array(out.poses), heights)
    sil = np.asarray(raster.silhouette(car.vertices, car.faces, proj, 128, 300))
    for i in range(len(start)):
        h = heights[i]
        a, b = sil[i, :h], ref[i, :h]
        keep = ~_band_reference(b, 2.0)
        assert out.iou[i] == pytest.approx(np.sum(a & b) / np.sum(a | b), abs=2e-3)
        assert out.score[i] == pytest.approx(np.sum(a & b & keep) / np.sum((a | b) & keep), abs=2e-3)
    assert np.all(out.score >= out.initial_score) and np.any(out.score > out.initial_score)


def test_map_objective_trades_iou_for_staying_close(toy_case):
    scale = prior.load_prior_scale()
    # A prior so strong that no step pays for itself: nothing moves.
    frozen = _run(toy_case, objective=objective.Objective(prior_weight=10.0, prior_scale=scale), coarse=2)
    assert np.all(frozen.moves == 0)
    np.testing.assert_array_equal(frozen.poses, toy_case[1])
    # A moderate prior moves less far than the plain IoU, and its score is IoU minus the penalty.
    plain = _run(toy_case)
    o = objective.Objective(prior_weight=0.02, prior_scale=scale)
    anchored = _run(toy_case, objective=o)
    dist = lambda p: (np.abs(p - toy_case[1]) / np.asarray(scale)).sum(1)  # noqa: E731
    assert np.all(dist(anchored.poses) <= dist(plain.poses) + 1e-6) and np.any(anchored.moves > 0)
    expected = anchored.iou - 0.02 * dist(anchored.poses)
    np.testing.assert_allclose(anchored.score, expected, atol=1e-4)


def test_reference_check_flags_and_leaves_the_image(toy_case):
    car, start, ref, heights = toy_case
    bad = ref.copy()
    bad[1] = np.roll(bad[1], 60, axis=1)  # the reference of image 1 sits half a car further right
    plain = _run(toy_case, ref=bad)
    checked = _run(toy_case, ref=bad, min_reference_iou=0.5)
    assert plain.initial_iou[1] < 0.5 <= plain.initial_iou[[0, 2, 3]].min()
    np.testing.assert_array_equal(checked.flagged, [False, True, False, False])
    np.testing.assert_array_equal(checked.poses[1], start[1])
    assert checked.moves[1] == 0 and plain.moves[1] > 0
    keep = [0, 2, 3]  # the other images are refined exactly as without the check
    np.testing.assert_array_equal(checked.poses[keep], plain.poses[keep])
    np.testing.assert_array_equal(checked.initial_iou, plain.initial_iou)
