"""Feature Pyramid Network (Detectron2 ``FPN`` + ``LastLevelMaxPool``), Flax NNX.

``P_k = out_k(lat_k(C_k) + up(P'_{k+1}))`` with 1x1 lateral convs, nearest 2x
top-down upsampling (cropped to the lateral's size when the finer map has odd
size, i.e. output pixel ``(y, x)`` takes coarse pixel ``(y // 2, x // 2)``),
3x3 output convs (padding 1), all with bias and no norm (Detectron2 default,
``fuse_type='sum'``), and ``P6 = P5[:, ::2, ::2]`` (max pool kernel 1 stride 2),
so ``P_k`` has size ``ceil(H / 2^k)``.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array

# Detectron2 c2_xavier_fill == kaiming_uniform(a=1) == variance_scaling(1, fan_in, uniform)
_xavier = nnx.initializers.variance_scaling(1.0, "fan_in", "uniform")


def upsample_nearest_to(x: Array, hw: tuple[int, int]) -> Array:
    """Nearest 2x upsampling of ``x (B, h, w, C)`` cropped/padded-by-edge to ``hw``."""
    h, w = hw
    ys = jnp.minimum(jnp.arange(h) // 2, x.shape[1] - 1)
    xs = jnp.minimum(jnp.arange(w) // 2, x.shape[2] - 1)
    if 2 * x.shape[1] >= h and 2 * x.shape[2] >= w:
        up = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return up[:, :h, :w]
    return x[:, ys][:, :, xs]


class FPN(nnx.Module):
    """FPN over ``C2..C5`` producing ``P2..P6`` with ``channels`` channels each.

    Args:
      in_channels: ``{'C2': c2, 'C3': c3, 'C4': c4, 'C5': c5}`` (e.g.
        ``ResNet.out_channels``).
      channels: output channels (256).
      dtype: computation dtype; params float32.
      precision: conv precision.

    Attributes:
      lateral, output: ``nnx.List`` of convs for C2..C5 (index 0 = C2).
    """

    def __init__(
        self,
        in_channels: Mapping[str, int],
        channels: int = 256,
        *,
        dtype: Any = jnp.float32,
        precision: Any = None,
        rngs: nnx.Rngs,
    ):
        self.levels = tuple(sorted(in_channels, key=lambda k: int(k[1:])))
        self.channels = channels
        self.dtype = dtype
        kw = dict(dtype=dtype, param_dtype=jnp.float32, precision=precision,
                  kernel_init=_xavier, rngs=rngs)
        self.lateral = nnx.List(
            [nnx.Conv(in_channels[l], channels, (1, 1), padding="VALID", **kw) for l in self.levels]
        )
        self.output = nnx.List(
            [nnx.Conv(channels, channels, (3, 3), padding=((1, 1), (1, 1)), **kw) for _ in self.levels]
        )

    def __call__(self, feats: Mapping[str, Array]) -> dict[str, Array]:
        """``{'C2': (B, H2, W2, c2), ...}`` -> ``{'P2': (B, H2, W2, channels), ..., 'P6'}``."""
        out: dict[str, Array] = {}
        prev = None
        for i in reversed(range(len(self.levels))):
            lvl = self.levels[i]
            cur = self.lateral[i](feats[lvl].astype(self.dtype))
            if prev is not None:
                cur = cur + upsample_nearest_to(prev, cur.shape[1:3])
            prev = cur
            out[f"P{int(lvl[1:])}"] = self.output[i](cur)
        top = int(self.levels[-1][1:])
        out[f"P{top + 1}"] = out[f"P{top}"][:, ::2, ::2]
        return dict(sorted(out.items(), key=lambda kv: int(kv[0][1:])))
