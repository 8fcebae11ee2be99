"""Packing of ternary codes: exact round trips and the documented byte layout."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from harden.dialects.ternary_pack import (
    dequantize_ternary,
    pack_ternary_2bit,
    packed_columns,
    scale_shape,
    ternary_linear_reference,
    unpack_ternary_2bit,
)
from harden.quant.ternary import ternarize

ternary_matrices = st.tuples(
    st.integers(1, 3), st.integers(1, 9), st.integers(1, 70)
).flatmap(lambda shape: arrays(np.int8, shape, elements=st.integers(-1, 1)))


@settings(max_examples=200, deadline=None)
@given(ternary_matrices)
def test_pack_unpack_round_trip_is_exact(ternary):
    packed = pack_ternary_2bit(ternary)
    assert packed.dtype == np.int8
    assert packed.shape == ternary.shape[:-1] + (packed_columns(ternary.shape[-1]),)
    np.testing.assert_array_equal(unpack_ternary_2bit(packed, ternary.shape[-1]), ternary)


def test_byte_layout_matches_the_documentation():
    # Columns 0..3 hold -1, 0, +1, -1 -> codes 0, 1, 2, 0 in bits 0-1, 2-3, 4-5, 6-7.
    # Column 4 is +1 (code 2) and pads with code 1 (zero) in the three unused slots.
    packed = pack_ternary_2bit(np.array([[-1, 0, 1, -1, 1]], np.int8))
    assert packed.view(np.uint8).tolist() == [[0b00_10_01_00, 0b01_01_01_10]]


def test_unpack_rejects_code_3_and_wrong_width():
    with pytest.raises(ValueError, match="unused 2-bit code 3"):
        unpack_ternary_2bit(np.array([[-1]], np.int8), 4)  # 0xFF: all codes 3
    with pytest.raises(ValueError, match="expected 2"):
        unpack_ternary_2bit(np.zeros((1, 3), np.int8), 5)


def test_pack_rejects_non_ternary_values():
    with pytest.raises(ValueError, match="ternary values"):
        pack_ternary_2bit(np.array([[2]], np.int8))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 12),
    st.integers(1, 45),
    st.sampled_from(["tensor", "channel", "group"]),
    st.integers(1, 16),
    st.integers(1, 2),
    st.sampled_from(["absmean", "twn"]),
    st.integers(0, 2**31 - 1),
)
def test_ternary_linear_reference_matches_dequantized_matmul(out_f, in_f, kind, group, planes, method, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((out_f, in_f)).astype(np.float32)
    group = min(group, in_f)
    tw = ternarize(w, method, kind, group, planes)
    assert tw.scales.shape == scale_shape(kind, planes, out_f, in_f, tw.group_size)
    packed = pack_ternary_2bit(tw.ternary)
    np.testing.assert_array_equal(dequantize_ternary(packed, tw.scales, in_f, tw.group_size), tw.dequantize())
    x = rng.standard_normal((3, in_f)).astype(np.float32)
    bias = rng.standard_normal(out_f).astype(np.float32)
    y = ternary_linear_reference(x, packed, tw.scales, in_f, tw.group_size, bias)
    np.testing.assert_allclose(y, x @ tw.dequantize().T + bias, rtol=1e-5, atol=1e-5)
