"""gRPC PredictionService and ModelService of TensorFlow Serving, on one model."""

import logging
from collections.abc import Callable
from typing import TypeVar

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving.errors import ServingError
from serving.model_manager import LoadedModel, ModelManager
from serving.tensors import ndarray_to_tensor_proto, shape_of, tensor_proto_to_ndarray

logger = logging.getLogger(__name__)

SIGNATURE_DEF_FIELD = "signature_def"

_Response = TypeVar("_Response")


def _version_of(model_spec: model_pb2.ModelSpec) -> int | None:
    return model_spec.version.value if model_spec.HasField("version") else None


def _fill_model_spec(
    model_spec: model_pb2.ModelSpec, model: LoadedModel, signature_name: str = ""
) -> None:
    model_spec.name = model.name
    model_spec.version.value = model.version
    model_spec.signature_name = signature_name


def _call_and_log(
    context: grpc.ServicerContext,
    method: str,
    model_name: str,
    handler: Callable[[], _Response],
) -> _Response:
    """Run `handler`, and abort the call with its ServingError after logging it.

    Args:
        context: Context of the call, used to abort it.
        method: RPC name for the log, e.g. "Predict".
        model_name: Model name from the request, for the log.
        handler: Builds the response or raises ServingError.
    """
    try:
        return handler()
    except ServingError as error:
        failure = error
    except Exception as error:  # A bad request must never end the server.
        logger.exception(
            "%s for model %r raised an unexpected error", method, model_name
        )
        failure = ServingError(
            grpc.StatusCode.INTERNAL,
            f"Internal error in {method}: {type(error).__name__}: {error}",
        )
    logger.warning(
        "%s for model %r failed with %s: %s",
        method,
        model_name,
        failure.code.name,
        failure.message,
    )
    context.abort(failure.code, failure.message)
    raise AssertionError("context.abort() returned")  # abort() always raises.


def _require_model_spec(request: object) -> model_pb2.ModelSpec:
    if not request.HasField("model_spec"):
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "Missing ModelSpec: set model_spec.name in the request.",
        )
    return request.model_spec


def _unimplemented(method: str) -> ServingError:
    return ServingError(
        grpc.StatusCode.UNIMPLEMENTED,
        f"{method} is not implemented by the bert4seq development server. Use Predict, "
        "or serve the model with tensorflow_model_server.",
    )


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """PredictionService with Predict and GetModelMetadata.

    Args:
        manager: Source of the loaded model.
        max_input_elements: Maximum number of elements that one request input
            may declare. It stops a small message from declaring a huge shape
            that TensorFlow would allocate and fill with the last value.
    """

    def __init__(self, manager: ModelManager, max_input_elements: int):
        self._manager = manager
        self._max_input_elements = max_input_elements

    def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> predict_pb2.PredictResponse:
        return _call_and_log(
            context, "Predict", request.model_spec.name, lambda: self._predict(request)
        )

    def GetModelMetadata(
        self,
        request: get_model_metadata_pb2.GetModelMetadataRequest,
        context: grpc.ServicerContext,
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        return _call_and_log(
            context,
            "GetModelMetadata",
            request.model_spec.name,
            lambda: self._get_model_metadata(request),
        )

    def Classify(self, request, context):
        return _call_and_log(
            context,
            "Classify",
            request.model_spec.name,
            lambda: _raise(_unimplemented("Classify")),
        )

    def Regress(self, request, context):
        return _call_and_log(
            context,
            "Regress",
            request.model_spec.name,
            lambda: _raise(_unimplemented("Regress")),
        )

    def MultiInference(self, request, context):
        model_names = {task.model_spec.name for task in request.tasks}
        return _call_and_log(
            context,
            "MultiInference",
            ",".join(sorted(model_names)),
            lambda: _raise(_unimplemented("MultiInference")),
        )

    def _predict(
        self, request: predict_pb2.PredictRequest
    ) -> predict_pb2.PredictResponse:
        model_spec = _require_model_spec(request)
        model = self._manager.get_model(
            model_spec.name, _version_of(model_spec), model_spec.version_label
        )
        signature = model.signature(model_spec.signature_name)

        # Validate names, dtypes and shapes before converting any tensor.
        signature.check_input_names(request.inputs)
        output_names = signature.resolve_output_filter(list(request.output_filter))
        arrays = {}
        for name, proto in request.inputs.items():
            signature.check_input(name, proto.dtype, shape_of(proto))
            arrays[name] = self._parse_input(name, proto)

        outputs = signature.run(arrays, output_names)

        response = predict_pb2.PredictResponse()
        _fill_model_spec(response.model_spec, model, signature.name)
        for name, array in outputs.items():
            dtype = tf.as_dtype(signature.signature_def.outputs[name].dtype)
            response.outputs[name].CopyFrom(ndarray_to_tensor_proto(array, dtype))
        return response

    def _parse_input(self, name: str, proto: tensor_pb2.TensorProto) -> np.ndarray:
        if proto.tensor_shape.unknown_rank:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Input {name!r} has unknown_rank set. Send its shape.",
            )
        shape = shape_of(proto)
        if any(size < 0 for size in shape):
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Input {name!r} declares shape {shape} with a negative dimension, "
                "but request tensors need known sizes.",
            )
        num_elements = int(np.prod(shape, dtype=np.float64))
        if num_elements > self._max_input_elements:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Input {name!r} declares shape {shape} with {num_elements} elements, "
                f"more than the limit of {self._max_input_elements} (one element per "
                "byte of --max_request_bytes).",
            )
        try:
            return tensor_proto_to_ndarray(proto)
        except (ValueError, TypeError) as error:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Input {name!r} could not be parsed as a {len(shape)}-d tensor of "
                f"shape {shape}: {error}",
            ) from error

    def _get_model_metadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        model_spec = _require_model_spec(request)
        if not request.metadata_field:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "GetModelMetadataRequest must list at least one metadata_field. Use "
                f'"{SIGNATURE_DEF_FIELD}".',
            )
        for field in request.metadata_field:
            if field != SIGNATURE_DEF_FIELD:
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Metadata field {field!r} is not supported. The only supported "
                    f'field is "{SIGNATURE_DEF_FIELD}".',
                )
        model = self._manager.get_model(
            model_spec.name, _version_of(model_spec), model_spec.version_label
        )
        return build_model_metadata_response(model)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """ModelService with GetModelStatus.

    Args:
        manager: Source of the version states.
    """

    def __init__(self, manager: ModelManager):
        self._manager = manager

    def GetModelStatus(
        self,
        request: get_model_status_pb2.GetModelStatusRequest,
        context: grpc.ServicerContext,
    ) -> get_model_status_pb2.GetModelStatusResponse:
        return _call_and_log(
            context,
            "GetModelStatus",
            request.model_spec.name,
            lambda: self._get_model_status(request),
        )

    def HandleReloadConfigRequest(self, request, context):
        return _call_and_log(
            context,
            "HandleReloadConfigRequest",
            "",
            lambda: _raise(_unimplemented("HandleReloadConfigRequest")),
        )

    def _get_model_status(
        self, request: get_model_status_pb2.GetModelStatusRequest
    ) -> get_model_status_pb2.GetModelStatusResponse:
        model_spec = _require_model_spec(request)
        return build_model_status_response(
            self._manager, model_spec.name, _version_of(model_spec)
        )


def build_model_status_response(
    manager: ModelManager, model_name: str, version: int | None
) -> get_model_status_pb2.GetModelStatusResponse:
    """Build the GetModelStatus response for one or all versions of a model.

    Args:
        manager: Source of the version states.
        model_name: Model name of the request.
        version: Version of the request, or None for all known versions.

    Raises:
        ServingError: NOT_FOUND for another model or an unknown version.
    """
    response = get_model_status_pb2.GetModelStatusResponse()
    for status in manager.version_statuses(model_name, version):
        entry = response.model_version_status.add()
        entry.version = status.version
        entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(status.state)
        entry.status.error_code = error_codes_pb2.Code.Value(status.error_code)
        entry.status.error_message = status.error_message
    return response


def build_model_metadata_response(
    model: LoadedModel,
) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """Build the GetModelMetadata response with the `signature_def` field of `model`."""
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    _fill_model_spec(response.model_spec, model)
    response.metadata[SIGNATURE_DEF_FIELD].Pack(model.signature_def_map())
    return response


def _raise(error: Exception):
    raise error


def add_services(
    server: grpc.Server, manager: ModelManager, max_input_elements: int
) -> None:
    """Register PredictionService and ModelService on `server`.

    Args:
        server: gRPC server that is not started yet.
        manager: Source of the loaded model.
        max_input_elements: See `PredictionServicer`.
    """
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(manager, max_input_elements), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelServicer(manager), server
    )
