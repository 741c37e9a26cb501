"""Backbone tests: Keras ResNet50 -> Flax conversion is exact; output shapes; FPN."""

from __future__ import annotations

import numpy as np
import pytest
import jax
import jax.numpy as jnp
from flax import nnx

from fgpose.models.fpn import FPN
from fgpose.models.resnet import FrozenAffine, ResNet


def _randomise_keras(model, rng: np.random.Generator) -> None:
    """Random conv weights (Keras init) AND random BN gamma/beta/mean/var."""
    for layer in model.layers:
        if layer.__class__.__name__ == "BatchNormalization":
            n = layer.gamma.shape[0]
            # gamma ~1 so the input signal still reaches C5 (outputs stay < ~20).
            layer.gamma.assign(rng.uniform(0.8, 1.5, n).astype(np.float32))
            layer.beta.assign(rng.normal(0.0, 0.1, n).astype(np.float32))
            layer.moving_mean.assign(rng.normal(0.0, 0.3, n).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype(np.float32))
        elif layer.__class__.__name__ == "Conv2D":
            k, b = layer.get_weights()
            layer.set_weights([k, rng.normal(0.0, 0.1, b.shape).astype(np.float32)])


@pytest.mark.slow
def test_keras_resnet50_conversion_exact(tmp_path):
    keras = pytest.importorskip("keras")
    from fgpose.models.keras_convert import load_keras_resnet50

    keras.utils.set_random_seed(0)
    km = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(None, None, 3))
    rng = np.random.default_rng(0)
    _randomise_keras(km, rng)
    names = ["conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"]
    feat_model = keras.Model(km.input, [km.get_layer(n).output for n in names])
    x = rng.normal(0.0, 1.0, (2, 80, 72, 3)).astype(np.float32)  # non-square, multiple of 8 only
    ref = [np.asarray(r) for r in feat_model.predict(x, verbose=0)]

    # Abstract construction (fast): the converter sets every variable.
    net = nnx.eval_shape(lambda: ResNet(50, 64, "frozen_bn", stride_in_1x1=True, rngs=nnx.Rngs(1)))
    load_keras_resnet50(km, net, rgb_input=True)
    assert all(isinstance(v, jax.Array) for v in jax.tree.leaves(nnx.state(net)))
    with jax.default_matmul_precision("highest"):
        out = nnx.jit(lambda m, v: m(v))(net, jnp.asarray(x[..., ::-1]))  # RGB = reversed BGR
    for name, r in zip(["C2", "C3", "C4", "C5"], ref):
        o = np.asarray(out[name])
        assert o.shape == r.shape, (name, o.shape, r.shape)
        scale = float(np.abs(r).max())
        assert 0.05 < scale < 100.0, (name, scale)  # test is meaningful
        err = float(np.abs(o - r).max())
        assert err <= 1e-4, (name, err, scale)  # absolute, outputs are O(1-10)

    # Folding a pixel std into the stem: feeding x / std gives the same features.
    std = np.array([58.4, 57.1, 57.4], np.float32)
    net_std = nnx.eval_shape(lambda: ResNet(50, 64, "frozen_bn", stride_in_1x1=True, rngs=nnx.Rngs(1)))
    load_keras_resnet50(km, net_std, pixel_std=std)
    with jax.default_matmul_precision("highest"):
        out_std = nnx.jit(lambda m, v: m(v))(net_std, jnp.asarray(x[..., ::-1] / std))
    assert float(np.abs(np.asarray(out_std["C5"]) - ref[3]).max()) <= 1e-4

    # Without reversing the input the result must differ (the test can fail).
    with jax.default_matmul_precision("highest"):
        bad = net(jnp.asarray(x))["C5"]
    assert float(np.abs(np.asarray(bad) - ref[3]).max()) > 1e-2

    # Folded BN lives in non-trainable FrozenAffine variables.
    assert len(jax.tree.leaves(nnx.state(net, FrozenAffine))) == 2 * 53
    assert len(jax.tree.leaves(nnx.state(net, nnx.Param))) == 53

    # Loading from a weights file gives the same variables.
    path = tmp_path / "resnet50.weights.h5"
    km.save_weights(str(path))
    net2 = nnx.eval_shape(lambda: ResNet(50, 64, "frozen_bn", stride_in_1x1=True, rngs=nnx.Rngs(2)))
    load_keras_resnet50(path, net2)
    for a, b in zip(jax.tree.leaves(nnx.state(net)), jax.tree.leaves(nnx.state(net2))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError):
        load_keras_resnet50(km, nnx.eval_shape(lambda: ResNet(50, 64, rngs=nnx.Rngs(0))))


def test_keras_conv_bn_folds_into_one_affine():
    """The converter's per-layer rule on one Keras Conv2D + BatchNormalization (inference):
    ``conv(x) * scale + bias`` from :func:`_fold` equals Keras' output (the whole ResNet50 is
    the slow test above)."""
    keras = pytest.importorskip("keras")
    from fgpose.models.keras_convert import KERAS_BN_EPSILON, _fold, load_keras_resnet50

    rng = np.random.default_rng(3)
    conv = keras.layers.Conv2D(5, 1, use_bias=True)
    bn = keras.layers.BatchNormalization(epsilon=KERAS_BN_EPSILON)
    x = rng.normal(0.0, 1.0, (2, 4, 3, 3)).astype(np.float32)
    bn(conv(x), training=False)  # builds both layers
    conv.set_weights([rng.normal(0.0, 0.5, (1, 1, 3, 5)).astype(np.float32), rng.normal(0.0, 0.1, 5).astype(np.float32)])
    bn.set_weights([rng.uniform(0.5, 1.5, 5), rng.normal(0.0, 0.2, 5), rng.normal(0.0, 0.3, 5), rng.uniform(0.2, 2.0, 5)])
    ref = np.asarray(bn(conv(x), training=False), np.float64)
    kernel, scale, bias = _fold(conv, bn)
    got = np.einsum("bhwi,io->bhwo", x.astype(np.float64), kernel[0, 0]) * scale + bias
    assert np.abs(ref).max() > 0.5
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-5)
    # Only the Keras ResNet50 layout is accepted (checked before anything is read).
    with pytest.raises(ValueError, match="depth=50, width=64"):
        load_keras_resnet50(None, nnx.eval_shape(lambda: ResNet(18, 8, "frozen_bn", rngs=nnx.Rngs(0))))


@pytest.mark.parametrize("depth,width,norm", [(18, 8, "frozen_bn"), (50, 8, "group"), (34, 4, "group")])
def test_resnet_shapes(depth, width, norm):
    net = nnx.eval_shape(lambda: ResNet(depth, width, norm, freeze_at=2, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(net)
    x = jax.ShapeDtypeStruct((2, 67, 50, 3), jnp.float32)
    out = jax.eval_shape(lambda st, v: nnx.merge(graphdef, st)(v), state, x)
    exp = 1 if depth < 50 else 4
    for k, s in zip(["C2", "C3", "C4", "C5"], [4, 8, 16, 32]):
        assert out[k].shape == (2, -(-67 // s), -(-50 // s), width * exp * s // 4), (k, out[k].shape)
        assert net.out_channels[k] == out[k].shape[-1]


@pytest.mark.slow
def test_resnet_groupnorm_grad_and_freeze():
    # abstract construction + random fill (eager/jit init compiles per shape: slow on CPU)
    abstract = nnx.eval_shape(lambda: ResNet(18, 4, "group", freeze_at=2, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    rng = np.random.default_rng(0)
    state = jax.tree.map(
        lambda s: jnp.asarray(rng.normal(size=s.shape) * 0.2 + (len(s.shape) == 1), s.dtype), state
    )
    net = nnx.merge(graphdef, state)
    x = jax.random.normal(jax.random.key(0), (1, 64, 64, 3))

    def loss(m):
        return jnp.sum(m(x)["C5"] ** 2)

    grads = nnx.jit(lambda m: nnx.grad(loss)(m))(net)
    g_stem = float(jnp.abs(grads.stem_conv.kernel[...]).max())
    g_res2 = float(jnp.abs(grads.stages[0][0].conv1.kernel[...]).max())
    g_res3 = float(jnp.abs(grads.stages[1][0].conv1.kernel[...]).max())
    assert g_stem == 0.0 and g_res2 == 0.0
    assert g_res3 > 0.0


def test_resnet_bfloat16_compute():
    net = nnx.eval_shape(lambda: ResNet(18, 8, "frozen_bn", dtype=jnp.bfloat16, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(net)
    x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    out = jax.eval_shape(lambda st, v: nnx.merge(graphdef, st)(v), state, x)
    assert all(o.dtype == jnp.bfloat16 for o in out.values())
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(state))


def _np_conv(x, k, b, pad):
    """float64 NumPy NHWC conv, stride 1, symmetric zero padding."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    kh, kw = k.shape[:2]
    h = x.shape[1] - kh + 1
    w = x.shape[2] - kw + 1
    out = np.zeros((x.shape[0], h, w, k.shape[3])) + b
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("bhwc,cd->bhwd", x[:, i : i + h, j : j + w], k[i, j])
    return out


@pytest.mark.slow
def test_fpn_matches_numpy_reference_odd_sizes():
    rng = np.random.default_rng(0)
    hw = {"C2": (9, 7), "C3": (5, 4), "C4": (3, 2), "C5": (2, 1)}
    cin = {"C2": 3, "C3": 4, "C4": 5, "C5": 6}
    feats = {k: rng.normal(size=(2, *hw[k], cin[k])).astype(np.float32) for k in hw}
    fpn = FPN(cin, 8, rngs=nnx.Rngs(0))
    for mod in list(fpn.lateral) + list(fpn.output):  # nonzero biases so they are tested
        mod.bias[...] = jnp.asarray(rng.normal(size=mod.bias[...].shape), jnp.float32)
    with jax.default_matmul_precision("highest"):
        out = fpn({k: jnp.asarray(v) for k, v in feats.items()})

    f64 = {k: v.astype(np.float64) for k, v in feats.items()}
    prev = None
    ref = {}
    for i, lvl in reversed(list(enumerate(["C2", "C3", "C4", "C5"]))):
        lat = fpn.lateral[i]
        cur = _np_conv(f64[lvl], np.asarray(lat.kernel[...], np.float64), np.asarray(lat.bias[...]), 0)
        if prev is not None:
            h, w = cur.shape[1:3]
            # nearest: output pixel (y, x) takes coarse pixel (y // 2, x // 2)
            cur = cur + prev[:, np.arange(h) // 2][:, :, np.arange(w) // 2]
        prev = cur
        o = fpn.output[i]
        ref[f"P{i + 2}"] = _np_conv(cur, np.asarray(o.kernel[...], np.float64), np.asarray(o.bias[...]), 1)
    ref["P6"] = ref["P5"][:, ::2, ::2]
    for k in ["P2", "P3", "P4", "P5", "P6"]:
        assert out[k].shape == ref[k].shape, k
        np.testing.assert_allclose(np.asarray(out[k]), ref[k], atol=1e-4, rtol=1e-4)
