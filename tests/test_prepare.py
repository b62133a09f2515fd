"""Preparation: ordering, filters, vocabulary, leave-one-out without leakage."""

import os

import numpy as np
import pandas as pd
import pytest

from bert4seq.data.prepare import PrepareConfig, PreparedData, prepare
from bert4seq.data.readers import read_interactions
from bert4seq.data.vocabulary import MASK_ID, NUM_RESERVED, PAD_ID, Vocabulary
from shared_data import ML_100K



@pytest.fixture(scope="module")
def movielens():
    frame, _ = read_interactions(ML_100K)
    return frame, prepare(frame)


def frame_of(rows):
    return pd.DataFrame(
        {
            "user": [r[0] for r in rows],
            "item": [r[1] for r in rows],
            "timestamp": [float(r[2]) for r in rows],
            "rating": [np.nan] * len(rows),
            "row": np.arange(len(rows)),
        }
    )


def test_time_order_with_input_order_ties():
    rows = [("u", "c", 5), ("u", "a", 1), ("u", "x", 3), ("u", "y", 3), ("u", "b", 2)]
    data = prepare(frame_of(rows), PrepareConfig(min_user_interactions=0))
    assert data.vocabulary.decode(data.sequences[0]) == ["a", "b", "x", "y", "c"]


def test_movielens_sequences_follow_timestamps(movielens):
    frame, data = movielens
    user = data.user_ids[0]
    events = frame[frame["user"] == user].sort_values(["timestamp", "row"], kind="stable")
    assert data.vocabulary.decode(data.sequences[0]) == events["item"].tolist()


def test_min_user_interactions_filter():
    rows = [("a", "1", 1), ("a", "2", 2), ("b", "1", 1), ("b", "2", 2), ("b", "3", 3)]
    data = prepare(frame_of(rows), PrepareConfig(min_user_interactions=3))
    assert data.user_ids.tolist() == ["b"]
    assert data.report["users_dropped_min_user"] == 1


def test_filters_that_remove_everything_raise():
    rows = [("a", "1", 1)]
    with pytest.raises(ValueError, match="Lower the thresholds"):
        prepare(frame_of(rows), PrepareConfig(min_user_interactions=5))


def test_reserved_ids_are_not_items(movielens):
    _, data = movielens
    assert data.vocabulary.size == 1682 + NUM_RESERVED
    assert all((s >= NUM_RESERVED).all() for s in data.sequences)
    assert data.vocabulary.tokens()[PAD_ID] == "[PAD]"
    assert data.vocabulary.tokens()[MASK_ID] == "[MASK]"


def test_no_leakage_of_held_out_items(movielens):
    _, data = movielens
    train = data.train_sequences()
    validation = data.validation_split()
    test = data.test_split()
    assert len(test) == len(validation) == 943
    for row in range(data.num_users):
        full = data.sequences[row]
        # The training input is a strict prefix that ends before both targets.
        assert len(train[row]) == len(full) - 2
        assert np.array_equal(train[row], full[:-2])
        assert np.array_equal(validation.histories[row], full[:-2])
        assert validation.targets[row] == full[-2]
        assert test.targets[row] == full[-1]
        assert np.array_equal(test.histories[row], full[:-1])


def test_short_users_train_only():
    rows = [("a", "1", 1), ("a", "2", 2), ("b", "1", 1), ("b", "2", 2), ("b", "3", 3)]
    data = prepare(frame_of(rows), PrepareConfig(min_user_interactions=0))
    assert data.test_split().user_ids.tolist() == ["b"]
    assert [len(s) for s in data.train_sequences()] == [2, 1]


def test_save_and_load_round_trip(tmp_path, movielens):
    _, data = movielens
    directory = str(tmp_path / "prepared")
    data.save(directory)
    loaded = PreparedData.load(directory)
    assert loaded.vocabulary.tokens() == data.vocabulary.tokens()
    assert loaded.user_ids.tolist() == data.user_ids.tolist()
    assert all(np.array_equal(a, b) for a, b in zip(loaded.sequences, data.sequences))
    assert loaded.report["users"] == 943
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".prepared")]


def test_vocabulary_rejects_bad_ids():
    with pytest.raises(ValueError, match="appears twice"):
        Vocabulary(["a", "a"])
    with pytest.raises(ValueError, match="reserved"):
        Vocabulary(["[MASK]"])
    with pytest.raises(ValueError, match="line break"):
        Vocabulary(["a\nb"])
    vocabulary = Vocabulary(["a", "b"])
    assert vocabulary.encode(["b", "zzz"]).tolist() == [3, PAD_ID]
    with pytest.raises(ValueError, match="not an item id"):
        vocabulary.decode([MASK_ID])
