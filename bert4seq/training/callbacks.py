"""Keras callbacks: validation with early stopping, and a wall-time budget."""

import csv
import json
import logging
import os
import time
from typing import Optional

import keras
import numpy as np

from bert4seq.data.prepare import Split
from bert4seq.evaluation.evaluate import Ranker
from bert4seq.evaluation.metrics import metrics_from_ranks

logger = logging.getLogger(__name__)

MONITOR = "val_ndcg_at_10"


class ValidationCallback(keras.callbacks.Callback):
    """Full-ranking validation every N epochs, with early stopping.

    Adds `val_ndcg_at_10`, `val_hr_at_10` and `val_mrr` to the epoch logs,
    where TensorBoard and the History read them. Keeps the weights of the
    best epoch in `best.weights.h5` and appends every validation to
    `validation_log.csv` with the wall time. Restores the best weights when
    training ends. Its state is stored next to the weights, so a run
    resumed by `BackupAndRestore` keeps counting patience correctly.

    Args:
        split: Split. Validation histories and targets.
        directory: str. Where the best weights, state and log go.
        every_n_epochs: int. Validation interval.
        patience: int. Validations without improvement before stopping;
            0 disables early stopping.
        start_time: float. `time.monotonic()` at the start of the command,
            so that the log shows time since the start, setup included.
        batch_size: int. Users per scoring batch.
    """

    def __init__(
        self,
        split: Split,
        directory: str,
        every_n_epochs: int = 1,
        patience: int = 5,
        start_time: Optional[float] = None,
        batch_size: int = 512,
    ):
        super().__init__()
        self.split = split
        self.directory = directory
        self.every_n_epochs = max(1, every_n_epochs)
        self.patience = patience
        self.start_time = start_time if start_time is not None else time.monotonic()
        self.batch_size = batch_size
        self.best_weights_path = os.path.join(directory, "best.weights.h5")
        self.state_path = os.path.join(directory, "validation_state.json")
        self.log_path = os.path.join(directory, "validation_log.csv")
        self.best = -np.inf
        self.best_epoch = -1
        self.wait = 0
        self._ranker = None

    def on_train_begin(self, logs=None):
        os.makedirs(self.directory, exist_ok=True)
        self._ranker = Ranker(self.model, batch_size=self.batch_size)
        if os.path.exists(self.state_path):
            with open(self.state_path) as f:
                state = json.load(f)
            self.best = state["best"]
            self.best_epoch = state["best_epoch"]
            self.wait = state["wait"]
            logger.info(
                "Resumed validation state: best NDCG@10 %.4f at epoch %d.",
                self.best,
                self.best_epoch + 1,
            )

    def on_epoch_end(self, epoch, logs=None):
        last_epoch = epoch + 1 == self.params.get("epochs")
        if (epoch + 1) % self.every_n_epochs and not last_epoch:
            return
        started = time.monotonic()
        ranks = self._ranker.full_ranks(self.split, exclude_history=True)
        metrics = metrics_from_ranks(ranks, cutoffs=(10,))
        elapsed = time.monotonic() - self.start_time
        if logs is not None:
            logs[MONITOR] = metrics["NDCG@10"]
            logs["val_hr_at_10"] = metrics["HR@10"]
            logs["val_mrr"] = metrics["MRR"]
        logger.info(
            "Epoch %d validation (%d users, %.1f s): NDCG@10 %.4f, HR@10 %.4f, "
            "MRR %.4f; %.0f s since start.",
            epoch + 1,
            len(self.split),
            time.monotonic() - started,
            metrics["NDCG@10"],
            metrics["HR@10"],
            metrics["MRR"],
            elapsed,
        )
        self._append_log(epoch, elapsed, metrics, logs)

        if metrics["NDCG@10"] > self.best:
            self.best = metrics["NDCG@10"]
            self.best_epoch = epoch
            self.wait = 0
            temporary = self.best_weights_path.replace(".weights.h5", ".partial.weights.h5")
            self.model.save_weights(temporary)
            os.replace(temporary, self.best_weights_path)
        else:
            self.wait += 1
            if self.patience and self.wait >= self.patience:
                logger.info(
                    "Early stopping: validation NDCG@10 has not improved on "
                    "%.4f (epoch %d) for %d validations.",
                    self.best,
                    self.best_epoch + 1,
                    self.wait,
                )
                self.model.stop_training = True
        self._save_state()

    def on_train_end(self, logs=None):
        if os.path.exists(self.best_weights_path):
            self.model.load_weights(self.best_weights_path)
            logger.info(
                "Restored the weights of epoch %d (validation NDCG@10 %.4f).",
                self.best_epoch + 1,
                self.best,
            )

    def _append_log(self, epoch, elapsed, metrics, logs):
        new_file = not os.path.exists(self.log_path)
        with open(self.log_path, "a", newline="") as f:
            writer = csv.writer(f)
            if new_file:
                writer.writerow(
                    ["epoch", "seconds", "loss", "val_ndcg_at_10", "val_hr_at_10", "val_mrr"]
                )
            writer.writerow(
                [
                    epoch + 1,
                    f"{elapsed:.1f}",
                    f"{(logs or {}).get('loss', float('nan')):.5f}",
                    f"{metrics['NDCG@10']:.5f}",
                    f"{metrics['HR@10']:.5f}",
                    f"{metrics['MRR']:.5f}",
                ]
            )

    def _save_state(self):
        temporary = self.state_path + ".tmp"
        with open(temporary, "w") as f:
            json.dump(
                {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}, f
            )
        os.replace(temporary, self.state_path)


class TimeBudget(keras.callbacks.Callback):
    """Stops training at the end of the first epoch past a wall-time budget.

    Args:
        seconds: float. The budget.
        start_time: float. `time.monotonic()` the budget counts from.
    """

    def __init__(self, seconds: float, start_time: Optional[float] = None):
        super().__init__()
        self.seconds = seconds
        self.start_time = start_time if start_time is not None else time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.monotonic() - self.start_time
        if elapsed >= self.seconds:
            logger.info(
                "Time budget of %.0f s reached after epoch %d (%.0f s); stopping.",
                self.seconds,
                epoch + 1,
                elapsed,
            )
            self.model.stop_training = True
