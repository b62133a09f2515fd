"""Steps shared by the trainer programs: presets, data, strategy, reports."""

import dataclasses
import json
import os

import numpy as np

from absl import logging

from bert4seq.data.prepare import PrepareConfig, PreparedData, prepare
from bert4seq.data.readers import ColumnNames, read_interactions

DATA_SUBDIR = "data"

# Named recipes. A flag given on the command line overrides the preset.
PRESETS = {
    # The Beauty recipe, chosen on validation NDCG@10 for a 30-minute CPU
    # budget. It packs windows ending at every item several to a row, uses a
    # sampled softmax with 4,096 shared negatives and a high peak learning
    # rate, and validates on 10,000 users every 316 steps. 52 epochs take
    # about 25 minutes on 2 cores, and the time budget is a guard.
    # Early stopping is off because validation plateaus while the learning
    # rate is high and rises again as it decays; the best epoch is kept.
    # benchmarks/BENCHMARKS.md has its measured quality and speed.
    "beauty": {
        "max_len": 50,
        "objective": "sampled_softmax",
        "sampled_negatives": 4096,
        "learning_rate": 3e-3,
        "all_prefixes": True,
        "pack_windows": True,
        "steps_per_epoch": 316,
        "epochs": 52,
        "mask_prob": 0.2,
        "max_predictions": 10,
        "last_item_prob": 0.1,
        "dropout": 0.1,
        "validation_users": 10000,
        "patience": 0,
        "time_budget_minutes": 27.0,
        "min_user_interactions": 5,
    },
    # MovieLens with the sequence length of BERT4Rec (Sun et al., 2019) and
    # full softmax; small batches because the logs have few users.
    "movielens": {
        "max_len": 200,
        "mask_prob": 0.2,
        "max_predictions": 40,
        "dropout": 0.1,
        "batch_size": 64,
        "min_user_interactions": 5,
    },
}


def apply_preset(flag_values) -> None:
    """Sets the preset's values on flags not given on the command line."""
    if not flag_values.preset:
        return
    for name, value in PRESETS[flag_values.preset].items():
        if not flag_values[name].present:
            flag_values[name].value = value
    logging.info("Preset %r: %s", flag_values.preset, PRESETS[flag_values.preset])


def default_max_len(data_format: str) -> int:
    """Returns the sequence length of BERT4Rec (Sun et al., 2019): 200 for MovieLens, else 50."""
    return 200 if data_format in ("ml-100k", "ml-1m") else 50


def write_json(path: str, value) -> None:
    """Writes JSON atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(temporary, path)


def prepare_data(flag_values) -> PreparedData:
    """Reads and prepares --data, or reloads what an earlier run prepared.

    The prepared data is stored under `<model_dir>/data` so that a resumed
    run, evaluation and export use the same item ids as training.
    """
    source = os.path.abspath(flag_values.data)
    directory = os.path.join(flag_values.model_dir, DATA_SUBDIR)
    prepare_config = PrepareConfig(
        min_user_interactions=flag_values.min_user_interactions,
        min_item_interactions=flag_values.min_item_interactions,
        min_rating=flag_values.min_rating,
    )
    if os.path.exists(os.path.join(directory, "sequences.npz")):
        data = PreparedData.load(directory)
        earlier = (data.report.get("source"), data.report.get("config"))
        if earlier != (source, dataclasses.asdict(prepare_config)):
            raise ValueError(
                f"{flag_values.model_dir!r} already contains data prepared from "
                f"{earlier[0]!r} with filters {earlier[1]}, not from {source!r} "
                f"with {dataclasses.asdict(prepare_config)}. Use a new "
                "--model_dir, or the same --data and filter flags to resume."
            )
        logging.info("Reusing the data prepared in %s.", directory)
        return data

    frame, read_report = read_interactions(
        flag_values.data,
        format=flag_values.format,
        columns=ColumnNames(
            user=flag_values.user_col,
            item=flag_values.item_col,
            timestamp=flag_values.time_col,
            rating=flag_values.rating_col,
        ),
        delimiter=flag_values.delimiter,
        strict=flag_values.strict,
    )
    logging.info("%s", read_report.summary())
    data = prepare(frame, prepare_config)
    data.report.update(
        {
            "source": source,
            "format": read_report.format,
            "rows_malformed": read_report.rows_malformed,
            "malformed_examples": read_report.malformed_examples,
        }
    )
    data.save(directory)
    logging.info(
        "Prepared %d users, %d items, %d interactions (%d users evaluated).",
        data.report["users"],
        data.report["items"],
        data.report["interactions"],
        data.report["users_evaluated"],
    )
    return data


def make_strategy(name: str):
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def run_config(flag_values, model_config, train_config) -> dict:
    return {
        "data": os.path.abspath(flag_values.data),
        "format": flag_values.format,
        "preset": flag_values.preset,
        "model": dataclasses.asdict(model_config),
        "train": dataclasses.asdict(train_config),
    }


def evaluate_and_report(model, data: PreparedData, flag_values) -> dict:
    """Evaluates on the test split, logs and prints the table, returns metrics."""
    from bert4seq.evaluation.baselines import popularity_ranks
    from bert4seq.evaluation.evaluate import evaluate, format_table
    from bert4seq.evaluation.metrics import metrics_from_ranks

    test = data.test_split()
    results = evaluate(
        model,
        test,
        item_counts=data.item_counts(),
        exclude_history=flag_values.exclude_history,
        num_negatives=flag_values.num_negatives,
        negative_strategy=flag_values.negative_sampling,
        seed=flag_values.eval_seed,
    )
    # The same full ranking with item counts as scores: the bar to clear.
    # Counts come from the test histories, so no test target is counted.
    history_counts = np.bincount(
        np.concatenate(test.histories), minlength=data.vocabulary.size
    )
    popularity = metrics_from_ranks(
        popularity_ranks(test, history_counts, flag_values.exclude_history)
    )
    popularity["users"] = len(test)
    results["popularity_baseline_full"] = popularity
    table = format_table(
        results,
        title=(
            f"Test metrics ({len(test)} users, leave-one-out; 'sampled' rows "
            "rank the target among sampled negatives only; the popularity "
            "baseline ranks every item by its count)"
        ),
    )
    for line in table.splitlines():
        logging.info("%s", line)
    print(table, flush=True)
    return {"test": results}
