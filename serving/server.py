"""In-process development server compatible with TensorFlow Serving's APIs.

`ModelServer` serves one SavedModel over gRPC (PredictionService and
ModelService from `tensorflow_serving.apis`) and REST, and hot-swaps new
versions that appear under the model base path. It is for development,
tests and notebooks. Production deployments run `tensorflow_model_server`,
which reads the same directory layout and accepts the same requests.

Example:

    server = ModelServer("default", "/models/bert4seq", grpc_port=0, rest_port=0)
    ports = server.start()
    ...  # PredictionClient(f"127.0.0.1:{ports.grpc}")
    server.stop()
"""

import concurrent.futures
import logging
import threading
from typing import NamedTuple

import grpc

from serving.grpc_service import add_services
from serving.model_manager import ModelManager
from serving.rest_api import RestApiServer

logger = logging.getLogger(__name__)

DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024

_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class ServerPorts(NamedTuple):
    """Ports that a started `ModelServer` listens on.

    Attributes:
        grpc: gRPC port.
        rest: REST port, or None when REST is disabled.
    """

    grpc: int
    rest: int | None


def format_host_port(host: str, port: int) -> str:
    """Return "host:port", with brackets around an IPv6 host."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


class ModelServer:
    """Development server for one SavedModel over gRPC and REST.

    Args:
        model_name: Name that requests must use in `model_spec.name` or the
            REST path.
        model_base_path: Directory with integer-named version directories.
            The highest version is served.
        host: Address to listen on. The default 127.0.0.1 accepts only local
            clients. "0.0.0.0" (or "::") exposes the server to the network
            without TLS or authentication.
        grpc_port: gRPC port, or 0 to pick a free port.
        rest_port: REST port, 0 to pick a free port, or None to disable REST.
        file_system_poll_wait_seconds: Interval between scans for a new
            version, in seconds. 0 loads once.
        max_request_bytes: Maximum size of a REST body and of a gRPC message,
            in bytes. Larger REST bodies get HTTP 413 and larger gRPC messages
            RESOURCE_EXHAUSTED.
        grpc_max_workers: Number of threads that run gRPC calls.
    """

    def __init__(
        self,
        model_name: str,
        model_base_path: str,
        host: str = "127.0.0.1",
        grpc_port: int = 8500,
        rest_port: int | None = 8501,
        file_system_poll_wait_seconds: float = 1.0,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        grpc_max_workers: int = 8,
    ):
        if not model_name:
            raise ValueError("model_name must not be empty.")
        if max_request_bytes <= 0:
            raise ValueError(f"max_request_bytes must be > 0, got {max_request_bytes}.")
        self.model_name = model_name
        self.model_base_path = model_base_path
        self.host = host
        self.grpc_port = grpc_port
        self.rest_port = rest_port
        self.max_request_bytes = max_request_bytes
        self.grpc_max_workers = grpc_max_workers
        self.manager = ModelManager(
            model_name, model_base_path, file_system_poll_wait_seconds
        )

        self._grpc_server: grpc.Server | None = None
        self._rest_server: RestApiServer | None = None
        self._rest_thread: threading.Thread | None = None
        self._ports: ServerPorts | None = None

    @property
    def ports(self) -> ServerPorts:
        """Bound ports, available after `start()`."""
        if self._ports is None:
            raise RuntimeError("ModelServer.start() has not been called.")
        return self._ports

    @property
    def grpc_target(self) -> str:
        """gRPC address for `PredictionClient`, e.g. "127.0.0.1:8500"."""
        return format_host_port(_client_host(self.host), self.ports.grpc)

    @property
    def rest_url(self) -> str:
        """Base URL of the REST API, e.g. "http://127.0.0.1:8501"."""
        if self.ports.rest is None:
            raise RuntimeError("REST is disabled (rest_port=None).")
        return "http://" + format_host_port(_client_host(self.host), self.ports.rest)

    def start(self) -> ServerPorts:
        """Bind both ports, load the model, and start serving and polling.

        The ports are bound before the model loads, so a port in use fails
        fast.

        Returns:
            The bound ports, which differ from the requested ones where 0 was
            requested.

        Raises:
            OSError: If a port cannot be bound.
            FileNotFoundError: If the base path is missing or has no version.
            serving.model_manager.ModelLoadError: If the model fails to load.
        """
        if self._ports is not None:
            raise RuntimeError("ModelServer.start() was already called.")
        logger.info(
            "Starting model server for model %r from %s",
            self.model_name,
            self.model_base_path,
        )

        grpc_server, grpc_port = self._bind_grpc()
        rest_server = None
        try:
            if self.rest_port is not None:
                rest_server = self._bind_rest()
            model = self.manager.load()
        except BaseException:
            grpc_server.stop(None)
            if rest_server is not None:
                rest_server.server_close()
            raise

        grpc_server.start()
        self._grpc_server = grpc_server
        rest_port = None
        if rest_server is not None:
            rest_port = rest_server.server_address[1]
            self._rest_server = rest_server
            self._rest_thread = threading.Thread(
                target=rest_server.serve_forever,
                kwargs={"poll_interval": 0.5},
                name="rest-api",
                daemon=True,
            )
            self._rest_thread.start()
        self.manager.start_polling()
        self._ports = ServerPorts(grpc=grpc_port, rest=rest_port)

        rest_text = "REST disabled"
        if rest_port is not None:
            rest_text = f"REST on {format_host_port(self.host, rest_port)}"
        logger.info(
            "Serving model %r version %d: gRPC on %s, %s",
            self.model_name,
            model.version,
            format_host_port(self.host, grpc_port),
            rest_text,
        )
        if self.host not in _LOOPBACK_HOSTS:
            logger.warning(
                "Listening on %s, which other machines can reach. The server has no "
                "TLS and no authentication.",
                self.host,
            )
        return self._ports

    def _bind_grpc(self) -> tuple[grpc.Server, int]:
        grpc_server = grpc.server(
            concurrent.futures.ThreadPoolExecutor(
                max_workers=self.grpc_max_workers, thread_name_prefix="grpc-predict"
            ),
            options=[
                # NOTE: gRPC rejects larger messages with RESOURCE_EXHAUSTED before
                # any servicer runs, so those rejections are not in this log.
                ("grpc.max_receive_message_length", self.max_request_bytes),
                # Without this, Linux lets a second server bind the same port.
                ("grpc.so_reuseport", 0),
            ],
        )
        add_services(
            grpc_server, self.manager, max_input_elements=self.max_request_bytes
        )
        address = format_host_port(self.host, self.grpc_port)
        try:
            port = grpc_server.add_insecure_port(address)
        except RuntimeError as error:
            raise OSError(
                f"Failed to bind the gRPC port at {address}: "
                f"{str(error).rstrip('.')}. Choose another port or stop the process "
                "that uses it."
            ) from error
        return grpc_server, port

    def _bind_rest(self) -> RestApiServer:
        try:
            return RestApiServer(
                self.host, self.rest_port, self.manager, self.max_request_bytes
            )
        except OSError as error:
            raise OSError(
                "Failed to bind the REST port at "
                f"{format_host_port(self.host, self.rest_port)}: {error}. Choose "
                "another port or stop the process that uses it."
            ) from error

    def stop(self, grace_seconds: float = 2.0) -> None:
        """Stop accepting requests, let running ones finish, and stop polling.

        Args:
            grace_seconds: Time that running gRPC calls get to finish, in seconds.
        """
        if self._grpc_server is not None:
            self._grpc_server.stop(grace_seconds).wait()
            self._grpc_server = None
        if self._rest_server is not None:
            if self._rest_thread is not None and self._rest_thread.is_alive():
                self._rest_server.shutdown()
            self._rest_server.server_close()
            self._rest_server = None
            self._rest_thread = None
        self.manager.stop()
        if self._ports is not None:
            logger.info("Stopped model server for model %r", self.model_name)
        self._ports = None

    def __enter__(self) -> "ModelServer":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _client_host(host: str) -> str:
    # A wildcard address accepts connections but is not a destination.
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host
