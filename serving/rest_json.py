"""JSON request and response bodies of TensorFlow Serving's REST predict API.

Two request formats exist:

* Row format, `{"instances": [...]}`: one entry per example. For a signature
  with one input, an entry is the input value (or `{"<input>": value}`). For
  several inputs, an entry is an object with one key per input. The response
  is `{"predictions": [...]}` with one entry per example, which is an object
  of outputs when the signature has several outputs.
* Columnar format, `{"inputs": ...}`: the value of the single input, or an
  object with one key per input, each holding the whole batch. The response
  is `{"outputs": ...}`, a value or an object of outputs.

String values are JSON strings, sent to the model as UTF-8. Binary strings
can be sent as `{"b64": "<base64>"}`. String outputs whose name ends in
`_bytes` are returned as `{"b64": ...}`, as TensorFlow Serving does.
"""

import base64
import binascii
import enum
from collections.abc import Mapping
from typing import Any

import grpc
import numpy as np
import tensorflow as tf

from serving.errors import ServingError
from serving.model_manager import Signature

B64_KEY = "b64"
_BYTES_OUTPUT_SUFFIX = "_bytes"


class RequestFormat(enum.Enum):
    """Layout of a REST predict request, which the response mirrors."""

    ROW = "instances"
    COLUMNAR = "inputs"


def _invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {B64_KEY}


def parse_predict_body(body: Any) -> tuple[str, RequestFormat, Any]:
    """Split a decoded predict body into signature name, format and payload.

    Args:
        body: The request body after `json.loads`.

    Returns:
        The signature name ("" when absent), the request format and the value
        of "instances" or "inputs".

    Raises:
        ServingError: INVALID_ARGUMENT for a body that is not a predict request.
    """
    if not isinstance(body, dict):
        raise _invalid(
            'The request body must be a JSON object with "instances" or "inputs", got '
            f"{type(body).__name__}."
        )
    has_instances = RequestFormat.ROW.value in body
    has_inputs = RequestFormat.COLUMNAR.value in body
    if has_instances == has_inputs:
        raise _invalid(
            'The request body must contain exactly one of "instances" (row format) '
            f'and "inputs" (columnar format), but it has keys {sorted(body)}.'
        )

    signature_name = body.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise _invalid(f'"signature_name" must be a string, got {signature_name!r}.')
    request_format = RequestFormat.ROW if has_instances else RequestFormat.COLUMNAR
    return signature_name, request_format, body[request_format.value]


def payload_to_arrays(
    payload: Any, request_format: RequestFormat, signature: Signature
) -> dict[str, np.ndarray]:
    """Convert the "instances" or "inputs" payload to one array per input.

    Args:
        payload: Value of "instances" or "inputs".
        request_format: Which of the two the payload came from.
        signature: Signature that defines input names and dtypes.

    Raises:
        ServingError: INVALID_ARGUMENT naming the input for values that do not
            form a dense tensor of the input's dtype.
    """
    if request_format is RequestFormat.ROW:
        columns = _instances_to_columns(payload, signature)
    else:
        columns = _inputs_to_columns(payload, signature)
    return {
        name: json_to_array(value, signature.input_dtype(name), name)
        for name, value in columns.items()
    }


def _instances_to_columns(instances: Any, signature: Signature) -> dict[str, list]:
    if not isinstance(instances, list):
        raise _invalid(
            '"instances" must be a list with one entry per example, got '
            f"{type(instances).__name__}."
        )
    if not instances:
        raise _invalid('"instances" is empty. Send at least one example.')

    input_names = signature.input_names
    named = [
        isinstance(instance, dict) and not _is_b64(instance) for instance in instances
    ]
    if any(named) and not all(named):
        raise _invalid(
            '"instances" mixes objects and plain values. Use objects keyed by input '
            "name for every entry or plain values for every entry."
        )

    if not named[0]:
        if len(input_names) != 1:
            raise _invalid(
                f"Signature {signature.name!r} has {len(input_names)} inputs "
                f'({", ".join(input_names)}), so each entry of "instances" must be an '
                "object keyed by input name."
            )
        return {input_names[0]: instances}

    columns: dict[str, list] = {name: [] for name in input_names}
    for index, instance in enumerate(instances):
        try:
            signature.check_input_names(instance)
        except ServingError as error:
            raise _invalid(f'"instances"[{index}]: {error.message}') from error
        for name in input_names:
            columns[name].append(instance[name])
    return columns


def _inputs_to_columns(inputs: Any, signature: Signature) -> dict[str, Any]:
    if isinstance(inputs, dict) and not _is_b64(inputs):
        signature.check_input_names(inputs)
        return dict(inputs)
    input_names = signature.input_names
    if len(input_names) != 1:
        raise _invalid(
            f"Signature {signature.name!r} has {len(input_names)} inputs "
            f'({", ".join(input_names)}), so "inputs" must be an object keyed by input '
            "name."
        )
    return {input_names[0]: inputs}


def json_to_array(value: Any, dtype: tf.DType, input_name: str) -> np.ndarray:
    """Convert a nested JSON list (or scalar) to an array of `dtype`.

    Args:
        value: Decoded JSON value.
        dtype: Dtype that the signature declares for the input.
        input_name: Input name for error messages.

    Raises:
        ServingError: INVALID_ARGUMENT for ragged lists or values of another type.
    """
    try:
        shape, leaves = _flatten(value, input_name)
    except RecursionError as error:
        raise _invalid(f"Input {input_name!r} is nested too deeply.") from error

    if dtype == tf.string:
        flat = np.empty(len(leaves), dtype=object)
        for index, leaf in enumerate(leaves):
            flat[index] = _json_to_bytes(leaf, input_name)
        return flat.reshape(shape)

    for leaf in leaves:
        _check_number(leaf, dtype, input_name)
    try:
        return np.array(leaves, dtype=dtype.as_numpy_dtype).reshape(shape)
    except (OverflowError, ValueError, TypeError) as error:
        raise _invalid(
            f"Input {input_name!r} has values that do not fit dtype {dtype.name}: "
            f"{error}"
        ) from error


def _flatten(value: Any, input_name: str) -> tuple[tuple[int, ...], list]:
    """Return the shape of a nested list and its leaves in row-major order."""
    if not isinstance(value, list):
        return (), [value]
    if not value:
        return (0,), []

    shapes_and_leaves = [_flatten(item, input_name) for item in value]
    inner_shape = shapes_and_leaves[0][0]
    leaves = []
    for index, (shape, item_leaves) in enumerate(shapes_and_leaves):
        if shape != inner_shape:
            raise _invalid(
                f"Input {input_name!r} is ragged: entry 0 has shape "
                f"{list(inner_shape)} but entry {index} has shape {list(shape)}. Pad "
                "every row to the same length."
            )
        leaves.extend(item_leaves)
    return (len(value), *inner_shape), leaves


def _json_to_bytes(leaf: Any, input_name: str) -> bytes:
    if isinstance(leaf, str):
        return leaf.encode("utf-8")
    if _is_b64(leaf) and isinstance(leaf[B64_KEY], str):
        try:
            return base64.b64decode(leaf[B64_KEY], validate=True)
        except binascii.Error as error:
            raise _invalid(
                f'Input {input_name!r} has an invalid base64 value in "b64": {error}'
            ) from error
    raise _invalid(
        f'Input {input_name!r} expects strings (DT_STRING) or {{"b64": ...}} objects, '
        f"got {leaf!r}."
    )


def _check_number(leaf: Any, dtype: tf.DType, input_name: str) -> None:
    # bool is a subclass of int in Python, so it is tested first.
    if dtype == tf.bool:
        valid = isinstance(leaf, bool)
    elif dtype.is_integer:
        valid = isinstance(leaf, int) and not isinstance(leaf, bool)
    elif dtype.is_floating:
        valid = isinstance(leaf, (int, float)) and not isinstance(leaf, bool)
    else:
        raise _invalid(
            f"Input {input_name!r} has dtype {dtype.name}, which the REST API of this "
            "server does not accept."
        )
    if not valid:
        raise _invalid(
            f"Input {input_name!r} expects values of dtype {dtype.name}, got {leaf!r}."
        )


def array_to_json(array: np.ndarray, output_name: str) -> Any:
    """Convert an output array to nested JSON lists.

    Strings are decoded as UTF-8, or base64-encoded into `{"b64": ...}` when
    `output_name` ends in "_bytes".

    Args:
        array: Output of the signature.
        output_name: Output key, which decides the string encoding.
    """
    if array.dtype in (np.float16, np.float32):
        # str() gives the shortest text that reads back as the same float32;
        # tolist() would widen to float64 and print 0.1 as 0.10000000149011612.
        shortest = np.empty(array.size, dtype=object)
        for index, value in enumerate(array.reshape(-1)):
            shortest[index] = float(str(value))
        return shortest.reshape(array.shape).tolist()
    if array.dtype != object:
        return array.tolist()
    as_base64 = output_name.endswith(_BYTES_OUTPUT_SUFFIX)
    return _map_nested(array.tolist(), lambda value: _bytes_to_json(value, as_base64))


def _bytes_to_json(value: Any, as_base64: bool) -> Any:
    if not isinstance(value, bytes):
        return value
    if as_base64:
        return {B64_KEY: base64.b64encode(value).decode("ascii")}
    # NOTE: invalid UTF-8 becomes U+FFFD. Name the output "*_bytes" to get
    # the exact bytes as base64.
    return value.decode("utf-8", errors="replace")


def _map_nested(value: Any, function: Any) -> Any:
    if isinstance(value, list):
        return [_map_nested(item, function) for item in value]
    return function(value)


def outputs_to_json(
    outputs: Mapping[str, np.ndarray], request_format: RequestFormat
) -> dict[str, Any]:
    """Build the predict response body in the format of the request.

    Args:
        outputs: Output arrays by key.
        request_format: Format of the request.

    Raises:
        ServingError: INVALID_ARGUMENT when a row-format response is
            impossible because outputs differ in batch size.
    """
    names = sorted(outputs)
    if request_format is RequestFormat.COLUMNAR:
        if len(names) == 1:
            return {"outputs": array_to_json(outputs[names[0]], names[0])}
        return {"outputs": {name: array_to_json(outputs[name], name) for name in names}}

    batch_sizes = {
        name: (outputs[name].shape[0] if outputs[name].ndim else None) for name in names
    }
    distinct = set(batch_sizes.values())
    if None in distinct or len(distinct) != 1:
        raise _invalid(
            "The outputs cannot be returned in row format because their batch sizes "
            f"(dimension 0) differ or are missing: {batch_sizes}. Send the request in "
            'columnar format ("inputs") instead.'
        )
    columns = {name: array_to_json(outputs[name], name) for name in names}
    batch_size = distinct.pop()
    if len(names) == 1:
        return {"predictions": columns[names[0]]}
    return {
        "predictions": [
            {name: columns[name][index] for name in names}
            for index in range(batch_size)
        ]
    }
