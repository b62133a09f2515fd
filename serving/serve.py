"""bert4seq-serve: serve an exported model over gRPC and REST for development.

The flags keep the names of `tensorflow_model_server`, so a command line
moves to TensorFlow Serving with few changes:

    bert4seq-serve --model_base_path=/models/bert4seq --model_name=default
    python -m serving.serve --model_base_path=/models/bert4seq --port=8500

The server stops cleanly on SIGTERM or SIGINT (Ctrl-C).
"""

import os
import signal
import threading
from collections.abc import Sequence

from absl import app, flags, logging

from serving import common_flags
from serving.common_flags import MODEL_NAME
from serving.model_manager import ModelLoadError
from serving.server import DEFAULT_MAX_REQUEST_BYTES, ModelServer

PORT = flags.DEFINE_integer(
    "port",
    8500,
    "gRPC port. 0 picks a free port and logs it.",
    lower_bound=0,
    upper_bound=65535,
)
REST_API_PORT = flags.DEFINE_integer(
    "rest_api_port",
    8501,
    "REST (HTTP/JSON) port. 0 disables the REST API.",
    lower_bound=0,
    upper_bound=65535,
)
MODEL_BASE_PATH = flags.DEFINE_string(
    "model_base_path",
    None,
    "Directory with integer-named version directories (<path>/1/saved_model.pb, ...). "
    "The highest version is served. Names that are not integers, such as .tmp-2, are "
    "ignored.",
)
FILE_SYSTEM_POLL_WAIT_SECONDS = flags.DEFINE_integer(
    "file_system_poll_wait_seconds",
    1,
    "Interval in seconds between scans of --model_base_path for a new highest "
    "version, which is then hot-swapped in. 0 loads once and never scans again.",
    lower_bound=0,
)
HOST = flags.DEFINE_string(
    "host",
    "127.0.0.1",
    "Address to listen on for both ports. The default accepts only local clients, and "
    "0.0.0.0 exposes the server to the network without TLS or authentication.",
)
MAX_REQUEST_BYTES = flags.DEFINE_integer(
    "max_request_bytes",
    DEFAULT_MAX_REQUEST_BYTES,
    "Maximum REST request body and gRPC request message size, in bytes. Larger "
    "requests get HTTP 413 or gRPC RESOURCE_EXHAUSTED.",
    lower_bound=1,
)

# List --model_name in --helpshort next to the flags defined here.
flags.adopt_module_key_flags(common_flags)
flags.mark_flag_as_required("model_base_path")

_SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def main(argv: Sequence[str]) -> int:
    """Run the server until SIGTERM or SIGINT and return the exit code.

    Args:
        argv: Positional arguments left after flag parsing. Must be only the
            program name.
    """
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected positional arguments: {' '.join(argv[1:])}")

    model_base_path = MODEL_BASE_PATH.value
    if "://" not in model_base_path:
        model_base_path = os.path.abspath(model_base_path)

    try:
        server = ModelServer(
            model_name=MODEL_NAME.value,
            model_base_path=model_base_path,
            host=HOST.value,
            grpc_port=PORT.value,
            rest_port=REST_API_PORT.value or None,
            file_system_poll_wait_seconds=FILE_SYSTEM_POLL_WAIT_SECONDS.value,
            max_request_bytes=MAX_REQUEST_BYTES.value,
        )
    except ValueError as error:
        raise app.UsageError(str(error)) from error

    # Install the handlers before loading, so a signal during a slow load
    # still leads to a clean stop.
    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        logging.info("Received %s, shutting down", signal.Signals(signum).name)
        stop_requested.set()

    for shutdown_signal in _SHUTDOWN_SIGNALS:
        signal.signal(shutdown_signal, request_stop)

    try:
        server.start()
    except (FileNotFoundError, ModelLoadError, OSError) as error:
        logging.error("Failed to start the server: %s", error)
        server.stop()
        return 1

    # A timed wait keeps the main thread responsive to signals.
    while not stop_requested.wait(timeout=0.5):
        pass
    server.stop()
    return 0


def run() -> None:
    """Console-script entry point of `bert4seq-serve`."""
    app.run(main)


if __name__ == "__main__":
    run()
