"""bert4seq-recommend: print the top-k recommendations for one history.

    bert4seq-recommend --server=127.0.0.1:8500 --items=i1,i7,i3 --k=10

Prints one line per recommendation, `item_id<TAB>score`, best first, with
the score in %.6g format (6 significant digits). On a connection failure or a
server error, prints one line to stderr and exits with status 1.

NOTE: importing the TensorFlow Serving protos loads TensorFlow, whose C++
start-up messages go to stderr before that line. TF_CPP_MIN_LOG_LEVEL does
not silence them in TensorFlow 2.21, so read the error from the last line.
"""

import sys
from collections.abc import Sequence

from absl import app, flags

from serving import common_flags
from serving.client import DEFAULT_SIGNATURE_NAME, PredictionClient, PredictionError
from serving.common_flags import MODEL_NAME

SERVER = flags.DEFINE_string(
    "server",
    "127.0.0.1:8500",
    "gRPC address of the model server, HOST:PORT (bert4seq-serve or "
    "tensorflow_model_server).",
)
ITEMS = flags.DEFINE_list(
    "items",
    None,
    "Comma-separated item ids of the interaction history, oldest first, e.g. i1,i7,i3.",
)
K = flags.DEFINE_integer(
    "k",
    10,
    "Number of recommendations to print, at most the top-k the model was exported "
    "with.",
    lower_bound=1,
)
SIGNATURE_NAME = flags.DEFINE_string(
    "signature_name", DEFAULT_SIGNATURE_NAME, "Signature key to call."
)
MODEL_VERSION = flags.DEFINE_integer(
    "model_version",
    None,
    "Model version to call. Unset calls the latest version.",
    lower_bound=0,
)
TIMEOUT = flags.DEFINE_float(
    "timeout", 10.0, "Deadline of the request, in seconds.", lower_bound=0.001
)

# List --model_name in --helpshort next to the flags defined here.
flags.adopt_module_key_flags(common_flags)
flags.mark_flag_as_required("items")


def main(argv: Sequence[str]) -> int:
    """Request recommendations, print them and return the exit code.

    Args:
        argv: Positional arguments left after flag parsing. Must be only the
            program name.
    """
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected positional arguments: {' '.join(argv[1:])}")
    history = [item.strip() for item in ITEMS.value if item.strip()]
    if not history:
        raise app.UsageError(
            "--items lists no item ids. Pass at least one, e.g. --items=i1,i7."
        )

    try:
        with PredictionClient(SERVER.value, timeout=TIMEOUT.value) as client:
            recommendations = client.recommend(
                MODEL_NAME.value,
                history,
                K.value,
                signature_name=SIGNATURE_NAME.value,
                version=MODEL_VERSION.value,
            )
    except (PredictionError, ValueError) as error:
        # One line, because server messages may contain line breaks.
        message = " ".join(str(error).split())
        print(f"bert4seq-recommend: error: {message}", file=sys.stderr)
        return 1

    for item_id, score in recommendations:
        print(f"{item_id}\t{score:.6g}")
    return 0


def run() -> None:
    """Console-script entry point of `bert4seq-recommend`."""
    app.run(main)


if __name__ == "__main__":
    run()
