"""Every default of an experiment config, written once: :func:`base_config`.

Defaults follow Detectron's Faster/Mask R-CNN R50-FPN "1x" recipe, which the paper (Wang et al.
2018, Section 4) builds on: SGD momentum 0.9, weight decay 1e-4 (not on norm scales/biases),
linear warm-up (factor 1/3 over 500 steps) then step decay by 0.1, base LR 0.02 at 16 images
per batch, frozen BatchNorm, FPN with 256 channels on P2..P6, anchors 32..512 with aspect ratios
(0.5, 1, 2), RPN 2000/1000 proposals, 512 sampled RoIs per image with 25% positives.

The experiment files ``configs/<name>.py`` start from :func:`base_config` and change only what
differs; the library reads ``config.<section>.<field>`` directly and has no fallbacks of its
own, so a field missing here is a bug, not a default. Every field can be overridden on the
command line, e.g. ``python -m fgpose.train --config configs/synthetic.py
--config.train.num_steps=10``; :func:`fgpose.config.validate_config` checks the result.
"""

from __future__ import annotations

import ml_collections

LOSS_TERMS = ("rpn_cls", "rpn_box", "cls", "box", "quaternion", "offset", "distance", "focal",
              "field_xyz", "field_fg", "field_quaternion")
"""The detector's loss terms; ``config.model.loss.<term>`` is each one's weight. The three
``field_*`` terms exist only with ``model.field.enabled`` (:data:`FIELD_LOSS_TERMS`)."""

FIELD_LOSS_TERMS = ("field_xyz", "field_fg", "field_quaternion")
"""The location-field branch's loss terms: masked smooth-L1 on XYZ, BCE on the foreground
(:func:`fgpose.models.field_head.field_losses`) and the pose-from-field network's quaternion
loss on the predicted field (only when ``model.field.finetune_pose_net``)."""



def model_config() -> ml_collections.ConfigDict:
    """``config.model``: the detector (:class:`fgpose.models.detector.PoseDetector`), Detectron2
    R50-FPN defaults plus fgpose's own fields.

    Fields beyond Detectron2's names:

    * ``backbone.init``: ``'random'`` or ``'keras_resnet50'`` (ImageNet weights of
      ``keras.applications.ResNet50``, from ``backbone.weights_path`` or Keras' download).
    * ``backbone.freeze_at``: Detectron2 ``FREEZE_AT`` (stem + res2 with ImageNet weights);
      ``-1`` = automatic: 2 for ``init='keras_resnet50'``, 0 for random init.
    * ``rpn.iou_thresholds`` (0.3, 0.7), ``rpn.min_size`` (0), ``rpn.smooth_l1_beta`` (0 = L1).
    * ``roi.fg_iou_threshold`` (0.5), ``roi.levels`` (P2..P5), ``roi.canonical_box_size``
      (224) / ``roi.canonical_level`` (4).
    * ``box_head.num_fc`` (2).
    * ``pose_head.num_shared_fc`` (0: separate FC groups as in the paper),
      ``pose_head.coding`` ('linear' | 'log'), ``pose_head.distance_scale`` (1.0),
      ``pose_head.focal_scale`` (400.0), ``pose_head.quaternion_sign_invariant`` (True),
      ``pose_head.box_features`` (False; True appends the RoI's log width/height in
      annotation-frame pixels to the pose head's input: RoIAlign makes features
      scale-invariant, so without it only perspective cues inform d and f).
    * ``loss.<term>``: weight of each of :data:`LOSS_TERMS`; ``loss.box_beta`` (0.0 = L1,
      Detectron2), ``loss.pose_beta`` (1.0): smooth-L1 betas.
    * ``test.nms_threshold`` (0.5).
    * ``pixel_mean`` / ``pixel_std``: RGB, 0..255 scale (ImageNet statistics).
    * ``compute_dtype``: ``'float32'`` or ``'bfloat16'`` (parameters stay float32).
    * ``field``: the location-field branch (Wang et al. 2018, section 4.2), off by default
      (then the detector is exactly the baseline): ``enabled``; ``size`` (S = 28: the field
      head runs on ``S/2 x S/2`` RoIAlign features of the foreground RoIs and outputs
      ``S x S``); ``num_conv`` / ``width`` of its conv stack (Mask R-CNN: 4 x 256);
      ``xyz_beta`` (smooth-L1 beta of the XYZ loss, model units); ``pose_net.*``
      (:class:`fgpose.models.field_pose.FieldPoseNet`: ``channels``, ``fc_dim``, ``num_fc``);
      ``pose_checkpoint`` (workdir of a ``configs/field_pose_<dataset>.py`` run whose
      network is loaded at the start of training; ``None``: random init, tests only);
      ``finetune_pose_net`` (False: the loaded weights are frozen; True: trained further by
      the ``field_quaternion`` loss on the stop-gradient of the predicted field);
      ``fusion_weight`` (share of the field quaternion in the combined pose,
      :func:`fgpose.models.quaternion_fusion.fuse_quaternions`).
    """
    m = ml_collections.ConfigDict()
    m.backbone = ml_collections.ConfigDict()
    m.backbone.depth = 50
    m.backbone.width = 64
    m.backbone.norm = "frozen_bn"
    m.backbone.init = "random"
    m.backbone.weights_path = ml_collections.FieldReference(None, field_type=str)
    m.backbone.freeze_at = -1
    m.fpn = ml_collections.ConfigDict()
    m.fpn.channels = 256
    m.fpn.levels = ("P2", "P3", "P4", "P5", "P6")
    m.anchors = ml_collections.ConfigDict()
    m.anchors.sizes = (32, 64, 128, 256, 512)
    m.anchors.aspect_ratios = (0.5, 1.0, 2.0)
    m.rpn = ml_collections.ConfigDict()
    m.rpn.pre_nms_topk = 2000
    m.rpn.post_nms_topk = 1000
    m.rpn.nms_threshold = 0.7
    m.rpn.batch_size_per_image = 256
    m.rpn.positive_fraction = 0.5
    m.rpn.iou_thresholds = (0.3, 0.7)
    m.rpn.min_size = 0.0
    m.rpn.smooth_l1_beta = 0.0
    m.roi = ml_collections.ConfigDict()
    m.roi.batch_size_per_image = 512
    m.roi.positive_fraction = 0.25
    m.roi.output_size = 7
    m.roi.sampling_ratio = 2
    m.roi.aligned = True
    m.roi.fg_iou_threshold = 0.5
    m.roi.levels = ("P2", "P3", "P4", "P5")
    m.roi.canonical_box_size = 224.0
    m.roi.canonical_level = 4
    m.box_head = ml_collections.ConfigDict()
    m.box_head.fc_dim = 1024
    m.box_head.num_fc = 2
    m.pose_head = ml_collections.ConfigDict()
    m.pose_head.fc_dim = 1024
    m.pose_head.num_fc = 2
    m.pose_head.num_shared_fc = 0
    m.pose_head.coding = "linear"
    m.pose_head.distance_scale = 1.0
    m.pose_head.focal_scale = 400.0
    m.pose_head.quaternion_sign_invariant = True
    m.pose_head.box_features = False
    m.loss = ml_collections.ConfigDict()
    for name in LOSS_TERMS:
        m.loss[name] = 1.0
    m.loss.box_beta = 0.0
    m.loss.pose_beta = 1.0
    m.test = ml_collections.ConfigDict()
    m.test.score_threshold = 0.05
    m.test.detections_per_image = 100
    m.test.nms_threshold = 0.5
    m.field = ml_collections.ConfigDict()
    m.field.enabled = False
    m.field.size = 28
    m.field.num_conv = 4
    m.field.width = 256
    m.field.xyz_beta = 0.05
    m.field.pose_net = ml_collections.ConfigDict()
    m.field.pose_net.channels = (32, 64, 128)
    m.field.pose_net.fc_dim = 256
    m.field.pose_net.num_fc = 1
    m.field.pose_checkpoint = ml_collections.FieldReference(None, field_type=str)
    m.field.finetune_pose_net = False
    m.field.fusion_weight = 0.5
    m.pixel_mean = (123.675, 116.28, 103.53)
    m.pixel_std = (58.395, 57.12, 57.375)
    m.compute_dtype = "float32"
    return m


def tiny_model_config() -> ml_collections.ConfigDict:
    """A very small model for tests on ~64 px inputs (ResNet-18 of width 8, 16-channel FPN)."""
    m = model_config()
    m.backbone.depth = 18
    m.backbone.width = 8
    m.backbone.norm = "frozen_bn"  # GroupNorm compiles ~4x slower on CPU
    m.fpn.channels = 16
    m.anchors.sizes = (8, 16, 32, 64, 128)
    m.rpn.pre_nms_topk = 64
    m.rpn.post_nms_topk = 16
    m.rpn.batch_size_per_image = 32
    m.roi.batch_size_per_image = 8
    m.roi.output_size = 4
    m.box_head.fc_dim = 32
    m.pose_head.fc_dim = 32
    m.test.detections_per_image = 5
    m.field.size = 8
    m.field.num_conv = 1
    m.field.width = 8
    m.field.pose_net.channels = (8, 8)
    m.field.pose_net.fc_dim = 16
    return m


def base_config() -> ml_collections.ConfigDict:
    """The full config tree with every default (R50-FPN, 800x1344 input, StanfordCars3D v1)."""
    c = ml_collections.ConfigDict()
    # 'detector': the pose detector (fgpose.models.detector); 'field_pose': pre-training of the
    # pose-from-field network on rendered location fields (fgpose.field_pose_task, section
    # ``field_pose``) through the same loop, checkpoints and logs.
    c.task = "detector"

    # ------------------------------------------------------------------ dataset
    c.dataset = ml_collections.ConfigDict()
    c.dataset.name = "stanford_cars3d"  # registered TFDS name (fgpose.data.registry)
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
    c.data.symmetry_axis = "z"  # model-space mirror axis of a flipped object (with hflip)
    c.data.with_fields = False  # also batch the mask and location field (fgpose.data.preprocess)

    # ------------------------------------------------------------------ model
    c.model = model_config()

    # ------------------------------------------------------------------ pose-from-field pre-training
    # (task 'field_pose'): location fields rendered from the dataset's class meshes
    # (fgpose.data.registry.class_meshes) at poses of the dataset's prior, made to look like
    # field-head output (fgpose.models.field_augment); the network is config.model.field.pose_net
    # on model.field.size x model.field.size fields.
    c.field_pose = ml_collections.ConfigDict()
    c.field_pose.render_hw = (64, 64)  # rendered field of the object's box, before augmentation
    c.field_pose.category = ml_collections.FieldReference(None, field_type=str)  # None: the pool's own
    c.field_pose.max_faces = 4000  # meshes are simplified to at most this many faces (padding cost)
    c.field_pose.augment = ml_collections.ConfigDict()
    c.field_pose.augment.box_shift = 0.1
    c.field_pose.augment.box_log_scale = 0.15
    c.field_pose.augment.morph_prob = 0.5
    c.field_pose.augment.boundary_flip = 0.2
    c.field_pose.augment.xyz_sigma = 0.01
    c.field_pose.eval_batches = 8  # held-out rendered batches (another seed) for the final eval
    # Also score the network on the true fields of this many eval-split examples (0: off).
    c.field_pose.true_field_examples = 256

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
    # Field branch: the fusion weight is fitted (fit_fusion_weight) on the first
    # ``fusion_holdout`` examples of the training split (0: keep model.field.fusion_weight).
    c.eval.fusion_holdout = 0
    c.eval.fusion_grid = (0.0, 1.0, 21)
    return c


def enable_field(c: ml_collections.ConfigDict, field_pose_run: str) -> ml_collections.ConfigDict:
    """Turns on the location-field branch of a detector config ``c`` (in place; returned).

    Sets ``model.field.enabled``, ``data.with_fields`` (the batches carry the mask and field)
    and ``model.field.pose_checkpoint = 'runs/field_pose_<field_pose_run>'``, the default
    workdir of ``python -m fgpose.train --config configs/field_pose_<field_pose_run>.py``.
    """
    c.model.field.enabled = True
    c.data.with_fields = True
    c.model.field.pose_checkpoint = f"runs/field_pose_{field_pose_run}"
    return c


def field_pose_base_config() -> ml_collections.ConfigDict:
    """:func:`base_config` for pose-from-field pre-training (``task = 'field_pose'``).

    The network is ``model.field.pose_net`` on ``model.field.size`` fields (the detector's
    defaults, so a detector with the default field section loads it as is); SGD with momentum
    at LR 0.02 after a 200-step warm-up, decayed at 2/3 and 8/9 of 12,000 steps of 64 fields
    (768k rendered fields, ~20 per pose-prior mode and mesh of a 200-class pool). Datasets:
    ``configs/field_pose_<dataset>.py`` set ``dataset`` (the CAD pool and the pose prior).
    """
    c = base_config()
    c.task = "field_pose"
    c.optim.warmup_steps = 200
    c.optim.decay_steps = (8_000, 10_700)
    c.train.global_batch_size = 64
    c.train.num_steps = 12_000
    c.train.log_every = 100
    c.train.eval_every = 2_000
    c.train.checkpoint_every = 1_000
    return c


__all__ = ["FIELD_LOSS_TERMS", "enable_field", "field_pose_base_config", "LOSS_TERMS", "base_config", "model_config", "tiny_model_config"]
