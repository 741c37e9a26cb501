"""Location-field RoI targets and the field flip, on the real car's rendered field.

References: the release's camera in float64 NumPy (``tests.reference``) for the reprojection of
every target point, Detectron2's RoIAlign ported to NumPy (``tests.test_roi_align``) for the
sampling, and :mod:`fgpose.data.preprocess` for the flip of photo, pose and field.
"""

from __future__ import annotations

import cv2
import jax.numpy as jnp
import numpy as np
import pytest

from fgpose import annotations, camera, raster
from fgpose.data.preprocess import flip_boxes, flip_pose, preprocess_example
from fgpose.mesh import load_mesh
from fgpose.models.field_targets import (
    FOREGROUND_THRESHOLD,
    flip_field,
    input_to_field_scale,
    roi_field_targets,
    sample_roi_fields,
)
from tests import reference
from tests.test_roi_align import _ref_roi_align

S = 28
FIELD_HW = (64, 96)  # the 400 x 600 photo at field_max_side 96
SCALE = 0.5  # input pixels per original pixel


def _render(mesh, pose, photo_hw, field_hw):
    fh = camera.annotation_frame_height(photo_hw[1], photo_hw[0])
    proj = camera.projection_matrix(camera.Pose.from_array(jnp.asarray(pose, jnp.float32)), fh, image_size=field_hw)
    out = raster.render(mesh.vertices, mesh.faces, proj, *field_hw, location=True)
    mask = np.asarray(out.mask)
    return np.where(mask[..., None], np.asarray(out.location), 0.0).astype(np.float32), mask


@pytest.fixture(scope="module")
def car(release_dir):
    """The real car of cars_train/00001.jpg, its v2 pose and its field at 64 x 96."""
    ann = annotations.load_annotations(release_dir / "Anno3D/StanfordCars/train_anno_v2.pkl")["00001.jpg"]
    photo = cv2.imread(str(annotations.image_path(release_dir, "StanfordCars", "train", "00001.jpg")))
    mesh = load_mesh(annotations.cad_path(release_dir, "StanfordCars", ann.model_id))
    pose = np.array([getattr(ann, k) for k in camera.POSE_FIELDS], np.float64)
    photo_hw = photo.shape[:2]
    field, mask = _render(mesh, pose, photo_hw, FIELD_HW)
    assert mask.sum() > 500
    return dict(pose=pose, photo_hw=photo_hw, field=field, mask=mask)


def _boxes(mask, field_scale):
    """RoIs in input pixels: the tight box, a larger one, one shifted right (truncating the
    object, reaching past the photo's right edge), a small one inside (zoomed in) and one centred
    on the tight box's top-left corner (reaching past the photo's top-left)."""
    rows, cols = np.nonzero(mask)
    tight = np.array([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1], np.float64) / np.tile(field_scale, 2)
    y0, x0, y1, x1 = tight
    h, w = y1 - y0, x1 - x0
    return np.array(
        [
            tight,
            [y0 - 0.15 * h, x0 - 0.2 * w, y1 + 0.15 * h, x1 + 0.2 * w],
            [y0 + 0.1 * h, x0 + 0.45 * w, y1 + 0.1 * h, x1 + 0.45 * w],
            [y0 + 0.4 * h, x0 + 0.3 * w, y0 + 0.6 * h, x0 + 0.5 * w],
            [y0 - 0.5 * h, x0 - 0.5 * w, y0 + 0.5 * h, x0 + 0.5 * w],
        ]
    )


def _roi_projection(pose, photo_hw, box_in, scale):
    """Float64 P of an RoI (input pixels) resized to S x S: annotation-frame P, then the crop."""
    big_h, big_w = photo_hw
    fh = int(big_h * 300 / big_w)
    _, _, p300 = reference.camera(pose, photo_hw, (fh, 300))
    y0, x0, y1, x1 = np.asarray(box_in, np.float64) / scale * [fh / big_h, 300 / big_w, fh / big_h, 300 / big_w]
    crop = np.array([[S / (x1 - x0), 0, -S * x0 / (x1 - x0)], [0, S / (y1 - y0), -S * y0 / (y1 - y0)], [0, 0, 1]])
    return crop @ p300, np.array([y0, x0, y1, x1]), fh


def _reprojection_error(xyz, fg, p_roi, box_in, field_scale):
    """Distance in *field* pixels between each foreground target point's projection and its bin
    centre."""
    iy, ix = np.nonzero(fg)
    px, depth = reference.project(p_roi, xyz[fg].astype(np.float64))
    assert np.all(depth > 0)
    bin_h = (box_in[2] - box_in[0]) * field_scale[0] / S  # field pixels per bin
    bin_w = (box_in[3] - box_in[1]) * field_scale[1] / S
    return np.hypot((px[:, 0] - (ix + 0.5)) * bin_w, (px[:, 1] - (iy + 0.5)) * bin_h)


def _check_targets_reproject(pose, photo_hw, field, mask, boxes, field_scale):
    xyz, fg = roi_field_targets(jnp.asarray(field), jnp.asarray(mask), jnp.asarray(boxes, jnp.float32), field_scale, S)
    xyz, fg = np.asarray(xyz), np.asarray(fg)
    assert xyz.shape == (len(boxes), S, S, 3) and xyz.dtype == np.float32 and fg.shape == (len(boxes), S, S)
    assert np.all(xyz[~fg] == 0)
    errors = []
    for r, box in enumerate(boxes):
        assert fg[r].sum() > 20
        p_roi, box300, fh = _roi_projection(pose, photo_hw, box, SCALE)
        p_lib = camera.projection_matrix(
            camera.Pose.from_array(jnp.asarray(pose, jnp.float32)), fh, image_size=(S, S), crop_box=jnp.asarray(box300)
        )
        np.testing.assert_allclose(np.asarray(p_lib) / p_lib[2, 3], p_roi / p_roi[2, 3], rtol=1e-4, atol=1e-4 * np.abs(p_roi / p_roi[2, 3]).max())
        err = _reprojection_error(xyz[r], fg[r], p_roi, box, field_scale)
        assert err.max() < 1.0, (r, err.max())
        errors.append(err)
    errors = np.concatenate(errors)
    assert np.median(errors) < 0.02, np.median(errors)
    return xyz, fg


def test_targets_reproject_to_their_bin_centres(car):
    field_scale = np.asarray(input_to_field_scale(FIELD_HW, car["photo_hw"], SCALE))
    big_h, big_w = car["photo_hw"]
    np.testing.assert_allclose(field_scale, [FIELD_HW[0] / (big_h * SCALE), FIELD_HW[1] / (big_w * SCALE)], rtol=1e-6)
    boxes = _boxes(car["mask"], field_scale)
    xyz, fg = _check_targets_reproject(car["pose"], car["photo_hw"], car["field"], car["mask"], boxes, field_scale)
    # The tight box's target covers most of its bins; the shifted box truncates the object at
    # its left edge (the object ends inside it on the right); the box centred on the tight
    # box's top-left corner (and reaching past the photo's top-left) has no object in its
    # top-left part.
    assert fg[0].mean() > 0.5
    assert fg[2][:, 0].any() and fg[2][:, -1].sum() < fg[2][:, 0].sum()
    assert not fg[4][:10].any() and not fg[4][:, :10].any()


def test_targets_match_roi_align_reference(car):
    """Foreground = bilinear mask >= 0.5 and XYZ = bilinear(field) / bilinear(mask), sampled as
    Detectron2's RoIAlign with one sample per bin (boxes here in field pixels)."""
    field, mask = car["field"], car["mask"]
    boxes = _boxes(mask, (1.0, 1.0))
    xyz, fg = (np.asarray(a) for a in sample_roi_fields(jnp.asarray(field), jnp.asarray(mask), jnp.asarray(boxes, jnp.float32), S))
    table = np.concatenate([mask[..., None].astype(np.float64), field.astype(np.float64)], -1)
    ref = _ref_roi_align(table, boxes, S, 1.0, 1, True)
    m = ref[..., 0]
    ref_fg = m >= FOREGROUND_THRESHOLD
    clear = np.abs(m - FOREGROUND_THRESHOLD) > 1e-5
    np.testing.assert_array_equal(fg[clear], ref_fg[clear])
    both = fg & ref_fg
    np.testing.assert_allclose(xyz[both], ref[both][:, 1:] / m[both][:, None], atol=2e-6)
    # The normalisation matters: plain bilinear XYZ is pulled towards 0 at the silhouette.
    edge = both & (m < 0.9)
    assert edge.sum() > 10
    assert np.abs(ref[edge][:, 1:] - xyz[edge]).max() > 0.02


def test_flipped_field_reprojects_with_flipped_pose(car):
    """flip_field + flip_pose describe the mirrored photo: every flipped field pixel projects to
    its own centre through the flipped pose, and RoI targets of the flipped boxes reproject."""
    field, mask = (np.asarray(a) for a in flip_field(jnp.asarray(car["field"]), jnp.asarray(car["mask"])))
    np.testing.assert_array_equal(mask, car["mask"][:, ::-1])
    np.testing.assert_array_equal(field[..., [0, 1]], car["field"][:, ::-1][..., [0, 1]])
    np.testing.assert_array_equal(field[..., 2], -car["field"][:, ::-1, 2])
    pose = flip_pose(car["pose"])
    _, _, p_field = reference.camera(pose, car["photo_hw"], FIELD_HW)
    iy, ix = np.nonzero(mask)
    px, depth = reference.project(p_field, field[mask].astype(np.float64))
    assert np.all(depth > 0)
    err = np.hypot(px[:, 0] - (ix + 0.5), px[:, 1] - (iy + 0.5))
    assert err.max() < 0.05, err.max()
    # Without negating Z the mirrored field does not fit the flipped pose (the test can fail).
    bad, _ = reference.project(p_field, car["field"][:, ::-1][mask].astype(np.float64))
    assert np.median(np.hypot(bad[:, 0] - (ix + 0.5), bad[:, 1] - (iy + 0.5))) > 2.0

    field_scale = np.asarray(input_to_field_scale(FIELD_HW, car["photo_hw"], SCALE))
    boxes = flip_boxes(_boxes(car["mask"], field_scale), car["photo_hw"][1] * SCALE)
    _check_targets_reproject(pose, car["photo_hw"], field, mask, boxes, field_scale)


def test_flip_matches_preprocess_example(car):
    """At the input resolution (scale 1, no resize) the data pipeline's flipped field is
    exactly flip_field's."""
    h, w = FIELD_HW
    example = {
        "image": np.zeros((h, w, 3), np.uint8),
        "label": 0,
        "pose": car["pose"].astype(np.float32),
        "box": np.array([0, 0, h, w], np.float32),
        "mask": car["mask"].astype(np.uint8)[..., None],
        "location_field": car["field"].astype(np.float16),
    }
    out = preprocess_example(example, input_size=FIELD_HW, max_boxes=1, flip=True, with_fields=True)
    field, mask = flip_field(jnp.asarray(example["location_field"]), jnp.asarray(car["mask"]))
    np.testing.assert_array_equal(out["mask"], np.asarray(mask))
    np.testing.assert_array_equal(out["location_field"], np.asarray(field, np.float32))
    x_out = preprocess_example(example, input_size=FIELD_HW, max_boxes=1, flip=True, with_fields=True, symmetry_axis="x")
    np.testing.assert_array_equal(x_out["location_field"], np.asarray(flip_field(jnp.asarray(example["location_field"]), mask, "x")[0], np.float32))
    with pytest.raises(ValueError):
        flip_field(jnp.asarray(car["field"]), jnp.asarray(car["mask"]), "y")
