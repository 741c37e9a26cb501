"""The paper's baseline 3D pose detector (Wang et al. 2018, Figure 5), Flax NNX.

A Mask R-CNN-like two-stage detector whose RoI features also feed a 3D pose branch:

    image (B, H_in, W_in, 3) uint8 RGB
      -> pixel normalisation ((x - pixel_mean) / pixel_std, zero outside ``image_hw``)
      -> ResNet (C2..C5) -> FPN (P2..P6)
      -> RPNHead + propose (per-level top-k, decode, clip, NMS; fixed ``post_nms_topk``)
      -> multilevel RoIAlign on P2..P5 (``roi.output_size`` x ``roi.output_size``)
      -> BoxHead (class logits C+1, class-agnostic deltas, weights (10, 10, 5, 5))
      -> PoseHead (separate FC groups: quaternion 4, offset 2, distance 1, focal 1)

Training (:meth:`PoseDetector.losses`): RPN losses (anchor IoU 0.7/0.3, balanced sampling);
proposals (``stop_gradient``) plus the GT boxes are matched to the GT (IoU >= 0.5 foreground,
no ignore band), ``roi.batch_size_per_image`` RoIs are sampled with at most
``roi.positive_fraction`` foreground; softmax cross-entropy over C+1 classes (mean over the
sampled RoIs), box regression (smooth-L1 with ``loss.box_beta``, 0 = L1 as Detectron2) on
the foreground summed and divided by the number of sampled RoIs, and the pose losses on the
foreground RoIs: targets from :func:`fgpose.models.pose_coding.encode_pose_targets` relative
to each sampled RoI box, smooth-L1 (``loss.pose_beta``) summed over the components of each
group and averaged over the foreground RoIs. The quaternion target is canonicalised to
``w >= 0``; with ``pose_head.quaternion_sign_invariant`` the loss is the minimum over the
predicted ``q`` and ``-q`` (so rotations near ``w = 0`` are not penalised for the sign flip
of the canonical target).

Distance and focal targets are ``value / scale`` (``pose_head.coding = 'linear'``, the
paper's direct regression) or ``log(value / scale)`` (``'log'``), with
``pose_head.distance_scale`` / ``focal_scale`` (defaults 1.0 and 400.0: the release's median
distance is 1.0-1.4 model units and its median focal length 350-480 width-300 pixels; both
are heavy-tailed, up to d ~ 57 and f ~ 23000 on FGVC-Aircraft, where smooth-L1 is linear).

Inference (:meth:`PoseDetector.predict`): proposals -> box head -> class-agnostic decoded
boxes clipped to the image, score = max foreground softmax probability, class = its argmax
(0-based fine-grained id), class-agnostic NMS (``test.nms_threshold``) of the boxes scoring
above ``test.score_threshold``, top ``test.detections_per_image``. The pose head then runs
on RoI features re-pooled at the refined box of the top-scoring detection (cascade) and is
decoded to the release's 7 parameters and to ``P`` in original-photo pixels.

Location-field branch (``model.field.enabled``, Wang et al. 2018 section 4.2; off by default,
when the detector is exactly the baseline above): a :class:`~fgpose.models.field_head.FieldHead`
on ``S/2 x S/2`` RoIAlign features of the same foreground prefix of sampled RoIs as the pose
head, trained on :func:`~fgpose.models.field_targets.roi_field_targets` of the batch's
``location_field`` / ``mask`` (input frame, so field scale ``(1, 1)``) with the ``field_xyz``
and ``field_fg`` losses; a :class:`~fgpose.models.field_pose.FieldPoseNet` regressing the
quaternion from the *stop-gradient* of the predicted field (loaded from a pre-training run;
frozen, i.e. its weights are :class:`FrozenWeight` and no loss reaches them, or fine-tuned by
the ``field_quaternion`` loss, which reaches neither the field head nor the backbone). At
inference its quaternion is fused with the appearance head's
(:func:`~fgpose.models.quaternion_fusion.fuse_quaternions`, ``field.fusion_weight``); offset,
distance and focal always come from the appearance head.

Everything is jit-able with static shapes (anchors are NumPy constants of the static input
size); the batch is handled by batched ops / ``vmap``. Computation runs in
``model.compute_dtype`` (``'bfloat16'`` or ``'float32'``) with float32 parameters; head
outputs and all losses are float32.

Variables: trainable weights are ``nnx.Param``; the frozen batch norms of the ResNet
(``backbone.norm = 'frozen_bn'``) are :class:`fgpose.models.resnet.FrozenAffine`, not
``nnx.Param``. There is no other state and no randomness in the forward pass: ``losses``
takes an explicit PRNG key (anchor and RoI sampling); ``predict`` is deterministic.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fgpose.config.defaults import LOSS_TERMS
from fgpose.config.defaults import model_config as default_model_config  # noqa: F401  (old name, kept)
from fgpose.config.defaults import tiny_model_config  # noqa: F401  (old home, kept)
from fgpose.models import pose_coding
from fgpose.models.anchors import generate_anchors, num_anchors_per_location
from fgpose.models.boxes import (
    ROI_BOX_WEIGHTS,
    box_iou,
    clip_boxes,
    decode_boxes,
    encode_boxes,
    match_boxes,
    nonempty,
    positive_slots,
    sample_balanced,
    smooth_l1_loss,
)
from fgpose.models.field_head import FieldHead, field_losses
from fgpose.models.field_pose import FieldPoseNet, field_pose_from_predicted_field, quaternion_loss
from fgpose.models.field_targets import roi_field_targets
from fgpose.models.fpn import FPN
from fgpose.models.heads import BoxHead, PoseHead
from fgpose.models.nms import batched_nms
from fgpose.models.quaternion_fusion import fuse_quaternions, quaternion_angle
from fgpose.models.resnet import ResNet
from fgpose.models.roi_align import multilevel_roi_align
from fgpose.models.rpn import RPNHead, anchor_labels, propose, rpn_losses

Array = jax.Array


def _level_stride(name: str) -> int:
    return 2 ** int(name[1:])


def _dtype(name: str):
    if name in ("bfloat16", "bf16"):
        return jnp.bfloat16
    if name in ("float32", "f32", None):
        return jnp.float32
    raise ValueError(f"compute_dtype must be 'float32' or 'bfloat16', got {name!r}")


def _take(x: Array, idx: Array) -> Array:
    """Per-example gather: ``x (B, N, ...)``, ``idx (B, K)`` -> ``(B, K, ...)``."""
    return jax.vmap(lambda a, i: a[i])(x, idx)


class FrozenWeight(nnx.Variable):
    """Non-trainable weights: a pre-trained network kept fixed (not ``nnx.Param``, so the
    optimizer never sees it; it is saved and restored with the rest of the state)."""


def freeze(module: nnx.Module) -> None:
    """Turns every ``nnx.Param`` of ``module`` into a :class:`FrozenWeight` (same values), in place."""
    targets = [(node, name) for _, node in nnx.iter_graph(module) if isinstance(node, nnx.Module)
               for name, value in vars(node).items() if isinstance(value, nnx.Param)]
    for node, name in targets:
        setattr(node, name, FrozenWeight(getattr(node, name)[...]))


# ----------------------------------------------------------------------------- model


class PoseDetector(nnx.Module):
    """ResNet-FPN two-stage detector with a 3D pose branch.

    Args:
      model_config: ``config.model``, every field present (:func:`fgpose.config.model_config`
        states each with its default).
      num_classes: number of fine-grained classes ``C``.
      rngs: parameter initialisation.

    Attributes:
      backbone (:class:`~fgpose.models.resnet.ResNet`), fpn, rpn, box_head, pose_head; with
      ``field.enabled`` also field_head (:class:`~fgpose.models.field_head.FieldHead`) and
      field_pose_net (:class:`~fgpose.models.field_pose.FieldPoseNet`, frozen unless
      ``field.finetune_pose_net``).
    """

    def __init__(self, model_config, num_classes: int, *, rngs: nnx.Rngs):
        cfg = model_config
        self.num_classes = int(num_classes)
        self.dtype = _dtype(cfg.compute_dtype)
        init = cfg.backbone.init
        freeze_at = int(cfg.backbone.freeze_at)
        if freeze_at < 0:
            freeze_at = 2 if init == "keras_resnet50" else 0
        self.backbone = ResNet(
            cfg.backbone.depth,
            cfg.backbone.width,
            cfg.backbone.norm,
            stride_in_1x1=init == "keras_resnet50",
            freeze_at=freeze_at,
            dtype=self.dtype,
            rngs=rngs,
        )
        channels = int(cfg.fpn.channels)
        self.fpn = FPN(self.backbone.out_channels, channels, dtype=self.dtype, rngs=rngs)
        self.rpn_levels = tuple(cfg.fpn.levels)
        self.roi_levels = tuple(cfg.roi.levels)
        self.anchor_sizes = tuple(cfg.anchors.sizes)
        self.aspect_ratios = tuple(float(r) for r in cfg.anchors.aspect_ratios)
        if len(self.anchor_sizes) != len(self.rpn_levels):
            raise ValueError("anchors.sizes needs one entry per fpn.levels entry")
        num_anchors = num_anchors_per_location(self.anchor_sizes, self.aspect_ratios)
        self.rpn = RPNHead(channels, num_anchors, dtype=self.dtype, rngs=rngs)
        s = int(cfg.roi.output_size)
        in_dim = s * s * channels
        self.box_head = BoxHead(
            in_dim, int(cfg.box_head.fc_dim), self.num_classes,
            num_fc=int(cfg.box_head.num_fc), dtype=self.dtype, rngs=rngs,
        )
        self.coding = cfg.pose_head.coding
        if self.coding not in ("linear", "log"):
            raise ValueError(f"pose_head.coding must be 'linear' or 'log', got {self.coding!r}")
        self.distance_scale = float(cfg.pose_head.distance_scale)
        self.focal_scale = float(cfg.pose_head.focal_scale)
        self.box_features = bool(cfg.pose_head.box_features)
        typical = 1.0 if self.coding == "linear" else 0.0  # coded value of d = distance_scale
        self.pose_head = PoseHead(
            in_dim,
            int(cfg.pose_head.fc_dim),
            int(cfg.pose_head.num_fc),
            num_shared_fc=int(cfg.pose_head.num_shared_fc),
            extra_dim=2 if self.box_features else 0,
            output_bias={"distance": typical, "focal": typical},
            dtype=self.dtype,
            rngs=rngs,
        )
        # Plain Python config (static under jit).
        self.pixel_mean = tuple(float(x) for x in cfg.pixel_mean)
        self.pixel_std = tuple(float(x) for x in cfg.pixel_std)
        self.rpn_cfg = dict(
            pre_nms_topk=int(cfg.rpn.pre_nms_topk),
            post_nms_topk=int(cfg.rpn.post_nms_topk),
            nms_threshold=float(cfg.rpn.nms_threshold),
            batch_size_per_image=int(cfg.rpn.batch_size_per_image),
            positive_fraction=float(cfg.rpn.positive_fraction),
            iou_thresholds=tuple(float(x) for x in cfg.rpn.iou_thresholds),
            min_size=float(cfg.rpn.min_size),
            smooth_l1_beta=float(cfg.rpn.smooth_l1_beta),
        )
        self.roi_cfg = dict(
            batch_size_per_image=int(cfg.roi.batch_size_per_image),
            positive_fraction=float(cfg.roi.positive_fraction),
            output_size=s,
            sampling_ratio=int(cfg.roi.sampling_ratio),
            aligned=bool(cfg.roi.aligned),
            fg_iou_threshold=float(cfg.roi.fg_iou_threshold),
            canonical_box_size=float(cfg.roi.canonical_box_size),
            canonical_level=int(cfg.roi.canonical_level),
        )
        self.loss_weights = {k: float(cfg.loss[k]) for k in LOSS_TERMS}
        self.fg_slots = max(1, positive_slots(self.roi_cfg["batch_size_per_image"], self.roi_cfg["positive_fraction"]))
        """Sampled-RoI slots that can hold foreground: the prefix the pose head runs on."""
        self.box_beta = float(cfg.loss.box_beta)
        self.pose_beta = float(cfg.loss.pose_beta)
        self.sign_invariant = bool(cfg.pose_head.quaternion_sign_invariant)
        self.test_cfg = dict(
            score_threshold=float(cfg.test.score_threshold),
            detections_per_image=int(cfg.test.detections_per_image),
            nms_threshold=float(cfg.test.nms_threshold),
        )
        field = cfg.field
        self.field_enabled = bool(field.enabled)
        if self.field_enabled:
            self.field_size = int(field.size)
            if self.field_size % 2:
                raise ValueError(f"field.size must be even (2x upsampling), got {self.field_size}")
            self.field_head = FieldHead(channels, width=int(field.width), num_conv=int(field.num_conv),
                                        dtype=self.dtype, rngs=rngs)
            net = field.pose_net
            self.field_pose_net = FieldPoseNet(self.field_size, channels=tuple(int(c) for c in net.channels),
                                               fc_dim=int(net.fc_dim), num_fc=int(net.num_fc), dtype=self.dtype,
                                               rngs=rngs)
            self.finetune_pose_net = bool(field.finetune_pose_net)
            if not self.finetune_pose_net:
                freeze(self.field_pose_net)
            self.xyz_beta = float(field.xyz_beta)
            self.fusion_weight = float(field.fusion_weight)

    # ------------------------------------------------------------------ building blocks

    def normalize_images(self, image: Array, image_hw: Array) -> Array:
        """``(image - pixel_mean) / pixel_std`` (RGB, 0..255), zero in the padding.

        Args:
          image: ``(B, H, W, 3)`` uint8 (or float 0..255) RGB.
          image_hw: ``(B, 2)`` size of the unpadded content.

        Returns:
          ``(B, H, W, 3)`` in the compute dtype; padding is exactly 0 as in Detectron2
          (which pads after normalising).
        """
        x = (image.astype(jnp.float32) - jnp.asarray(self.pixel_mean)) / jnp.asarray(self.pixel_std)
        h, w = image.shape[1:3]
        hw = jnp.asarray(image_hw, jnp.int32)
        inside = (jnp.arange(h)[None, :, None] < hw[:, 0, None, None]) & (
            jnp.arange(w)[None, None, :] < hw[:, 1, None, None]
        )
        return jnp.where(inside[..., None], x, 0.0).astype(self.dtype)

    def features(self, batch: Mapping[str, Array]) -> dict[str, Array]:
        """FPN features ``{'P2': (B, ceil(H/4), ceil(W/4), C), ..., 'P6'}`` of a batch."""
        x = self.normalize_images(batch["image"], batch["image_hw"])
        return self.fpn(self.backbone(x))

    def anchors(self, input_hw: tuple[int, int]) -> dict[str, np.ndarray]:
        """Static anchors ``{level: (H_l * W_l * A, 4)}`` for a (padded) input size."""
        strides = [_level_stride(lvl) for lvl in self.rpn_levels]
        return generate_anchors(tuple(input_hw), strides, self.anchor_sizes, self.aspect_ratios)

    def rpn_outputs(self, feats: Mapping[str, Array]):
        """RPN objectness ``{level: (B, N_l)}`` and deltas ``{level: (B, N_l, 4)}``."""
        return self.rpn({lvl: feats[lvl] for lvl in self.rpn_levels})

    def proposals(self, obj, deltas, anchors, image_hw) -> tuple[Array, Array]:
        """``(boxes (B, post_nms_topk, 4), valid (B, post_nms_topk))``, stop-gradient."""
        boxes, _, valid = propose(
            obj, deltas, anchors, image_hw,
            self.rpn_cfg["pre_nms_topk"], self.rpn_cfg["post_nms_topk"],
            self.rpn_cfg["nms_threshold"], min_size=self.rpn_cfg["min_size"],
            levels=self.rpn_levels,
        )
        return jax.lax.stop_gradient(boxes), valid

    def pool(self, feats: Mapping[str, Array], boxes: Array, output_size: int | None = None) -> Array:
        """Multi-level RoIAlign of ``boxes (B, R, 4)`` -> ``(B, R, S, S, C)`` (compute dtype);
        ``S = output_size`` (default ``roi.output_size``)."""
        return multilevel_roi_align(
            {lvl: feats[lvl] for lvl in self.roi_levels},
            jax.lax.stop_gradient(boxes),
            output_size=self.roi_cfg["output_size"] if output_size is None else int(output_size),
            sampling_ratio=self.roi_cfg["sampling_ratio"],
            aligned=self.roi_cfg["aligned"],
            levels=self.roi_levels,
            canonical_box_size=self.roi_cfg["canonical_box_size"],
            canonical_level=self.roi_cfg["canonical_level"],
        )

    def _pose_extra(self, boxes, frame_height, original_hw, scale):
        """Box geometry inputs ``(B, R, 2)``: log of the RoI size in annotation pixels / 100."""
        a = pose_coding.input_frame_transform(frame_height, original_hw, scale)  # (B, 3, 3)
        w = jnp.maximum(boxes[..., 3] - boxes[..., 1], 1e-3) / a[:, None, 0, 0]
        h = jnp.maximum(boxes[..., 2] - boxes[..., 0], 1e-3) / a[:, None, 1, 1]
        return jnp.log(jnp.stack([w, h], -1) / 100.0)

    def pose_outputs(self, roi_feats: Array, boxes: Array, batch: Mapping[str, Array]) -> dict[str, Array]:
        """Pose head on RoI features ``(B, R, S, S, C)`` of ``boxes (B, R, 4)``: coded outputs."""
        flat = roi_feats.reshape(roi_feats.shape[:2] + (-1,))
        extra = None
        if self.box_features:
            extra = self._pose_extra(boxes, batch["frame_height"], batch["original_hw"], batch["scale"])
        return self.pose_head(flat, extra)

    def field_outputs(self, feats: Mapping[str, Array], boxes: Array) -> dict[str, Array]:
        """Field branch on ``boxes (B, R, 4)``: ``xyz (B, R, S, S, 3)``, ``fg_logit (B, R, S, S)``
        (field head on ``S/2 x S/2`` RoIAlign features) and ``quaternion (B, R, 4)``, the raw
        pose-from-field quaternion of the stop-gradient of that field."""
        xyz, fg_logit = self.field_head(self.pool(feats, boxes, self.field_size // 2))
        q = field_pose_from_predicted_field(xyz, fg_logit, self.field_pose_net)
        return {"xyz": xyz, "fg_logit": fg_logit, "quaternion": q}

    def _coding_kwargs(self) -> dict[str, Any]:
        return dict(distance_scale=self.distance_scale, focal_scale=self.focal_scale, coding=self.coding)

    # ------------------------------------------------------------------ training

    def sample_rois(self, proposals, proposal_valid, gt_boxes, gt_valid, key, example_valid=None):
        """Match proposals + GT boxes to the GT and sample a fixed number of RoIs per image.

        ``example_valid (B,)`` (optional) drops every candidate of padding examples.

        Returns:
          dict with ``boxes (B, S, 4)``, ``labels (B, S)`` int32 in {1 fg, 0 bg, -1 padding},
          ``matched (B, S)`` int32 GT index (meaningful where ``labels == 1``).
        """
        boxes = jnp.concatenate([proposals, gt_boxes.astype(proposals.dtype)], axis=1)
        valid = jnp.concatenate([proposal_valid, gt_valid], axis=1)
        iou = box_iou(boxes, gt_boxes)  # (B, N + G, G)
        thr = self.roi_cfg["fg_iou_threshold"]
        matched, labels = jax.vmap(lambda i, v: match_boxes(i, v, thr, thr, False))(iou, gt_valid)
        if example_valid is not None:
            valid = valid & jnp.asarray(example_valid, bool)[:, None]
        labels = jnp.where(valid, labels, -1)
        keys = jax.random.split(key, boxes.shape[0])
        num, frac = self.roi_cfg["batch_size_per_image"], self.roi_cfg["positive_fraction"]
        idx, sampled = jax.vmap(lambda lab, k: sample_balanced(lab, num, frac, k))(labels, keys)
        return {"boxes": _take(boxes, idx), "labels": sampled, "matched": _take(matched, idx)}

    def forward_train(self, batch: Mapping[str, Array], key: Array) -> dict[str, Any]:
        """Everything :meth:`losses` needs, for reuse by extra heads (the extension point).

        Returns a dict with ``feats`` (FPN), ``rpn_losses`` ``(cls, box)``, ``rpn_accuracy``,
        ``rpn_fg_recall``, ``rois`` (see :meth:`sample_rois`), ``roi_features``
        ``(B, S, s, s, C)`` of the sampled RoIs (a later mask-like head, e.g. a location-field
        branch, pools its own 14x14 features with :meth:`pool` on ``rois['boxes']`` or uses
        these), ``gt_valid`` ``(B, G)``, ``class_logits`` ``(B, S, C+1)``, ``box_deltas``
        ``(B, S, 4)`` and ``pose`` (coded outputs of the pose head on the first
        ``fg_slots = int(S * roi.positive_fraction)`` sampled RoIs, the only slots that can
        be foreground: ``(B, fg_slots, ...)``); with the field branch also ``field``
        (:meth:`field_outputs` on those ``fg_slots`` RoIs).
        """
        image_hw = jnp.asarray(batch["image_hw"])
        gt_boxes = jnp.asarray(batch["boxes"], jnp.float32)
        gt_valid = jnp.asarray(batch["box_valid"], bool) & nonempty(gt_boxes, 0.0)
        example_valid = batch.get("valid")
        if example_valid is not None:
            gt_valid = gt_valid & jnp.asarray(example_valid, bool)[:, None]
        key_rpn, key_roi = jax.random.split(key)

        feats = self.features(batch)
        anchors = self.anchors(batch["image"].shape[1:3])
        obj, deltas = self.rpn_outputs(feats)
        rpn_cls, rpn_box = rpn_losses(
            obj, deltas, anchors, gt_boxes, gt_valid, image_hw, key_rpn,
            batch_size_per_image=self.rpn_cfg["batch_size_per_image"],
            positive_fraction=self.rpn_cfg["positive_fraction"],
            iou_thresholds=self.rpn_cfg["iou_thresholds"],
            smooth_l1_beta=self.rpn_cfg["smooth_l1_beta"],
            levels=self.rpn_levels,
        )
        rpn_acc, rpn_recall = self._rpn_accuracy(obj, anchors, gt_boxes, gt_valid, image_hw)

        proposals, proposal_valid = self.proposals(obj, deltas, anchors, image_hw)
        rois = self.sample_rois(proposals, proposal_valid, gt_boxes, gt_valid, key_roi, example_valid)
        roi_feats = self.pool(feats, rois["boxes"])
        logits, box_deltas = self.box_head(roi_feats.reshape(roi_feats.shape[:2] + (-1,)))
        # Foreground RoIs come first (sample_balanced), so the pose head only needs the
        # static prefix of fg_slots RoIs: the others are background or padding and take no
        # pose loss (4x less pose-head work at the default positive fraction 0.25).
        p = self.fg_slots
        pose = self.pose_outputs(roi_feats[:, :p], rois["boxes"][:, :p], batch)
        extra = {"field": self.field_outputs(feats, rois["boxes"][:, :p])} if self.field_enabled else {}
        return {
            **extra,
            "feats": feats,
            "rpn_losses": (rpn_cls, rpn_box),
            "rpn_accuracy": rpn_acc,
            "rpn_fg_recall": rpn_recall,
            "rois": rois,
            "roi_features": roi_feats,
            "gt_valid": gt_valid,
            "class_logits": logits,
            "box_deltas": box_deltas,
            "pose": pose,
        }

    def _rpn_accuracy(self, obj, anchors, gt_boxes, gt_valid, image_hw):
        """Objectness accuracy over all labelled anchors and recall of the foreground ones."""
        logits = jax.lax.stop_gradient(jnp.concatenate([obj[lvl] for lvl in self.rpn_levels], axis=1))
        anc = jnp.concatenate([jnp.asarray(anchors[lvl], jnp.float32) for lvl in self.rpn_levels], axis=0)
        low, high = self.rpn_cfg["iou_thresholds"]
        _, labels = jax.vmap(lambda g, v, hw: anchor_labels(anc, g, v, hw, high, low))(gt_boxes, gt_valid, image_hw)
        pred = logits > 0
        labelled = labels >= 0
        correct = labelled & (pred == (labels == 1))
        acc = jnp.sum(correct) / jnp.maximum(jnp.sum(labelled), 1)
        fg = labels == 1
        recall = jnp.sum(fg & pred) / jnp.maximum(jnp.sum(fg), 1)
        return acc.astype(jnp.float32), recall.astype(jnp.float32)

    def losses(self, batch: Mapping[str, Array], key: Array) -> tuple[Array, dict[str, Array]]:
        """Weighted total loss and scalar metrics of a training batch (:mod:`fgpose.data.pipeline`).

        Args:
          batch: ``image``, ``image_hw``, ``boxes``, ``box_valid``, ``labels``, ``pose``,
            ``frame_height``, ``original_hw``, ``scale`` (``valid`` optional: padding
            examples contribute no GT and no RoIs; their anchors still count as RPN
            background, so do not train on padded batches).
          key: PRNG key for anchor and RoI sampling.

        Returns:
          ``(total, metrics)``: float32 scalar and a dict of float32 scalars: the unweighted
          terms ``loss_rpn_cls``, ``loss_rpn_box``, ``loss_cls``, ``loss_box``,
          ``loss_quaternion``, ``loss_offset``, ``loss_distance``, ``loss_focal``, and
          ``rpn_accuracy``, ``rpn_fg_recall``, ``roi_accuracy``, ``roi_fg_accuracy``,
          ``roi_num_fg``, ``roi_num_bg`` (per image), ``roi_rotation_error_deg`` (mean
          rotation error of the foreground RoIs' predicted quaternions). With the field
          branch (batch also holds ``location_field (B, H_in, W_in, 3)`` and ``mask (B, H_in,
          W_in)``): ``loss_field_xyz``, ``loss_field_fg``, ``loss_field_quaternion`` (only when
          fine-tuning the pose-from-field network) and ``field_rotation_error_deg``.
        """
        return self.loss_from_outputs(self.forward_train(batch, key), batch)

    def loss_from_outputs(self, out: Mapping[str, Any], batch: Mapping[str, Array]) -> tuple[Array, dict[str, Array]]:
        """The reduction half of :meth:`losses`: ``out`` from :meth:`forward_train`.

        A later head (e.g. a location-field branch) can call :meth:`forward_train`, add its
        own loss on ``out['rois']`` / ``out['roi_features']`` and sum it with this total.
        """
        rois = out["rois"]
        labels = rois["labels"]  # (B, S)
        sampled = labels >= 0
        fg = labels == 1
        n_sampled = jnp.maximum(jnp.sum(sampled), 1).astype(jnp.float32)
        n_fg = jnp.maximum(jnp.sum(fg), 1).astype(jnp.float32)

        gt_labels = _take(jnp.asarray(batch["labels"], jnp.int32), rois["matched"])
        gt_boxes = _take(jnp.asarray(batch["boxes"], jnp.float32), rois["matched"])
        gt_pose = _take(jnp.asarray(batch["pose"], jnp.float32), rois["matched"])
        target_class = jnp.where(fg, gt_labels + 1, 0)

        logits = out["class_logits"]
        logp = jax.nn.log_softmax(logits, axis=-1)
        ce = -jnp.take_along_axis(logp, target_class[..., None], axis=-1)[..., 0]
        loss_cls = jnp.sum(jnp.where(sampled, ce, 0.0)) / n_sampled
        pred_class = jnp.argmax(logits, axis=-1)
        roi_acc = jnp.sum(sampled & (pred_class == target_class)) / n_sampled
        roi_fg_acc = jnp.sum(fg & (pred_class == target_class)) / n_fg

        # Box regression on the foreground (safe boxes elsewhere: no NaN from padding).
        unit = jnp.array([0.0, 0.0, 1.0, 1.0], jnp.float32)
        roi_boxes = jnp.where(fg[..., None], rois["boxes"], unit)
        safe_gt = jnp.where(fg[..., None], gt_boxes, unit)
        box_target = jax.lax.stop_gradient(encode_boxes(safe_gt, roi_boxes, ROI_BOX_WEIGHTS))
        box_l = jnp.sum(smooth_l1_loss(out["box_deltas"] - box_target, self.box_beta), -1)
        loss_box = jnp.sum(jnp.where(fg, box_l, 0.0)) / n_sampled

        # Pose on the foreground RoIs (all within the first fg_slots slots), targets
        # relative to each RoI box.
        p = self.fg_slots
        fg, roi_boxes, gt_pose = fg[:, :p], roi_boxes[:, :p], gt_pose[:, :p]
        fh = jnp.asarray(batch["frame_height"], jnp.float32)[:, None]
        ohw = jnp.asarray(batch["original_hw"], jnp.float32)[:, None, :]
        scale = jnp.asarray(batch["scale"], jnp.float32)[:, None]
        neutral = jnp.array([0.0, 0.0, 0.0, self.distance_scale, self.focal_scale, 0.0, 0.0], jnp.float32)
        safe_pose = jnp.where(fg[..., None], gt_pose, neutral)
        targets = pose_coding.encode_pose_targets(safe_pose, roi_boxes, fh, ohw, scale, **self._coding_kwargs())
        targets = jax.tree.map(jax.lax.stop_gradient, targets)
        pred = out["pose"]
        beta = self.pose_beta
        terms = {
            "quaternion": quaternion_loss(pred["quaternion"], targets["quaternion"], beta, self.sign_invariant),
            "offset": jnp.sum(smooth_l1_loss(pred["offset"] - targets["offset"], beta), -1),
            "distance": smooth_l1_loss(pred["distance"] - targets["distance"], beta),
            "focal": smooth_l1_loss(pred["focal"] - targets["focal"], beta),
        }
        pose_losses = {k: jnp.sum(jnp.where(fg, v, 0.0)) / n_fg for k, v in terms.items()}
        q_pred = pose_coding.normalize_quaternion(pred["quaternion"])
        q_dot = jnp.abs(jnp.sum(q_pred * targets["quaternion"], -1))
        # Rotation angle between predicted and target rotations (radians), on the foreground.
        q_angle = 2.0 * jnp.arccos(jnp.clip(q_dot, 0.0, 1.0))
        rot_err = jnp.sum(jnp.where(fg, q_angle, 0.0)) / n_fg

        rpn_cls, rpn_box = out["rpn_losses"]
        unweighted = {"rpn_cls": rpn_cls, "rpn_box": rpn_box, "cls": loss_cls, "box": loss_box, **pose_losses}
        field_metrics = {}
        if self.field_enabled:
            field_terms, field_metrics = self._field_losses(out["field"], batch, roi_boxes, fg, n_fg,
                                                            targets["quaternion"])
            unweighted.update(field_terms)
        total = sum(self.loss_weights[k] * v for k, v in unweighted.items())
        b = labels.shape[0]
        metrics = {f"loss_{k}": v for k, v in unweighted.items()}
        metrics.update(
            rpn_accuracy=out["rpn_accuracy"],
            rpn_fg_recall=out["rpn_fg_recall"],
            roi_accuracy=roi_acc,
            roi_fg_accuracy=roi_fg_acc,
            roi_num_fg=jnp.sum(fg) / b,
            roi_num_bg=jnp.sum(labels == 0) / b,
            roi_rotation_error_deg=jnp.degrees(rot_err),
            **field_metrics,
        )
        metrics = {k: jax.lax.stop_gradient(jnp.asarray(v, jnp.float32)) for k, v in metrics.items()}
        return jnp.asarray(total, jnp.float32), metrics

    def _field_losses(self, field_out, batch, roi_boxes, fg, n_fg, q_target):
        """Field-branch loss terms and metrics on the ``fg_slots`` prefix of sampled RoIs.

        ``roi_boxes (B, P, 4)`` (input pixels; a unit box where not foreground), ``fg (B, P)``,
        ``q_target (B, P, 4)`` (canonical GT quaternions; neutral where not foreground).
        """
        s = self.field_size
        ones = jnp.ones((roi_boxes.shape[0], 2), jnp.float32)  # the batch's field is in input pixels
        xyz_t, fg_t = jax.vmap(lambda f, m, b, sc: roi_field_targets(f, m, b, sc, s))(
            jnp.asarray(batch["location_field"]), jnp.asarray(batch["mask"]), roi_boxes, ones)
        terms = field_losses(field_out["xyz"], field_out["fg_logit"], xyz_t, fg_t, fg, beta=self.xyz_beta)
        out = {"field_xyz": terms["xyz"], "field_fg": terms["fg"]}
        q = field_out["quaternion"]
        if self.finetune_pose_net:
            q_l = quaternion_loss(q, q_target, self.pose_beta, self.sign_invariant)
            out["field_quaternion"] = jnp.sum(jnp.where(fg, q_l, 0.0)) / n_fg
        err = jnp.sum(jnp.where(fg, quaternion_angle(q, q_target), 0.0)) / n_fg
        return out, {"field_rotation_error_deg": jnp.degrees(err)}

    # ------------------------------------------------------------------ inference

    def predict(self, batch: Mapping[str, Array]) -> dict[str, Array]:
        """Detections and the pose of the top-scoring detection.

        Args:
          batch: ``image``, ``image_hw``, ``frame_height``, ``original_hw``, ``scale``
            (``valid`` optional).

        Returns (``K = test.detections_per_image``; every array has the batch axis first):
          ``boxes (B, K, 4)`` float32 input pixels (zeros where invalid), ``scores (B, K)``
          float32 foreground probabilities, ``classes (B, K)`` int32 fine-grained class ids
          (0-based), ``valid (B, K)`` bool (a prefix: NMS output above the score threshold);
          ``top_box (B, 4)``, ``top_score (B,)``, ``top_class (B,)``: the highest-scoring
          box over all proposals (defined even when it is below the threshold; then
          ``top_valid`` is False); ``top_valid (B,)`` bool; ``pose (B, 7)`` release pose
          (azimuth, elevation, theta [rad], distance, f, u, v) predicted from RoI features
          re-pooled at ``top_box``; ``projection (B, 3, 4)`` its ``P`` in original-photo
          pixels (:func:`fgpose.models.pose_coding.projection_original`).

          With the field branch (``S = field.size``) also: ``field (B, S, S, 3)`` float32
          predicted model-space XYZ inside ``top_box`` (bin ``(i, j)`` centred at ``y0 + (i +
          0.5) (y1 - y0) / S``, ``x0 + (j + 0.5) (x1 - x0) / S``, input pixels like
          ``top_box``), ``field_fg (B, S, S)`` float32 foreground probability (sigmoid of the
          logit), ``pose_appearance (B, 7)`` (the appearance head's pose), ``pose_field (B, 7)``
          (the same with the pose-from-field quaternion); ``pose`` is then the combined pose
          (quaternions fused with weight ``field.fusion_weight``) and ``projection`` its ``P``.
        """
        image_hw = jnp.asarray(batch["image_hw"])
        feats = self.features(batch)
        anchors = self.anchors(batch["image"].shape[1:3])
        obj, deltas = self.rpn_outputs(feats)
        proposals, proposal_valid = self.proposals(obj, deltas, anchors, image_hw)
        roi_feats = self.pool(feats, proposals)
        logits, box_deltas = self.box_head(roi_feats.reshape(roi_feats.shape[:2] + (-1,)))
        probs = jax.nn.softmax(logits, axis=-1)[..., 1:]
        score = jnp.max(probs, axis=-1)
        cls = jnp.argmax(probs, axis=-1).astype(jnp.int32)
        safe_props = jnp.where(proposal_valid[..., None], proposals, jnp.array([0.0, 0.0, 1.0, 1.0]))
        boxes = decode_boxes(box_deltas, safe_props, ROI_BOX_WEIGHTS)
        boxes = clip_boxes(boxes, jnp.asarray(image_hw, jnp.float32)[:, None, :])
        ok = proposal_valid & nonempty(boxes, 0.0) & jnp.all(jnp.isfinite(boxes), -1)
        if "valid" in batch:
            ok = ok & jnp.asarray(batch["valid"], bool)[:, None]
        score = jnp.where(ok, score, -jnp.inf)

        k = self.test_cfg["detections_per_image"]
        keep, det_valid = batched_nms(
            boxes, score, k, self.test_cfg["nms_threshold"], self.test_cfg["score_threshold"]
        )
        det_boxes = jnp.where(det_valid[..., None], _take(boxes, keep), 0.0)
        det_scores = jnp.where(det_valid, _take(score, keep), 0.0)
        det_classes = jnp.where(det_valid, _take(cls, keep), 0)

        top = jnp.argmax(score, axis=-1)  # (B,)
        any_ok = jnp.any(ok, axis=-1)
        top_box = jnp.where(any_ok[:, None], _take(boxes, top[:, None])[:, 0], 0.0)
        top_score = jnp.where(any_ok, _take(score, top[:, None])[:, 0], 0.0)
        top_class = jnp.where(any_ok, _take(cls, top[:, None])[:, 0], 0)
        top_valid = any_ok & (top_score > self.test_cfg["score_threshold"])

        # Cascade: pose from features re-pooled at the refined top box.
        top_feats = self.pool(feats, top_box[:, None, :])
        coded = self.pose_outputs(top_feats, top_box[:, None, :], batch)
        coded = jax.tree.map(lambda x: x[:, 0], coded)
        pose = self.decode_pose(coded, top_box, batch)
        extra = {}
        if self.field_enabled:
            f = jax.tree.map(lambda x: x[:, 0], self.field_outputs(feats, top_box[:, None, :]))
            fused = fuse_quaternions(coded["quaternion"], f["quaternion"], self.fusion_weight)
            extra = {
                "field": f["xyz"],
                "field_fg": jax.nn.sigmoid(f["fg_logit"]),
                "pose_appearance": pose,
                "pose_field": self.decode_pose(dict(coded, quaternion=f["quaternion"]), top_box, batch),
            }
            pose = self.decode_pose(dict(coded, quaternion=fused), top_box, batch)
        projection = pose_coding.projection_original(
            pose, jnp.asarray(batch["frame_height"], jnp.float32), jnp.asarray(batch["original_hw"], jnp.float32)
        )
        return {
            "boxes": det_boxes.astype(jnp.float32),
            "scores": det_scores.astype(jnp.float32),
            "classes": det_classes.astype(jnp.int32),
            "valid": det_valid,
            "top_box": top_box.astype(jnp.float32),
            "top_score": top_score.astype(jnp.float32),
            "top_class": top_class.astype(jnp.int32),
            "top_valid": top_valid,
            "pose": pose,
            "projection": projection,
            **extra,
        }

    def decode_pose(self, coded: Mapping[str, Array], boxes: Array, batch: Mapping[str, Array]) -> Array:
        """Release pose ``(B, 7)`` of coded pose outputs ``(B, ...)`` relative to ``boxes (B, 4)``.

        Distance and focal are clamped to at least 1e-3 of their normalisers (the release
        requires ``d > 0`` and ``f > 0``).
        """
        pose = pose_coding.decode_pose(
            coded["quaternion"], coded["offset"], coded["distance"], coded["focal"], boxes,
            jnp.asarray(batch["frame_height"], jnp.float32),
            jnp.asarray(batch["original_hw"], jnp.float32),
            jnp.asarray(batch["scale"], jnp.float32),
            **self._coding_kwargs(),
        )
        d = jnp.maximum(pose[..., 3], 1e-3 * self.distance_scale)
        f = jnp.maximum(pose[..., 4], 1e-3 * self.focal_scale)
        return pose.at[..., 3].set(d).at[..., 4].set(f)


__all__ = ["FrozenWeight", "PoseDetector", "freeze", "default_model_config", "tiny_model_config"]
