"""ResNet backbone (Flax NNX) returning C2..C5 (strides 4, 8, 16, 32).

- depth 18/34: basic blocks; 50/101: bottleneck blocks (expansion 4).
- Stride of a bottleneck's first block on the 3x3 conv (torchvision/Detectron2)
  or, with ``stride_in_1x1=True``, on the first 1x1 conv (Keras / original
  MSRA ResNet; required for :func:`~fgpose.models.keras_convert.load_keras_resnet50`).
- Norm ``'frozen_bn'``: a fixed per-channel affine ``y = x * scale + bias``
  stored as :class:`FrozenAffine` variables (a subclass of ``nnx.Variable``,
  NOT ``nnx.Param``, so ``nnx.Optimizer(..., wrt=nnx.Param)`` never updates
  them); ``'group'``: ``nnx.GroupNorm`` (32 groups; for tiny widths the largest
  divisor of the channel count ``<= 32`` leaving >= 2 channels per group), eps 1e-5.
  Convs have no bias.
- Stem: 7x7/2 conv with 3 pixels of zero padding (Keras ``ZeroPadding2D(3)`` +
  valid conv), norm, ReLU, 3x3/2 max pool with 1 pixel of padding (Keras zero
  pads after the ReLU, which is equivalent to -inf padding).
- 3x3 convs use symmetric padding 1 (also when strided, as Detectron2); a
  stride-2 layer maps size ``n`` to ``ceil(n / 2)``, so ``C_k`` has size
  ``ceil(H / 2^k)``.
- ``freeze_at`` (Detectron2 ``FREEZE_AT``): 1 = stem, 2 = stem + res2 get
  ``stop_gradient`` (their params receive zero gradients; exclude them from
  weight decay with :func:`frozen_param_filter` if you use decoupled decay).

Input ``x``: ``(B, H, W, 3)`` float, already normalised by the caller.
Computation dtype ``dtype`` (e.g. ``jnp.bfloat16``), params float32.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array

STAGE_BLOCKS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
}

_conv_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")  # c2_msra_fill


class FrozenAffine(nnx.Variable):
    """Non-trainable variable type holding folded (frozen) batch-norm statistics."""


class FrozenBatchNorm(nnx.Module):
    """Frozen batch norm as a per-channel affine: ``y = x * scale + bias``.

    ``scale = gamma / sqrt(var + eps)``, ``bias = beta - mean * scale``
    (identity at init). Variables are :class:`FrozenAffine`, not ``nnx.Param``.
    """

    def __init__(self, num_features: int, *, dtype: Any = None):
        self.scale = FrozenAffine(jnp.ones((num_features,), jnp.float32))
        self.bias = FrozenAffine(jnp.zeros((num_features,), jnp.float32))
        self.dtype = dtype

    def __call__(self, x: Array) -> Array:
        dt = self.dtype or x.dtype
        return x.astype(dt) * self.scale[...].astype(dt) + self.bias[...].astype(dt)


def _num_groups(channels: int, max_groups: int = 32) -> int:
    """Largest divisor of ``channels`` that is ``<= 32`` and leaves >= 2 channels per group."""
    cap = max(1, min(max_groups, channels // 2))
    return max(g for g in range(1, cap + 1) if channels % g == 0)


def make_norm(norm: str, channels: int, *, dtype: Any, rngs: nnx.Rngs) -> nnx.Module:
    """``'frozen_bn'`` -> :class:`FrozenBatchNorm`; ``'group'`` -> ``nnx.GroupNorm``."""
    if norm == "frozen_bn":
        return FrozenBatchNorm(channels, dtype=dtype)
    if norm == "group":
        return nnx.GroupNorm(
            channels, num_groups=_num_groups(channels), epsilon=1e-5, dtype=dtype, rngs=rngs
        )
    raise ValueError(f"unknown norm {norm!r} (expected 'frozen_bn' or 'group')")


def conv(
    cin: int,
    cout: int,
    k: int,
    stride: int = 1,
    pad: int | None = None,
    *,
    dtype: Any,
    precision: Any,
    rngs: nnx.Rngs,
) -> nnx.Conv:
    """Bias-free ``k x k`` conv with symmetric zero padding ``pad`` (default ``k // 2``)."""
    p = k // 2 if pad is None else pad
    return nnx.Conv(
        cin,
        cout,
        (k, k),
        strides=(stride, stride),
        padding=((p, p), (p, p)),
        use_bias=False,
        dtype=dtype,
        param_dtype=jnp.float32,
        precision=precision,
        kernel_init=_conv_init,
        rngs=rngs,
    )


def max_pool_3x3_s2(x: Array) -> Array:
    """3x3 stride-2 max pool with 1 pixel of (-inf) padding, NHWC."""
    # a Python-scalar init keeps JAX on the differentiable reduce_window_max path
    return jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
    )


class _ResidualBlock(nnx.Module):
    """The shortcut shared by the residual blocks: identity, or a strided 1x1 conv + norm
    (projection) when the stride or the channel count changes."""

    def _init_shortcut(self, cin, cout, stride, *, norm, dtype, precision, rngs):
        if stride != 1 or cin != cout:
            self.shortcut = conv(cin, cout, 1, stride, dtype=dtype, precision=precision, rngs=rngs)
            self.shortcut_norm = make_norm(norm, cout, dtype=dtype, rngs=rngs)
        else:
            self.shortcut = None
            self.shortcut_norm = None

    def _add_shortcut(self, x: Array, y: Array) -> Array:
        """``relu(y + shortcut(x))``."""
        s = x if self.shortcut is None else self.shortcut_norm(self.shortcut(x))
        return jax.nn.relu(y + s)


class BasicBlock(_ResidualBlock):
    """Two 3x3 convs (stride on the first) + projection shortcut when needed."""

    def __init__(self, cin, cout, stride, *, norm, dtype, precision, rngs):
        kw = dict(dtype=dtype, precision=precision, rngs=rngs)
        self.conv1 = conv(cin, cout, 3, stride, **kw)
        self.norm1 = make_norm(norm, cout, dtype=dtype, rngs=rngs)
        self.conv2 = conv(cout, cout, 3, 1, **kw)
        self.norm2 = make_norm(norm, cout, dtype=dtype, rngs=rngs)
        self._init_shortcut(cin, cout, stride, norm=norm, **kw)

    def __call__(self, x: Array) -> Array:
        y = jax.nn.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return self._add_shortcut(x, y)


class Bottleneck(_ResidualBlock):
    """1x1 -> 3x3 -> 1x1 (x4) bottleneck; stride on the 3x3 (or the first 1x1)."""

    def __init__(self, cin, mid, cout, stride, *, stride_in_1x1, norm, dtype, precision, rngs):
        kw = dict(dtype=dtype, precision=precision, rngs=rngs)
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv(cin, mid, 1, s1, **kw)
        self.norm1 = make_norm(norm, mid, dtype=dtype, rngs=rngs)
        self.conv2 = conv(mid, mid, 3, s3, **kw)
        self.norm2 = make_norm(norm, mid, dtype=dtype, rngs=rngs)
        self.conv3 = conv(mid, cout, 1, 1, **kw)
        self.norm3 = make_norm(norm, cout, dtype=dtype, rngs=rngs)
        self._init_shortcut(cin, cout, stride, norm=norm, **kw)

    def __call__(self, x: Array) -> Array:
        y = jax.nn.relu(self.norm1(self.conv1(x)))
        y = jax.nn.relu(self.norm2(self.conv2(y)))
        y = self.norm3(self.conv3(y))
        return self._add_shortcut(x, y)


class ResNet(nnx.Module):
    """ResNet-{18,34,50,101} feature extractor.

    Args:
      depth: 18, 34 (basic blocks), 50, 101 (bottlenecks).
      width: base channels (64 standard); stage ``i`` (0..3) has ``width * 2^i``
        (basic) / bottleneck ``width * 2^i`` and output ``4 * width * 2^i``.
      norm: ``'frozen_bn'`` or ``'group'``.
      stride_in_1x1: bottleneck stride on the first 1x1 conv (Keras layout).
      freeze_at: 0 none, 1 stem, 2 stem + res2 (``stop_gradient``).
      dtype: computation dtype (params always float32).
      precision: ``lax.Precision`` for the convs (None = JAX default).

    Attributes:
      out_channels: ``{'C2': .., 'C3': .., 'C4': .., 'C5': ..}``.
    """

    def __init__(
        self,
        depth: int,
        width: int = 64,
        norm: str = "frozen_bn",
        *,
        stride_in_1x1: bool = False,
        freeze_at: int = 0,
        dtype: Any = jnp.float32,
        precision: Any = None,
        rngs: nnx.Rngs,
    ):
        if depth not in STAGE_BLOCKS:
            raise ValueError(f"depth must be one of {sorted(STAGE_BLOCKS)}, got {depth}")
        self.depth = depth
        self.width = width
        self.norm = norm
        self.stride_in_1x1 = stride_in_1x1
        self.freeze_at = freeze_at
        self.dtype = dtype
        kw = dict(dtype=dtype, precision=precision, rngs=rngs)
        self.stem_conv = conv(3, width, 7, 2, pad=3, **kw)
        self.stem_norm = make_norm(norm, width, dtype=dtype, rngs=rngs)
        bottleneck = depth >= 50
        cin = width
        stages = []
        out_channels = {}
        for i, n in enumerate(STAGE_BLOCKS[depth]):
            mid = width * 2**i
            cout = mid * 4 if bottleneck else mid
            blocks = []
            for j in range(n):
                stride = (1 if i == 0 else 2) if j == 0 else 1
                if bottleneck:
                    blocks.append(
                        Bottleneck(cin, mid, cout, stride, stride_in_1x1=stride_in_1x1,
                                   norm=norm, **kw)
                    )
                else:
                    blocks.append(BasicBlock(cin, cout, stride, norm=norm, **kw))
                cin = cout
            stages.append(nnx.List(blocks))
            out_channels[f"C{i + 2}"] = cout
        self.stages = nnx.List(stages)
        self.out_channels = out_channels

    def __call__(self, x: Array) -> dict[str, Array]:
        """``x (B, H, W, 3)`` -> ``{'C2': (B, ceil(H/4), ceil(W/4), c2), ..., 'C5'}``."""
        x = x.astype(self.dtype)
        x = jax.nn.relu(self.stem_norm(self.stem_conv(x)))
        x = max_pool_3x3_s2(x)
        if self.freeze_at >= 1:
            x = jax.lax.stop_gradient(x)
        out = {}
        for i, blocks in enumerate(self.stages):
            for block in blocks:
                x = block(x)
            if self.freeze_at >= i + 2:
                x = jax.lax.stop_gradient(x)
            out[f"C{i + 2}"] = x
        return out


def frozen_param_filter(resnet: ResNet) -> list[tuple[str, ...]]:
    """Path prefixes (relative to the ResNet) of params frozen by ``freeze_at``.

    ``[('stem_conv',), ('stem_norm',)]`` for ``freeze_at >= 1`` plus
    ``('stages', 0)`` for ``freeze_at >= 2``. Use to mask weight decay /
    optimiser updates (stop_gradient already zeroes their gradients).
    """
    out: list[tuple[Any, ...]] = []
    if resnet.freeze_at >= 1:
        out += [("stem_conv",), ("stem_norm",)]
    for i in range(max(0, resnet.freeze_at - 1)):
        out.append(("stages", i))
    return out
