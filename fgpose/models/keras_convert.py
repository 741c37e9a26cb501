"""Copy ``keras.applications.ResNet50`` weights into a depth-50 :class:`ResNet`.

Mapping (Keras layer names -> Flax ResNet):

- ``conv1_conv`` / ``conv1_bn`` -> ``stem_conv`` / ``stem_norm``
- ``conv{s}_block{b}_{1,2,3}_conv|bn`` -> ``stages[s-2][b-1].conv{1,2,3}`` / ``norm{1,2,3}``
- ``conv{s}_block1_0_conv|bn`` -> ``stages[s-2][0].shortcut`` / ``shortcut_norm``

Conv kernels are HWIO in both. Keras convs have a bias and are followed by a
BatchNorm (``epsilon = 1.001e-5``); both are folded into the frozen affine:
``scale = gamma / sqrt(var + eps)``, ``bias = beta + (conv_bias - mean) * scale``.
Keras ResNet50 puts the stride of a downsampling bottleneck on its first 1x1
conv, so the Flax model must be built with ``stride_in_1x1=True`` and
``norm='frozen_bn'`` (checked).

Input colour order: Keras' ImageNet weights expect BGR ``caffe`` inputs
(``x[..., ::-1] - (103.939, 116.779, 123.68)``, no std). With
``rgb_input=True`` (default) the stem kernel's input channels are reversed so
the Flax model takes RGB: use ``pixel_mean = (123.68, 116.779, 103.939)`` and
``pixel_std = (1, 1, 1)`` on RGB 0..255 pixels — or pass ``pixel_std=`` to
fold any other per-channel std into the stem kernel.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import jax.numpy as jnp

from fgpose.models.resnet import Bottleneck, FrozenBatchNorm, ResNet

KERAS_BN_EPSILON = 1.001e-5
#: RGB pixel mean / std to use with converted Keras ImageNet weights and ``rgb_input=True``.
KERAS_PIXEL_MEAN_RGB = (123.68, 116.779, 103.939)
KERAS_PIXEL_STD = (1.0, 1.0, 1.0)


def build_keras_resnet50(weights_path: str | os.PathLike | None = None) -> Any:
    """``keras.applications.ResNet50(include_top=False)`` with weights from a file (offline).

    ``weights_path``: ``.h5`` / ``.weights.h5`` (e.g. Keras' ImageNet
    ``resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5``) or None (random).
    """
    import keras  # heavy import, only when converting

    model = keras.applications.ResNet50(weights=None, include_top=False)
    if weights_path is not None:
        model.load_weights(os.fspath(weights_path))
    return model


def _fold(conv_layer, bn_layer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w = conv_layer.get_weights()
    kernel = np.asarray(w[0], np.float64)
    conv_bias = np.asarray(w[1], np.float64) if len(w) > 1 else 0.0
    n = kernel.shape[-1]

    def get(attr: str, default: float) -> np.ndarray:
        v = getattr(bn_layer, attr, None)
        return np.full(n, default) if v is None else np.asarray(v.numpy(), np.float64)

    gamma, beta = get("gamma", 1.0), get("beta", 0.0)
    mean, var = get("moving_mean", 0.0), get("moving_variance", 1.0)
    eps = float(getattr(bn_layer, "epsilon", KERAS_BN_EPSILON))
    scale = gamma / np.sqrt(var + eps)
    bias = beta + (conv_bias - mean) * scale
    return kernel, scale, bias


def _assign(conv_mod, norm_mod, kernel, scale, bias) -> None:
    if not isinstance(norm_mod, FrozenBatchNorm):
        raise TypeError("Keras conversion needs a ResNet built with norm='frozen_bn'")
    if tuple(conv_mod.kernel.get_raw_value().shape) != kernel.shape:
        raise ValueError(f"kernel shape {conv_mod.kernel.get_raw_value().shape} != Keras {kernel.shape}")
    conv_mod.kernel.set_value(jnp.asarray(kernel, jnp.float32))
    norm_mod.scale.set_value(jnp.asarray(scale, jnp.float32))
    norm_mod.bias.set_value(jnp.asarray(bias, jnp.float32))


def load_keras_resnet50(
    model_or_h5_path: Any,
    flax_resnet: ResNet,
    *,
    rgb_input: bool = True,
    pixel_std: Sequence[float] | None = None,
) -> ResNet:
    """Copy a Keras ResNet50 weight set into ``flax_resnet`` in place (and return it).

    Args:
      model_or_h5_path: a built ``keras.applications.ResNet50`` (include_top
        irrelevant) or a path to its weights file (see :func:`build_keras_resnet50`).
      flax_resnet: ``ResNet(50, 64, 'frozen_bn', stride_in_1x1=True, ...)``.
      rgb_input: reverse the stem kernel's input channels so the Flax model
        takes RGB where Keras takes BGR (set False for a channel-exact copy).
      pixel_std: per-channel std (in the Flax model's input channel order) the
        caller divides pixels by. Keras' ``caffe`` weights expect std 1, so the
        stem kernel is multiplied by ``pixel_std``: a model fed
        ``(x - mean) / pixel_std`` then computes exactly what Keras computes on
        ``x - mean``. Only the mean must match Keras' (``KERAS_PIXEL_MEAN_RGB``;
        ImageNet's ``(123.675, 116.28, 103.53)`` differs by < 0.5 grey levels).
    """
    if flax_resnet.depth != 50 or flax_resnet.width != 64:
        raise ValueError("Keras ResNet50 needs ResNet(depth=50, width=64)")
    if not flax_resnet.stride_in_1x1:
        raise ValueError("Keras ResNet50 needs ResNet(..., stride_in_1x1=True)")
    if isinstance(model_or_h5_path, (str, os.PathLike)):
        km = build_keras_resnet50(model_or_h5_path)
    else:
        km = model_or_h5_path

    k, s, b = _fold(km.get_layer("conv1_conv"), km.get_layer("conv1_bn"))
    if rgb_input:
        k = k[:, :, ::-1, :]
    if pixel_std is not None:
        std = np.asarray(pixel_std, np.float64).reshape(-1)
        if std.shape != (k.shape[2],):
            raise ValueError(f"pixel_std needs {k.shape[2]} values, got {std.shape}")
        k = k * std[None, None, :, None]
    _assign(flax_resnet.stem_conv, flax_resnet.stem_norm, k, s, b)
    for si, blocks in enumerate(flax_resnet.stages):
        for bi, block in enumerate(blocks):
            assert isinstance(block, Bottleneck)
            pre = f"conv{si + 2}_block{bi + 1}"
            for j in (1, 2, 3):
                k, s, b = _fold(km.get_layer(f"{pre}_{j}_conv"), km.get_layer(f"{pre}_{j}_bn"))
                _assign(getattr(block, f"conv{j}"), getattr(block, f"norm{j}"), k, s, b)
            if block.shortcut is not None:
                k, s, b = _fold(km.get_layer(f"{pre}_0_conv"), km.get_layer(f"{pre}_0_bn"))
                _assign(block.shortcut, block.shortcut_norm, k, s, b)
    return flax_resnet
