"""Tests only: a very small model on 32-64 px inputs, a few steps, frequent logs/checkpoints."""

from __future__ import annotations

import ml_collections

from fgpose.config import base_config, tiny_model_config


def get_config() -> ml_collections.ConfigDict:
    c = base_config()
    c.dataset.name = "synthetic_pose3d"
    c.dataset.builder_config = "tiny"
    c.data.input_size = (64, 64)
    c.data.num_workers = 0

    c.model = tiny_model_config()
    c.model.backbone.norm = "group"

    c.optim.base_lr = 0.01
    c.optim.warmup_steps = 2
    c.optim.decay_steps = (8,)
    c.train.global_batch_size = 4
    c.train.num_steps = 10
    c.train.log_every = 2
    c.train.eval_every = 0
    c.train.checkpoint_every = 5
    c.train.keep_checkpoints = 2
    c.train.final_eval = False
    c.eval.batch_size = 4
    c.eval.num_overlays = 2
    c.eval.max_examples = 8
    return c
