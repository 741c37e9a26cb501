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

    # ------------------------------------------------------------------ input pipeline
    c.data = ml_collections.ConfigDict()
    c.data.input_size = (800, 1344)  # (H_in, W_in): photo resized to fit, padded bottom/right
    c.data.max_boxes = 1  # one object per image in all four datasets
    c.data.hflip = False  # flipping would need mirrored poses; off as in the paper
    c.data.num_workers = 2

    # ------------------------------------------------------------------ model
    c.model = ml_collections.ConfigDict()
    c.model.backbone = ml_collections.ConfigDict()
    c.model.backbone.depth = 50
    c.model.backbone.width = 64
    c.model.backbone.norm = "frozen_bn"
    c.model.backbone.init = "random"  # or 'keras_resnet50' (ImageNet weights via keras)
    # For 'keras_resnet50': a Keras .h5/.weights.h5 file; None = keras.applications download
    # (needs network) or its cache (~/.keras/models).
    c.model.backbone.weights_path = ml_collections.FieldReference(None, field_type=str)
    c.model.fpn = ml_collections.ConfigDict()
    c.model.fpn.channels = 256
    c.model.fpn.levels = ("P2", "P3", "P4", "P5", "P6")
    c.model.anchors = ml_collections.ConfigDict()
    c.model.anchors.sizes = (32, 64, 128, 256, 512)  # one size per FPN level
    c.model.anchors.aspect_ratios = (0.5, 1.0, 2.0)
    c.model.rpn = ml_collections.ConfigDict()
    c.model.rpn.pre_nms_topk = 2000  # per level
    c.model.rpn.post_nms_topk = 1000
    c.model.rpn.nms_threshold = 0.7
    c.model.rpn.batch_size_per_image = 256
    c.model.rpn.positive_fraction = 0.5
    c.model.roi = ml_collections.ConfigDict()
    c.model.roi.batch_size_per_image = 512
    c.model.roi.positive_fraction = 0.25
    c.model.roi.output_size = 7
    c.model.roi.sampling_ratio = 2
    c.model.roi.aligned = True
    c.model.box_head = ml_collections.ConfigDict()
    c.model.box_head.fc_dim = 1024
    c.model.pose_head = ml_collections.ConfigDict()
    c.model.pose_head.fc_dim = 1024
    c.model.pose_head.num_fc = 2
    c.model.loss = ml_collections.ConfigDict()
    c.model.loss.rpn_cls = 1.0
    c.model.loss.rpn_box = 1.0
    c.model.loss.cls = 1.0
    c.model.loss.box = 1.0
    c.model.loss.quaternion = 1.0
    c.model.loss.offset = 1.0
    c.model.loss.distance = 1.0
    c.model.loss.focal = 1.0
    c.model.test = ml_collections.ConfigDict()
    c.model.test.score_threshold = 0.05
    c.model.test.detections_per_image = 100
    c.model.pixel_mean = (123.675, 116.28, 103.53)  # RGB, 0..255 (ImageNet)
    c.model.pixel_std = (58.395, 57.12, 57.375)
    c.model.compute_dtype = "float32"  # or 'bfloat16' (params stay float32)

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
