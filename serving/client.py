"""gRPC client for TensorFlow Serving's PredictionService and ModelService.

The client uses only the standard `tensorflow_serving.apis` requests, so it
works unchanged against `tensorflow_model_server` and against the bert4seq
development server (`serving.server.ModelServer`).

Example:

    with PredictionClient("127.0.0.1:8500") as client:
        for item_id, score in client.recommend("default", ["i1", "i7", "i3"], k=10):
            print(item_id, score)
"""

from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving.tensors import ndarray_to_tensor_proto, tensor_proto_to_ndarray

DEFAULT_SIGNATURE_NAME = "serving_default"
HISTORY_INPUT = "history"
ITEM_IDS_OUTPUT = "item_ids"
SCORES_OUTPUT = "scores"
PADDING_ITEM_ID = ""

# gRPC clients reject responses over 4 MiB by default, which a batch of
# top-k lists can exceed.
DEFAULT_MAX_RECEIVE_MESSAGE_BYTES = 64 * 1024 * 1024


class PredictionError(RuntimeError):
    """A failed call, with the gRPC status code and message of the server.

    Args:
        method: RPC name, e.g. "Predict".
        target: Server address, "host:port".
        model_name: Model name of the request.
        code: gRPC status code returned by the server or the channel.
        details: Error message returned by the server or the channel.
    """

    def __init__(
        self,
        method: str,
        target: str,
        model_name: str,
        code: grpc.StatusCode,
        details: str,
    ):
        self.method = method
        self.target = target
        self.model_name = model_name
        self.code = code
        self.details = details
        super().__init__(
            f"{method} for model {model_name!r} at {target} failed with {code.name}: "
            f"{details}"
        )


class PredictionClient:
    """Client for one TensorFlow Serving compatible gRPC server.

    Args:
        target: Server address "host:port", e.g. "127.0.0.1:8500".
        timeout: Deadline of each call, in seconds.
        max_receive_message_bytes: Largest response the client accepts, in bytes.
    """

    def __init__(
        self,
        target: str,
        timeout: float = 10.0,
        max_receive_message_bytes: int = DEFAULT_MAX_RECEIVE_MESSAGE_BYTES,
    ):
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}.")
        self.target = target
        self.timeout = timeout
        self._channel = grpc.insecure_channel(
            target,
            options=[("grpc.max_receive_message_length", max_receive_message_bytes)],
        )
        self._prediction_stub = prediction_service_pb2_grpc.PredictionServiceStub(
            self._channel
        )
        self._model_stub = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def close(self) -> None:
        """Close the gRPC channel."""
        self._channel.close()

    def __enter__(self) -> "PredictionClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def predict(
        self,
        model_name: str,
        inputs: Mapping[str, Any],
        signature_name: str = DEFAULT_SIGNATURE_NAME,
        version: int | None = None,
        output_filter: Sequence[str] = (),
    ) -> dict[str, np.ndarray]:
        """Call Predict and return the outputs as NumPy arrays.

        Args:
            model_name: Model name on the server.
            inputs: One value per signature input: a `TensorProto`, or an
                array-like value whose dtype is inferred (nested lists of `str`
                become DT_STRING and Python floats DT_DOUBLE, so pass a NumPy array
                to choose the dtype).
            signature_name: Signature key.
            version: Model version to call, or None for the latest.
            output_filter: Output keys to return. Empty returns all outputs.

        Raises:
            PredictionError: If the server or the channel returns an error.
        """
        response = self.predict_response(
            model_name, inputs, signature_name, version, output_filter
        )
        return {
            name: tensor_proto_to_ndarray(proto)
            for name, proto in response.outputs.items()
        }

    def predict_response(
        self,
        model_name: str,
        inputs: Mapping[str, Any],
        signature_name: str = DEFAULT_SIGNATURE_NAME,
        version: int | None = None,
        output_filter: Sequence[str] = (),
    ) -> predict_pb2.PredictResponse:
        """Call Predict and return the `PredictResponse`, which has the served version.

        Args: as for `predict`.

        Raises:
            PredictionError: If the server or the channel returns an error.
        """
        request = predict_pb2.PredictRequest()
        _fill_model_spec(request.model_spec, model_name, version, signature_name)
        for name, value in inputs.items():
            if isinstance(value, tensor_pb2.TensorProto):
                request.inputs[name].CopyFrom(value)
            else:
                request.inputs[name].CopyFrom(ndarray_to_tensor_proto(value))
        request.output_filter.extend(output_filter)
        return self._call("Predict", model_name, self._prediction_stub.Predict, request)

    def recommend(
        self,
        model_name: str,
        history: Sequence[str],
        k: int,
        signature_name: str = DEFAULT_SIGNATURE_NAME,
        version: int | None = None,
    ) -> list[tuple[str, float]]:
        """Return the top `k` (item_id, score) pairs for one interaction history.

        Sends `history` as input "history" with shape [1, len(history)] and
        reads the outputs "item_ids" and "scores", the signature that
        bert4seq exports.

        Args:
            model_name: Model name on the server.
            history: Item ids, oldest first. An empty history is sent as one
                padding id "".
            k: Number of recommendations, at most the top-k K of the export.
            signature_name: Signature key.
            version: Model version to call, or None for the latest.

        Raises:
            ValueError: If `k` is not positive or exceeds the K that the model
                returns, or the outputs are not two [batch, K] tensors.
            TypeError: If `history` is a string instead of a list of ids.
            PredictionError: If the server or the channel returns an error,
                e.g. INVALID_ARGUMENT when the signature lacks "item_ids" or
                "scores".
        """
        batch = self.recommend_batch(model_name, [history], k, signature_name, version)
        return batch[0]

    def recommend_batch(
        self,
        model_name: str,
        histories: Sequence[Sequence[str]],
        k: int,
        signature_name: str = DEFAULT_SIGNATURE_NAME,
        version: int | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Return the top `k` (item_id, score) pairs for each history, in one call.

        Shorter histories are padded at the end with "", which the exported
        graph ignores, so all rows have the length of the longest.

        Args:
            model_name: Model name on the server.
            histories: One list of item ids per user, oldest first.
            k: Number of recommendations per history.
            signature_name: Signature key.
            version: Model version to call, or None for the latest.

        Raises:
            ValueError: If `histories` is empty, `k` is not positive or
                exceeds the K that the model returns, or the outputs are not
                two [batch, K] tensors.
            TypeError: If a history is a string instead of a list of ids.
            PredictionError: If the server or the channel returns an error.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}.")
        if not histories:
            raise ValueError("histories is empty. Pass at least one history.")
        for index, history in enumerate(histories):
            if isinstance(history, (str, bytes)):
                raise TypeError(
                    f"histories[{index}] is a {type(history).__name__}, expected a "
                    "list of item ids. Split the string first, e.g. "
                    "history.split(',')."
                )

        width = max(1, max(len(history) for history in histories))
        rows = [
            list(history) + [PADDING_ITEM_ID] * (width - len(history))
            for history in histories
        ]
        history_array = np.array(rows, dtype=object).reshape(len(rows), width)
        outputs = self.predict(
            model_name,
            {HISTORY_INPUT: ndarray_to_tensor_proto(history_array)},
            signature_name=signature_name,
            version=version,
            output_filter=[ITEM_IDS_OUTPUT, SCORES_OUTPUT],
        )

        item_ids = outputs[ITEM_IDS_OUTPUT]
        scores = outputs[SCORES_OUTPUT]
        if item_ids.ndim != 2 or item_ids.shape != scores.shape:
            raise ValueError(
                f"Signature {signature_name!r} of model {model_name!r} returned "
                f"item_ids of shape {list(item_ids.shape)} and scores of shape "
                f"{list(scores.shape)}, but expected two tensors of the same shape "
                "[batch, K]."
            )
        top_k = item_ids.shape[1]
        if k > top_k:
            raise ValueError(
                f"Requested k={k}, but model {model_name!r} returns only K={top_k} "
                "items per history (its top-k is fixed at export time). Request k <= "
                f"{top_k}, or re-export the model with a larger top-k."
            )

        return [
            [
                (item_id.decode("utf-8"), float(score))
                for item_id, score in zip(row_ids[:k], row_scores[:k], strict=True)
            ]
            for row_ids, row_scores in zip(item_ids, scores, strict=True)
        ]

    def metadata(
        self, model_name: str, version: int | None = None
    ) -> dict[str, meta_graph_pb2.SignatureDef]:
        """Return the model's SignatureDefs by key, from GetModelMetadata.

        Args:
            model_name: Model name on the server.
            version: Model version, or None for the latest.

        Raises:
            PredictionError: If the server or the channel returns an error.
        """
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            metadata_field=["signature_def"]
        )
        _fill_model_spec(request.model_spec, model_name, version)
        response = self._call(
            "GetModelMetadata",
            model_name,
            self._prediction_stub.GetModelMetadata,
            request,
        )
        signature_def_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_def_map)
        return dict(signature_def_map.signature_def)

    def model_status(
        self, model_name: str, version: int | None = None
    ) -> list[get_model_status_pb2.ModelVersionStatus]:
        """Return the status of one or all versions, from GetModelStatus.

        Args:
            model_name: Model name on the server.
            version: Model version, or None for all versions that the server reports.

        Raises:
            PredictionError: If the server or the channel returns an error.
        """
        request = get_model_status_pb2.GetModelStatusRequest()
        _fill_model_spec(request.model_spec, model_name, version)
        response = self._call(
            "GetModelStatus", model_name, self._model_stub.GetModelStatus, request
        )
        return list(response.model_version_status)

    def _call(
        self, method: str, model_name: str, stub_method: Any, request: Any
    ) -> Any:
        try:
            return stub_method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise PredictionError(
                method, self.target, model_name, error.code(), error.details() or ""
            ) from error


def _fill_model_spec(
    model_spec: model_pb2.ModelSpec,
    model_name: str,
    version: int | None,
    signature_name: str = "",
) -> None:
    model_spec.name = model_name
    if version is not None:
        model_spec.version.value = version
    if signature_name:
        model_spec.signature_name = signature_name
