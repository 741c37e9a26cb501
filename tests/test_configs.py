"""Experiment configs load and validate; invalid values and a missing dataset fail at start
with messages that name the fix (library calls and the ``python -m fgpose.train`` CLI)."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = ("base", "synthetic", "stanford_cars3d", "compcars3d", "compcars3d_ft", "fgvc_aircraft3d", "tiny")


def load(name):
    """``configs/<name>.py`` loaded by path, as ``--config`` (ml_collections config_flags) does."""
    spec = importlib.util.spec_from_file_location(f"cfg_{name}", ROOT / "configs" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config()


@pytest.mark.parametrize("name", CONFIGS)
def test_configs_validate(name):
    from fgpose.config import validate_config

    c = load(name)
    if name == "compcars3d_ft":
        c.train.init_checkpoint = None  # the placeholder path does not exist here
    validate_config(c, num_devices=1, process_count=1)
    assert c.train.global_batch_size % 8 == 0 or name == "tiny"


# Values of the configs as they were when each file still repeated its base in place (recorded
# from that code): every path -> value that differs between experiments, or that a config file
# sets. A change here must be intended.
EXPECTED = {
    "base": {"dataset.name": "stanford_cars3d", "dataset.builder_config": "v1", "dataset.num_classes": None,
             "dataset.auto_build": False, "data.input_size": (800, 1344), "data.num_workers": 2,
             "model.backbone.depth": 50, "model.backbone.width": 64, "model.backbone.norm": "frozen_bn",
             "model.fpn.channels": 256, "model.anchors.sizes": (32, 64, 128, 256, 512), "model.rpn.pre_nms_topk": 2000,
             "model.roi.batch_size_per_image": 512, "model.roi.output_size": 7, "model.box_head.fc_dim": 1024,
             "model.pose_head.fc_dim": 1024, "model.loss.pose_beta": 1.0, "model.test.detections_per_image": 100,
             "optim.base_lr": 0.02, "optim.warmup_steps": 500, "optim.warmup_factor": 1.0 / 3.0,
             "optim.decay_steps": (60_000, 80_000), "optim.clip_norm": 10.0, "train.global_batch_size": 16,
             "train.num_steps": 90_000, "train.eval_every": 10_000, "train.checkpoint_every": 5_000,
             "train.keep_checkpoints": 3, "train.log_every": 20, "train.init_checkpoint": None,
             "eval.batch_size": 8, "eval.num_overlays": 8, "eval.max_examples": None},
    "stanford_cars3d": {"dataset.name": "stanford_cars3d", "dataset.builder_config": "v2",
                        "dataset.num_classes": 196, "train.num_steps": 18_000, "optim.decay_steps": (12_000, 16_000),
                        "train.eval_every": 3_000, "train.checkpoint_every": 1_000, "optim.base_lr": 0.02},
    "compcars3d": {"dataset.name": "compcars3d", "dataset.builder_config": "v1", "dataset.num_classes": 113,
                   "train.num_steps": 9_000, "optim.decay_steps": (6_000, 8_000), "train.eval_every": 1_500,
                   "train.checkpoint_every": 500, "optim.base_lr": 0.02, "optim.warmup_steps": 500},
    "compcars3d_ft": {"dataset.name": "compcars3d", "dataset.builder_config": "v1", "dataset.num_classes": 113,
                      "train.init_checkpoint": "runs/stanford_cars3d", "optim.base_lr": 0.002,
                      "optim.warmup_steps": 100, "train.num_steps": 4_000, "optim.decay_steps": (3_000,),
                      "train.eval_every": 1_000, "train.checkpoint_every": 500},
    "fgvc_aircraft3d": {"dataset.name": "fgvc_aircraft3d", "dataset.builder_config": "v2",
                        "dataset.num_classes": 100, "train.num_steps": 15_000, "optim.decay_steps": (10_000, 13_300),
                        "train.eval_every": 2_500, "train.checkpoint_every": 1_000},
    "synthetic": {"dataset.name": "synthetic_pose3d", "dataset.builder_config": "small", "dataset.num_classes": None,
                  "dataset.auto_build": True, "data.input_size": (128, 128), "data.num_workers": 1,
                  "model.backbone.depth": 18, "model.backbone.width": 16, "model.backbone.norm": "group",
                  "model.fpn.channels": 64, "model.anchors.sizes": (16, 32, 64, 128, 256), "model.rpn.pre_nms_topk": 300,
                  "model.rpn.post_nms_topk": 64, "model.rpn.batch_size_per_image": 64,
                  "model.roi.batch_size_per_image": 32, "model.roi.output_size": 7, "model.box_head.fc_dim": 128,
                  "model.pose_head.fc_dim": 512, "model.test.detections_per_image": 10, "model.loss.pose_beta": 0.1,
                  "optim.base_lr": 0.02, "optim.warmup_steps": 100, "optim.decay_steps": (2_800, 3_400),
                  "train.global_batch_size": 8, "train.num_steps": 3_600, "train.log_every": 100,
                  "train.eval_every": 0, "train.checkpoint_every": 600, "train.keep_checkpoints": 2,
                  "eval.batch_size": 16, "eval.num_overlays": 8},
    "tiny": {"dataset.name": "synthetic_pose3d", "dataset.builder_config": "tiny", "dataset.num_classes": None,
             "data.input_size": (64, 64), "data.num_workers": 0, "model.backbone.depth": 18,
             "model.backbone.width": 8, "model.backbone.norm": "group", "model.fpn.channels": 16,
             "model.anchors.sizes": (8, 16, 32, 64, 128), "model.rpn.pre_nms_topk": 64, "model.rpn.post_nms_topk": 16,
             "model.rpn.batch_size_per_image": 32, "model.roi.batch_size_per_image": 8, "model.roi.output_size": 4,
             "model.box_head.fc_dim": 32, "model.pose_head.fc_dim": 32, "model.test.detections_per_image": 5,
             "optim.base_lr": 0.01, "optim.warmup_steps": 2, "optim.decay_steps": (8,),
             "train.global_batch_size": 4, "train.num_steps": 10, "train.log_every": 2, "train.eval_every": 0,
             "train.checkpoint_every": 5, "train.keep_checkpoints": 2, "train.final_eval": False,
             "eval.batch_size": 4, "eval.num_overlays": 2, "eval.max_examples": 8},
}


@pytest.mark.parametrize("name", CONFIGS)
def test_configs_have_their_recorded_values(name):
    before = list(sys.path)
    c = load(name)
    assert sys.path == before  # no path hacks
    for path, value in EXPECTED[name].items():
        node = c
        for part in path.split("."):
            node = node[part]
        assert node == value and type(node) is type(value), (path, node, value)


def test_defaults_are_written_once():
    """The model section of every config is the one of fgpose.config (no second copy of the
    defaults), and the detector keeps no fallbacks of its own: a missing field is an error."""
    import ml_collections
    from flax import nnx

    from fgpose.config import base_config, model_config, tiny_model_config
    from fgpose.models.detector import PoseDetector

    assert base_config().model.to_dict() == model_config().to_dict()
    assert load("stanford_cars3d").model.to_dict() == model_config().to_dict()
    partial = ml_collections.ConfigDict(tiny_model_config().to_dict())
    del partial["compute_dtype"]  # the first field the detector reads
    with pytest.raises(AttributeError, match="compute_dtype"):
        PoseDetector(partial, 3, rngs=nnx.Rngs(0))


def test_paper_configs_use_r50_fpn_at_paper_size():
    for name in ("stanford_cars3d", "compcars3d", "compcars3d_ft", "fgvc_aircraft3d"):
        c = load(name)
        assert c.model.backbone.depth == 50 and c.model.fpn.channels == 256
        assert tuple(c.data.input_size) == (800, 1344)
    assert load("compcars3d").dataset.num_classes == 113
    assert load("stanford_cars3d").dataset.num_classes == 196
    assert load("fgvc_aircraft3d").dataset.num_classes == 100


@pytest.mark.parametrize(
    "field, value, fix",
    [
        ("model.backbone.depth", 19, "--config.model.backbone.depth=50"),
        ("train.global_batch_size", 6, "--config.train.global_batch_size=4"),  # 4 devices
        ("eval.batch_size", 3, "--config.eval.batch_size=4"),
        ("data.input_size", (100, 130), "(128, 160)"),
        ("optim.decay_steps", (80, 60), "increasing"),
        ("train.param_sharding", "zero3", "'replicated'"),
        ("model.compute_dtype", "float16", "bfloat16"),
        ("train.init_checkpoint", "/nonexistent/run", "stanford_cars3d"),
    ],
)
def test_invalid_values_name_the_fix(field, value, fix):
    from fgpose.config import ConfigError, validate_config

    c = load("tiny")
    node = c
    *parents, leaf = field.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value
    with pytest.raises(ConfigError) as info:
        validate_config(c, num_devices=4, process_count=1)
    msg = str(info.value)
    assert field in msg and fix in msg, msg


def test_mesh_shape_must_cover_devices():
    from fgpose.config import ConfigError, validate_config

    c = load("tiny")
    c.train.mesh_shape.data = 3
    with pytest.raises(ConfigError, match="mesh_shape.data=-1"):
        validate_config(c, num_devices=4, process_count=1)


def _cli(*args, timeout=120):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "fgpose.train", *args], cwd=str(ROOT), env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_cli_missing_dataset_names_the_build_command(tmp_path):
    r = _cli("--config", "configs/tiny.py", "--workdir", str(tmp_path / "w"),
             f"--config.dataset.data_dir={tmp_path / 'no_data'}")
    assert r.returncode != 0
    err = r.stderr
    assert "synthetic_pose3d" in err and "build" in err.lower(), err[-3000:]
    assert not (tmp_path / "w" / "checkpoints").exists()  # failed before doing anything


def test_cli_invalid_override_fails_before_work(tmp_path):
    r = _cli("--config", "configs/tiny.py", "--workdir", str(tmp_path / "w"), "--config.model.backbone.depth=19",
             "--config.train.global_batch_size=0")
    assert r.returncode != 0
    assert "model.backbone.depth=19" in r.stderr and "train.global_batch_size=0" in r.stderr, r.stderr[-3000:]
