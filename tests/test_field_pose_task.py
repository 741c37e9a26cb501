"""Pose-from-field pre-training through ``fgpose.train`` (``config.task = 'field_pose'``).

Tiny sizes: the ``synthetic_pose3d/tiny`` CAD pool (8 procedural meshes, decimated), 16x16
rendered fields, an 8x8 network. Checks: the run trains (finite, decreasing loss on a fixed
batch is covered by the network's own tests), resumes bit-exactly after an interruption (the
pattern of ``tests/test_train.py``: 2 steps + stop + restart == 6 uninterrupted steps), and the
detector loads its weights (``model.field.pose_checkpoint``) whether frozen or fine-tuned.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from fgpose import distributed


def field_pose_config():
    from fgpose.config import field_pose_base_config, tiny_model_config

    c = field_pose_base_config()
    c.dataset.name = "synthetic_pose3d"
    c.dataset.builder_config = "tiny"
    c.model = tiny_model_config()
    c.field_pose.max_faces = 150
    c.field_pose.render_hw = (16, 16)
    c.field_pose.eval_batches = 1
    c.optim.base_lr = 0.05
    c.optim.warmup_steps = 2
    c.optim.decay_steps = (4,)
    c.train.global_batch_size = 4
    c.train.num_steps = 6
    c.train.log_every = 1
    c.train.checkpoint_every = 3
    c.train.keep_checkpoints = 2
    c.train.eval_every = 0
    c.train.final_eval = False
    c.train.tensorboard = False
    c.data.num_workers = 0
    return c


@pytest.fixture(scope="module")
def pool():
    from fgpose import field_pose_task

    return field_pose_task.cad_pool(field_pose_config())


def run(workdir, pool, stop_after=None, config=None):
    from fgpose import field_pose_task, train

    config = config or field_pose_config()
    losses = {}
    res = train.train_and_evaluate(
        config, workdir, stop_after=stop_after, progress=False,
        train_iterator_fn=lambda c, s, pi, pc: field_pose_task.make_train_iterator(c, s, pi, pc, pool=pool),
        eval_fn=lambda s, step: field_pose_task.evaluate(config, workdir, s, step, pool=pool),
        log_fn=lambda step, m: losses.__setitem__(step, m["loss"]))
    params = distributed.to_host(res["setup"].state["params"])
    flat = {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
            for path, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    return losses, flat, res


@pytest.fixture(scope="module")
def reference(tmp_path_factory, pool):
    work = tmp_path_factory.mktemp("field_pose_ref")
    losses, params, _ = run(work, pool)
    return losses, params, work


def test_pool_is_the_dataset_class_meshes_with_categories(pool):
    assert len(pool) == 8
    assert sorted({p.category for p in pool}) == ["airplane", "car"]
    assert all(p.mesh.num_faces <= 150 for p in pool)


def test_pretraining_trains_and_resumes_bit_exactly(tmp_path, reference, pool):
    from fgpose.checkpoint import CheckpointManager

    ref_losses, ref_params, _ = reference
    assert sorted(ref_losses) == [1, 2, 3, 4, 5, 6] and all(np.isfinite(v) for v in ref_losses.values())
    assert all(k.startswith("field_pose_net/") for k in ref_params)
    losses1, _, _ = run(tmp_path, pool, stop_after=2)
    mgr = CheckpointManager(tmp_path / "checkpoints")
    assert mgr.latest_step() == 2
    mgr.close()
    losses2, params, _ = run(tmp_path, pool)
    assert sorted(losses2) == [3, 4, 5, 6]
    for s in (1, 2):
        assert losses1[s] == ref_losses[s], s
    for s in (3, 4, 5, 6):
        assert losses2[s] == ref_losses[s], s
    assert params.keys() == ref_params.keys()
    for k in params:
        np.testing.assert_array_equal(params[k], ref_params[k], err_msg=k)


def test_evaluation_writes_clean_and_augmented_errors(tmp_path, reference, pool):
    from fgpose import field_pose_task
    from fgpose.train import setup

    config = field_pose_config()
    s = setup(config, 0, model_fn=field_pose_task.build_model)
    res = field_pose_task.evaluate(config, tmp_path, s, 7, pool=pool)
    assert res["count"] == 4
    for k in ("rot_median_deg_clean", "rot_median_deg_augmented", "rot_acc_pi_6_clean"):
        assert 0 <= res[k] <= 180, (k, res[k])
    assert (tmp_path / "eval" / "7.json").exists()


@pytest.mark.parametrize("finetune", [False, True])
def test_detector_loads_the_pretrained_network(reference, finetune):
    from fgpose import field_pose_task
    from fgpose.models.build import split_model
    from fgpose.models.detector import PoseDetector
    from flax import nnx

    _, ref_params, work = reference
    c = field_pose_config().model
    c.field.enabled = True
    c.field.finetune_pose_net = finetune
    graphdef, state = split_model(PoseDetector(c, 3, rngs=nnx.Rngs(5)))
    shardings = jax.tree.map(lambda x: x.sharding, state)
    new = field_pose_task.load_pose_net(work, state, shardings)
    part = "params" if finetune else "rest"
    flat = {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
            for path, v in jax.tree_util.tree_flatten_with_path(distributed.to_host(new[part]))[0]}
    loaded = {k: v for k, v in flat.items() if k.startswith("field_pose_net/")}
    assert loaded and loaded.keys() == ref_params.keys()
    for k, v in loaded.items():
        np.testing.assert_array_equal(v, ref_params[k], err_msg=k)
    # Everything else is untouched.
    old, now = (jax.tree.leaves(distributed.to_host(st["params"]["backbone"])) for st in (state, new))
    assert old and all(np.array_equal(a, b) for a, b in zip(old, now))


def test_stream_started_at_k_continues_the_same_stream(pool):
    from fgpose.synthetic.fields import location_field_stream

    kw = dict(batch_size=3, field_hw=(12, 12), seed=9)
    full = list(location_field_stream(pool, num_batches=3, **kw))
    late = list(location_field_stream(pool, start=2, num_batches=1, **kw))
    assert len(late) == 1
    for key in ("field", "mask", "pose", "mesh_index", "box"):
        np.testing.assert_array_equal(late[0][key], full[2][key], err_msg=key)
    assert not np.array_equal(full[1]["pose"], full[2]["pose"])


def test_true_fields_are_the_box_crops_of_the_dataset_fields(pool):
    """Examples laid out like the datasets' (full-photo field at its own resolution, box and
    image/size in photo pixels): their S x S crops agree with fields rendered directly in the
    box (crop_to_box=True) of the same poses, and the errors are those of the network on them."""
    from fgpose import field_pose_task
    from fgpose.synthetic.fields import location_field_stream

    s = 16
    kw = dict(batch_size=4, seed=21, num_batches=1, image_max_side=200)
    full = next(location_field_stream(pool, field_hw=(96, 96), crop_to_box=False, **kw))
    crop = next(location_field_stream(pool, field_hw=(s, s), crop_to_box=True, **kw))
    np.testing.assert_array_equal(full["pose"], crop["pose"])
    source = [{"location_field": full["field"][i], "mask": full["mask"][i][..., None].astype(np.uint8),
               "image/size": full["image_hw"][i], "box": full["box"][i], "pose": full["pose"][i]}
              for i in range(4)]
    config = field_pose_config()
    field, fg, pose = field_pose_task.true_fields(config, 3, s, source=source)
    assert field.shape == (3, s, s, 3) and fg.shape == (3, s, s)
    for i in range(3):
        both = (fg[i] > 0) & crop["mask"][i]
        union = (fg[i] > 0) | crop["mask"][i]
        assert both.sum() / union.sum() > 0.75, i
        assert np.median(np.abs(field[i][both] - crop["field"][i][both])) < 0.02, i
    config.model.field.size = s
    model = field_pose_task.build_model(config, 0, 0)
    errors = field_pose_task.true_field_errors(config, model, 3, source=source)
    from fgpose.models.field_pose import predict_quaternion
    from fgpose.models.field_pose_pretrain import pose_quaternion
    from fgpose.models.quaternion_fusion import quaternion_angle

    want = np.degrees(np.asarray(quaternion_angle(predict_quaternion(model.field_pose_net, field, fg),
                                                  pose_quaternion(pose))))
    np.testing.assert_allclose(errors, want, rtol=1e-5, atol=1e-4)
