"""RoI heads of the baseline pose detector (Wang et al. 2018, Figure 5), Flax NNX.

Both heads take *flattened* RoI features ``(..., in_dim)`` (e.g. ``in_dim = S * S * C`` for
``S x S`` RoIAlign outputs of ``C`` channels; flatten in ``(S, S, C)`` order) and run any
number of leading batch axes (``(B, R)`` RoIs). Parameters are ``float32`` ``nnx.Param``;
``dtype`` sets the computation dtype (e.g. ``bfloat16``); outputs are returned in ``float32``
so losses are computed in ``float32``.

* :class:`BoxHead` — Detectron2's ``FastRCNNConvFCHead`` (``num_fc`` FC + ReLU layers) and
  ``FastRCNNOutputLayers`` with class-agnostic box regression: class logits ``(..., C + 1)``
  (index 0 = background, fine-grained class ``c`` at ``c + 1``) and box deltas ``(..., 4)``
  ``(dy, dx, dh, dw)`` to be decoded with :data:`fgpose.models.boxes.ROI_BOX_WEIGHTS`.
* :class:`PoseHead` — the 3D pose branch: "separate groups of fully connected layers" for
  the quaternion (4), the principal-point offset (2), the distance (1) and the focal length
  (1) (coding in :mod:`fgpose.models.pose_coding`). Each group is ``num_fc`` FC + ReLU
  layers of ``fc_dim`` then a linear output; an optional shared trunk (``num_shared_fc``)
  precedes the groups. The first FC layers of all groups read the same input, so they are
  fused into one matmul (mathematically identical to separate layers); the deeper group
  layers are batched with an einsum over a ``(G, fc_dim, fc_dim)`` weight.

Extension point: a mask-like RoI branch (e.g. a 14x14 location-field head) attaches to
the RoI features that :class:`fgpose.models.detector.PoseDetector` returns
(``roi_features`` in ``forward_train``/``predict``); nothing here needs to change.

Initialisation follows Detectron2: FC layers ``c2_xavier_fill`` (uniform, variance
``1 / fan_in``), zero biases; class logits ``N(0, 0.01^2)``; box deltas ``N(0, 0.001^2)``.
Pose outputs: ``N(0, 0.001^2)`` kernels and biases given by ``output_bias`` (the detector
sets the distance/focal biases to the coded value of the normaliser, so an untrained head
predicts the typical ``d`` and ``f`` rather than 0).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array

_fc_init = nnx.initializers.variance_scaling(1.0, "fan_in", "uniform")  # c2_xavier_fill
_group_fc_init = nnx.initializers.variance_scaling(1.0, "fan_in", "uniform", batch_axis=(0,))

POSE_GROUPS: tuple[tuple[str, int], ...] = (("quaternion", 4), ("offset", 2), ("distance", 1), ("focal", 1))
"""The pose branch's output groups and their sizes, in order."""


def _linear(cin: int, cout: int, *, dtype: Any, rngs: nnx.Rngs, kernel_init=_fc_init, bias_init=None) -> nnx.Linear:
    return nnx.Linear(
        cin,
        cout,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=kernel_init,
        bias_init=bias_init or nnx.initializers.zeros_init(),
        rngs=rngs,
    )


class BoxHead(nnx.Module):
    """``num_fc`` FC + ReLU layers, then class logits and class-agnostic box deltas.

    Args:
      in_dim: flattened RoI feature size.
      fc_dim: hidden width (1024 in Detectron2).
      num_classes: number of fine-grained classes ``C`` (logits have ``C + 1``).
      num_fc: number of hidden FC layers (2).
      dtype: computation dtype.
    """

    def __init__(
        self, in_dim: int, fc_dim: int, num_classes: int, *, num_fc: int = 2, dtype: Any = jnp.float32, rngs: nnx.Rngs
    ):
        self.num_classes = num_classes
        dims = [in_dim] + [fc_dim] * num_fc
        self.fcs = nnx.List([_linear(a, b, dtype=dtype, rngs=rngs) for a, b in zip(dims[:-1], dims[1:])])
        self.cls_score = _linear(
            dims[-1], num_classes + 1, dtype=dtype, rngs=rngs, kernel_init=nnx.initializers.normal(0.01)
        )
        self.bbox_pred = _linear(dims[-1], 4, dtype=dtype, rngs=rngs, kernel_init=nnx.initializers.normal(0.001))

    def __call__(self, x: Array) -> tuple[Array, Array]:
        """``x (..., in_dim)`` -> ``(logits (..., C + 1), deltas (..., 4))``, float32."""
        for fc in self.fcs:
            x = jax.nn.relu(fc(x))
        return self.cls_score(x).astype(jnp.float32), self.bbox_pred(x).astype(jnp.float32)


class PoseHead(nnx.Module):
    """Separate FC groups regressing the coded pose of an RoI.

    Args:
      in_dim: flattened RoI feature size.
      fc_dim: hidden width of every FC layer.
      num_fc: FC + ReLU layers per group (>= 0; 0 = linear outputs on the trunk).
      num_shared_fc: FC + ReLU layers shared by all groups before they split (0 = none,
        the paper's separate groups).
      extra_dim: size of optional extra per-RoI inputs concatenated to the (trunk) features
        (e.g. box geometry); 0 = none.
      output_bias: optional ``{group: bias}`` initial output biases (scalars or arrays of the
        group's size).
      dtype: computation dtype.
    """

    def __init__(
        self,
        in_dim: int,
        fc_dim: int,
        num_fc: int,
        *,
        num_shared_fc: int = 0,
        extra_dim: int = 0,
        output_bias: Mapping[str, Any] | None = None,
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if num_fc < 0 or num_shared_fc < 0:
            raise ValueError("num_fc and num_shared_fc must be >= 0")
        self.num_fc = num_fc
        self.extra_dim = extra_dim
        self.dtype = dtype
        g = len(POSE_GROUPS)
        dims = [in_dim] + [fc_dim] * num_shared_fc
        self.shared = nnx.List([_linear(a, b, dtype=dtype, rngs=rngs) for a, b in zip(dims[:-1], dims[1:])])
        d = dims[-1] + extra_dim
        if num_fc >= 1:
            # First layer of every group, fused: (d, G * fc_dim).
            self.group_in = _linear(d, g * fc_dim, dtype=dtype, rngs=rngs)
            self.group_kernels = nnx.List(
                [nnx.Param(_group_fc_init(rngs.params(), (g, fc_dim, fc_dim), jnp.float32)) for _ in range(num_fc - 1)]
            )
            self.group_biases = nnx.List([nnx.Param(jnp.zeros((g, fc_dim), jnp.float32)) for _ in range(num_fc - 1)])
            d = fc_dim
        else:
            self.group_in = None
            self.group_kernels = nnx.List([])
            self.group_biases = nnx.List([])
        output_bias = dict(output_bias or {})
        unknown = set(output_bias) - {name for name, _ in POSE_GROUPS}
        if unknown:
            raise ValueError(f"unknown pose output groups {sorted(unknown)}")
        for name, size in POSE_GROUPS:
            bias = jnp.broadcast_to(jnp.asarray(output_bias.get(name, 0.0), jnp.float32), (size,))
            layer = _linear(
                d,
                size,
                dtype=dtype,
                rngs=rngs,
                kernel_init=nnx.initializers.normal(0.001),
                bias_init=lambda key, shape, dtype=jnp.float32, b=bias: b.astype(dtype),
            )
            setattr(self, f"{name}_pred", layer)

    def __call__(self, x: Array, extra: Array | None = None) -> dict[str, Array]:
        """Coded pose of each RoI.

        Args:
          x: ``(..., in_dim)`` flattened RoI features.
          extra: ``(..., extra_dim)`` extra inputs when ``extra_dim > 0``.

        Returns:
          float32 ``{'quaternion': (..., 4), 'offset': (..., 2), 'distance': (...),
          'focal': (...)}`` (raw network outputs; see :mod:`fgpose.models.pose_coding`).
        """
        for fc in self.shared:
            x = jax.nn.relu(fc(x))
        if self.extra_dim:
            if extra is None or extra.shape[-1] != self.extra_dim:
                raise ValueError(f"PoseHead needs extra inputs of size {self.extra_dim}")
            x = jnp.concatenate([x, extra.astype(x.dtype)], axis=-1)
        g = len(POSE_GROUPS)
        if self.group_in is not None:
            h = jax.nn.relu(self.group_in(x))
            h = h.reshape(h.shape[:-1] + (g, -1))  # (..., G, fc_dim)
            for kernel, bias in zip(self.group_kernels, self.group_biases):
                k = kernel[...].astype(self.dtype)
                h = jax.nn.relu(jnp.einsum("...gi,gio->...go", h.astype(self.dtype), k) + bias[...].astype(self.dtype))
            inputs = [h[..., i, :] for i in range(g)]
        else:
            inputs = [x] * g
        out = {}
        for (name, _), h_i in zip(POSE_GROUPS, inputs):
            out[name] = getattr(self, f"{name}_pred")(h_i).astype(jnp.float32)
        out["distance"] = out["distance"][..., 0]
        out["focal"] = out["focal"][..., 0]
        return out


__all__ = ["POSE_GROUPS", "BoxHead", "PoseHead"]
