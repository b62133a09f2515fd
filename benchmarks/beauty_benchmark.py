"""Beauty benchmark: quality against wall time, throughput and arithmetic rate.

Runs the documented Beauty recipe exactly as a user would (`bert4seq-train
--preset=beauty`), then measures, on this machine:

1. validation NDCG@10 against wall time since the start of the command
   (CSV and PNG), the time at which it first reaches the published BERT4Rec
   level, and the final test metrics (full ranking and 100 popularity-sampled
   negatives);
2. training throughput in masked targets per second over a fixed number of
   batches, for the recipe's objective and for the full softmax;
3. the arithmetic rate of a full-softmax training step against the
   machine's measured float32 matrix-multiply rate;
4. the time to score all test users with full ranking.

Results go to `--output_dir` as `results.json`, `curve.csv` and
`curve.png`. `write_benchmarks_md.py` turns them, with the RecBole
yardstick's results, into BENCHMARKS.md.

Usage:

  python benchmarks/beauty_benchmark.py --output_dir=runs/benchmark
"""

import argparse
import csv
import json
import logging
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.join(ROOT, "..", "shared", "datasets", "beauty", "beauty.txt")
PUBLISHED_BERT4REC_NDCG_AT_10 = 0.0187

logger = logging.getLogger("beauty_benchmark")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="Beauty sequence file.")
    parser.add_argument("--output_dir", required=True, help="Where results go.")
    parser.add_argument(
        "--train_args",
        default="",
        help="Extra bert4seq-train flags, space separated (the preset's values "
        "are the recipe; use this only to explore).",
    )
    parser.add_argument(
        "--throughput_batches",
        type=int,
        default=100,
        help="Batches timed for throughput, after 10 warm-up batches.",
    )
    parser.add_argument(
        "--skip_training",
        action="store_true",
        help="Reuse the training run already in --output_dir/run.",
    )
    return parser.parse_args(argv)


def run_training(args) -> float:
    """Runs the recipe as a subprocess; returns its wall time in seconds."""
    model_dir = os.path.join(args.output_dir, "run")
    command = [
        sys.executable,
        "-m",
        "trainers.train",
        f"--data={args.data}",
        f"--model_dir={model_dir}",
        "--preset=beauty",
    ] + args.train_args.split()
    logger.info("Running: %s", " ".join(command))
    started = time.monotonic()
    subprocess.run(command, cwd=ROOT, check=True)
    return time.monotonic() - started


def read_curve(model_dir: str) -> list:
    with open(os.path.join(model_dir, "validation_log.csv")) as f:
        return [
            {key: float(value) for key, value in row.items()}
            for row in csv.DictReader(f)
        ]


def plot_curve(curve: list, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    axes.plot(
        [row["seconds"] / 60 for row in curve],
        [row["val_ndcg_at_10"] for row in curve],
        marker="o",
        label="bert4seq validation NDCG@10 (full ranking)",
    )
    axes.axhline(
        PUBLISHED_BERT4REC_NDCG_AT_10,
        color="gray",
        linestyle="--",
        label="published BERT4Rec test NDCG@10 (0.0187)",
    )
    axes.set_xlabel("minutes since the start of bert4seq-train")
    axes.set_ylabel("NDCG@10")
    axes.set_title("Amazon Beauty, leave-one-out, full ranking")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def measure_throughput(data, config: dict, objective: str, batches: int) -> dict:
    """Times training steps of the recipe's model; counts real masked targets."""
    import keras
    import tensorflow as tf

    from bert4seq.config import ModelConfig, TrainConfig
    from bert4seq.data.cloze import make_cloze_dataset, make_windows, num_batches
    from bert4seq.losses.sampled_softmax import SampledSoftmax, popularity_distribution
    from bert4seq.training.trainer import build_model, cloze_config

    model_config = ModelConfig(**config["model"])
    train_fields = dict(config["train"])
    train_fields["objective"] = objective
    train_config = TrainConfig(**train_fields)
    cloze = cloze_config(model_config, train_config)
    windows = make_windows(
        data.train_sequences(), cloze.max_len, cloze.sliding_step, cloze.all_prefixes
    )
    dataset = make_cloze_dataset(windows, cloze, repeat=True)

    model = build_model(data.vocabulary.size, model_config)
    if objective == "sampled_softmax":
        model.set_objective(
            SampledSoftmax(
                popularity_distribution(data.item_counts(), train_config.sampling_power),
                train_config.sampled_negatives,
            )
        )
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), jit_compile=train_config.jit_compile)

    # Warm-up batches trace the step (packed batches vary in rows).
    warmup = 10
    batches_list = list(dataset.take(batches + warmup))
    model.fit(dataset.take(warmup), verbose=0)
    timed = batches_list[warmup:]
    targets = sum(float(weights.numpy().sum()) for _, _, weights in timed)
    # Time the same pre-built batches, so input work is not in the figure.
    timed_dataset = tf.data.Dataset.from_generator(
        lambda: iter(timed),
        output_signature=dataset.element_spec,
    )
    started = time.monotonic()
    model.fit(timed_dataset, verbose=0)
    seconds = time.monotonic() - started
    steps_per_epoch = num_batches(windows, cloze)
    shapes = [
        (int(x["item_ids"].shape[0]), int(x["item_ids"].shape[1]), int(x["mask_positions"].shape[1]))
        for x, _, _ in timed
    ]
    return {
        "objective": objective,
        "batches": batches,
        "batch_size": cloze.batch_size,
        "batch_shapes": shapes,
        "mean_rows_per_batch": sum(rows for rows, _, _ in shapes) / len(shapes),
        "seconds_per_batch": seconds / batches,
        "masked_targets": targets,
        "masked_targets_per_second": targets / seconds,
        "steps_per_epoch": steps_per_epoch,
        "epoch_seconds_estimate": seconds / batches * steps_per_epoch,
    }


def measure_matmul_rate(size: int = 2048, repeats: int = 20) -> float:
    """Measured float32 matrix-multiply rate of this machine, in GFLOP/s."""
    import tensorflow as tf

    a = tf.random.normal([size, size])
    b = tf.random.normal([size, size])
    tf.matmul(a, b).numpy()
    started = time.monotonic()
    for _ in range(repeats):
        result = tf.matmul(a, b)
    result.numpy()
    seconds = time.monotonic() - started
    return 2.0 * size**3 * repeats / seconds / 1e9


def full_softmax_step_flops(config: dict, vocabulary_size: int, shape: tuple) -> float:
    """Estimated FLOPs of one full-softmax training step (forward + backward).

    Counts the matrix products only: the output projection over the whole
    vocabulary at every prediction slot, and the Transformer blocks over
    every position. Backward is taken as twice forward.

    Args:
        config: the run's config.json.
        vocabulary_size: int.
        shape: `(windows, window length, prediction slots)` of the batch.
    """
    model = config["model"]
    batch, length, slots_per_window = shape
    hidden = model["hidden_size"]
    inner = model["intermediate_size"] or 4 * hidden
    slots = batch * slots_per_window
    output = 2.0 * slots * hidden * vocabulary_size
    head_transform = 2.0 * slots * hidden * hidden
    per_token_block = 2.0 * (4 * hidden * hidden + 2 * hidden * inner) + 2.0 * 2 * length * hidden
    blocks = batch * length * per_token_block * model["num_layers"]
    return 3.0 * (output + head_transform + blocks)


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    sys.path.insert(0, ROOT)
    model_dir = os.path.join(args.output_dir, "run")

    results = {"command": None}
    if not args.skip_training:
        results["train_command_seconds"] = run_training(args)
    results["command"] = (
        f"bert4seq-train --data={args.data} --model_dir={model_dir} --preset=beauty "
        + args.train_args
    ).strip()

    curve = read_curve(model_dir)
    with open(os.path.join(args.output_dir, "curve.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(curve[0]))
        writer.writeheader()
        writer.writerows(curve)
    plot_curve(curve, os.path.join(args.output_dir, "curve.png"))
    reached = [
        row["seconds"]
        for row in curve
        if row["val_ndcg_at_10"] >= PUBLISHED_BERT4REC_NDCG_AT_10
    ]
    results["seconds_to_published_level"] = reached[0] if reached else None
    results["best_validation_ndcg_at_10"] = max(row["val_ndcg_at_10"] for row in curve)

    with open(os.path.join(model_dir, "metrics.json")) as f:
        results["metrics"] = json.load(f)
    # A reused run has no subprocess timing: take the trainer's own figure,
    # measured from its start to the end of test evaluation.
    results.setdefault("train_command_seconds", results["metrics"]["train_seconds"])
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    results["config"] = config

    from bert4seq.data.prepare import PreparedData, Split
    from bert4seq.evaluation.evaluate import Ranker
    from bert4seq.training.trainer import load_model

    data = PreparedData.load(os.path.join(model_dir, "data"))
    model = load_model(model_dir)
    ranker = Ranker(model)
    test = data.test_split()
    # Warm up (tracing) on one batch, then time every test user.
    ranker.full_ranks(Split(test.user_ids[:512], test.histories[:512], test.targets[:512]))
    started = time.monotonic()
    ranker.full_ranks(test)
    results["full_ranking_seconds"] = time.monotonic() - started
    results["full_ranking_users"] = len(test)

    results["throughput"] = {
        objective: measure_throughput(data, config, objective, args.throughput_batches)
        for objective in sorted({config["train"]["objective"], "softmax"})
    }
    matmul = measure_matmul_rate()
    # The mean over the timed batches (packed batches vary in rows).
    shapes = results["throughput"]["softmax"]["batch_shapes"]
    flops = sum(
        full_softmax_step_flops(config, data.vocabulary.size, shape) for shape in shapes
    ) / len(shapes)
    step_seconds = results["throughput"]["softmax"]["seconds_per_batch"]
    results["arithmetic"] = {
        "matmul_gflops": matmul,
        "full_softmax_step_gflop": flops / 1e9,
        "full_softmax_step_seconds": step_seconds,
        "full_softmax_achieved_gflops": flops / step_seconds / 1e9,
        "share_of_matmul_rate": flops / step_seconds / 1e9 / matmul,
    }
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
    logger.info("Wrote %s", os.path.join(args.output_dir, "results.json"))


if __name__ == "__main__":
    main()
