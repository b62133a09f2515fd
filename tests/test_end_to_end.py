"""End to end on MovieLens 100K: train, evaluate, export, serve, recommend.

The trainer and the server run as the same programs a user runs; the
responses over gRPC and REST must equal the in-process model's top-k.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

from bert4seq.data.cloze import inference_inputs
from bert4seq.data.prepare import PreparedData
from bert4seq.data.vocabulary import NUM_RESERVED
from bert4seq.export.saved_model import export_saved_model
from bert4seq.training.trainer import load_model
from serving.client import PredictionClient, PredictionError
from shared_data import ML_100K

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP_K = 10

pytestmark = pytest.mark.slow


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Runs bert4seq-train on MovieLens 100K for two short epochs."""
    model_dir = tmp_path_factory.mktemp("ml-100k")
    export_dir = model_dir / "export"
    command = [
        sys.executable, "-m", "trainers.train",
        f"--data={ML_100K}",
        f"--model_dir={model_dir}",
        f"--export_dir={export_dir}",
        "--epochs=2",
        "--max_len=50",
        "--batch_size=128",
        "--top_k=20",
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"model_dir": str(model_dir), "export_dir": str(export_dir), "stdout": result.stdout}


@pytest.fixture(scope="module")
def reference(trained):
    data = PreparedData.load(os.path.join(trained["model_dir"], "data"))
    model = load_model(trained["model_dir"])
    return data, model


def in_process_top_k(model, data, history, k):
    """The model's top-k for a history of item-id strings, history excluded."""
    ids = data.vocabulary.encode(history)
    logits = model.next_item_logits(inference_inputs([ids], model.max_len)).numpy()[0]
    logits[:NUM_RESERVED] = -np.inf
    logits[ids[ids >= NUM_RESERVED]] = -np.inf
    top = np.argsort(-logits, kind="stable")[:k]
    return data.vocabulary.decode(top), logits[top]


def sample_histories(data):
    first = data.vocabulary.decode(data.sequences[0][-8:])
    long = data.vocabulary.decode(data.sequences[1])  # longer than max_len
    return [first, long, first[:3] + ["no-such-item", ""], [first[0]]]


def test_metrics_written_and_printed(trained):
    with open(os.path.join(trained["model_dir"], "metrics.json")) as f:
        metrics = json.load(f)
    full = metrics["test"]["full"]
    sampled = metrics["test"]["sampled_popularity_100"]
    assert full["users"] == 943
    for key in ("HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10", "MRR"):
        assert 0.0 <= full[key] <= 1.0
        assert 0.0 <= sampled[key] <= 1.0
    # Ranking among 101 candidates is easier than among all 1,682 items.
    assert sampled["HR@10"] > full["HR@10"]
    # Two epochs must already beat random ranking (HR@10 = 10 / 1682).
    assert full["HR@10"] > 3 * 10 / 1682
    assert "sampled_popularity_100" in trained["stdout"]
    assert "popularity_baseline_full" in metrics["test"]
    assert os.path.exists(os.path.join(trained["model_dir"], "validation_log.csv"))


def test_export_layout(trained):
    version_dir = os.path.join(trained["export_dir"], "1")
    assert sorted(os.listdir(trained["export_dir"])) == ["1"]
    assets = os.listdir(os.path.join(version_dir, "assets"))
    assert {"vocabulary.txt", "config.json", "metrics.json"} <= set(assets)
    with open(os.path.join(version_dir, "assets", "config.json")) as f:
        config = json.load(f)
    assert config["top_k"] == 20
    assert config["model"]["max_len"] == 50


def test_export_uses_only_standard_ops(trained):
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.framework import op_def_registry

    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(trained["export_dir"], "1", "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    graph = saved_model.meta_graphs[0].graph_def
    ops = {node.op for node in graph.node}
    for function in graph.library.function:
        ops.update(node.op for node in function.node_def)
        assert "_XlaMustCompile" not in function.attr, function.signature.name
    function_names = {function.signature.name for function in graph.library.function}
    unknown = {op for op in ops - function_names if op_def_registry.get(op) is None}
    assert not unknown
    assert not {op for op in ops if op.startswith("Xla")}


def test_saved_model_equals_in_process_model(trained, reference):
    data, model = reference
    loaded = tf.saved_model.load(os.path.join(trained["export_dir"], "1"))
    signature = loaded.signatures["serving_default"]
    histories = sample_histories(data)
    width = max(len(h) for h in histories)
    batch = [h + [""] * (width - len(h)) for h in histories]
    outputs = signature(history=tf.constant(batch))
    assert outputs["item_ids"].shape == (4, 20)
    for row, history in enumerate(histories):
        items, scores = in_process_top_k(model, data, history, 20)
        served = [x.decode() for x in outputs["item_ids"].numpy()[row]]
        assert served == items
        np.testing.assert_allclose(outputs["scores"].numpy()[row], scores, rtol=1e-4, atol=1e-4)
        assert not set(served) & set(history)


def test_embedding_signature(trained, reference):
    data, model = reference
    loaded = tf.saved_model.load(os.path.join(trained["export_dir"], "1"))
    history = sample_histories(data)[0]
    embedding = loaded.signatures["embed"](history=tf.constant([history]))["embedding"]
    ids = inference_inputs([data.vocabulary.encode(history)], model.max_len)
    np.testing.assert_allclose(
        embedding.numpy(), model.sequence_embedding(ids).numpy(), rtol=1e-4, atol=1e-4
    )


def test_next_export_gets_next_version(trained, reference, tmp_path):
    data, model = reference
    base = str(tmp_path / "base")
    first = export_saved_model(model, data.vocabulary, base, top_k=5)
    second = export_saved_model(model, data.vocabulary, base, top_k=5)
    assert os.path.basename(first) == "1"
    assert os.path.basename(second) == "2"
    assert sorted(os.listdir(base)) == ["1", "2"]  # no temporary directory left


@pytest.fixture(scope="module")
def server(trained):
    """Starts bert4seq-serve as a subprocess on free loopback ports."""
    grpc_port, rest_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable, "-m", "serving.serve",
            "--host=127.0.0.1",
            f"--port={grpc_port}",
            f"--rest_api_port={rest_port}",
            "--model_name=bert4seq",
            f"--model_base_path={trained['export_dir']}",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    target = f"127.0.0.1:{grpc_port}"
    deadline = time.monotonic() + 120
    client = PredictionClient(target, timeout=5)
    while True:
        try:
            client.metadata("bert4seq")
            break
        except PredictionError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail("bert4seq-serve did not start: " + process.stderr.read()[-3000:])
            time.sleep(0.5)
    yield {"target": target, "rest": f"http://127.0.0.1:{rest_port}", "client": client}
    client.close()
    process.terminate()
    process.wait(timeout=30)


def test_grpc_predict_equals_in_process(server, reference):
    data, model = reference
    for history in sample_histories(data):
        answer = server["client"].recommend("bert4seq", history, k=TOP_K)
        items, scores = in_process_top_k(model, data, history, TOP_K)
        assert [item for item, _ in answer] == items
        np.testing.assert_allclose([s for _, s in answer], scores, rtol=1e-4, atol=1e-4)


def post_json(url, body):
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def test_rest_predict_row_and_columnar(server, reference):
    data, model = reference
    history = sample_histories(data)[0]
    items, scores = in_process_top_k(model, data, history, 20)
    url = server["rest"] + "/v1/models/bert4seq:predict"

    rows = post_json(url, {"instances": [history]})
    assert rows["predictions"][0]["item_ids"] == items
    np.testing.assert_allclose(rows["predictions"][0]["scores"], scores, rtol=1e-4, atol=1e-4)

    columns = post_json(url, {"inputs": {"history": [history]}})
    assert columns["outputs"]["item_ids"][0] == items


def test_unknown_model_not_found(server):
    with pytest.raises(PredictionError) as error:
        server["client"].recommend("no-such-model", ["1"], k=3)
    assert "NOT_FOUND" in str(error.value)
    with pytest.raises(urllib.error.HTTPError) as http_error:
        post_json(server["rest"] + "/v1/models/no-such-model:predict", {"instances": [["1"]]})
    assert http_error.value.code == 404


def test_recommend_command_prints_k_lines(server, reference):
    data, model = reference
    history = sample_histories(data)[0]
    result = subprocess.run(
        [
            sys.executable, "-m", "serving.recommend",
            f"--server={server['target']}",
            "--model_name=bert4seq",
            "--items=" + ",".join(history),
            "--k=5",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == in_process_top_k(model, data, history, 5)[0]


def test_killed_training_resumes_from_last_epoch(tmp_path):
    model_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "trainers.train",
        f"--data={ML_100K}",
        f"--model_dir={model_dir}",
        "--epochs=3",
        "--max_len=50",
        "--batch_size=64",
        "--num_negatives=0",
    ]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    backup = model_dir / "backup" / "training_metadata.json"
    deadline = time.monotonic() + 600
    while not backup.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    process.kill()
    process.wait()
    assert backup.exists(), "no checkpoint was written before the kill"

    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(model_dir / "validation_log.csv") as f:
        epochs = [int(line.split(",")[0]) for line in f.read().splitlines()[1:]]
    # Epoch 1 ran once, before the kill; the rerun went on from there.
    assert epochs.count(1) == 1
    assert epochs[-1] == 3
    assert (model_dir / "model.keras").exists()
