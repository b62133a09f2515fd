r"""Trains BERT4Rec on an interaction log, evaluates it and exports it.

One command does the whole job: read and prepare the log, train with the
Cloze task, evaluate on the held-out last items (full ranking and the
BERT4Rec paper's 100 popularity-sampled negatives), write `metrics.json`,
and export a TF Serving version directory.

Example:

  bert4seq-train --data=../shared/datasets/ml-100k/u.data \
      --model_dir=runs/ml-100k --export_dir=runs/ml-100k/export \
      --epochs=20

Rerunning the same command after an interruption resumes from the last
epoch checkpoint in --model_dir.
"""

import json
import os
import sys
import time

from absl import app, flags, logging

from bert4seq.config import ModelConfig, TrainConfig
from trainers import common

FLAGS = flags.FLAGS

# Data.
flags.DEFINE_string("data", None, "Interaction log to train on.")
flags.DEFINE_enum(
    "format",
    "auto",
    ["auto", "sequence", "ml-100k", "ml-1m", "csv", "tsv", "parquet"],
    "Log format; 'auto' detects it from the file name and first lines.",
)
flags.DEFINE_string("user_col", "user_id", "User id column (csv, tsv, parquet).")
flags.DEFINE_string("item_col", "item_id", "Item id column (csv, tsv, parquet).")
flags.DEFINE_string(
    "time_col",
    "timestamp",
    "Timestamp column (csv, tsv, parquet): numbers or dates. Without it, "
    "file order is time order.",
)
flags.DEFINE_string("rating_col", None, "Rating column (csv, tsv, parquet).")
flags.DEFINE_string("delimiter", None, "Field separator for csv and tsv.")
flags.DEFINE_bool("strict", False, "Fail on the first malformed row.")
flags.DEFINE_integer(
    "min_user_interactions", 5, "Drop users with fewer events (0 keeps all)."
)
flags.DEFINE_integer(
    "min_item_interactions", 0, "Drop items with fewer events (0 keeps all)."
)
flags.DEFINE_float("min_rating", None, "Keep only events rated at least this.")

# Outputs.
flags.DEFINE_string("model_dir", None, "Directory for checkpoints, logs, metrics.")
flags.DEFINE_string(
    "export_dir",
    None,
    "TF Serving model base path; a new version directory is written there. "
    "Unset skips the export.",
)
flags.DEFINE_integer("top_k", 100, "Recommendations returned per exported request.")

# Recipe.
flags.DEFINE_enum(
    "preset",
    None,
    sorted(common.PRESETS),
    "Named recipe; flags given on the command line override its values.",
)

# Model.
flags.DEFINE_integer(
    "max_len",
    None,
    "Sequence length in items; unset uses 200 for MovieLens logs and 50 "
    "otherwise, as in the BERT4Rec paper.",
)
flags.DEFINE_integer("hidden_size", 64, "Embedding and hidden width.")
flags.DEFINE_integer("num_layers", 2, "Transformer blocks.")
flags.DEFINE_integer("num_heads", 2, "Attention heads.")
flags.DEFINE_float("dropout", 0.1, "Dropout rate in embeddings and blocks.")

# Training.
flags.DEFINE_integer("epochs", 20, "Maximum epochs (passes over the windows).")
flags.DEFINE_integer("batch_size", 256, "Windows per step, across all replicas.")
flags.DEFINE_float("learning_rate", 1e-3, "Peak AdamW learning rate.")
flags.DEFINE_float("weight_decay", 0.01, "AdamW weight decay.")
flags.DEFINE_float("warmup_ratio", 0.05, "Share of all steps used for warmup.")
flags.DEFINE_float("mask_prob", 0.2, "Probability that an item is masked.")
flags.DEFINE_integer("max_predictions", 20, "Cap on masked items per window.")
flags.DEFINE_float(
    "last_item_prob", 0.1, "Share of windows that mask only the last item."
)
flags.DEFINE_enum(
    "objective",
    "softmax",
    ["softmax", "sampled_softmax"],
    "Training loss: full softmax over all items (the paper's), or sampled "
    "softmax with shared negatives and log-Q correction (faster).",
)
flags.DEFINE_integer(
    "sampled_negatives", 1024, "Negatives per step for --objective=sampled_softmax."
)
flags.DEFINE_float(
    "sampling_power",
    0.5,
    "Negatives are drawn proportionally to (count + 1) ** sampling_power; 0 "
    "is uniform.",
)
flags.DEFINE_bool(
    "all_prefixes",
    False,
    "Train on a window ending at every item of each history instead of "
    "sliding windows (more windows per epoch, each like an inference request).",
)
flags.DEFINE_bool(
    "pack_windows",
    False,
    "Pack several training windows into each row of max_len items, each "
    "attending only to itself, so short histories carry little padding.",
)
flags.DEFINE_integer("seed", 0, "Seed for initialization, shuffling and masking.")
flags.DEFINE_integer(
    "steps_per_epoch",
    None,
    "Optimizer steps per epoch; unset is one pass over the windows.",
)
flags.DEFINE_integer("eval_every", 1, "Validate every this many epochs.")
flags.DEFINE_integer(
    "patience", 5, "Validations without improvement before stopping (0: never)."
)
flags.DEFINE_float(
    "time_budget_minutes",
    None,
    "Stop after the first epoch that ends past this many minutes.",
)
flags.DEFINE_integer(
    "validation_users", None, "Validate on a random subset of this many users."
)
flags.DEFINE_enum(
    "jit_compile",
    "auto",
    ["auto", "true", "false"],
    "Compile the training step with XLA; auto compiles it only when a GPU or "
    "TPU is present (on CPU, XLA made training steps slower).",
)
flags.DEFINE_enum(
    "strategy",
    "default",
    ["default", "mirrored", "multi_worker_mirrored"],
    "tf.distribute strategy; multi_worker_mirrored reads TF_CONFIG.",
)

# Evaluation.
flags.DEFINE_bool(
    "exclude_history",
    True,
    "Full ranking: never count items already in the user's history.",
)
flags.DEFINE_integer(
    "num_negatives", 100, "Sampled protocol: negatives per user (0 skips it)."
)
flags.DEFINE_enum(
    "negative_sampling", "popularity", ["popularity", "uniform"],
    "Sampled protocol: how negatives are drawn.",
)
flags.DEFINE_integer("eval_seed", 12345, "Seed for the sampled negatives.")

flags.mark_flags_as_required(["data", "model_dir"])


def _configure(flag_values):
    """Prepares the data and builds the model and training configs."""
    data = common.prepare_data(flag_values)
    model_config = ModelConfig(
        max_len=flag_values.max_len or common.default_max_len(data.report["format"]),
        hidden_size=flag_values.hidden_size,
        num_layers=flag_values.num_layers,
        num_heads=flag_values.num_heads,
        dropout=flag_values.dropout,
    )
    train_config = TrainConfig(
        epochs=flag_values.epochs,
        batch_size=flag_values.batch_size,
        learning_rate=flag_values.learning_rate,
        weight_decay=flag_values.weight_decay,
        warmup_ratio=flag_values.warmup_ratio,
        mask_prob=flag_values.mask_prob,
        max_predictions=flag_values.max_predictions,
        last_item_prob=flag_values.last_item_prob,
        all_prefixes=flag_values.all_prefixes,
        pack_windows=flag_values.pack_windows,
        seed=flag_values.seed,
        steps_per_epoch=flag_values.steps_per_epoch,
        eval_every=flag_values.eval_every,
        patience=flag_values.patience,
        jit_compile={"auto": "auto", "true": True, "false": False}[
            flag_values.jit_compile
        ],
        time_budget_seconds=(
            flag_values.time_budget_minutes * 60 if flag_values.time_budget_minutes else None
        ),
        validation_users=flag_values.validation_users,
        objective=flag_values.objective,
        sampled_negatives=flag_values.sampled_negatives,
        sampling_power=flag_values.sampling_power,
    )
    return data, model_config, train_config


def main(argv):
    del argv
    start_time = time.monotonic()
    common.apply_preset(FLAGS)

    # Bad input (a missing or malformed log, invalid settings) ends the
    # program with one clear message instead of a traceback.
    try:
        data, model_config, train_config = _configure(FLAGS)
    except (OSError, ValueError) as error:
        logging.error("%s", error)
        print(f"bert4seq-train: error: {error}", file=sys.stderr)
        sys.exit(1)
    common.write_json(
        os.path.join(FLAGS.model_dir, "config.json"),
        common.run_config(FLAGS, model_config, train_config),
    )

    from bert4seq.training.trainer import train

    model = train(
        data,
        model_config,
        train_config,
        FLAGS.model_dir,
        strategy=common.make_strategy(FLAGS.strategy),
        start_time=start_time,
    )
    logging.info("Training finished after %.0f s.", time.monotonic() - start_time)

    metrics = common.evaluate_and_report(model, data, FLAGS)
    metrics["train_seconds"] = round(time.monotonic() - start_time, 1)
    common.write_json(os.path.join(FLAGS.model_dir, "metrics.json"), metrics)

    if FLAGS.export_dir:
        from bert4seq.export.saved_model import export_saved_model

        with open(os.path.join(FLAGS.model_dir, "config.json")) as f:
            config = json.load(f)
        path = export_saved_model(
            model,
            data.vocabulary,
            FLAGS.export_dir,
            top_k=min(FLAGS.top_k, data.vocabulary.num_items),
            config=config,
            metrics=metrics,
        )
        logging.info("Exported the model to %s.", path)


def run():
    app.run(main)


if __name__ == "__main__":
    run()
