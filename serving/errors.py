"""Errors that the serving layer returns to clients as gRPC status codes."""

from http import HTTPStatus

import grpc

# HTTP status for each gRPC code, as TensorFlow Serving's REST API maps them
# (tensorflow_serving/model_servers/http_server.cc, TF Serving 2.x).
_HTTP_STATUS_BY_GRPC_CODE: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: HTTPStatus.OK,
    grpc.StatusCode.CANCELLED: 499,  # Client Closed Request, not in HTTPStatus.
    grpc.StatusCode.UNKNOWN: HTTPStatus.INTERNAL_SERVER_ERROR,
    grpc.StatusCode.INVALID_ARGUMENT: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.DEADLINE_EXCEEDED: HTTPStatus.GATEWAY_TIMEOUT,
    grpc.StatusCode.NOT_FOUND: HTTPStatus.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS: HTTPStatus.CONFLICT,
    grpc.StatusCode.PERMISSION_DENIED: HTTPStatus.FORBIDDEN,
    grpc.StatusCode.RESOURCE_EXHAUSTED: HTTPStatus.TOO_MANY_REQUESTS,
    grpc.StatusCode.FAILED_PRECONDITION: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.ABORTED: HTTPStatus.CONFLICT,
    grpc.StatusCode.OUT_OF_RANGE: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.UNIMPLEMENTED: HTTPStatus.NOT_IMPLEMENTED,
    grpc.StatusCode.INTERNAL: HTTPStatus.INTERNAL_SERVER_ERROR,
    grpc.StatusCode.UNAVAILABLE: HTTPStatus.SERVICE_UNAVAILABLE,
    grpc.StatusCode.DATA_LOSS: HTTPStatus.INTERNAL_SERVER_ERROR,
    grpc.StatusCode.UNAUTHENTICATED: HTTPStatus.UNAUTHORIZED,
}


class ServingError(Exception):
    """A request failure with the gRPC status code that the server returns.

    The gRPC service aborts the call with `code` and `message`. The REST API
    responds with `http_status` and the JSON body `{"error": message}`.

    Args:
        code: gRPC status code of the failure.
        message: Text for the client. It names the offending value and, where
            there is one, the fix.
    """

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        """HTTP status code that corresponds to `code`."""
        return int(
            _HTTP_STATUS_BY_GRPC_CODE.get(self.code, HTTPStatus.INTERNAL_SERVER_ERROR)
        )

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


def grpc_code_from_value(value: int) -> grpc.StatusCode:
    """Return the gRPC status code whose numeric value is `value`.

    TensorFlow's `tf.errors.OpError.error_code` uses the same numbering as gRPC.
    Unknown values map to `UNKNOWN`.

    Args:
        value: Numeric status code, e.g. 3 for INVALID_ARGUMENT.
    """
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code
    return grpc.StatusCode.UNKNOWN
