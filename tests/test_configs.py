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
    spec = importlib.util.spec_from_file_location(f"cfg_{name}", ROOT / "configs" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config()


@pytest.mark.parametrize("name", CONFIGS)
def test_configs_validate(name):
    from fgpose.train import validate_config

    c = load(name)
    if name == "compcars3d_ft":
        c.train.init_checkpoint = None  # the placeholder path does not exist here
    validate_config(c, num_devices=1, process_count=1)
    assert c.train.global_batch_size % 8 == 0 or name == "tiny"


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
    from fgpose.train import ConfigError, validate_config

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
    from fgpose.train import ConfigError, validate_config

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
