"""Ternary quantization rules: absmean, twn, exact conversion of ternary weights, two planes."""

import numpy as np
import pytest

from harden.quant.ternary import ternarize


@pytest.fixture
def weight():
    return np.random.default_rng(0).standard_normal((16, 40)).astype(np.float32)


def test_absmean_per_channel_follows_bitnet(weight):
    tw = ternarize(weight, "absmean", "channel")
    scale = np.abs(weight).mean(axis=1)
    np.testing.assert_allclose(tw.scales[0, :, 0], scale, rtol=1e-6)
    expected = np.clip(np.rint(weight / scale[:, None]), -1, 1)
    np.testing.assert_array_equal(tw.ternary[0], expected)


def test_twn_per_tensor_threshold_and_scale(weight):
    tw = ternarize(weight, "twn", "tensor")
    mean_abs = np.abs(weight).mean()
    kept = np.abs(weight) > 0.7 * mean_abs
    np.testing.assert_array_equal(tw.ternary[0], np.sign(weight) * kept)
    np.testing.assert_allclose(tw.scales[0, 0, 0], np.abs(weight)[kept].mean(), rtol=1e-6)


@pytest.mark.parametrize("method", ["absmean", "twn"])
@pytest.mark.parametrize("kind,group", [("tensor", 0), ("channel", 0), ("group", 8), ("group", 7)])
@pytest.mark.parametrize("planes", [1, 2])
def test_already_ternary_weights_convert_exactly(method, kind, group, planes, weight):
    ternary_weight = ternarize(weight, "absmean", kind, group).dequantize()
    tw = ternarize(ternary_weight, method, kind, group, planes)
    assert tw.exact
    np.testing.assert_array_equal(tw.dequantize(), ternary_weight)


def test_second_plane_reduces_the_error(weight):
    one = ternarize(weight, "absmean", "group", 8, planes=1).dequantize()
    two = ternarize(weight, "absmean", "group", 8, planes=2).dequantize()
    assert np.linalg.norm(weight - two) < 0.8 * np.linalg.norm(weight - one)


def test_group_scales_cover_a_short_last_group(weight):
    tw = ternarize(weight, "absmean", "group", 16)  # 40 columns: groups of 16, 16, 8
    assert tw.scales.shape == (1, 16, 3)
    np.testing.assert_allclose(tw.scales[0, :, 2], np.abs(weight[:, 32:]).mean(axis=1), rtol=1e-6)


def test_all_zero_weight_stays_zero():
    tw = ternarize(np.zeros((2, 5), np.float32), "absmean", "channel")
    assert not tw.ternary.any() and not tw.scales.any()
