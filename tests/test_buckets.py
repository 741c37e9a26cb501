"""Tests for fgpose.buckets: each rule on a table of inputs against the sizes the code
computed before the rules were gathered in one module (``example_geometry.canvas_side`` /
``canvas_hw`` / ``count_bucket``, the refine CLI's ``_bucket`` and ``_round_up(h, 16)``,
``synthetic.scene._bucket``, ``visibility``'s multiple of 4096 and ``synthetic.poses``'
candidate batch length), written out as literal numbers."""

from __future__ import annotations

import numpy as np
import pytest

from fgpose import buckets


def _check(rule, inputs, expected):
    assert [rule(n) for n in inputs] == expected


def test_canvas_side():
    _check(
        buckets.canvas_side,
        [1, 5, 31, 32, 33, 63, 64, 65, 200, 225, 255, 256, 257, 300, 427, 448, 449, 480, 512, 513, 640, 641,
         1000, 1024, 1025],
        [32, 32, 32, 32, 40, 64, 64, 80, 224, 256, 256, 256, 320, 320, 448, 448, 512, 512, 512, 640, 640, 768,
         1024, 1024, 1280],
    )
    _check(lambda n: buckets.canvas_side(n, minimum=4), [1, 3, 4, 5, 6, 7, 9, 10, 11, 13, 17],
           [4, 4, 4, 5, 6, 7, 10, 10, 12, 14, 20])


def test_canvas_hw():
    cases = [((300, 427), None), ((300, 427), 320), ((200, 150), 640), ((1000, 1), None), ((427, 640), 640),
             ((700, 640), 640)]
    assert [buckets.canvas_hw(hw, cap) for hw, cap in cases] == [
        (320, 448), (448, 448), (640, 640), (1024, 32), (640, 640), (768, 768)]


def test_count_bucket():
    _check(
        buckets.count_bucket,
        [1, 1023, 1024, 1025, 1536, 1537, 2047, 2048, 2049, 3072, 3073, 20000, 24576, 24577, 29168, 100000],
        [1024, 1024, 1024, 1536, 1536, 2048, 2048, 2048, 3072, 3072, 4096, 24576, 24576, 32768, 32768, 131072],
    )
    _check(lambda n: buckets.count_bucket(n, minimum=1), [1, 2, 3, 4, 5, 6, 7, 9, 11, 13, 100],
           [1, 2, 3, 4, 6, 6, 8, 12, 12, 16, 128])


def test_refine_count_bucket():
    _check(
        buckets.refine_count_bucket,
        [-3, 0, 1, 16, 17, 18, 19, 31, 32, 33, 35, 100, 255, 256, 257, 3000, 3072, 3073, 7500, 29168],
        [16, 16, 16, 16, 18, 18, 20, 32, 32, 36, 36, 104, 256, 256, 288, 3072, 3072, 3328, 7680, 30720],
    )


def test_frame_height_bucket_and_round_up():
    inputs = [0, 1, 15, 16, 17, 200, 225, 224, 240, 241, 450]
    expected = [0, 16, 16, 16, 32, 208, 240, 224, 240, 256, 464]
    _check(buckets.frame_height_bucket, inputs, expected)
    _check(lambda n: buckets.round_up(n, buckets.HEIGHT_MULTIPLE), inputs, expected)
    assert buckets.HEIGHT_MULTIPLE == 16
    assert [buckets.round_up(n, 7) for n in (-5, 0, 1, 7, 8, 700)] == [0, 0, 7, 7, 14, 700]


def test_photo_canvas_side():
    _check(buckets.photo_canvas_side, [0, 1, 200, 255, 256, 257, 300, 512, 513, 640, 1000],
           [256, 256, 256, 256, 256, 512, 512, 512, 768, 768, 1024])


def test_visibility_face_bucket():
    _check(buckets.visibility_face_bucket, [0, 1, 4095, 4096, 4097, 8192, 19000, 29168, 32768, 32769],
           [0, 4096, 4096, 4096, 8192, 8192, 20480, 32768, 32768, 36864])


def test_pow2_sample_count():
    _check(buckets.pow2_sample_count, [1, 2, 42, 43, 44, 85, 86, 87, 100, 170, 171, 1000, 8192],
           [64, 64, 64, 128, 128, 128, 256, 256, 256, 256, 512, 2048, 16384])


def test_octave_round_up_bounds():
    """Independent of the tables: the result is the smallest bucket >= n among the
    ``steps + 1`` evenly spaced buckets ``2**k, ..., 2**(k+1)`` of n's octave (every integer
    when the octave has fewer than ``steps`` integers), and pads by less than ``n / steps``."""
    rng = np.random.default_rng(0)
    for steps in (1, 2, 4, 8, 16):
        for n in list(range(1, 300)) + rng.integers(300, 10**9, 300).tolist():
            k = n.bit_length() - 1
            if 2**k >= steps:
                octave = [2**k + j * 2**k // steps for j in range(steps + 1)]
            else:
                octave = list(range(2**k, 2 ** (k + 1) + 1))
            got = buckets.octave_round_up(n, steps)
            assert got == min(m for m in octave if m >= n), (n, steps)
            assert got - n < max(1, n / steps)


def test_bad_arguments():
    with pytest.raises(ValueError):
        buckets.octave_round_up(0, 4)
    with pytest.raises(ValueError):
        buckets.octave_round_up(10, 3)
    with pytest.raises(ValueError):
        buckets.canvas_side(10, minimum=0)
    with pytest.raises(ValueError):
        buckets.count_bucket(10, minimum=0)
