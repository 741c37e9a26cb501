"""The location-field RoI head: shapes, the 2x upsampling's alignment, and its masked losses
against a float64 NumPy reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from fgpose.models.field_head import FieldHead, field_losses


def _head(**kw):
    kw = {"width": 8, "num_conv": 2, **kw}
    return FieldHead(4, rngs=nnx.Rngs(0), **kw)


@pytest.mark.parametrize("norm,dtype", [(None, jnp.float32), ("group", jnp.bfloat16)])
def test_shapes_and_dtypes(norm, dtype):
    head = _head(norm=norm, dtype=dtype)
    x = jax.random.normal(jax.random.key(0), (2, 3, 5, 5, 4))
    xyz, logit = head(x)
    assert xyz.shape == (2, 3, 10, 10, 3) and logit.shape == (2, 3, 10, 10)
    assert xyz.dtype == jnp.float32 and logit.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(xyz))) and np.asarray(xyz).std() > 0
    params = nnx.state(head, nnx.Param)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    # 2 convs (+ GroupNorm scale and bias when normed, then no conv bias), deconv, predictor.
    names = {"/".join(str(k) for k in path) for path, _ in nnx.to_flat_state(params)}
    assert ("convs/0/norm/scale" in names) == (norm == "group")
    assert ("convs/0/conv/bias" in names) == (norm is None)
    assert {"deconv/kernel", "predictor/kernel", "predictor/bias"} <= names


def test_upsampling_keeps_the_roi_grid_aligned():
    """Without convs, output bins (2i + a, 2j + b) depend on input bin (i, j) only, so output
    bin k covers the k-th of the S = 2R equal bins of the RoI; each conv widens that by one."""
    x = jax.random.normal(jax.random.key(1), (1, 6, 6, 4))
    for num_conv, reach in ((0, 0), (2, 2)):
        head = _head(num_conv=num_conv)
        base = np.asarray(head(x)[0])
        changed = np.asarray(head(x.at[0, 2, 3].add(5.0))[0]) != base
        rows, cols = np.nonzero(changed[0].any(-1))
        assert rows.min() == 2 * (2 - reach) and rows.max() == 2 * (2 + reach) + 1
        assert cols.min() == 2 * (3 - reach) and cols.max() == min(2 * (3 + reach) + 1, 11)


def _ref_losses(xyz, logit, xyz_t, fg_t, valid, beta):
    xyz, logit, xyz_t = (np.asarray(a, np.float64) for a in (xyz, logit, xyz_t))
    fg_t, valid = np.asarray(fg_t, bool), np.asarray(valid, bool)
    d = np.abs(xyz - xyz_t)
    sl1 = (np.where(d < beta, 0.5 * d * d / max(beta, 1e-12), d - 0.5 * beta) if beta > 0 else d).sum(-1)
    per_xyz, per_fg = [], []
    for r in np.ndindex(valid.shape):
        if not valid[r]:
            continue
        p = 1.0 / (1.0 + np.exp(-logit[r]))
        per_fg.append(np.mean(-(fg_t[r] * np.log(p) + (1 - fg_t[r]) * np.log(1 - p))))
        if fg_t[r].any():
            per_xyz.append(sl1[r][fg_t[r]].mean())
    return (np.mean(per_xyz) if per_xyz else 0.0), (np.mean(per_fg) if per_fg else 0.0)


def test_losses_match_reference():
    rng = np.random.default_rng(0)
    shape = (2, 4, 6, 6)
    xyz = rng.normal(0, 0.2, shape + (3,)).astype(np.float32)
    xyz_t = rng.normal(0, 0.2, shape + (3,)).astype(np.float32)
    logit = rng.normal(0, 2.0, shape).astype(np.float32)
    fg_t = rng.random(shape) < 0.4
    fg_t[0, 1] = False  # a valid RoI without foreground: no XYZ term, still a foreground term
    valid = np.array([[True, True, False, True], [False, True, True, False]])
    for beta in (0.05, 0.0):
        out = field_losses(jnp.asarray(xyz), jnp.asarray(logit), jnp.asarray(xyz_t), jnp.asarray(fg_t), jnp.asarray(valid), beta=beta)
        ref_xyz, ref_fg = _ref_losses(xyz, logit, xyz_t, fg_t, valid, beta)
        np.testing.assert_allclose(float(out["xyz"]), ref_xyz, rtol=1e-5)
        np.testing.assert_allclose(float(out["fg"]), ref_fg, rtol=1e-5)
    none = field_losses(jnp.asarray(xyz), jnp.asarray(logit), jnp.asarray(xyz_t), jnp.asarray(fg_t), jnp.zeros((2, 4), bool))
    assert float(none["xyz"]) == 0.0 and float(none["fg"]) == 0.0


def test_loss_gradients_are_masked():
    """XYZ gets gradient only on the target foreground of valid RoIs; logits on valid RoIs."""
    rng = np.random.default_rng(1)
    xyz, xyz_t = (jnp.asarray(rng.normal(0, 0.3, (3, 5, 5, 3)), jnp.float32) for _ in range(2))
    logit = jnp.asarray(rng.normal(0, 1, (3, 5, 5)), jnp.float32)
    fg_t = jnp.asarray(rng.random((3, 5, 5)) < 0.5)
    valid = jnp.array([True, False, True])

    def total(a, b):
        out = field_losses(a, b, xyz_t, fg_t, valid)
        return out["xyz"] + out["fg"]

    g_xyz, g_logit = (np.asarray(g) for g in jax.grad(total, argnums=(0, 1))(xyz, logit))
    live = np.asarray(valid)[:, None, None] & np.asarray(fg_t)
    assert np.all(g_xyz[~live] == 0) and np.all(np.abs(g_xyz[live]).sum(-1) > 0)
    assert np.all(g_logit[1] == 0) and np.all(g_logit[[0, 2]] != 0)


def test_head_fits_a_field():
    """100 Adam steps on fixed RoI features fit a disc-shaped field: both losses drop."""
    head = _head(num_conv=2, width=16)
    x = jax.random.normal(jax.random.key(2), (2, 5, 5, 4))
    i, j = np.meshgrid(np.arange(10), np.arange(10), indexing="ij")
    disc = (i - 4.5) ** 2 + (j - 4.5) ** 2 < 16
    xyz_t = np.stack([(j - 4.5) / 10, (i - 4.5) / 10, 0.3 * disc], -1) * disc[..., None]
    xyz_t = jnp.asarray(np.stack([xyz_t, -xyz_t]), jnp.float32)
    fg_t = jnp.asarray(np.stack([disc, disc]))
    graphdef, params, rest = nnx.split(head, nnx.Param, ...)
    tx = optax.adam(1e-2)

    def loss_fn(p):
        out = field_losses(*nnx.merge(graphdef, p, rest)(x), xyz_t, fg_t, jnp.ones((2,), bool))
        return out["xyz"] + out["fg"], out

    @jax.jit
    def step(p, s):
        (_, out), g = jax.value_and_grad(loss_fn, has_aux=True)(p)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s, out

    state = tx.init(params)
    params, state, first = step(params, state)
    for _ in range(100):
        params, state, last = step(params, state)
    assert float(last["xyz"]) < 0.05 * float(first["xyz"])
    assert float(last["fg"]) < 0.4 * float(first["fg"])
