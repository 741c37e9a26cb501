"""Model construction, state splitting/merging and initial placement.

The training state of a model is the pair ``(graphdef, state)`` of ``nnx.split``, with
``state = {'params': nnx.State of the nnx.Param variables, 'rest': nnx.State of everything
else}`` (:data:`State`): ``params`` are what the optimizer updates, ``rest`` is carried
through the step unchanged unless the model updates it (counters, statistics).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
from flax import nnx

from fgpose import distributed
from fgpose.config import ConfigError
from fgpose.models import detector

State = dict[str, Any]
"""``{'params': nnx.State of nnx.Param, 'rest': nnx.State of the rest}``."""

ModelFn = Callable[[Any, int, int], nnx.Module]
"""``(config, num_classes, seed) -> nnx.Module`` with the detector's ``losses``/``predict``."""


def build_model(config, num_classes: int, seed: int, pretrained: bool = True) -> nnx.Module:
    """``PoseDetector(config.model, num_classes)`` with ``nnx.Rngs(seed)``, plus ImageNet init.

    With ``model.backbone.init='keras_resnet50'`` the ResNet-50 weights of
    ``tf.keras.applications.ResNet50`` (from ``weights_path``, or Keras' ImageNet download)
    are copied into the backbone by :func:`fgpose.models.keras_convert.load_keras_resnet50`
    (skipped with ``pretrained=False``, e.g. before restoring a checkpoint).
    """
    model = detector.PoseDetector(config.model, num_classes, rngs=nnx.Rngs(seed))
    if pretrained and config.model.backbone.init == "keras_resnet50":
        from fgpose.models import keras_convert  # imports TensorFlow/Keras: only when asked for

        source = config.model.backbone.weights_path
        if source is None:
            import keras

            source = keras.applications.ResNet50(weights="imagenet", include_top=False)
        backbone = getattr(model, "backbone", None)
        if backbone is None:
            raise ConfigError("the detector has no .backbone to load Keras weights into")
        keras_convert.load_keras_resnet50(source, backbone, pixel_std=tuple(config.model.pixel_std))
    return model


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, State]:
    """``(graphdef, {'params', 'rest'})`` of ``model`` (see :data:`State`)."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return graphdef, {"params": params, "rest": rest}


def merge_model(graphdef: nnx.GraphDef, state: State) -> nnx.Module:
    """The inverse of :func:`split_model`."""
    return nnx.merge(graphdef, state["params"], state["rest"])


def path_name(path) -> str:
    """'/'-joined keys of a pytree path of a model state (nnx ``Param.value`` levels dropped),
    e.g. ``backbone/stem/conv/kernel``."""
    out = []
    for k in path:
        key = getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))
        if key == "value":
            continue
        out.append(str(key))
    return "/".join(out)


def abstract_model(config, num_classes: int, model_fn: ModelFn | None = None) -> tuple[nnx.GraphDef, State]:
    """``(graphdef, state)`` of the model with ``jax.ShapeDtypeStruct`` leaves (nothing computed).

    Args:
      model_fn: default :func:`build_model`.
    """
    fn = model_fn or build_model
    return split_model(nnx.eval_shape(lambda: fn(config, num_classes, int(config.train.seed))))


def init_model(config, num_classes: int, mesh, *, model_fn: ModelFn | None = None):
    """Builds the model and places its state on ``mesh`` (``config.train.param_sharding``).

    Random initialisation runs as one jitted computation (much faster than eager init of a
    detector: one dispatch instead of thousands), directly into the target shardings; the
    Keras ImageNet backbone (eager weight copying) is built eagerly.

    Args:
      model_fn: default :func:`build_model`.

    Returns:
      ``(graphdef, abstract_state, state_shardings, state)``; ``abstract_state`` holds
      ``ShapeDtypeStruct`` leaves.
    """
    fn = model_fn or build_model
    seed = int(config.train.seed)
    mode = config.train.param_sharding
    if config.model.backbone.init == "random":
        graphdef, abstract = abstract_model(config, num_classes, fn)
        shardings = distributed.param_shardings(abstract, mesh, mode)

        def make():
            return split_model(fn(config, num_classes, seed))[1]

        state = jax.jit(make, out_shardings=shardings)()
        return graphdef, abstract, shardings, state
    graphdef, host_state = split_model(fn(config, num_classes, seed))
    shardings = distributed.param_shardings(host_state, mesh, mode)
    return graphdef, distributed.abstract(host_state), shardings, distributed.place(host_state, shardings)


__all__ = ["ModelFn", "State", "abstract_model", "build_model", "init_model", "merge_model", "path_name",
           "split_model"]
