"""Tests of the serving package against real SavedModels, servers and clients.

A small SavedModel is exported once per session with the signature layout of
bert4seq.export: `serving_default` maps `history` (DT_STRING [-1, -1]) to
`item_ids` and `scores` ([-1, TOP_K]). Two extra signatures cover other
dtypes and several inputs. Servers listen on 127.0.0.1 on free ports.
"""

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_status_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving.client import PredictionClient, PredictionError
from serving.model_manager import ModelLoadError, ModelManager
from serving.server import ModelServer

REPO_ROOT = Path(__file__).resolve().parents[1]
ITEMS = ["i1", "i2", "i3", "i4", "i5", "i6"]
TOP_K = 4
# Base score of each item in each exported version. Version 2 reverses the
# order, so its recommendations differ from those of version 1.
BASE_SCORES = {1: [0.6, 0.5, 0.4, 0.3, 0.2, 0.1], 2: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]}
HISTORY = [["i3", "i3", "i5"], ["i2", "", "unknown"]]
WAIT_SECONDS = 20.0


class _ToyRecommender(tf.Module):
    """Toy model: an item's score is its base score plus its count in the history."""

    def __init__(self, base_scores: list[float]):
        super().__init__()
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(ITEMS), tf.range(len(ITEMS), dtype=tf.int64)
            ),
            default_value=-1,
        )
        self.vocabulary = tf.constant(ITEMS)
        self.base_scores = tf.constant(base_scores, tf.float32)

    @tf.function(
        input_signature=[tf.TensorSpec([None, None], tf.string, name="history")]
    )
    def recommend(self, history):
        counts = tf.reduce_sum(
            tf.one_hot(self.table.lookup(history), len(ITEMS)), axis=1
        )
        top = tf.math.top_k(self.base_scores[None, :] + counts, k=TOP_K)
        return {
            "item_ids": tf.gather(self.vocabulary, top.indices),
            "scores": top.values,
        }

    @tf.function(
        input_signature=[tf.TensorSpec([None, None], tf.string, name="history")]
    )
    def embed(self, history):
        # [number of known items, fraction of known items] per history.
        known = tf.cast(self.table.lookup(history) >= 0, tf.float32)
        return {
            "embedding": tf.stack(
                [tf.reduce_sum(known, axis=1), tf.reduce_mean(known, axis=1)], axis=1
            )
        }

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, 2], tf.float32, name="x"),
            tf.TensorSpec([None], tf.int64, name="n"),
        ]
    )
    def mix(self, x, n):
        return {
            "y": tf.reduce_sum(x, axis=1) * tf.cast(n, tf.float32),
            "n_twice": n * 2,
        }


def _export(path: Path, version: int) -> None:
    module = _ToyRecommender(BASE_SCORES[version])
    tf.saved_model.save(
        module,
        str(path),
        signatures={
            "serving_default": module.recommend,
            "embed": module.embed,
            "mix": module.mix,
        },
    )


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> dict[int, Path]:
    """Version directories of the toy model, exported once per session."""
    root = tmp_path_factory.mktemp("exports")
    paths = {}
    for version in BASE_SCORES:
        paths[version] = root / str(version)
        _export(paths[version], version)
    return paths


def _make_base(tmp_path: Path, exported: dict[int, Path], versions: list[int]) -> Path:
    base = tmp_path / "model"
    base.mkdir()
    for version in versions:
        shutil.copytree(exported[version], base / str(version))
    return base


@pytest.fixture(scope="module")
def server(tmp_path_factory, exported):
    """A started server on version 1 that never polls."""
    base = _make_base(tmp_path_factory.mktemp("served"), exported, [1])
    model_server = ModelServer(
        "default", str(base), grpc_port=0, rest_port=0, file_system_poll_wait_seconds=0
    )
    model_server.start()
    yield model_server
    model_server.stop()


@pytest.fixture(scope="module")
def client(server):
    with PredictionClient(server.grpc_target, timeout=10) as prediction_client:
        yield prediction_client


def _http(
    url: str, body: Any = None, raw: bytes | None = None, method: str | None = None
) -> tuple[int, Any]:
    """Send a request and return (status, decoded JSON body), also for errors."""
    data = (
        raw
        if raw is not None
        else (None if body is None else json.dumps(body).encode("utf-8"))
    )
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def _predict_url(server: ModelServer, model: str = "default", suffix: str = "") -> str:
    return f"{server.rest_url}/v1/models/{model}{suffix}:predict"


def _wait_until(condition, timeout: float = WAIT_SECONDS) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


# gRPC Predict


def test_grpc_predict_matches_direct_call(server, client, exported):
    expected = tf.saved_model.load(str(exported[1])).signatures["serving_default"](
        history=tf.constant(HISTORY)
    )

    response = client.predict_response(
        "default", {"history": np.array(HISTORY, dtype=object)}
    )
    outputs = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    assert sorted(outputs) == ["item_ids", "scores"]
    np.testing.assert_array_equal(outputs["item_ids"], expected["item_ids"].numpy())
    np.testing.assert_array_equal(outputs["scores"], expected["scores"].numpy())
    assert response.model_spec.name == "default"
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"


def test_grpc_predict_writes_typed_fields(client):
    # Clients that read float_val / string_val directly, as with TF Serving.
    response = client.predict_response(
        "default", {"history": np.array(HISTORY, dtype=object)}
    )

    assert len(response.outputs["scores"].float_val) == len(HISTORY) * TOP_K
    assert len(response.outputs["item_ids"].string_val) == len(HISTORY) * TOP_K


def test_grpc_predict_other_signature_and_dtypes(client):
    outputs = client.predict(
        "default",
        {
            "x": np.array([[1.0, 2.0], [3.0, 4.0]], np.float32),
            "n": np.array([2, 3], np.int64),
        },
        signature_name="mix",
    )

    np.testing.assert_allclose(outputs["y"], [6.0, 21.0])
    np.testing.assert_array_equal(outputs["n_twice"], [4, 6])


def test_grpc_output_filter(client):
    outputs = client.predict(
        "default",
        {"history": np.array(HISTORY, dtype=object)},
        output_filter=["scores"],
    )

    assert list(outputs) == ["scores"]

    with pytest.raises(PredictionError) as raised:
        client.predict(
            "default",
            {"history": np.array(HISTORY, dtype=object)},
            output_filter=["nope"],
        )
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "nope" in raised.value.details


def test_grpc_empty_signature_name_is_default(server):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "default"
    request.inputs["history"].CopyFrom(tf.make_tensor_proto(HISTORY))
    with grpc.insecure_channel(server.grpc_target) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            request, timeout=10
        )

    assert response.model_spec.signature_name == "serving_default"
    # tf.make_tensor_proto packs numbers into tensor_content. Both layouts parse.
    assert tf.make_ndarray(response.outputs["item_ids"]).shape == (len(HISTORY), TOP_K)


@pytest.mark.parametrize(
    "model_name, version",
    [("unknown", None), ("default", 7)],
)
def test_grpc_unknown_model_or_version_not_found(client, model_name, version):
    with pytest.raises(PredictionError) as raised:
        client.predict(
            model_name, {"history": np.array(HISTORY, dtype=object)}, version=version
        )

    assert raised.value.code == grpc.StatusCode.NOT_FOUND
    assert "Servable not found for request" in raised.value.details
    assert model_name in raised.value.details


def test_grpc_unknown_signature_failed_precondition(client):
    with pytest.raises(PredictionError) as raised:
        client.predict(
            "default",
            {"history": np.array(HISTORY, dtype=object)},
            signature_name="nope",
        )

    # TF Serving 2.x returns FAILED_PRECONDITION for an unknown signature key.
    assert raised.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "'nope'" in raised.value.details


@pytest.mark.parametrize(
    "inputs, expected_fragments",
    [
        (
            {"hist": np.array(HISTORY, dtype=object)},
            ["hist", "history", "missing", "extra"],
        ),
        (
            {"history": np.array(HISTORY, dtype=object), "extra": np.array([1.0])},
            ["extra", "history"],
        ),
        (
            {"history": np.array([[1.0, 2.0]], np.float32)},
            ["history", "DT_STRING", "DT_FLOAT"],
        ),
        (
            {"history": np.array(["i1", "i2"], dtype=object)},
            ["history", "[-1,-1]", "[2]"],
        ),
    ],
    ids=["wrong_name", "extra_input", "wrong_dtype", "wrong_shape"],
)
def test_grpc_bad_input_invalid_argument(client, inputs, expected_fragments):
    with pytest.raises(PredictionError) as raised:
        client.predict("default", inputs)

    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    for fragment in expected_fragments:
        assert fragment in raised.value.details


def test_grpc_unimplemented_methods(server):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "default"
    with grpc.insecure_channel(server.grpc_target) as channel:
        with pytest.raises(grpc.RpcError) as raised:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Classify(
                request, timeout=10
            )

    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "Classify" in raised.value.details()


# Client helpers


def test_client_recommend_returns_k_pairs(client):
    recommendations = client.recommend("default", ["i3", "i3", "i5"], k=3)

    # i3 appears twice (0.4 + 2), i5 once (0.2 + 1), then i1 (0.6).
    assert [item for item, _ in recommendations] == ["i3", "i5", "i1"]
    assert recommendations[0][1] == pytest.approx(2.4)


def test_client_recommend_batch_pads_histories(client):
    batch = client.recommend_batch("default", [["i3", "i3", "i5"], ["i2"]], k=2)

    assert batch[0] == client.recommend("default", ["i3", "i3", "i5"], k=2)
    assert [item for item, _ in batch[1]] == ["i2", "i1"]


def test_client_k_above_top_k_raises(client):
    with pytest.raises(ValueError, match=rf"K={TOP_K}.*re-export"):
        client.recommend("default", ["i1"], k=TOP_K + 1)


def test_client_connection_failure_unavailable():
    with PredictionClient("127.0.0.1:1", timeout=5) as unreachable:
        with pytest.raises(PredictionError) as raised:
            unreachable.recommend("default", ["i1"], k=1)

    assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    assert "127.0.0.1:1" in str(raised.value)


# REST


def test_rest_row_and_columnar_agree(server, client):
    status_row, row = _http(_predict_url(server), {"instances": HISTORY})
    status_columnar, columnar = _http(
        _predict_url(server), {"inputs": HISTORY, "signature_name": "serving_default"}
    )
    grpc_outputs = client.predict(
        "default", {"history": np.array(HISTORY, dtype=object)}
    )

    assert status_row == 200
    assert status_columnar == 200
    assert [prediction["item_ids"] for prediction in row["predictions"]] == columnar[
        "outputs"
    ]["item_ids"]
    assert [prediction["scores"] for prediction in row["predictions"]] == columnar[
        "outputs"
    ]["scores"]
    assert columnar["outputs"]["item_ids"] == [
        [item.decode() for item in row] for row in grpc_outputs["item_ids"]
    ]
    np.testing.assert_array_equal(
        np.array(columnar["outputs"]["scores"], np.float32), grpc_outputs["scores"]
    )


def test_rest_single_output_and_named_instances(server):
    status, body = _http(
        _predict_url(server),
        {"signature_name": "embed", "instances": [{"history": ["i1", ""]}]},
    )

    # One output: each prediction is the bare value, as in TF Serving.
    assert status == 200
    assert body == {"predictions": [[1.0, 0.5]]}


def test_rest_multi_input_signature(server):
    instances = [{"x": [1.0, 2.0], "n": 2}, {"x": [3.0, 4.0], "n": 3}]
    status_row, row = _http(
        _predict_url(server), {"signature_name": "mix", "instances": instances}
    )
    status_columnar, columnar = _http(
        _predict_url(server),
        {
            "signature_name": "mix",
            "inputs": {"x": [[1.0, 2.0], [3.0, 4.0]], "n": [2, 3]},
        },
    )

    assert status_row == 200
    assert row == {"predictions": [{"n_twice": 4, "y": 6.0}, {"n_twice": 6, "y": 21.0}]}
    assert status_columnar == 200
    assert columnar == {"outputs": {"n_twice": [4, 6], "y": [6.0, 21.0]}}


def test_rest_versioned_path(server):
    status, _ = _http(
        _predict_url(server, suffix="/versions/1"), {"instances": HISTORY}
    )
    status_missing, body = _http(
        _predict_url(server, suffix="/versions/9"), {"instances": HISTORY}
    )

    assert status == 200
    assert status_missing == 404
    assert "Specific(default, 9)" in body["error"]


def test_rest_unknown_model_404(server):
    status, body = _http(_predict_url(server, model="unknown"), {"instances": HISTORY})

    assert status == 404
    assert "unknown" in body["error"]


@pytest.mark.parametrize(
    "body, expected_fragments",
    [
        ({"inputs": {"hist": HISTORY}}, ["hist", "history"]),
        ({"inputs": [[1.0, 2.0]]}, ["history", "DT_STRING"]),
        ({"inputs": ["i1", "i2"]}, ["history", "[-1,-1]", "[2]"]),
        ({"instances": [["i1", "i2"], ["i3"]]}, ["history", "ragged"]),
        (
            {"signature_name": "mix", "instances": [{"x": [1.0, 2.0], "n": 1.5}]},
            ["'n'", "int64"],
        ),
        ({"signature_name": "nope", "instances": HISTORY}, ["nope"]),
        ({"instances": HISTORY, "inputs": HISTORY}, ["instances", "inputs"]),
    ],
    ids=[
        "wrong_name",
        "wrong_dtype",
        "wrong_shape",
        "ragged",
        "float_for_int",
        "bad_signature",
        "both_formats",
    ],
)
def test_rest_bad_input_400(server, body, expected_fragments):
    status, response = _http(_predict_url(server), body)

    assert status == 400
    for fragment in expected_fragments:
        assert fragment in response["error"]


def test_rest_invalid_json_400(server):
    status, response = _http(_predict_url(server), raw=b"{not json")

    assert status == 400
    assert "not valid JSON" in response["error"]


def test_rest_unknown_path_and_method(server):
    status_path, body_path = _http(f"{server.rest_url}/v2/anything")
    status_method, body_method = _http(
        f"{server.rest_url}/v1/models/default", {"instances": HISTORY}
    )

    assert status_path == 404
    assert "/v2/anything" in body_path["error"]
    assert status_method == 405
    assert "GET" in body_method["error"]


def test_rest_model_status_available(server):
    status, body = _http(f"{server.rest_url}/v1/models/default")

    assert status == 200
    assert body == {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }


def test_rest_metadata_lists_signatures(server):
    status, body = _http(f"{server.rest_url}/v1/models/default/metadata")
    signatures = body["metadata"]["signature_def"]["signature_def"]

    assert status == 200
    assert body["model_spec"]["name"] == "default"
    assert body["model_spec"]["version"] == "1"
    assert signatures["serving_default"]["inputs"]["history"]["dtype"] == "DT_STRING"
    assert signatures["serving_default"]["outputs"]["scores"]["dtype"] == "DT_FLOAT"


# Metadata and status over gRPC


def test_grpc_metadata_lists_signatures(client):
    signatures = client.metadata("default")
    default = signatures["serving_default"]

    assert {"serving_default", "embed", "mix"} <= set(signatures)
    assert default.inputs["history"].dtype == tf.string.as_datatype_enum
    assert [dim.size for dim in default.inputs["history"].tensor_shape.dim] == [-1, -1]
    assert default.outputs["item_ids"].dtype == tf.string.as_datatype_enum
    assert default.outputs["scores"].dtype == tf.float32.as_datatype_enum
    assert [dim.size for dim in default.outputs["scores"].tensor_shape.dim] == [
        -1,
        TOP_K,
    ]


def test_grpc_model_status_available(client):
    statuses = client.model_status("default")

    assert len(statuses) == 1
    assert statuses[0].version == 1
    assert statuses[0].state == statuses[0].AVAILABLE

    with pytest.raises(PredictionError) as raised:
        client.model_status("unknown")
    assert raised.value.code == grpc.StatusCode.NOT_FOUND


# Request size limits


def test_request_size_limits(tmp_path, exported):
    base = _make_base(tmp_path, exported, [1])
    limit = 64 * 1024
    with ModelServer(
        "default",
        str(base),
        grpc_port=0,
        rest_port=0,
        file_system_poll_wait_seconds=0,
        max_request_bytes=limit,
    ) as small_server:
        big_history = [["i1"] * (limit // 4)]
        status, body = _http(_predict_url(small_server), {"instances": big_history})
        status_after, _ = _http(_predict_url(small_server), {"instances": HISTORY})

        with PredictionClient(small_server.grpc_target) as small_client:
            with pytest.raises(PredictionError) as raised:
                small_client.recommend("default", big_history[0], k=1)

    assert status == 413
    assert str(limit) in body["error"]
    assert status_after == 200
    assert raised.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_port_in_use_fails_before_loading(server, tmp_path):
    # The base path does not exist, so the error proves the bind came first.
    second = ModelServer(
        "default", str(tmp_path / "absent"), grpc_port=server.ports.grpc
    )

    with pytest.raises(
        OSError, match=rf"gRPC port at 127\.0\.0\.1:{server.ports.grpc}"
    ):
        second.start()


# Versions and hot swap


def test_hot_swap_to_new_version(tmp_path, exported):
    base = _make_base(tmp_path, exported, [1])
    with ModelServer(
        "default",
        str(base),
        grpc_port=0,
        rest_port=None,
        file_system_poll_wait_seconds=1,
    ) as swapping:
        with PredictionClient(swapping.grpc_target) as swap_client:
            before = swap_client.recommend("default", ["i2"], k=TOP_K)

            # Write, then rename, as bert4seq.export does. The server must
            # ignore ".tmp-2" until the rename.
            shutil.copytree(exported[2], base / ".tmp-2")
            os.rename(base / ".tmp-2", base / "2")

            def served_version() -> int:
                response = swap_client.predict_response(
                    "default", {"history": np.array([["i2"]], dtype=object)}
                )
                return response.model_spec.version.value

            swapped = _wait_until(lambda: served_version() == 2)
            after = swap_client.recommend("default", ["i2"], k=TOP_K)
            statuses = {
                status.version: get_model_status_pb2.ModelVersionStatus.State.Name(
                    status.state
                )
                for status in swap_client.model_status("default")
            }

    assert swapped, f"version 2 was not served within {WAIT_SECONDS} s"
    assert before[0][0] == "i2"
    assert [item for item, _ in after] == ["i2", "i6", "i5", "i4"]
    assert statuses == {1: "END", 2: "AVAILABLE"}


def test_non_integer_directories_ignored(tmp_path, exported):
    base = _make_base(tmp_path, exported, [1])
    shutil.copytree(exported[2], base / ".tmp-3")
    shutil.copytree(exported[2], base / "3a")
    (base / "4").write_text("a file, not a version directory")
    manager = ModelManager("default", str(base), file_system_poll_wait_seconds=0)

    manager.load()
    manager.poll_once()

    assert manager.current.version == 1


def test_broken_version_keeps_serving_old(tmp_path, exported):
    base = _make_base(tmp_path, exported, [1])
    manager = ModelManager("default", str(base), file_system_poll_wait_seconds=0)
    manager.load()

    (base / "2").mkdir()
    (base / "2" / "saved_model.pb").write_bytes(b"not a SavedModel")
    manager.poll_once()
    served_while_broken = manager.current.version
    broken_status = manager.version_statuses("default", 2)[0]

    shutil.rmtree(base / "2")
    shutil.copytree(exported[2], base / "2")
    manager.poll_once()

    assert served_while_broken == 1
    assert broken_status.state == "END"
    assert "version 2" in broken_status.error_message
    assert manager.current.version == 2


def test_missing_base_path_error(tmp_path):
    manager = ModelManager("default", str(tmp_path / "absent"))

    with pytest.raises(FileNotFoundError, match="absent"):
        manager.load()


def test_no_version_error(tmp_path):
    (tmp_path / ".tmp-1").mkdir()
    manager = ModelManager("default", str(tmp_path))

    with pytest.raises(FileNotFoundError, match=r"No version directory.*integer"):
        manager.load()


def test_unloadable_version_error(tmp_path):
    (tmp_path / "1").mkdir()
    manager = ModelManager("default", str(tmp_path))

    with pytest.raises(ModelLoadError, match="saved_model.pb"):
        manager.load()


# Command-line entry points


def _run_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_recommend_cli_prints_k_lines(server):
    result = _run_module(
        "serving.recommend",
        f"--server={server.grpc_target}",
        "--model_name=default",
        "--items=i3,i3,i5",
        "--k=3",
    )

    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stderr
    assert len(lines) == 3
    assert lines[0] == "i3\t2.4"
    assert all(re.fullmatch(r"i\d\t[0-9.e+-]+", line) for line in lines)


def test_recommend_cli_unknown_model_exits_1(server):
    result = _run_module(
        "serving.recommend",
        f"--server={server.grpc_target}",
        "--model_name=unknown",
        "--items=i1",
    )

    last_line = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1
    assert result.stdout == ""
    assert "NOT_FOUND" in last_line
    assert "unknown" in last_line
    assert "Traceback" not in result.stderr


class _LineReader:
    """Collects the lines of a pipe in a thread, so reads can time out."""

    def __init__(self, pipe):
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(pipe,), daemon=True).start()

    def _read(self, pipe) -> None:
        for line in pipe:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float) -> re.Match | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                break
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        return None


def _free_port() -> int:
    # --rest_api_port=0 disables REST, so the test picks a port itself. Another
    # process could take it before the server binds it, which is unlikely.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_serve_cli_serves_and_stops_on_sigterm(tmp_path, exported):
    base = _make_base(tmp_path, exported, [1])
    rest_port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serving.serve",
            f"--model_base_path={base}",
            "--port=0",
            f"--rest_api_port={rest_port}",
        ],
        cwd=REPO_ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        reader = _LineReader(process.stderr)
        started = reader.wait_for(
            r"gRPC on 127\.0\.0\.1:(\d+), REST on 127\.0\.0\.1:(\d+)", timeout=60
        )
        assert started, "".join(reader.seen)
        with PredictionClient(f"127.0.0.1:{started.group(1)}") as cli_client:
            recommendations = cli_client.recommend("default", ["i1"], k=2)
        status, _ = _http(f"http://127.0.0.1:{started.group(2)}/v1/models/default")

        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=30)
        stopped = reader.wait_for(r"Stopped model server", timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert [item for item, _ in recommendations] == ["i1", "i2"]
    assert status == 200
    assert returncode == 0
    assert stopped, "".join(reader.seen)


@pytest.mark.slow
def test_serve_cli_missing_path_exits_1(tmp_path):
    result = _run_module(
        "serving.serve", f"--model_base_path={tmp_path / 'absent'}", "--port=0"
    )

    assert result.returncode == 1
    assert "absent" in result.stderr
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.stderr
