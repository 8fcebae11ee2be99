"""ROM images: each weight matrix exactly as the chip holds it, and the way back.

A weight-reading op of the harden-level graph becomes one `MatrixImage`: its codes (the
ROM), its scales, mins and bias as separate little-endian files, and the description a
chip builder needs to read them. The images, per precision:

* ternary (`harden.ternary_linear`): the dialect's 2-bit packing unchanged (ternary_pack.py:
  code t + 1, four columns per byte from the least significant bits, rows padded with
  code 1), shape [planes, out_features, ceil(in_features / 4)]; scales f32.
* n-bit integer (`harden.int_linear`, `harden.int_embedding`): each code in exactly `bits`
  bits, row by row, least significant bits first, every row padded to a whole byte.
  Symmetric grids store the two's complement of q (sign-extended on reading), affine grids
  (with mins) the unsigned code; scales and mins f16 [rows, in_features / group_size].
* int8 (`harden.int8_linear`): the i8 codes [out_features, in_features]; scales f32.
* float (`aten.linear`, `aten.embedding`, `harden.fused_qkv` kept in float): the values in
  the machine's float storage width (`float_weight_bytes`: f16 on `tsp`), else the IR's.

`read_codes` inverts a ROM image, so a test can check that the chip holds exactly the
weights the op computes with.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import numpy as np

from harden.core.tensor_types import tensor_info
from harden.core.weights import WeightStore
from harden.quant.precision import op_precision

# IR element types a float weight may have, and the numpy type each storage width uses.
_FLOAT_STORAGE = {2: np.float16, 4: np.float32}
_FILE_NAME = re.compile(r"[^A-Za-z0-9._+#-]")


class RomError(Exception):
    """A weight the export cannot read (a missing parameter file or tensor); names it."""


@dataclass
class Blob:
    """One file of an image: raw little-endian bytes with their element type and shape."""

    data: bytes
    dtype: str
    shape: tuple[int, ...]

    def describe(self, file: str) -> dict:
        return {"file": file, "dtype": self.dtype, "shape": list(self.shape), "bytes": len(self.data),
                "sha256": hashlib.sha256(self.data).hexdigest()}


@dataclass
class MatrixImage:
    """A weight matrix as the chip holds it (see the module docstring)."""

    name: str
    precision: str  # int4g64, t1g64, int8, f16, f32
    shape: tuple[int, int]  # [out_features (or table rows), in_features (or dim)]
    code_bits: int  # bits per stored code (16/32 for float weights)
    packing: str  # how the ROM's bytes hold the codes
    rom: Blob
    extras: dict[str, Blob] = field(default_factory=dict)  # scales, mins, bias


def _dtype_name(array: np.ndarray) -> str:
    return {np.float32: "f32", np.float16: "f16", np.int8: "i8", np.uint8: "u8", np.int64: "i64", np.int32: "i32",
            np.float64: "f64", np.bool_: "i1", np.int16: "i16"}[array.dtype.type]


def blob(array: np.ndarray) -> Blob:
    array = np.ascontiguousarray(array)
    return Blob(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes(), _dtype_name(array), tuple(array.shape))


def pack_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """Codes (any integer type, rows x columns) as `bits`-bit fields, least significant bits
    first, each row padded to a whole byte: u8 [rows, ceil(columns * bits / 8)]."""
    rows, columns = codes.shape
    fields = (codes.astype(np.int64) & ((1 << bits) - 1)).astype(np.uint16)
    bit_planes = (fields[:, :, None] >> np.arange(bits, dtype=np.uint16)) & 1  # [rows, columns, bits]
    return np.packbits(bit_planes.reshape(rows, columns * bits).astype(np.uint8), axis=1, bitorder="little")


def unpack_bits(packed: np.ndarray, columns: int, bits: int, signed: bool) -> np.ndarray:
    """The inverse of `pack_bits`: i16 [rows, columns], sign-extended when `signed`."""
    rows = packed.shape[0]
    bit_planes = np.unpackbits(packed, axis=1, bitorder="little")[:, : columns * bits].reshape(rows, columns, bits)
    values = (bit_planes.astype(np.int16) << np.arange(bits, dtype=np.int16)).sum(axis=2, dtype=np.int16)
    if signed:
        values = np.where(values >= 1 << (bits - 1), values - (1 << bits), values).astype(np.int16)
    return values


def read_codes(image: dict, rom: bytes) -> np.ndarray:
    """The codes a ROM image holds, in the IR's form: the ternary packing's bytes as i8, the
    n-bit and int8 codes as i8, float weights as f32. `image` is the layer's chip.json entry."""
    shape, bits, packing = image["shape"], image["code_bits"], image["packing"]
    if packing == "ternary-2bit":
        return np.frombuffer(rom, np.int8).reshape(image["rom_shape"]).copy()
    if packing.startswith("int-bits"):
        packed = np.frombuffer(rom, np.uint8).reshape(shape[0], -1)
        return unpack_bits(packed, shape[1], bits, signed=packing == "int-bits-signed").astype(np.int8)
    if packing == "int8":
        return np.frombuffer(rom, np.int8).reshape(shape).copy()
    dtype = {"f16": np.float16, "f32": np.float32}[packing]
    return np.frombuffer(rom, dtype).reshape(image["rom_shape"]).astype(np.float32)


def file_name(weight_name: str) -> str:
    """A weight name as a file name (dots and `+` kept: `layers.0.attention.wq+wk+wv.weight`)."""
    return _FILE_NAME.sub("_", weight_name)


def _value(store: WeightStore, value, what: str, op_label: str) -> np.ndarray:
    try:
        array = store.value_of(value)
    except Exception as e:  # WeightError or a parameter file safetensors cannot read
        raise RomError(f"{op_label}: cannot read its {what}: {e}") from None
    if array is None:
        raise RomError(f"{op_label}: its {what} is not a constant")
    return array


def _segments(op) -> list[int]:
    from torch_mlir import ir

    attrs = op.operation.attributes
    return list(ir.DenseI32ArrayAttr(attrs["operandSegmentSizes"])) if "operandSegmentSizes" in attrs else []


def _optional_operand(op, segment: int):
    """The operand of optional segment `segment` (harden ops list input, weight, scales,
    then optional ones in declaration order), or None."""
    sizes = _segments(op)
    if not sizes or segment >= len(sizes) or sizes[segment] == 0:
        return None
    return op.operands[sum(sizes[:segment])]


def _quantized_extras(op, store: WeightStore, op_label: str, mins_segment: int | None, bias_segment: int | None) -> dict[str, Blob]:
    """A quantized op's scales (its third operand) and its optional mins and bias, found by
    their operand segments."""
    extras = {"scales": blob(_value(store, op.operands[2], "scales", op_label))}
    for kind, segment in (("mins", mins_segment), ("bias", bias_segment)):
        value = _optional_operand(op, segment) if segment is not None else None
        if value is not None:
            extras[kind] = blob(_value(store, value, kind, op_label))
    return extras


def matrix_image(op, store: WeightStore, float_weight_bytes: int | None, op_label: str, weight_name: str) -> MatrixImage | None:
    """The image of a weight-reading op, or None for an op without a constant weight."""
    name = op.operation.name
    precision = op_precision(op)
    if precision is None:
        return None
    attrs = op.operation.attributes

    def integer(key: str) -> int:
        from torch_mlir import ir

        return ir.IntegerAttr(attrs[key]).value

    if name == "harden.ternary_linear":
        codes = _value(store, op.operands[1], "packed weight", op_label)
        extras = _quantized_extras(op, store, op_label, mins_segment=None, bias_segment=3)
        shape = (integer("out_features"), integer("in_features"))
        return MatrixImage(weight_name, precision, shape, 2, "ternary-2bit", blob(codes.view(np.int8)), extras)
    if name in ("harden.int_linear", "harden.int_embedding"):
        codes = _value(store, op.operands[1], "codes", op_label)
        bits = integer("bits")
        extras = _quantized_extras(op, store, op_label, mins_segment=3, bias_segment=4 if name == "harden.int_linear" else None)
        packing = "int-bits-unsigned" if "mins" in extras else "int-bits-signed"
        return MatrixImage(weight_name, precision, tuple(codes.shape), bits, packing, blob(pack_bits(codes, bits)), extras)
    if name == "harden.int8_linear":
        codes = _value(store, op.operands[1], "codes", op_label)
        extras = _quantized_extras(op, store, op_label, mins_segment=None, bias_segment=3)
        return MatrixImage(weight_name, "int8", tuple(codes.shape), 8, "int8", blob(codes.view(np.int8)), extras)
    # Float weights: fused_qkv's weight, a linear's right side, an embedding's table.
    weight = op.operands[0] if name == "torch.aten.embedding" else op.operands[1]
    if store.constant_op(weight) is None:
        return None  # an activation product, not a weight
    values = _value(store, weight, "weight", op_label)
    storage = _FLOAT_STORAGE.get(float_weight_bytes or values.dtype.itemsize, values.dtype.type)
    stored = values.astype(storage)
    extras = {}
    bias = _optional_operand(op, 2) if name == "harden.fused_qkv" else (op.operands[2] if name == "torch.aten.linear" and len(op.operands) > 2 else None)
    if bias is not None and store.constant_op(bias) is not None and tensor_info(bias.type) is not None:
        extras["bias"] = blob(_value(store, bias, "bias", op_label))
    dtype = _dtype_name(stored)
    shape = tuple(values.shape) if values.ndim == 2 else (int(np.prod(values.shape[:-1])), values.shape[-1])
    return MatrixImage(weight_name, dtype, shape, 8 * stored.itemsize, dtype, blob(stored), extras)
