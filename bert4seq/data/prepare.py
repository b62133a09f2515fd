"""Turns an interaction log into per-user item sequences and splits them.

Preparation sorts each user's events by time (ties keep input order),
applies the filters, builds the item vocabulary and stores the result so
that training, evaluation and export agree on ids.
"""

import dataclasses
import json
import logging
import os
import shutil
import tempfile
from typing import Optional

import numpy as np
import pandas as pd

from bert4seq.data.vocabulary import Vocabulary

logger = logging.getLogger(__name__)

# Leave-one-out needs a training prefix, a validation item and a test item.
MIN_EVALUATED_LENGTH = 3


@dataclasses.dataclass
class PrepareConfig:
    """Filters applied while preparing a log.

    Attributes:
        min_user_interactions: Drop users with fewer events, after the other
            filters (0 keeps all). The BERT4Rec paper uses 5.
        min_item_interactions: Drop items with fewer events before counting
            users (0 keeps all).
        min_rating: Keep only events rated at least this; None keeps all.
            Ignored for formats without ratings.
    """

    min_user_interactions: int = 5
    min_item_interactions: int = 0
    min_rating: Optional[float] = None


@dataclasses.dataclass
class Split:
    """Inputs and held-out targets of one leave-one-out evaluation split.

    Attributes:
        user_ids: Users in this split (str).
        histories: The model input history, one int32 array per user.
        targets: The held-out item id of each user (int32).
    """

    user_ids: np.ndarray
    histories: list
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)

    def subsample(self, size: Optional[int], seed: int = 0) -> "Split":
        """Returns a fixed random subset of `size` users, in their order.

        None, or a size of at least `len(self)`, returns the split itself.
        """
        if size is None or size >= len(self):
            return self
        rows = np.sort(np.random.default_rng(seed).choice(len(self), size, replace=False))
        return Split(
            user_ids=self.user_ids[rows],
            histories=[self.histories[row] for row in rows],
            targets=self.targets[rows],
        )


class PreparedData:
    """Per-user item sequences in time order, with their vocabulary.

    Args:
        vocabulary: Vocabulary. Item ids.
        user_ids: np.ndarray of str. One entry per user.
        sequences: list of int32 np.ndarray. Item ids in time order.
        report: dict. Counts from preparation, stored with the data.
    """

    def __init__(self, vocabulary: Vocabulary, user_ids, sequences, report=None):
        if len(user_ids) != len(sequences):
            raise ValueError(
                f"{len(user_ids)} user ids but {len(sequences)} sequences."
            )
        self.vocabulary = vocabulary
        self.user_ids = np.asarray(user_ids, dtype=str)
        self.sequences = [np.asarray(s, dtype=np.int32) for s in sequences]
        self.report = dict(report or {})

    @property
    def num_users(self) -> int:
        return len(self.sequences)

    @property
    def num_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    def item_counts(self) -> np.ndarray:
        """Events per id over all sequences (length = vocabulary size)."""
        counts = np.zeros(self.vocabulary.size, dtype=np.int64)
        if self.sequences:
            np.add.at(counts, np.concatenate(self.sequences), 1)
        return counts

    # Leave-one-out: the last item is the test target, the second to last the
    # validation target, and training uses only the items before both.

    def _evaluated(self):
        return [
            index
            for index, sequence in enumerate(self.sequences)
            if len(sequence) >= MIN_EVALUATED_LENGTH
        ]

    def train_sequences(self) -> list:
        """Training prefixes: all but the last two items of evaluated users.

        Users with fewer than three items are not evaluated, so their whole
        sequence is training data.
        """
        return [
            s[:-2] if len(s) >= MIN_EVALUATED_LENGTH else s
            for s in self.sequences
        ]

    def validation_split(self) -> Split:
        indices = self._evaluated()
        return Split(
            user_ids=self.user_ids[indices],
            histories=[self.sequences[i][:-2] for i in indices],
            targets=np.asarray(
                [self.sequences[i][-2] for i in indices], dtype=np.int32
            ),
        )

    def test_split(self) -> Split:
        indices = self._evaluated()
        return Split(
            user_ids=self.user_ids[indices],
            histories=[self.sequences[i][:-1] for i in indices],
            targets=np.asarray(
                [self.sequences[i][-1] for i in indices], dtype=np.int32
            ),
        )

    def save(self, directory: str) -> None:
        """Writes the data to `directory` atomically (no pickle)."""
        parent = os.path.dirname(os.path.abspath(directory))
        os.makedirs(parent, exist_ok=True)
        temporary = tempfile.mkdtemp(prefix=".prepared-", dir=parent)
        try:
            self.vocabulary.save(os.path.join(temporary, "vocabulary.txt"))
            lengths = np.asarray([len(s) for s in self.sequences], np.int64)
            items = (
                np.concatenate(self.sequences)
                if self.sequences
                else np.zeros(0, np.int32)
            )
            np.savez(
                os.path.join(temporary, "sequences.npz"),
                user_ids=self.user_ids,
                lengths=lengths,
                items=items,
            )
            with open(os.path.join(temporary, "prepare.json"), "w") as f:
                json.dump(self.report, f, indent=2, sort_keys=True)
            if os.path.exists(directory):
                shutil.rmtree(directory)
            os.rename(temporary, directory)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise

    @classmethod
    def load(cls, directory: str):
        path = os.path.join(directory, "sequences.npz")
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"No prepared data in {directory!r} ({path} is missing). "
                "Run bert4seq-train with --data first."
            )
        vocabulary = Vocabulary.load(os.path.join(directory, "vocabulary.txt"))
        with np.load(path, allow_pickle=False) as arrays:
            user_ids = arrays["user_ids"]
            lengths = arrays["lengths"]
            items = arrays["items"]
        sequences = np.split(items, np.cumsum(lengths)[:-1]) if len(lengths) else []
        with open(os.path.join(directory, "prepare.json")) as f:
            report = json.load(f)
        return cls(vocabulary, user_ids, sequences, report)


def prepare(frame: pd.DataFrame, config: Optional[PrepareConfig] = None) -> PreparedData:
    """Builds per-user sequences from a frame returned by `read_interactions`.

    Args:
        frame: pd.DataFrame. Columns user, item, timestamp, rating, row.
        config: PrepareConfig. Filters.

    Returns:
        A `PreparedData`; its `report` counts what each filter removed.
    """
    config = config or PrepareConfig()
    report = {"interactions_read": int(len(frame))}

    if config.min_rating is not None and frame["rating"].notna().any():
        frame = frame[frame["rating"] >= config.min_rating]
        report["interactions_after_min_rating"] = int(len(frame))

    if config.min_item_interactions > 0:
        counts = frame["item"].map(frame["item"].value_counts())
        frame = frame[counts >= config.min_item_interactions]
        report["interactions_after_min_item"] = int(len(frame))

    if config.min_user_interactions > 0:
        counts = frame["user"].map(frame["user"].value_counts())
        dropped_users = frame.loc[
            counts < config.min_user_interactions, "user"
        ].nunique()
        frame = frame[counts >= config.min_user_interactions]
        report["users_dropped_min_user"] = int(dropped_users)

    if frame.empty:
        raise ValueError(
            "No interactions left after filtering "
            f"(min_user_interactions={config.min_user_interactions}, "
            f"min_item_interactions={config.min_item_interactions}, "
            f"min_rating={config.min_rating}). Lower the thresholds."
        )

    # A stable sort on (user, timestamp, row): events without timestamps
    # keep their input order, and equal timestamps keep input order too.
    frame = frame.assign(_time=frame["timestamp"].fillna(0.0))
    frame = frame.sort_values(["user", "_time", "row"], kind="stable")

    # User order: first appearance in the log, so ids stay stable across runs.
    first_row = frame.groupby("user", sort=False)["row"].min().sort_values()
    user_order = first_row.index.to_numpy()
    grouped = frame.groupby("user", sort=False)["item"]
    item_lists = {user: items.to_list() for user, items in grouped}
    ordered_lists = [item_lists[user] for user in user_order]

    vocabulary = Vocabulary.from_sequences(ordered_lists)
    sequences = [vocabulary.encode(items) for items in ordered_lists]

    lengths = np.asarray([len(s) for s in sequences])
    report.update(
        {
            "users": int(len(sequences)),
            "items": vocabulary.num_items,
            "interactions": int(lengths.sum()),
            "users_evaluated": int((lengths >= MIN_EVALUATED_LENGTH).sum()),
            "median_sequence_length": float(np.median(lengths)),
            "max_sequence_length": int(lengths.max()),
            "config": dataclasses.asdict(config),
        }
    )
    logger.info(
        "Prepared %d users, %d items, %d interactions.",
        report["users"],
        report["items"],
        report["interactions"],
    )
    return PreparedData(vocabulary, user_order.astype(str), sequences, report)
