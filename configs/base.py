"""Base experiment config shared by every ``configs/<name>.py`` (spec section C).

Defaults follow Detectron's Faster/Mask R-CNN R50-FPN "1x" recipe, which the paper (Wang et al.
2018, Section 4) builds on: SGD momentum 0.9, weight decay 1e-4 (not on norm scales/biases),
linear warm-up (factor 1/3 over 500 steps) then step decay by 0.1, base LR 0.02 at 16 images
per batch, frozen BatchNorm, FPN with 256 channels on P2..P6, anchors 32..512 with aspect ratios
(0.5, 1, 2), RPN 2000/1000 proposals, 512 sampled RoIs per image with 25% positives.

Every field can be overridden on the command line, e.g.
``python -m fgpose.train --config configs/synthetic.py --config.train.num_steps=10``.
"""

from __future__ import annotations

import ml_collections

from fgpose.models.detector import default_model_config


def get_base_config() -> ml_collections.ConfigDict:
    """The full config tree with Detectron-style defaults (R50-FPN, 800x1344 input)."""
    c = ml_collections.ConfigDict()

    # ------------------------------------------------------------------ dataset
    c.dataset = ml_collections.ConfigDict()
    c.dataset.name = "stanford_cars3d"  # TFDS name (import tfds_builders registers it)
    c.dataset.builder_config = "v1"
    c.dataset.data_dir = ml_collections.FieldReference(None, field_type=str)  # None: TFDS default
    c.dataset.train_split = "train"
    c.dataset.eval_split = "test"
    # None: read from the built dataset's `label` feature; otherwise checked against it.
    c.dataset.num_classes = ml_collections.FieldReference(None, field_type=int)
    # Build the dataset when it is missing (only for builders that need no download).
    c.dataset.auto_build = False

    # ------------------------------------------------------------------ input pipeline
    c.data = ml_collections.ConfigDict()
    c.data.input_size = (800, 1344)  # (H_in, W_in): photo resized to fit, padded bottom/right
    c.data.max_boxes = 1  # one object per image in all four datasets
    c.data.hflip = False  # flipping would need mirrored poses; off as in the paper
    c.data.num_workers = 2

    # ------------------------------------------------------------------ model
    # Every model field with its Detectron-style default (documented in
    # fgpose.models.detector.default_model_config): backbone, fpn, anchors, rpn, roi,
    # box_head, pose_head, loss weights, test, pixel_mean/std, compute_dtype.
    c.model = default_model_config()

    # ------------------------------------------------------------------ optimiser
    c.optim = ml_collections.ConfigDict()
    c.optim.base_lr = 0.02  # for global_batch_size 16 (Detectron: 0.0025 per image... x8 GPUs x2)
    c.optim.momentum = 0.9
    c.optim.weight_decay = 1e-4  # on kernels only (ndim > 1), not on norm scales or biases
    c.optim.warmup_steps = 500
    c.optim.warmup_factor = 1.0 / 3.0  # LR ramps linearly from base_lr*warmup_factor
    c.optim.decay_steps = (60_000, 80_000)  # LR multiplied by decay_factor at each
    c.optim.decay_factor = 0.1
    c.optim.clip_norm = 10.0  # clip_by_global_norm; 0 or None disables
    # Regexes on '/'-joined parameter paths whose updates are zeroed (e.g. a frozen stem).
    c.optim.frozen_patterns = ()

    # ------------------------------------------------------------------ training loop
    c.train = ml_collections.ConfigDict()
    c.train.global_batch_size = 16
    c.train.num_steps = 90_000
    c.train.log_every = 20
    c.train.eval_every = 10_000  # 0 disables periodic evaluation (a final one still runs)
    c.train.checkpoint_every = 5_000
    c.train.keep_checkpoints = 3
    c.train.seed = 0
    c.train.mesh_shape = ml_collections.ConfigDict({"data": -1})  # -1: all devices
    c.train.param_sharding = "replicated"  # or 'fsdp' (largest divisible axis over 'data')
    # A workdir (or checkpoint step directory) of another run whose params initialise this
    # one; class-dependent layers whose shapes differ are re-initialised.
    c.train.init_checkpoint = ml_collections.FieldReference(None, field_type=str)
    c.train.final_eval = True
    c.train.tensorboard = True

    # ------------------------------------------------------------------ multi-host
    c.distributed = ml_collections.ConfigDict()
    c.distributed.initialize = False
    c.distributed.coordinator_address = ml_collections.FieldReference(None, field_type=str)
    c.distributed.num_processes = ml_collections.FieldReference(None, field_type=int)
    c.distributed.process_id = ml_collections.FieldReference(None, field_type=int)

    # ------------------------------------------------------------------ evaluation
    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 8  # global
    c.eval.num_overlays = 8
    # Accuracy-curve thresholds: rotation in degrees (Figure 8 left), ~e_ADD unitless (right).
    c.eval.thresholds = ml_collections.ConfigDict()
    c.eval.thresholds.rotation_deg = (0.0, 180.0, 181)
    c.eval.thresholds.add = (0.0, 1.0, 101)
    c.eval.max_examples = ml_collections.FieldReference(None, field_type=int)  # None: whole split
    c.eval.ap_iou = 0.5
    return c


def get_config() -> ml_collections.ConfigDict:
    return get_base_config()
