"""The optimizer: Detectron's SGD with its learning-rate schedule, as an ``optax`` transformation.

SGD with momentum, Detectron's LR schedule (linear warm-up from ``base_lr * warmup_factor``,
then ``base_lr * decay_factor**k`` after the k-th of ``decay_steps``), weight decay on kernels
only (``ndim > 1``: no norm scales, no biases), ``clip_by_global_norm``. Everything is read
from ``config.optim`` (:func:`fgpose.config.base_config` states the defaults).
"""

from __future__ import annotations

import re
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fgpose.models.build import path_name


def learning_rate_schedule(optim) -> Callable[[jax.Array], jax.Array]:
    """Detectron's ``WarmupMultiStepLR``: LR at (0-based) step ``s``.

    ``base_lr * w(s) * decay_factor ** #{d in decay_steps: d <= s}``, with
    ``w(s) = warmup_factor * (1 - s / warmup_steps) + s / warmup_steps`` for
    ``s < warmup_steps`` and 1 afterwards.

    Args:
      optim: ``config.optim`` (``base_lr``, ``warmup_steps``, ``warmup_factor``,
        ``decay_steps``, ``decay_factor``).
    """
    base, wsteps, wfactor = float(optim.base_lr), int(optim.warmup_steps), float(optim.warmup_factor)
    boundaries = jnp.asarray(tuple(optim.decay_steps) or (np.iinfo(np.int32).max,), jnp.int32)
    gamma = float(optim.decay_factor)

    def schedule(step):
        step = jnp.asarray(step, jnp.int32)
        if wsteps > 0:
            alpha = jnp.minimum(step.astype(jnp.float32) / wsteps, 1.0)
            warm = wfactor * (1.0 - alpha) + alpha
        else:
            warm = jnp.float32(1.0)
        k = jnp.sum(step >= boundaries)
        return base * warm * gamma ** k.astype(jnp.float32)

    return schedule


def decay_mask(params) -> Any:
    """True for parameters that get weight decay: kernels (``ndim > 1``), not norms/biases."""
    return jax.tree.map(lambda p: jnp.ndim(p) > 1, params)


def make_optimizer(optim) -> optax.GradientTransformation:
    """clip_by_global_norm -> decoupled-from-nothing L2 (grad += wd * w, kernels) -> SGD momentum.

    Matches Detectron's SGD (weight decay added to the gradient before the momentum buffer).
    ``optim.clip_norm`` 0 or ``None`` disables clipping. ``optim.frozen_patterns``: regexes on
    '/'-joined parameter paths (:func:`fgpose.models.build.path_name`) whose updates are zeroed
    (e.g. Detectron's frozen stem with ImageNet weights).

    Args:
      optim: ``config.optim`` (also read by :func:`learning_rate_schedule`, plus ``momentum``,
        ``weight_decay``, ``clip_norm``, ``frozen_patterns``).
    """
    parts = []
    if optim.clip_norm:
        parts.append(optax.clip_by_global_norm(float(optim.clip_norm)))
    if optim.weight_decay:
        parts.append(optax.add_decayed_weights(float(optim.weight_decay), mask=decay_mask))
    parts.append(optax.sgd(learning_rate_schedule(optim), momentum=float(optim.momentum) or None))
    tx = optax.chain(*parts)
    patterns = tuple(optim.frozen_patterns)
    if patterns:
        regexes = [re.compile(p) for p in patterns]

        def labels(params):
            def label(path, _):
                name = path_name(path)
                return "frozen" if any(r.search(name) for r in regexes) else "train"

            return jax.tree_util.tree_map_with_path(label, params)

        tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
    return tx


__all__ = ["decay_mask", "learning_rate_schedule", "make_optimizer"]
