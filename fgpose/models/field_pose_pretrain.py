"""The pose-from-field pre-training model (``config.task = 'field_pose'``), Flax NNX.

:class:`FieldPoseModel` wraps the detector's :class:`~fgpose.models.field_pose.FieldPoseNet`
(same attribute name, ``field_pose_net``, so the detector loads its weights by path) with the
training loop's model interface (``losses(batch, key)``, ``predict(batch)``):

* ``losses``: the batch holds rendered location fields of the objects' boxes
  (:func:`fgpose.synthetic.location_field_stream` with ``crop_to_box=True``); each is made to
  look like field-head output by :func:`fgpose.models.field_augment.augment_fields` with the
  step's PRNG key (box jitter, boundary erosion/dilation/raggedness, XYZ noise) and resampled to
  ``S x S``; the loss is :func:`~fgpose.models.field_pose.field_pose_loss` (the detector's
  quaternion loss) against the canonical (``w >= 0``) quaternion of the batch's pose. Because
  the augmentation draws from the step key (``fold_in(PRNGKey(seed), step)``) and the fields
  are a pure function of the step, a resumed run sees exactly the same inputs.
* ``predict``: the quaternion of the *clean* field (tight box, no augmentation).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from fgpose import camera
from fgpose.models.field_augment import FieldAugmentation, augment_fields
from fgpose.models.field_pose import FieldPoseNet, field_pose_loss, predict_quaternion
from fgpose.models.field_targets import sample_roi_fields
from fgpose.models.quaternion_fusion import canonical

Array = jax.Array


def pose_quaternion(pose: Array) -> Array:
    """Canonical (``w >= 0``) unit quaternions ``(B, 4)`` of release poses ``(B, 7)``."""
    rotation = camera.Pose.from_array(jnp.asarray(pose, jnp.float32)).rotation()
    return canonical(camera.quaternion_from_rotation(rotation))


def full_boxes(field: Array) -> Array:
    """``(B, 4)`` boxes ``(0, 0, Hf, Wf)`` of fields ``(B, Hf, Wf, 3)`` (field pixels)."""
    hf, wf = field.shape[1:3]
    return jnp.broadcast_to(jnp.array([0.0, 0.0, hf, wf], jnp.float32), (field.shape[0], 4))


class FieldPoseModel(nnx.Module):
    """Pose-from-field network with the training loop's model interface (module docstring).

    Args:
      model_config: ``config.model`` (reads ``field.size``, ``field.pose_net.*``,
        ``loss.pose_beta``, ``pose_head.quaternion_sign_invariant``, ``compute_dtype``).
      augmentation: strengths of :func:`~fgpose.models.field_augment.augment_fields`.
      rngs: parameter initialisation.
    """

    def __init__(self, model_config, augmentation: FieldAugmentation, *, rngs: nnx.Rngs):
        field = model_config.field
        dtype = jnp.bfloat16 if model_config.compute_dtype == "bfloat16" else jnp.float32
        self.size = int(field.size)
        net = field.pose_net
        self.field_pose_net = FieldPoseNet(self.size, channels=tuple(int(c) for c in net.channels),
                                           fc_dim=int(net.fc_dim), num_fc=int(net.num_fc), dtype=dtype, rngs=rngs)
        self.augmentation = tuple(float(getattr(augmentation, f.name)) for f in dataclasses.fields(augmentation))
        self.beta = float(model_config.loss.pose_beta)
        self.sign_invariant = bool(model_config.pose_head.quaternion_sign_invariant)

    def losses(self, batch: Mapping[str, Array], key: Array) -> tuple[Array, dict[str, Array]]:
        """Mean quaternion loss of augmented fields.

        Args:
          batch: ``field (B, Hf, Wf, 3)`` float32 model-space XYZ of the object's box, ``mask
            (B, Hf, Wf)`` bool, ``pose (B, 7)`` release pose; optional ``valid (B,)``.
          key: PRNG key of the augmentation.

        Returns:
          ``(loss, {'loss_quaternion', 'rotation_error_deg', 'fg_fraction'})`` float32 scalars.
        """
        field = jnp.asarray(batch["field"], jnp.float32)
        aug = augment_fields(key, field, jnp.asarray(batch["mask"], bool), full_boxes(field), self.size,
                             FieldAugmentation(*self.augmentation))
        loss, metrics = field_pose_loss(self.field_pose_net, aug["field"], aug["fg"], pose_quaternion(batch["pose"]),
                                        valid=batch.get("valid"), beta=self.beta, sign_invariant=self.sign_invariant)
        metrics = dict(metrics, loss_quaternion=jax.lax.stop_gradient(loss),
                       fg_fraction=jax.lax.stop_gradient(jnp.mean(aug["fg"])))
        return loss, metrics

    def clean_fields(self, batch: Mapping[str, Array]) -> tuple[Array, Array]:
        """``S x S`` fields ``(B, S, S, 3)`` and masks ``(B, S, S)`` of the tight boxes
        (the field head's targets: :func:`~fgpose.models.field_targets.sample_roi_fields`)."""
        field = jnp.asarray(batch["field"], jnp.float32)
        mask = jnp.asarray(batch["mask"], bool)
        xyz, fg = jax.vmap(lambda f, m, b: sample_roi_fields(f, m, b[None], self.size))(field, mask, full_boxes(field))
        return xyz[:, 0], fg[:, 0]

    def predict(self, batch: Mapping[str, Array]) -> dict[str, Array]:
        """``{'quaternion': (B, 4)}`` unit, ``w >= 0``, of the clean fields."""
        xyz, fg = self.clean_fields(batch)
        return {"quaternion": predict_quaternion(self.field_pose_net, xyz, fg.astype(jnp.float32))}


__all__ = ["FieldPoseModel", "full_boxes", "pose_quaternion"]
