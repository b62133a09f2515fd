"""Builds and trains a BERT4Rec model on prepared data with Keras `fit`."""

import logging
import os
import time
from typing import Optional

import keras
import tensorflow as tf

from bert4seq.config import ModelConfig, TrainConfig
from bert4seq.data.cloze import (
    ClozeConfig,
    make_cloze_dataset,
    make_windows,
    mean_targets_per_row,
    num_batches,
)
from bert4seq.data.prepare import PreparedData
from bert4seq.losses.sampled_softmax import SampledSoftmax, popularity_distribution
from bert4seq.models.bert4rec import BERT4Rec
from bert4seq.training.callbacks import TimeBudget, ValidationCallback
from bert4seq.training.schedules import WarmupLinearDecay

logger = logging.getLogger(__name__)

MODEL_FILENAME = "model.keras"


def build_model(vocabulary_size: int, config: ModelConfig) -> BERT4Rec:
    """Creates and builds a BERT4Rec model from a `ModelConfig`."""
    model = BERT4Rec(
        vocabulary_size=vocabulary_size,
        max_len=config.max_len,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        intermediate_size=config.intermediate_size,
        dropout=config.dropout,
    )
    model.build()
    return model


def cloze_config(model_config: ModelConfig, train_config: TrainConfig) -> ClozeConfig:
    return ClozeConfig(
        max_len=model_config.max_len,
        mask_prob=train_config.mask_prob,
        max_predictions=train_config.max_predictions,
        last_item_prob=train_config.last_item_prob,
        sliding_step=train_config.sliding_step,
        all_prefixes=train_config.all_prefixes,
        pack=train_config.pack_windows,
        batch_size=train_config.batch_size,
        seed=train_config.seed,
    )


def train(
    data: PreparedData,
    model_config: ModelConfig,
    train_config: TrainConfig,
    model_dir: str,
    strategy: Optional[tf.distribute.Strategy] = None,
    start_time: Optional[float] = None,
    verbose="auto",
) -> BERT4Rec:
    """Trains BERT4Rec with the Cloze task and returns the best model.

    Writes to `model_dir`: `backup/` (a checkpoint every epoch, from which a
    restarted call resumes), `logs/` (TensorBoard), `best.weights.h5` and
    `validation_log.csv`. At the end it writes `model.keras` with the
    weights of the best validation epoch.

    Args:
        data: PreparedData. Sequences and vocabulary.
        model_config: ModelConfig.
        train_config: TrainConfig.
        model_dir: str. Output directory.
        strategy: tf.distribute.Strategy. None uses the default strategy.
        start_time: float. `time.monotonic()` at the start of the command,
            for the validation log and the time budget.
        verbose: Keras `fit` verbosity ("auto" shows the progress bar).

    Returns:
        The trained model.
    """
    start_time = start_time if start_time is not None else time.monotonic()
    keras.utils.set_random_seed(train_config.seed)
    strategy = strategy or tf.distribute.get_strategy()
    os.makedirs(model_dir, exist_ok=True)

    cloze = cloze_config(model_config, train_config)
    windows = make_windows(
        data.train_sequences(), cloze.max_len, cloze.sliding_step, cloze.all_prefixes
    )
    if train_config.steps_per_epoch:
        steps_per_epoch = train_config.steps_per_epoch
        dataset = make_cloze_dataset(windows, cloze, repeat=True)
    else:
        steps_per_epoch = num_batches(windows, cloze)
        dataset = make_cloze_dataset(windows, cloze)
    total_steps = steps_per_epoch * train_config.epochs
    logger.info(
        "Training on %d windows of %d items: %d steps per epoch, at most %d epochs.",
        len(windows),
        cloze.max_len,
        steps_per_epoch,
        train_config.epochs,
    )

    # Packed rows vary in their number of targets. Dividing the loss by a
    # batch's expected number of targets makes every target weigh the same.
    targets_per_row = mean_targets_per_row(dataset)
    logger.info("Masked targets per batch row: %.2f on average.", targets_per_row)

    with strategy.scope():
        model = build_model(data.vocabulary.size, model_config)
        objective = None
        if train_config.objective == "sampled_softmax":
            objective = SampledSoftmax(
                popularity_distribution(data.item_counts(), train_config.sampling_power),
                train_config.sampled_negatives,
            )
        model.set_objective(objective, targets_per_row=targets_per_row)
        schedule = WarmupLinearDecay(
            train_config.learning_rate,
            warmup_steps=int(train_config.warmup_ratio * total_steps),
            total_steps=total_steps,
        )
        optimizer = keras.optimizers.AdamW(
            learning_rate=schedule,
            weight_decay=train_config.weight_decay,
            clipnorm=train_config.clipnorm or None,
        )
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
        model.compile(optimizer=optimizer, jit_compile=train_config.jit_compile)

    validation = data.validation_split().subsample(
        train_config.validation_users, train_config.seed
    )
    # Validation runs before the checkpoint, so a checkpointed epoch always
    # has its validation state saved too.
    callbacks = [
        ValidationCallback(
            validation,
            model_dir,
            every_n_epochs=train_config.eval_every,
            patience=train_config.patience,
            start_time=start_time,
        ),
        keras.callbacks.BackupAndRestore(os.path.join(model_dir, "backup")),
        keras.callbacks.TensorBoard(os.path.join(model_dir, "logs")),
    ]
    if train_config.time_budget_seconds:
        callbacks.append(TimeBudget(train_config.time_budget_seconds, start_time))

    model.fit(
        dataset,
        epochs=train_config.epochs,
        steps_per_epoch=train_config.steps_per_epoch,
        callbacks=callbacks,
        verbose=verbose,
    )
    save_model(model, model_dir)
    return model


def save_model(model: BERT4Rec, model_dir: str) -> str:
    """Saves `model.keras` atomically and returns its path."""
    path = os.path.join(model_dir, MODEL_FILENAME)
    temporary = os.path.join(model_dir, "model.partial.keras")
    model.save(temporary)
    os.replace(temporary, path)
    return path


def load_model(model_dir: str) -> BERT4Rec:
    """Loads `model.keras` from a model directory written by `train`."""
    path = os.path.join(model_dir, MODEL_FILENAME)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No trained model at {path!r}. Train one with bert4seq-train "
            f"--model_dir={model_dir}."
        )
    return keras.saving.load_model(path, compile=False)
