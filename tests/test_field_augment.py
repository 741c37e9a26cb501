"""Field-head-like augmentation of rendered location fields, checked step by step against
NumPy/SciPy references on an analytic field."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from fgpose.models.field_augment import FieldAugmentation, augment_fields
from fgpose.models.field_targets import sample_roi_fields

S = 16
N = 64
OFF = dict(box_shift=0.0, box_log_scale=0.0, morph_prob=0.0, boundary_flip=0.0, xyz_sigma=0.0)
"""Every augmentation off; tests turn on one at a time."""


@pytest.fixture(scope="module")
def scene():
    """An elliptic object on a 40 x 56 field, XYZ smooth in the pixel position, 0 off it; the
    RoI cuts off the object's right end (truncation at the RoI edge)."""
    i, j = np.meshgrid(np.arange(40) + 0.5, np.arange(56) + 0.5, indexing="ij")
    mask = ((i - 20) / 14) ** 2 + ((j - 28) / 22) ** 2 < 1
    field = np.stack([(j - 28) / 56, (20 - i) / 56, 0.1 + 0.05 * np.cos(j / 9)], -1) * mask[..., None]
    box = np.array([4.0, 4.0, 36.0, 40.0])
    return dict(
        field=jnp.asarray(np.repeat(field[None], N, 0), jnp.float32),
        mask=jnp.asarray(np.repeat(mask[None], N, 0)),
        box=jnp.asarray(np.repeat(box[None], N, 0), jnp.float32),
    )


def _run(scene, seed=0, **kw):
    params = FieldAugmentation(**{**OFF, **kw})
    out = augment_fields(jax.random.key(seed), scene["field"], scene["mask"], scene["box"], S, params)
    return {k: np.asarray(v) for k, v in out.items()}


def _base(scene):
    xyz, fg = sample_roi_fields(scene["field"][0], scene["mask"][0], scene["box"][:1], S)
    return np.asarray(xyz[0]), np.asarray(fg[0])


def _box_mean3(m):
    """3 x 3 mean over the in-RoI pixels of the window."""
    m = m.astype(np.float64)
    ones = np.ones_like(m)
    return ndimage.uniform_filter(m, 3, mode="constant") / ndimage.uniform_filter(ones, 3, mode="constant")


def test_no_augmentation_gives_the_head_target(scene):
    out = _run(scene)
    xyz, fg = _base(scene)
    assert fg[:, -1].any() and fg.mean() > 0.5  # truncated at the RoI's right edge
    for n in (0, N - 1):
        np.testing.assert_array_equal(out["mask"][n], fg)
        np.testing.assert_allclose(out["field"][n], xyz, atol=1e-6)  # jit may round differently
        np.testing.assert_array_equal(out["box"][n], np.asarray(scene["box"][0]))
        np.testing.assert_allclose(out["fg"][n], _box_mean3(fg), atol=1e-6)
    assert out["field"].shape == (N, S, S, 3) and out["fg"].shape == (N, S, S) and out["mask"].dtype == bool


def test_box_jitter_ranges_and_consistency(scene):
    shift, log_scale = 0.2, 0.3
    out = _run(scene, box_shift=shift, box_log_scale=log_scale)
    box = np.asarray(scene["box"][0], np.float64)
    size, centre = box[2:] - box[:2], 0.5 * (box[:2] + box[2:])
    got = out["box"].astype(np.float64)
    moved = (0.5 * (got[:, :2] + got[:, 2:]) - centre) / size
    factor = np.log((got[:, 2:] - got[:, :2]) / size)
    assert np.all(np.abs(moved) <= shift + 1e-5) and np.all(np.abs(factor) <= log_scale + 1e-5)
    assert moved.min() < -0.7 * shift and moved.max() > 0.7 * shift
    assert factor.min() < -0.7 * log_scale and factor.max() > 0.7 * log_scale
    assert np.corrcoef(factor[:, 0], factor[:, 1])[0, 1] < 0.5  # aspect changes too
    # The output is the target of the jittered box.
    xyz, fg = (np.asarray(a) for a in sample_roi_fields(scene["field"][0], scene["mask"][0], jnp.asarray(got[:8], jnp.float32), S))
    np.testing.assert_array_equal(out["mask"][:8], fg)
    np.testing.assert_allclose(out["field"][:8], xyz, atol=1e-6)


def _fill5(xyz, m):
    """Mean XYZ of the foreground in each pixel's 5 x 5 neighbourhood."""
    k = np.ones((5, 5))
    num = np.stack([ndimage.convolve(xyz[..., c] * m, k, mode="constant") for c in range(3)], -1)
    den = ndimage.convolve(m.astype(np.float64), k, mode="constant")
    return num / np.maximum(den, 1e-12)[..., None]


def test_erosion_and_dilation(scene):
    out = _run(scene, morph_prob=1.0)
    xyz, fg = _base(scene)
    k = np.ones((3, 3), bool)
    eroded = ndimage.binary_erosion(fg, k, border_value=1)  # the RoI border does not erode
    dilated = ndimage.binary_dilation(fg, k)
    assert eroded[:, -1].any()  # truncation survives erosion
    is_eroded = np.array([np.array_equal(m, eroded) for m in out["mask"]])
    is_dilated = np.array([np.array_equal(m, dilated) for m in out["mask"]])
    assert np.all(is_eroded ^ is_dilated)
    assert 0.25 < is_eroded.mean() < 0.75
    n_e, n_d = np.argmax(is_eroded), np.argmax(is_dilated)
    np.testing.assert_allclose(out["field"][n_e], np.where(eroded[..., None], xyz, 0), atol=1e-6)
    grown = dilated & ~fg
    np.testing.assert_allclose(out["field"][n_d][fg], xyz[fg], atol=1e-7)
    np.testing.assert_allclose(out["field"][n_d][grown], _fill5(xyz, fg)[grown], atol=1e-6)


def test_ragged_boundary_flips_only_the_band(scene):
    out = _run(scene, boundary_flip=0.5)
    xyz, fg = _base(scene)
    k = np.ones((3, 3), bool)
    band = ndimage.binary_dilation(fg, k) & ~ndimage.binary_erosion(fg, k, border_value=1)
    flipped = out["mask"] ^ fg[None]
    assert not flipped[:, ~band].any()
    assert 0.45 < flipped[:, band].mean() < 0.55
    fill = _fill5(xyz, fg)
    for n in range(4):
        new = out["mask"][n] & ~fg
        np.testing.assert_allclose(out["field"][n][new], fill[new], atol=1e-6)
        assert np.all(out["field"][n][~out["mask"][n]] == 0)


def test_xyz_noise(scene):
    sigma = 0.02
    out = _run(scene, xyz_sigma=sigma)
    xyz, fg = _base(scene)
    noise = (out["field"] - xyz[None])[:, fg]
    assert abs(noise.std() / sigma - 1) < 0.05 and abs(noise.mean()) < 0.002
    assert np.all(out["field"][:, ~fg] == 0)
    # Independent per example and channel.
    assert abs(np.corrcoef(noise[0].ravel(), noise[1].ravel())[0, 1]) < 0.1


def test_keys_drive_the_randomness(scene):
    kw = dataclasses.asdict(FieldAugmentation())  # the defaults
    assert all(v > 0 for v in kw.values())
    a, b, c = _run(scene, 1, **kw), _run(scene, 1, **kw), _run(scene, 2, **kw)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["box"], c["box"])
    assert len({a["box"][n].tobytes() for n in range(N)}) == N  # every example its own draw
