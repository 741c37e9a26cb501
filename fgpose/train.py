"""Training loop: ``python -m fgpose.train --config configs/<name>.py --workdir DIR``.

* Config: ``ml_collections`` file given with ``--config`` (``configs/<name>.py``, built on
  :func:`fgpose.config.base_config`); any field can be overridden, e.g.
  ``--config.train.num_steps=10``. :func:`fgpose.config.validate_config` checks it before
  anything heavy runs and says what to change.
* Optimiser (:func:`make_optimizer`): SGD with momentum, Detectron's LR schedule (linear
  warm-up from ``base_lr * warmup_factor``, then ``base_lr * decay_factor**k`` after the k-th
  of ``decay_steps``), weight decay on kernels only (``ndim > 1``: no norm scales, no biases),
  ``clip_by_global_norm``. bf16 compute is the model's ``config.model.compute_dtype``; the
  parameters and the optimizer state stay float32.
* Step (:func:`make_train_step`): ``train_step(state, opt_state, batch, step) -> (state,
  opt_state, metrics)``, a pure function of the split model (``nnx.split``: graphdef +
  ``state = {'params': nnx.Param state, 'rest': everything else}``), jitted with explicit
  in/out shardings on a ``('data',)`` mesh (batch sharded, params replicated or FSDP) and
  donated state buffers. The step's PRNG key is ``fold_in(PRNGKey(seed), step)`` so a resumed
  run draws the same samples as an uninterrupted one.
* Multi-host: ``config.distributed.initialize`` calls ``jax.distributed.initialize``; each
  process loads ``global_batch_size / process_count`` examples and the global batch is
  assembled with ``jax.make_array_from_process_local_data``.
* Checkpoints (Orbax ``CheckpointManager`` in ``workdir/checkpoints``): every
  ``checkpoint_every`` steps, at the end, and on SIGTERM/SIGINT; keeps ``keep_checkpoints``;
  the latest is restored at start and the data iterator restarts at its step.
  ``train.init_checkpoint`` loads matching parameters from another run (shape mismatches,
  i.e. class-dependent layers, keep their fresh initialisation).
* Logs: tqdm bar with ETA and scalar metrics on the console (process 0), TensorBoard event
  files in ``workdir/tensorboard`` every ``log_every`` steps, evaluation
  (:func:`fgpose.evaluate.evaluate`) every ``eval_every`` steps and at the end.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import pathlib
import re
import signal
import time
from typing import Any, Callable, Iterator, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from fgpose import distributed
from fgpose.config import ConfigError, resolve_num_classes, validate_config

log = logging.getLogger("fgpose.train")

State = dict[str, Any]  # {'params': nnx.State of nnx.Param, 'rest': nnx.State of the rest}


# ----------------------------------------------------------------------------- optimiser


def learning_rate_schedule(optim) -> Callable[[jax.Array], jax.Array]:
    """Detectron's ``WarmupMultiStepLR``: LR at (0-based) step ``s``.

    ``base_lr * w(s) * decay_factor ** #{d in decay_steps: d <= s}``, with
    ``w(s) = warmup_factor * (1 - s / warmup_steps) + s / warmup_steps`` for
    ``s < warmup_steps`` and 1 afterwards.
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
    ``optim.frozen_patterns`` (optional): regexes on '/'-joined parameter paths whose updates
    are zeroed (e.g. Detectron's frozen stem with ImageNet weights).
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


def path_name(path) -> str:
    """'/'-joined keys of a pytree path (nnx ``Param.value`` levels dropped)."""
    out = []
    for k in path:
        key = getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))
        if key == "value":
            continue
        out.append(str(key))
    return "/".join(out)


# ----------------------------------------------------------------------------- model and step


def build_model(config, num_classes: int, seed: int, pretrained: bool = True) -> nnx.Module:
    """``PoseDetector(config.model, num_classes)`` with ``nnx.Rngs(seed)``, plus ImageNet init.

    With ``model.backbone.init='keras_resnet50'`` the ResNet-50 weights of
    ``tf.keras.applications.ResNet50`` (from ``weights_path``, or Keras' ImageNet download)
    are copied into the backbone by :func:`fgpose.models.keras_convert.load_keras_resnet50`
    (skipped with ``pretrained=False``, e.g. before restoring a checkpoint).
    """
    from fgpose.models import detector

    model = detector.PoseDetector(config.model, num_classes, rngs=nnx.Rngs(seed))
    if pretrained and config.model.backbone.init == "keras_resnet50":
        from fgpose.models import keras_convert

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
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return graphdef, {"params": params, "rest": rest}


def merge_model(graphdef: nnx.GraphDef, state: State) -> nnx.Module:
    return nnx.merge(graphdef, state["params"], state["rest"])


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, seed: int,
                    schedule: Callable | None = None):
    """The pure training step.

    ``train_step(state, opt_state, batch, step) -> (state, opt_state, metrics)``:
    ``batch`` is a dict of section-B arrays (global batch), ``step`` an int32 scalar (0-based
    global step; the PRNG key is ``fold_in(PRNGKey(seed), step)``). ``metrics`` holds the
    model's scalar metrics plus ``loss``, ``grad_norm`` (before clipping), ``param_norm`` and
    ``lr``.
    """
    base_key = jax.random.PRNGKey(seed)

    def train_step(state: State, opt_state, batch: Mapping[str, jax.Array], step: jax.Array):
        key = jax.random.fold_in(base_key, step)

        def loss_fn(params, rest):
            # Fresh Variable objects at this trace level, so the model may update its
            # non-Param state (counters, statistics) inside the differentiated function.
            rest = jax.tree.map(lambda x: x, rest)
            model = nnx.merge(graphdef, params, rest)
            loss, metrics = model.losses(batch, key)
            _, _, rest = nnx.split(model, nnx.Param, ...)
            return loss, (metrics, rest)

        (loss, (metrics, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], state["rest"])
        updates, opt_state = tx.update(grads, opt_state, state["params"])
        params = optax.apply_updates(state["params"], updates)
        out = {k: jnp.asarray(v, jnp.float32) for k, v in dict(metrics).items()}
        out["loss"] = jnp.asarray(loss, jnp.float32)
        out["grad_norm"] = optax.tree.norm(grads)
        out["param_norm"] = optax.tree.norm(params)
        if schedule is not None:
            out["lr"] = jnp.asarray(schedule(step), jnp.float32)
        return {"params": params, "rest": rest}, opt_state, out

    return train_step


@dataclasses.dataclass
class Setup:
    """Everything the loop (and evaluation) needs, built by :func:`setup`."""

    config: Any
    mesh: jax.sharding.Mesh
    graphdef: nnx.GraphDef
    state: State
    opt_state: Any
    state_shardings: Any
    opt_shardings: Any
    tx: optax.GradientTransformation
    schedule: Callable
    train_step: Callable  # jitted
    num_classes: int


def init_model(config, num_classes: int, mesh, *, model_fn: Callable | None = None):
    """Builds the model and places its state on ``mesh``.

    Random initialisation runs as one jitted computation (much faster than eager init of a
    detector: one dispatch instead of thousands), directly into the target shardings; the
    Keras ImageNet backbone (eager weight copying) is built eagerly.

    Returns:
      ``(graphdef, abstract_state, state_shardings, state)``; ``abstract_state`` holds
      ``ShapeDtypeStruct`` leaves.
    """
    fn = model_fn or build_model
    seed = int(config.train.seed)
    mode = config.train.param_sharding
    if config.model.backbone.init == "random":
        abstract_model = nnx.eval_shape(lambda: fn(config, num_classes, seed))
        graphdef, abstract = split_model(abstract_model)
        shardings = distributed.param_shardings(abstract, mesh, mode)

        def make():
            return split_model(fn(config, num_classes, seed))[1]

        state = jax.jit(make, out_shardings=shardings)()
        return graphdef, abstract, shardings, state
    model = fn(config, num_classes, seed)
    graphdef, host_state = split_model(model)
    shardings = distributed.param_shardings(host_state, mesh, mode)
    return graphdef, distributed.abstract(host_state), shardings, distributed.place(host_state, shardings)


def setup(config, num_classes: int, *, model_fn: Callable | None = None, mesh=None) -> Setup:
    """Builds the model, optimizer, shardings and the jitted step (fresh initialisation).

    Args:
      model_fn: ``(config, num_classes, seed) -> nnx.Module`` (default :func:`build_model`);
        tests pass a stand-in with the detector's ``losses``/``predict`` interface.
    """
    mesh = mesh or distributed.make_mesh(dict(config.train.mesh_shape))
    graphdef, host_state, state_shardings, state = init_model(config, num_classes, mesh, model_fn=model_fn)
    tx = make_optimizer(config.optim)
    schedule = learning_rate_schedule(config.optim)
    mode = config.train.param_sharding
    opt_abstract = jax.eval_shape(tx.init, host_state["params"])
    opt_shardings = distributed.param_shardings(opt_abstract, mesh, mode)
    opt_state = jax.jit(tx.init, out_shardings=opt_shardings)(state["params"])
    step_fn = make_train_step(graphdef, tx, int(config.train.seed), schedule)
    rep = distributed.replicated(mesh)
    jitted = jax.jit(
        step_fn,
        in_shardings=(state_shardings, opt_shardings, distributed.batch_sharding(mesh), rep),
        out_shardings=(state_shardings, opt_shardings, rep),
        donate_argnums=(0, 1),
    )
    return Setup(config, mesh, graphdef, state, opt_state, state_shardings, opt_shardings, tx, schedule, jitted,
                 num_classes)


# ----------------------------------------------------------------------------- logging


class SummaryWriter:
    """Scalar TensorBoard event files via ``tf.summary.write`` (no tensorboard package needed).

    Writes on process 0 only; imports TensorFlow lazily.
    """

    def __init__(self, logdir: str | os.PathLike, enabled: bool = True):
        self._writer = None
        if not enabled:
            return
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        tf.config.set_visible_devices([], "GPU")
        self._tf = tf
        self._meta = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
        self._writer = tf.summary.create_file_writer(str(logdir))

    def scalars(self, step: int, values: Mapping[str, float], prefix: str = "") -> None:
        if self._writer is None:
            return
        with self._writer.as_default():
            for k, v in values.items():
                v = float(v)
                if math.isfinite(v):
                    self._tf.summary.write(prefix + k, self._tf.constant(v, self._tf.float32), step=int(step),
                                           metadata=self._meta)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


# ----------------------------------------------------------------------------- the loop


def _default_train_iterator(config, start_step: int, process_index: int, process_count: int):
    from fgpose.data import make_train_iterator

    return make_train_iterator(config, start_step, process_index, process_count)


class _StopFlag:
    """Set by SIGTERM/SIGINT: the loop checkpoints and returns at the end of the step."""

    def __init__(self):
        self.stop = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        log.warning("signal %d: stopping after this step (a checkpoint is written)", signum)
        self.stop = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def train_and_evaluate(
    config,
    workdir: str | os.PathLike,
    *,
    model_fn: Callable | None = None,
    train_iterator_fn: Callable | None = None,
    eval_fn: Callable | None = None,
    num_classes: int | None = None,
    stop_after: int | None = None,
    progress: bool = True,
    log_fn: Callable[[int, dict], None] | None = None,
) -> dict[str, Any]:
    """Trains ``config`` in ``workdir`` (resuming from its latest checkpoint) and evaluates.

    Args:
      config: experiment config (validated here).
      workdir: output directory: ``checkpoints/``, ``tensorboard/``, ``eval/``, ``config.json``.
      model_fn: ``(config, num_classes, seed) -> nnx.Module`` (default: the detector).
      train_iterator_fn: ``(config, start_step, process_index, process_count) -> iterator`` of
        this process's section-B batches from global step ``start_step`` (default
        :func:`fgpose.data.make_train_iterator`).
      eval_fn: ``(setup, step) -> dict`` run every ``eval_every`` steps and at the end
        (default: :func:`fgpose.evaluate.evaluate` on ``config.dataset.eval_split``).
      num_classes: skip :func:`resolve_num_classes` (tests with in-memory data).
      stop_after: stop (with a checkpoint) after this many steps of *this* run.
      progress: show the tqdm bar (process 0).
      log_fn: called as ``log_fn(step, metrics)`` at every log (every process).

    Returns:
      ``{'step': final step, 'metrics': last logged training metrics, 'eval': last eval}``.
    """
    from fgpose import checkpoint as ckpt

    validate_config(config)
    workdir = pathlib.Path(workdir)
    primary = distributed.is_primary()
    if num_classes is None:
        num_classes = resolve_num_classes(config)
    if primary:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))

    s = setup(config, num_classes, model_fn=model_fn)
    manager = ckpt.CheckpointManager(workdir / "checkpoints", keep=config.train.keep_checkpoints)
    start_step = 0
    latest = manager.latest_step()
    if latest is not None:
        s.state, s.opt_state = manager.restore(latest, s.state, s.opt_state, s.state_shardings, s.opt_shardings)
        start_step = latest
        log.info("resumed from %s at step %d", manager.directory, latest)
    elif config.train.init_checkpoint:
        s.state = ckpt.load_params_from(config.train.init_checkpoint, s.state, s.state_shardings)
        s.opt_state = jax.jit(s.tx.init, out_shardings=s.opt_shardings)(s.state["params"])

    num_steps = int(config.train.num_steps)
    end_step = num_steps if stop_after is None else min(num_steps, start_step + int(stop_after))
    gbs = int(config.train.global_batch_size)
    result: dict[str, Any] = {"step": start_step, "metrics": {}, "eval": None}
    if eval_fn is None:
        from fgpose import evaluate as evaluate_lib

        def eval_fn(setup_, step):
            return evaluate_lib.evaluate(config, workdir, setup_.graphdef, setup_.state, mesh=setup_.mesh,
                                         step=step, state_shardings=setup_.state_shardings,
                                         num_classes=setup_.num_classes)

    writer = SummaryWriter(workdir / "tensorboard", enabled=primary and config.train.tensorboard)
    iterator = (train_iterator_fn or _default_train_iterator)(
        config, start_step, jax.process_index(), jax.process_count())
    bar = None
    if primary and progress and start_step < end_step:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)
    pending: list[dict[str, jax.Array]] = []
    step = start_step
    last_log_time, last_log_step = time.perf_counter(), start_step
    try:
        with _StopFlag() as stop:
            while step < end_step:
                local = next(iterator)
                batch = distributed.global_batch(local, s.mesh)
                s.state, s.opt_state, metrics = s.train_step(s.state, s.opt_state, batch, jnp.int32(step))
                pending.append(metrics)
                step += 1
                if bar is not None:
                    bar.update(1)
                final = step == end_step or stop.stop
                if step % config.train.log_every == 0 or final:
                    values = {k: float(np.mean([float(m[k]) for m in pending])) for k in pending[-1]}
                    pending.clear()
                    now = time.perf_counter()
                    dt = max(now - last_log_time, 1e-9)
                    values["steps_per_sec"] = (step - last_log_step) / dt
                    values["images_per_sec"] = values["steps_per_sec"] * gbs
                    last_log_time, last_log_step = now, step
                    if not all(math.isfinite(v) for v in values.values()):
                        log.error("non-finite metrics at step %d: %s", step, values)
                    result["metrics"] = values
                    if log_fn is not None:
                        log_fn(step, values)
                    writer.scalars(step, values, prefix="train/")
                    if primary:
                        text = " ".join(f"{k}={v:.4g}" for k, v in sorted(values.items()))
                        (bar.write if bar is not None else print)(f"step {step}: {text}")
                        if bar is not None:
                            bar.set_postfix(loss=f"{values['loss']:.4f}")
                if step % config.train.checkpoint_every == 0 or step == num_steps or (final and step > start_step):
                    manager.save(step, s.state, s.opt_state, {"step": step, "images_seen": step * gbs})
                do_eval = (config.train.eval_every and step % config.train.eval_every == 0 and step < num_steps) or (
                    step == num_steps and config.train.final_eval)
                if do_eval:
                    res = eval_fn(s, step)
                    result["eval"] = res
                    if res:
                        writer.scalars(step, {k: v for k, v in res.items() if isinstance(v, (int, float))},
                                       prefix="eval/")
                if stop.stop:
                    break
    finally:
        if bar is not None:
            bar.close()
        writer.close()
        manager.close()
        if hasattr(iterator, "close"):
            iterator.close()
    result["step"] = step
    result["setup"] = s
    return result


# ----------------------------------------------------------------------------- CLI


def main(argv) -> None:
    from absl import flags

    del argv
    FLAGS = flags.FLAGS
    config = FLAGS.config
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)  # Orbax/TFDS chatter
    distributed.initialize(config)
    try:
        train_and_evaluate(config, FLAGS.workdir, stop_after=FLAGS.stop_after)
    except ConfigError as exc:
        raise SystemExit(f"fgpose.train: {exc}") from None


def _define_flags():
    from absl import flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/<name>.py).",
                                    lock_config=True)
    flags.DEFINE_string("workdir", None, "Output directory (checkpoints, TensorBoard, eval).")
    flags.DEFINE_integer("stop_after", None, "Stop (with a checkpoint) after this many steps of this run.")
    flags.mark_flags_as_required(["config", "workdir"])


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
