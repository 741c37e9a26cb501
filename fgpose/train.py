"""Training loop: ``python -m fgpose.train --config configs/<name>.py --workdir DIR``.

* Config: ``ml_collections`` file given with ``--config`` (``configs/<name>.py``, built on
  :func:`fgpose.config.base_config`); any field can be overridden, e.g.
  ``--config.train.num_steps=10``. :func:`fgpose.config.validate_config` checks it before
  anything heavy runs and says what to change.
* Model (:mod:`fgpose.models.build`) and optimiser (:mod:`fgpose.optim`: SGD with momentum,
  Detectron's LR schedule, weight decay on kernels only, ``clip_by_global_norm``). bf16
  compute is the model's ``config.model.compute_dtype``; the parameters and the optimizer
  state stay float32.
* Step (:func:`make_train_step`): ``train_step(state, opt_state, batch, step) -> (state,
  opt_state, metrics)``, a pure function of the split model
  (:func:`fgpose.models.build.split_model`: graphdef + ``state = {'params': nnx.Param state,
  'rest': everything else}``), jitted with explicit in/out shardings on a ``('data',)`` mesh
  (batch sharded, params replicated or FSDP) and donated state buffers. The step's PRNG key
  is ``fold_in(PRNGKey(seed), step)`` so a resumed run draws the same samples as an
  uninterrupted one.
* Multi-host: ``config.distributed.initialize`` calls ``jax.distributed.initialize``; each
  process loads ``global_batch_size / process_count`` examples and the global batch is
  assembled with ``jax.make_array_from_process_local_data`` (:mod:`fgpose.distributed`).
* Checkpoints (:mod:`fgpose.checkpoint`, Orbax, in ``workdir/checkpoints``): every
  ``checkpoint_every`` steps, at the end, and on SIGTERM/SIGINT; keeps ``keep_checkpoints``;
  the latest is restored at start and the data iterator restarts at its step.
  ``train.init_checkpoint`` loads matching parameters from another run (shape mismatches,
  i.e. class-dependent layers, keep their fresh initialisation).
* Logs: tqdm bar with ETA and scalar metrics on the console (process 0), TensorBoard event
  files in ``workdir/tensorboard`` (:class:`fgpose.metric_writer.MetricWriter`) every
  ``log_every`` steps, evaluation (:func:`fgpose.evaluate.evaluate`) every ``eval_every``
  steps and at the end.

* Tasks: ``config.task = 'detector'`` (default) trains the pose detector;
  ``'field_pose'`` pre-trains the pose-from-field network on rendered location fields
  (:mod:`fgpose.field_pose_task`: its model, data and evaluation replace the detector's, the
  loop is the same). A detector with ``model.field.enabled`` loads that run's network from
  ``model.field.pose_checkpoint`` when it starts from scratch (after ``init_checkpoint``).

Imports run one way: :mod:`fgpose.distributed` -> :mod:`fgpose.checkpoint` ->
:mod:`fgpose.evaluate` -> this module; nothing imports this module but the CLI.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import pathlib
import signal
import time
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from fgpose import checkpoint as ckpt
from fgpose import distributed
from fgpose import evaluate as evaluate_lib
from fgpose import field_pose_task
from fgpose.config import ConfigError, resolve_num_classes, validate_config
from fgpose.data import make_train_iterator
from fgpose.metric_writer import MetricWriter
from fgpose.models.build import ModelFn, State, init_model
from fgpose.optim import learning_rate_schedule, make_optimizer

log = logging.getLogger("fgpose.train")


# ----------------------------------------------------------------------------- step


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, seed: int,
                    schedule: Callable | None = None):
    """The pure training step.

    ``train_step(state, opt_state, batch, step) -> (state, opt_state, metrics)``:
    ``batch`` is a dict of batch arrays (:mod:`fgpose.data.pipeline`; global batch),
    ``step`` an int32 scalar (0-based global step; the PRNG key is
    ``fold_in(PRNGKey(seed), step)``). ``metrics`` holds the model's scalar metrics plus
    ``loss``, ``grad_norm`` (before clipping), ``param_norm`` and ``lr``.
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


def setup(config, num_classes: int, *, model_fn: ModelFn | None = None, mesh=None) -> Setup:
    """Builds the model, optimizer, shardings and the jitted step (fresh initialisation).

    Args:
      model_fn: ``(config, num_classes, seed) -> nnx.Module`` (default
        :func:`fgpose.models.build.build_model`); tests pass a stand-in with the detector's
        ``losses``/``predict`` interface.
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


# ----------------------------------------------------------------------------- the loop


class _StopFlag:
    """Set by SIGTERM/SIGINT: the loop checkpoints and returns at the end of the step."""

    def __init__(self):
        self.stop = False
        self.signum: int | None = None
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
        self.signum = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def train_and_evaluate(
    config,
    workdir: str | os.PathLike,
    *,
    model_fn: ModelFn | None = None,
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
        this process's batches (:mod:`fgpose.data.pipeline`) from global step ``start_step``
        (default :func:`fgpose.data.make_train_iterator`).
      eval_fn: ``(setup, step) -> dict`` run every ``eval_every`` steps and at the end
        (default: :func:`fgpose.evaluate.evaluate` on ``config.dataset.eval_split``).
      num_classes: skip :func:`resolve_num_classes` (tests with in-memory data).
      stop_after: stop (with a checkpoint) after this many steps of *this* run.
      progress: show the tqdm bar (process 0).
      log_fn: called as ``log_fn(step, metrics)`` at every log (every process).

    Returns:
      ``{'step': final step, 'metrics': last logged training metrics, 'eval': last eval}``.
    """
    validate_config(config)
    workdir = pathlib.Path(workdir)
    primary = distributed.is_primary()
    field_pose = config.task == "field_pose"
    if field_pose:
        pool = None if train_iterator_fn is not None and eval_fn is not None else field_pose_task.cad_pool(config)
        model_fn = model_fn or field_pose_task.build_model
        train_iterator_fn = train_iterator_fn or (
            lambda c, start, pi, pc: field_pose_task.make_train_iterator(c, start, pi, pc, pool=pool))
        eval_fn = eval_fn or (lambda setup_, step: field_pose_task.evaluate(config, workdir, setup_, step, pool=pool))
        num_classes = 0 if num_classes is None else num_classes
    if num_classes is None:
        num_classes = resolve_num_classes(config)
    if primary:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))

    s = setup(config, num_classes, model_fn=model_fn)
    manager = ckpt.CheckpointManager(workdir / "checkpoints", keep=config.train.keep_checkpoints)
    start_step = 0
    restored = manager.restore_newest(s.state, s.opt_state, s.state_shardings, s.opt_shardings)
    if restored is not None:
        start_step, s.state, s.opt_state = restored
        log.info("resumed from %s at step %d", manager.directory, start_step)
    else:
        loaded = False
        if config.train.init_checkpoint:
            s.state = ckpt.load_params_from(config.train.init_checkpoint, s.state, s.state_shardings)
            loaded = True
        field = config.model.field
        if not field_pose and field.enabled and field.pose_checkpoint:
            s.state = field_pose_task.load_pose_net(field.pose_checkpoint, s.state, s.state_shardings)
            loaded = True
        if loaded:
            s.opt_state = jax.jit(s.tx.init, out_shardings=s.opt_shardings)(s.state["params"])

    num_steps = int(config.train.num_steps)
    end_step = num_steps if stop_after is None else min(num_steps, start_step + int(stop_after))
    gbs = int(config.train.global_batch_size)
    result: dict[str, Any] = {"step": start_step, "metrics": {}, "eval": None, "interrupted_by": None}
    if eval_fn is None:

        def eval_fn(setup_, step):
            return evaluate_lib.evaluate(config, workdir, setup_.graphdef, setup_.state, mesh=setup_.mesh,
                                         step=step, state_shardings=setup_.state_shardings,
                                         num_classes=setup_.num_classes)

    writer = MetricWriter(workdir / "tensorboard", enabled=primary and config.train.tensorboard)
    iterator = (train_iterator_fn or make_train_iterator)(
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
                    writer.write_scalars(step, values, prefix="train/")
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
                        writer.write_scalars(step, {k: v for k, v in res.items() if isinstance(v, (int, float))},
                                             prefix="eval/")
                if stop.stop:  # also for a signal that arrived during the evaluation (save is idempotent)
                    if step > start_step:
                        manager.save(step, s.state, s.opt_state, {"step": step, "images_seen": step * gbs})
                    result["interrupted_by"] = stop.signum
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
        result = train_and_evaluate(config, FLAGS.workdir, stop_after=FLAGS.stop_after)
    except (ConfigError, ckpt.CheckpointRestoreError) as exc:
        raise SystemExit(f"fgpose.train: {exc}") from None
    raise SystemExit(exit_status(result))


def exit_status(result: dict) -> int:
    """The command's exit status: 0 when the run ended normally (its steps done, or
    ``--stop_after`` reached), ``128 + signal`` when SIGINT (130) or SIGTERM (143) stopped
    it, so that scripts know the run did not finish (its checkpoint is written; rerun the
    same command to resume)."""
    signum = result.get("interrupted_by")
    return 0 if signum is None else 128 + int(signum)


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
