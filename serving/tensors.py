"""Conversion between `tensorflow.TensorProto` messages and NumPy arrays.

Both the server and the client use these helpers, so they depend only on
NumPy, the TensorFlow protos and `tf.make_ndarray`.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

# TensorProto field that carries the values of each dtype when a tensor is
# written as repeated fields, as TensorFlow Serving writes its responses
# (Tensor::AsProtoField). Dtypes missing here use `tensor_content` instead.
_VALUE_FIELD_BY_DTYPE: dict[int, str] = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_STRING: "string_val",
}


def dtype_name(dtype: int) -> str:
    """Return the `DataType` enum name of `dtype`, e.g. "DT_STRING"."""
    try:
        return types_pb2.DataType.Name(dtype)
    except ValueError:
        return f"DT_<unknown {dtype}>"


def format_shape(shape: tensor_shape_pb2.TensorShapeProto | Sequence[int]) -> str:
    """Format a shape as "[-1,-1]", with -1 for an unknown dimension.

    Args:
        shape: A `TensorShapeProto` or a sequence of dimension sizes.
    """
    if isinstance(shape, tensor_shape_pb2.TensorShapeProto):
        if shape.unknown_rank:
            return "<unknown rank>"
        sizes = [dim.size for dim in shape.dim]
    else:
        sizes = list(shape)
    return "[" + ",".join(str(size) for size in sizes) + "]"


def is_shape_compatible(
    expected: tensor_shape_pb2.TensorShapeProto, seen: Sequence[int]
) -> bool:
    """Return whether a tensor of shape `seen` fits the signature shape `expected`.

    An unknown rank accepts any shape. Otherwise the ranks must be equal and
    each dimension of known size (>= 0) must match.

    Args:
        expected: Shape from the signature's `TensorInfo`.
        seen: Dimension sizes of the tensor in the request.
    """
    if expected.unknown_rank:
        return True
    if len(expected.dim) != len(seen):
        return False
    return all(
        dim.size < 0 or dim.size == size
        for dim, size in zip(expected.dim, seen, strict=True)
    )


def shape_of(proto: tensor_pb2.TensorProto) -> list[int]:
    """Return the dimension sizes that `proto.tensor_shape` declares."""
    return [dim.size for dim in proto.tensor_shape.dim]


def ndarray_to_tensor_proto(
    array: Any, dtype: tf.DType | None = None
) -> tensor_pb2.TensorProto:
    """Convert an array to a `TensorProto` with the values in repeated fields.

    Strings go into `string_val` (a `str` is encoded as UTF-8) and numbers
    into the typed field (`float_val`, `int64_val`, ...), the layout that
    TensorFlow Serving uses for its responses. Clients that read
    `response.outputs["scores"].float_val` directly therefore work against
    both servers. Dtypes without a repeated field (half, complex) fall back to
    `tf.make_tensor_proto`.

    Args:
        array: Array-like value. A nested list of `str` or `bytes` becomes a
            DT_STRING tensor.
        dtype: Dtype of the proto. Inferred from `array` when None.
    """
    if dtype is None:
        dtype = _infer_dtype(array)
    if dtype == tf.string:
        values = np.asarray(array, dtype=object)
    else:
        values = np.asarray(array, dtype=dtype.as_numpy_dtype)

    field = _VALUE_FIELD_BY_DTYPE.get(dtype.as_datatype_enum)
    if field is None:
        return tf.make_tensor_proto(values, dtype=dtype)

    proto = tensor_pb2.TensorProto(dtype=dtype.as_datatype_enum)
    for size in values.shape:
        proto.tensor_shape.dim.add(size=size)
    flat = values.reshape(-1)
    if dtype == tf.string:
        proto.string_val.extend(_to_bytes(value) for value in flat)
    else:
        getattr(proto, field).extend(flat.tolist())
    return proto


def tensor_proto_to_ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """Convert a `TensorProto` to a NumPy array.

    Accepts both layouts: typed repeated fields and packed `tensor_content`.
    DT_STRING tensors become object arrays of `bytes`.

    Args:
        proto: The tensor to convert.

    Raises:
        ValueError: If the values do not fit the declared shape and dtype.
    """
    return tf.make_ndarray(proto)


def _infer_dtype(array: Any) -> tf.DType:
    values = np.asarray(array)
    if values.dtype.kind in ("U", "S", "O"):
        return tf.string
    return tf.as_dtype(values.dtype)


def _to_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(
        f"String tensors accept str or bytes elements, got {type(value).__name__}: "
        f"{value!r}."
    )
