"""pyrender (OSMesa/EGL) and TensorFlow in one process (both orders), in subprocesses
because the failure this guards against is a segfault or an abort at exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

RENDER = """
import numpy as np
from fgpose.pyrender_backend import PyrenderRenderer
r = PyrenderRenderer(32, 32)
r.set_mesh(np.array([[-.5, -.5, 0], [.5, -.5, 0], [0, .5, 0]], np.float32), np.array([[0, 1, 2]]))
depth = r.render_depth(np.eye(3), 2.0, np.array([[40., 0, 16], [0, 40, 16], [0, 0, 1]]))
assert (depth > 0).sum() > 50, (depth > 0).sum()
"""
TF = """
import tensorflow as tf
assert float(tf.reduce_sum(tf.ones(3))) == 3.0
"""


@pytest.mark.slow
@pytest.mark.parametrize("order", ["gl_then_tf", "tf_then_gl"])
def test_pyrender_and_tensorflow_share_a_process(order):
    code = RENDER + TF + RENDER if order == "gl_then_tf" else TF + RENDER + TF
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
