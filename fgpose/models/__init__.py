"""Model building blocks (Flax NNX): backbone, FPN, anchors, boxes, NMS, RPN, RoIAlign.

Conventions: NHWC tensors; boxes ``(y0, x0, y1, x1)`` in input-frame pixels;
box deltas ``(dy, dx, dh, dw)``; pyramid levels named ``'P2'..'P6'`` (stride
``2^k``, size ``ceil(H / 2^k)``); per-level RPN tensors flattened in
``(y, x, anchor)`` order. Everything is jit-able with static shapes.
"""

from fgpose.models.anchors import generate_anchors, num_anchors_per_location
from fgpose.models.boxes import (
    DEFAULT_SCALE_CLAMP,
    ROI_BOX_WEIGHTS,
    RPN_BOX_WEIGHTS,
    box_area,
    box_iou,
    clip_boxes,
    decode_boxes,
    encode_boxes,
    match_boxes,
    nonempty,
    sample_balanced,
    sigmoid_bce_with_logits,
    smooth_l1_loss,
)
from fgpose.models.fpn import FPN
from fgpose.models.nms import batched_nms, nms
from fgpose.models.resnet import FrozenAffine, FrozenBatchNorm, ResNet
from fgpose.models.roi_align import assign_levels, multilevel_roi_align, roi_align
from fgpose.models.rpn import RPNHead, anchor_labels, propose, rpn_losses

__all__ = [
    "DEFAULT_SCALE_CLAMP", "ROI_BOX_WEIGHTS", "RPN_BOX_WEIGHTS", "box_area", "box_iou",
    "clip_boxes", "decode_boxes", "encode_boxes", "match_boxes", "nonempty", "sample_balanced",
    "sigmoid_bce_with_logits", "smooth_l1_loss", "generate_anchors", "num_anchors_per_location",
    "FPN", "nms", "batched_nms", "FrozenAffine", "FrozenBatchNorm", "ResNet", "assign_levels",
    "multilevel_roi_align", "roi_align", "RPNHead", "anchor_labels", "propose", "rpn_losses",
]
