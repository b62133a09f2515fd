"""REST API of TensorFlow Serving on one model, built on `http.server`.

Routes:

* `POST /v1/models/<name>[/versions/<version>]:predict`
* `GET /v1/models/<name>[/versions/<version>]` (model version status)
* `GET /v1/models/<name>[/versions/<version>]/metadata`

Every response is JSON. Errors are `{"error": "<message>"}` with the HTTP
status that TensorFlow Serving maps from the gRPC code (400, 404, ...), plus
413 for a body over the size limit and 405 for a known path with the wrong
method.
"""

import json
import logging
import re
import socket
import time
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from google.protobuf import json_format

from serving.errors import ServingError
from serving.grpc_service import (
    build_model_metadata_response,
    build_model_status_response,
)
from serving.model_manager import ModelManager
from serving.rest_json import outputs_to_json, parse_predict_body, payload_to_arrays

logger = logging.getLogger(__name__)

# Same path grammar as TensorFlow Serving, case-insensitive like its regexes.
_PREDICT_PATH = re.compile(
    r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?:(?P<method>[A-Za-z]+)",
    re.IGNORECASE,
)
_MODEL_PATH = re.compile(
    r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?"
    r"(?P<metadata>/metadata)?",
    re.IGNORECASE,
)

# How long a connection may stay idle while reading a request, in seconds.
_SOCKET_TIMEOUT_SECONDS = 30

# After it responds with 413, the server reads and discards the rest of the
# body for at most this many seconds. A client that writes the whole body
# before it reads the response would otherwise get a connection reset.
_DISCARD_BODY_SECONDS = 5.0


def _message_to_dict(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(
        message,
        always_print_fields_with_no_presence=True,
        preserving_proto_field_name=True,
    )


class RestApiServer(ThreadingHTTPServer):
    """HTTP server for the REST API of one model.

    Args:
        host: Address to bind, e.g. "127.0.0.1", "0.0.0.0" or "::1".
        port: Port to bind, or 0 to pick a free port.
        manager: Source of the loaded model.
        max_request_bytes: Maximum request body size in bytes. Larger bodies
            get HTTP 413 without being read.
    """

    daemon_threads = True
    # Fail on a port in use instead of sharing it with another server.
    allow_reuse_address = False

    def __init__(
        self, host: str, port: int, manager: ModelManager, max_request_bytes: int
    ):
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.manager = manager
        self.max_request_bytes = max_request_bytes
        super().__init__((host, port), RestRequestHandler)


class RestRequestHandler(BaseHTTPRequestHandler):
    """Handler of one HTTP connection. The module docstring lists the routes."""

    server: RestApiServer
    protocol_version = "HTTP/1.1"
    server_version = "bert4seq-serving"
    timeout = _SOCKET_TIMEOUT_SECONDS

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        # Access log at DEBUG. _send_error logs errors at WARNING.
        logger.debug("%s - %s", self.address_string(), format % args)

    def handle_expect_100(self) -> bool:
        # Reject an oversized body before the client sends it (curl sends
        # "Expect: 100-continue" for large bodies).
        length = self._content_length_or_none()
        if length is not None and length > self.server.max_request_bytes:
            self.close_connection = True
            path = urllib.parse.urlsplit(self.path).path
            self._send_error(
                self.command,
                path,
                "",
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                self._too_large_message(length),
            )
            return False
        return super().handle_expect_100()

    def _dispatch(self, method: str) -> None:
        path = urllib.parse.urlsplit(self.path).path
        model_name = ""
        self._unread_body_bytes = 0
        try:
            predict_match = _PREDICT_PATH.fullmatch(path)
            model_match = None if predict_match else _MODEL_PATH.fullmatch(path)
            match = predict_match or model_match
            if match is None:
                raise _HttpError(
                    HTTPStatus.NOT_FOUND,
                    f"Malformed request: {method} {path}. Supported: POST "
                    "/v1/models/<name>[/versions/<version>]:predict, GET "
                    "/v1/models/<name>[/versions/<version>][/metadata].",
                )

            model_name = urllib.parse.unquote(match.group("name"))
            version = int(match.group("version")) if match.group("version") else None
            expected_method = "POST" if predict_match else "GET"
            if method != expected_method:
                raise _HttpError(
                    HTTPStatus.METHOD_NOT_ALLOWED,
                    f"{method} is not allowed on {path}. Use {expected_method}.",
                    headers={"Allow": expected_method},
                )

            if predict_match:
                verb = predict_match.group("method").lower()
                if verb != "predict":
                    raise ServingError(
                        grpc.StatusCode.UNIMPLEMENTED,
                        f"{verb} is not implemented by the bert4seq development "
                        "server. Use :predict.",
                    )
                body = self._read_json_body()
                self._send_json(HTTPStatus.OK, self._predict(model_name, version, body))
            elif model_match.group("metadata"):
                model = self.server.manager.get_model(model_name, version)
                response = _message_to_dict(build_model_metadata_response(model))
                response["metadata"]["signature_def"].pop("@type", None)
                self._send_json(HTTPStatus.OK, response)
            else:
                status = build_model_status_response(
                    self.server.manager, model_name, version
                )
                self._send_json(HTTPStatus.OK, _message_to_dict(status))
        except ServingError as error:
            self._send_error(method, path, model_name, error.http_status, error.message)
        except _HttpError as error:
            self._send_error(
                method, path, model_name, error.status, error.message, error.headers
            )
        except Exception as error:  # A bad request must never end the server.
            logger.exception(
                "REST %s %s for model %r raised an unexpected error",
                method,
                path,
                model_name,
            )
            self._send_error(
                method,
                path,
                model_name,
                HTTPStatus.INTERNAL_SERVER_ERROR,
                f"Internal error: {type(error).__name__}: {error}",
            )
        if self._unread_body_bytes:
            self._discard_body(self._unread_body_bytes)

    def _predict(
        self, model_name: str, version: int | None, body: Any
    ) -> dict[str, Any]:
        signature_name, request_format, payload = parse_predict_body(body)
        model = self.server.manager.get_model(model_name, version)
        signature = model.signature(signature_name)
        arrays = payload_to_arrays(payload, request_format, signature)
        outputs = signature.run(arrays)
        return outputs_to_json(outputs, request_format)

    def _read_json_body(self) -> Any:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            # NOTE: TF Serving accepts chunked bodies, but this server needs the
            # size up front to enforce max_request_bytes without reading.
            self.close_connection = True
            raise _HttpError(
                HTTPStatus.LENGTH_REQUIRED,
                "Chunked request bodies are not supported. Send a Content-Length "
                "header.",
            )

        length_header = self.headers.get("Content-Length")
        if length_header is None:
            raise _HttpError(
                HTTPStatus.LENGTH_REQUIRED, "Missing Content-Length header on POST."
            )
        length = self._content_length_or_none()
        if length is None:
            self.close_connection = True
            raise _HttpError(
                HTTPStatus.BAD_REQUEST,
                f"Invalid Content-Length header: {length_header!r}.",
            )

        if length > self.server.max_request_bytes:
            # The connection cannot be reused because the body stays unread.
            self.close_connection = True
            self._unread_body_bytes = length
            raise _HttpError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, self._too_large_message(length)
            )

        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            raise _HttpError(
                HTTPStatus.BAD_REQUEST,
                f"Request body ended after {len(body)} of {length} bytes "
                "(Content-Length).",
            )
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            raise _HttpError(
                HTTPStatus.BAD_REQUEST, f"Request body is not valid JSON: {error}"
            ) from error

    def _content_length_or_none(self) -> int | None:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return None
        return length if length >= 0 else None

    def _too_large_message(self, length: int) -> str:
        return (
            f"Request body of {length} bytes exceeds the limit of "
            f"{self.server.max_request_bytes} bytes. Send smaller batches or restart "
            "the server with a larger --max_request_bytes."
        )

    def _discard_body(self, length: int) -> None:
        deadline = time.monotonic() + _DISCARD_BODY_SECONDS
        remaining = length
        try:
            while remaining > 0 and time.monotonic() < deadline:
                self.connection.settimeout(max(deadline - time.monotonic(), 0.01))
                chunk = self.rfile.read1(min(remaining, 1 << 16))
                if not chunk:
                    break
                remaining -= len(chunk)
        except OSError:
            pass  # The client closed the connection or stopped sending.

    def _send_json(
        self, status: int, value: Any, headers: dict[str, str] | None = None
    ) -> None:
        # allow_nan: TF Serving also writes NaN and Infinity literals.
        payload = json.dumps(value, ensure_ascii=False, allow_nan=True).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, header_value in (headers or {}).items():
            self.send_header(key, header_value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)

    def _send_error(
        self,
        method: str,
        path: str,
        model_name: str,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        logger.warning(
            "REST %s %s for model %r failed with HTTP %d: %s",
            method,
            path,
            model_name,
            status,
            message,
        )
        self._send_json(status, {"error": message}, headers)


class _HttpError(Exception):
    """An HTTP-level failure without a gRPC equivalent (404 path, 405, 411, 413)."""

    def __init__(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status = int(status)
        self.message = message
        self.headers = headers
