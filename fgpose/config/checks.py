"""Config checks that run before anything heavy: :func:`validate_config` and :class:`ConfigError`."""

from __future__ import annotations

import os

import jax

from fgpose import distributed

VALID_DEPTHS = (18, 34, 50, 101)
VALID_NORMS = ("frozen_bn", "group")
VALID_INITS = ("random", "keras_resnet50")
VALID_DTYPES = ("float32", "bfloat16")
VALID_PARAM_SHARDING = ("replicated", "fsdp")
VALID_TASKS = ("detector", "field_pose")

FIELD_POSE_CONFIG = {"synthetic_pose3d": "synthetic", "stanford_cars3d": "stanford_cars3d",
                     "compcars3d": "compcars3d", "fgvc_aircraft3d": "fgvc_aircraft3d"}
"""``configs/field_pose_<name>.py`` that pre-trains the pose-from-field network of a dataset."""


def field_pose_command(dataset: str) -> tuple[str, str]:
    """``(command, workdir)``: the command that makes the pose-from-field checkpoint for
    ``dataset`` and the workdir it writes."""
    name = FIELD_POSE_CONFIG.get(dataset, dataset)
    workdir = f"runs/field_pose_{name}"
    return f"python -m fgpose.train --config configs/field_pose_{name}.py --workdir {workdir}", workdir


class ConfigError(ValueError):
    """An invalid experiment config; the message says which field to change and how."""


def validate_config(config, *, num_devices: int | None = None, process_count: int | None = None,
                    training: bool = True) -> None:
    """Checks values that would otherwise fail late or silently; raises :class:`ConfigError`.

    Every problem found is listed, each with the override that fixes it. Does not open the
    dataset (see :func:`fgpose.config.resolve_num_classes`).

    Args:
      config: a full config (:func:`fgpose.config.base_config` and overrides).
      num_devices: global device count (default ``jax.device_count()``).
      process_count: number of processes (default ``jax.process_count()``).
      training: also check what only training reads (``model.field.pose_checkpoint``: an
        evaluation restores the network with the rest of the run's checkpoint).
    """
    num_devices = jax.device_count() if num_devices is None else num_devices
    process_count = jax.process_count() if process_count is None else process_count
    errors: list[str] = []

    def need(cond: bool, msg: str) -> None:
        if not cond:
            errors.append(msg)

    backbone = config.model.backbone
    depth = backbone.depth
    need(depth in VALID_DEPTHS, f"model.backbone.depth={depth!r} is not a ResNet depth; use one of {VALID_DEPTHS}, "
                                f"e.g. --config.model.backbone.depth=50")
    width = backbone.width
    need(isinstance(width, int) and width > 0, f"model.backbone.width={width!r} must be a positive int (64 = ResNet)")
    norm = backbone.norm
    need(norm in VALID_NORMS, f"model.backbone.norm={norm!r}: use one of {VALID_NORMS}")
    init = backbone.init
    need(init in VALID_INITS, f"model.backbone.init={init!r}: use one of {VALID_INITS}")
    if init == "keras_resnet50":
        need(depth == 50, f"model.backbone.init='keras_resnet50' needs --config.model.backbone.depth=50 (got {depth})")
        need(width == 64, f"model.backbone.init='keras_resnet50' needs --config.model.backbone.width=64 (got {width})")
        wp = backbone.weights_path
        need(wp is None or os.path.exists(wp),
             f"model.backbone.weights_path={wp!r} does not exist; point it at a Keras ResNet50 .h5 weights file "
             f"or set it to None to use keras.applications.ResNet50(weights='imagenet')")
    task = config.task
    need(task in VALID_TASKS, f"task={task!r}: use one of {VALID_TASKS}")
    field = config.model.field
    need(isinstance(field.size, int) and field.size >= 2 and field.size % 2 == 0,
         f"model.field.size={field.size!r} must be an even int >= 2 (the head upsamples size/2 RoI features 2x)")
    fw = field.fusion_weight
    need(isinstance(fw, (int, float)) and 0 <= fw <= 1, f"model.field.fusion_weight={fw!r} must be in [0, 1]")
    if field.enabled and task == "detector" and training:
        pc = field.pose_checkpoint
        cmd, run = field_pose_command(config.dataset.name)
        if pc is None:
            need(field.finetune_pose_net,
                 f"model.field.pose_checkpoint is None but the pose-from-field network is frozen "
                 f"(model.field.finetune_pose_net=False): pre-train it first with `{cmd}` and set "
                 f"--config.model.field.pose_checkpoint={run} (or fine-tune it from scratch: "
                 f"--config.model.field.finetune_pose_net=True)")
        else:
            need(os.path.exists(pc),
                 f"model.field.pose_checkpoint={pc!r} does not exist: make it with `{cmd}` "
                 f"(or point --config.model.field.pose_checkpoint at the workdir of such a run)")
        need(config.data.with_fields, "model.field.enabled needs the fields in the batches: --config.data.with_fields=True")
    dtype = config.model.compute_dtype
    need(dtype in VALID_DTYPES, f"model.compute_dtype={dtype!r}: use one of {VALID_DTYPES}")

    hw = config.data.input_size
    ok_hw = isinstance(hw, (tuple, list)) and len(hw) == 2 and all(isinstance(x, int) and x > 0 for x in hw)
    need(ok_hw, f"data.input_size={hw!r} must be two positive ints (H_in, W_in)")
    if ok_hw:
        need(all(x % 32 == 0 for x in hw),
             f"data.input_size={tuple(hw)} must be multiples of 32 (the C5 stride); e.g. "
             f"--config.data.input_size='({-(-hw[0] // 32) * 32}, {-(-hw[1] // 32) * 32})'")
    mb = config.data.max_boxes
    need(isinstance(mb, int) and mb >= 1, f"data.max_boxes={mb!r} must be an int >= 1")
    nc = config.dataset.num_classes
    need(nc is None or (isinstance(nc, int) and nc >= 1),
         f"dataset.num_classes={nc!r} must be >= 1 or None (read from the dataset)")
    need(bool(config.dataset.name), "dataset.name is empty: set --config.dataset.name=<tfds name>")

    def batch_size(path: str, bs) -> int | None:
        """Checks that ``bs`` (the value of ``path``) is a positive int divisible by the device
        count (problems go to ``errors``); returns it, or ``None`` when it is not a positive int."""
        if not (isinstance(bs, int) and bs >= 1):
            errors.append(f"{path}={bs!r} must be a positive int")
            return None
        need(bs % num_devices == 0,
             f"{path}={bs} is not divisible by the number of devices ({num_devices}); "
             f"use a multiple of {num_devices}, e.g. --config.{path}={max(1, bs // num_devices) * num_devices}")
        return bs

    train = config.train
    gbs = batch_size("train.global_batch_size", train.global_batch_size)
    if gbs is not None:
        need(gbs % process_count == 0,
             f"train.global_batch_size={gbs} is not divisible by the number of processes ({process_count})")
    batch_size("eval.batch_size", config.eval.batch_size)
    steps = train.num_steps
    need(isinstance(steps, int) and steps >= 1, f"train.num_steps={steps!r} must be an int >= 1")
    for name in ("log_every", "checkpoint_every", "eval_every", "keep_checkpoints"):
        v = train[name]
        lo = 0 if name == "eval_every" else 1
        need(isinstance(v, int) and v >= lo, f"train.{name}={v!r} must be an int >= {lo}")
    ps = train.param_sharding
    need(ps in VALID_PARAM_SHARDING, f"train.param_sharding={ps!r}: use one of {VALID_PARAM_SHARDING}")
    try:
        distributed.mesh_axis_sizes(dict(train.mesh_shape), num_devices)
    except (ValueError, TypeError) as exc:
        errors.append(str(exc))
    ic = train.init_checkpoint
    need(ic is None or os.path.exists(ic),
         f"train.init_checkpoint={ic!r} does not exist; point it at the workdir (or checkpoints/<step>) of a "
         f"finished run, e.g. of configs/stanford_cars3d.py, or set --config.train.init_checkpoint=None")

    optim = config.optim
    lr = optim.base_lr
    need(isinstance(lr, (int, float)) and lr > 0, f"optim.base_lr={lr!r} must be > 0")
    mom = optim.momentum
    need(isinstance(mom, (int, float)) and 0 <= mom < 1, f"optim.momentum={mom!r} must be in [0, 1)")
    wd = optim.weight_decay
    need(isinstance(wd, (int, float)) and wd >= 0, f"optim.weight_decay={wd!r} must be >= 0")
    ws = optim.warmup_steps
    need(isinstance(ws, int) and ws >= 0, f"optim.warmup_steps={ws!r} must be an int >= 0")
    wf = optim.warmup_factor
    need(isinstance(wf, (int, float)) and 0 < wf <= 1, f"optim.warmup_factor={wf!r} must be in (0, 1]")
    ds = optim.decay_steps
    ok_ds = isinstance(ds, (tuple, list)) and all(isinstance(s, int) and s > 0 for s in ds)
    need(ok_ds and list(ds) == sorted(ds),
         f"optim.decay_steps={ds!r} must be increasing positive ints, e.g. --config.optim.decay_steps='(60000, 80000)'")
    df = optim.decay_factor
    need(isinstance(df, (int, float)) and 0 < df <= 1, f"optim.decay_factor={df!r} must be in (0, 1]")
    cn = optim.clip_norm
    need(cn is None or (isinstance(cn, (int, float)) and cn >= 0), f"optim.clip_norm={cn!r} must be >= 0 or None")

    d = config.distributed
    if d.initialize:
        n, pid = d.num_processes, d.process_id
        need(n is None or (isinstance(n, int) and n >= 1), f"distributed.num_processes={n!r} must be >= 1")
        need(pid is None or (isinstance(pid, int) and n is not None and 0 <= pid < n),
             f"distributed.process_id={pid!r} must be in [0, num_processes={n})")

    if errors:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(errors))


__all__ = ["ConfigError", "FIELD_POSE_CONFIG", "VALID_DEPTHS", "VALID_DTYPES", "VALID_INITS", "VALID_NORMS",
           "VALID_PARAM_SHARDING", "VALID_TASKS", "field_pose_command", "validate_config"]
