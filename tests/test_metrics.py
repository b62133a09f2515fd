"""Ranking metrics and the evaluation loop against hand-computed cases."""

import math

import numpy as np
import pytest
import tensorflow as tf

from bert4seq.data.prepare import Split
from bert4seq.evaluation.evaluate import Ranker, sample_negatives
from bert4seq.evaluation.metrics import metrics_from_ranks, ranks_from_scores


def test_ranks_from_scores_by_hand():
    scores = np.array(
        [
            [0.1, 0.9, 0.5, 0.3],  # target 2 (0.5): only 0.9 beats it -> rank 2
            [0.7, 0.2, 0.1, 0.0],  # target 0 is the best -> rank 1
            [0.4, 0.4, 0.4, 0.1],  # target 1 ties two others -> rank 3
            [0.0, -np.inf, 1.0, 2.0],  # target 0 below 1.0 and 2.0 -> rank 3
        ]
    )
    assert ranks_from_scores(scores, np.array([2, 0, 1, 0])).tolist() == [2, 1, 3, 3]


def test_metrics_from_ranks_by_hand():
    metrics = metrics_from_ranks(np.array([1, 3, 12]), cutoffs=(1, 5, 10))
    assert metrics["HR@1"] == pytest.approx(1 / 3)
    assert metrics["HR@5"] == pytest.approx(2 / 3)
    assert metrics["HR@10"] == pytest.approx(2 / 3)
    assert metrics["NDCG@1"] == pytest.approx(1 / 3)
    # NDCG of rank r is 1 / log2(r + 1): rank 1 -> 1, rank 3 -> 0.5.
    assert metrics["NDCG@5"] == pytest.approx((1.0 + 0.5) / 3)
    assert metrics["NDCG@10"] == pytest.approx((1.0 + 0.5) / 3)
    assert metrics["MRR"] == pytest.approx((1 + 1 / 3 + 1 / 12) / 3)


def test_metrics_reject_bad_ranks():
    with pytest.raises(ValueError, match="1-based"):
        metrics_from_ranks(np.array([0, 2]))
    with pytest.raises(ValueError, match="empty"):
        metrics_from_ranks(np.array([]))


class FixedScores:
    """A scorer that returns fixed logit rows, one per user in batch order.

    The Ranker only needs `max_len` and `next_item_logits`; fixed rows let
    the test check ranks by hand. All users must fit in one batch.
    """

    def __init__(self, rows, max_len=4):
        self.rows = tf.constant(rows, tf.float32)
        self.max_len = max_len

    def next_item_logits(self, item_ids, training=False):
        return self.rows[: tf.shape(item_ids)[0]]


def test_full_ranking_excludes_history_but_not_target():
    # Ids 0 and 1 are reserved; items are 2..6.
    rows = [
        [9.0, 9.0, 0.1, 5.0, 4.0, 3.0, 0.2],  # user A: history [2], target 5
        [9.0, 9.0, 1.0, 0.5, 2.0, 0.3, 0.4],  # user B: history [3, 4, 3], target 3
    ]
    split = Split(
        user_ids=np.array(["A", "B"]),
        histories=[np.array([2], np.int32), np.array([3, 4, 3], np.int32)],
        targets=np.array([5, 3], np.int32),
    )
    ranker = Ranker(FixedScores(rows), batch_size=8)
    # A: target 5 scores 3.0; ids 3 (5.0) and 4 (4.0) beat it -> rank 3.
    # B: target 3 is also in the history and keeps its score 0.5; id 4 (2.0)
    # is history and excluded, id 2 (1.0) beats it -> rank 2. Reserved ids 0
    # and 1 never count.
    assert ranker.full_ranks(split, exclude_history=True).tolist() == [3, 2]
    # With id 3 in A's history, excluding it lifts A's target to rank 2.
    split.histories[0] = np.array([3], np.int32)
    assert ranker.full_ranks(split, exclude_history=True).tolist() == [2, 2]
    assert ranker.full_ranks(split, exclude_history=False).tolist() == [3, 3]


def test_sampled_ranks_among_candidates():
    rows = [[9.0, 9.0, 0.1, 5.0, 4.0, 3.0, 0.2]]
    split = Split(np.array(["A"]), [np.array([2], np.int32)], np.array([5], np.int32))
    ranker = Ranker(FixedScores(rows), batch_size=8)
    # Target 5 (3.0) against 6 (0.2) and 4 (4.0): rank 2.
    assert ranker.sampled_ranks(split, np.array([[6, 4]])).tolist() == [2]


def test_sample_negatives_are_distinct_unseen_and_seeded():
    rng = np.random.default_rng(0)
    histories = [rng.integers(2, 300, size=20).astype(np.int32) for _ in range(50)]
    split = Split(
        np.arange(50).astype(str),
        histories,
        np.array([h[-1] for h in histories], np.int32),
    )
    counts = np.concatenate([[0, 0], rng.integers(1, 100, size=298)])
    negatives = sample_negatives(split, counts, num_negatives=100, seed=7)
    assert negatives.shape == (50, 100)
    for row in range(50):
        assert len(set(negatives[row].tolist())) == 100
        assert not set(negatives[row].tolist()) & set(histories[row].tolist())
        assert (negatives[row] >= 2).all()
    again = sample_negatives(split, counts, num_negatives=100, seed=7)
    assert np.array_equal(negatives, again)


def test_popularity_sampling_prefers_popular_items():
    split = Split(np.array(["A"] * 200), [np.array([2], np.int32)] * 200, np.full(200, 3, np.int32))
    counts = np.zeros(1002, np.int64)
    counts[2:] = 1
    counts[500] = 10000
    negatives = sample_negatives(split, counts, num_negatives=5, seed=1)
    assert (negatives == 500).any(axis=1).mean() > 0.9
    uniform = sample_negatives(split, counts, num_negatives=5, strategy="uniform", seed=1)
    assert (uniform == 500).any(axis=1).mean() < 0.2


def test_popularity_ranks_match_ranker():
    from bert4seq.evaluation.baselines import popularity_ranks

    counts = np.array([0, 0, 5, 3, 3, 1, 0])
    split = Split(
        np.array(["A", "B", "C"]),
        [np.array([2], np.int32), np.array([4, 5], np.int32), np.array([3], np.int32)],
        np.array([3, 5, 3], np.int32),
    )
    # A: ids 2, 3, 4 have count >= 3, and id 2 is history -> rank 2.
    # B: id 5 (count 1) is behind 2, 3, 4 and 6 (count 0) is not; 4 is history -> 3.
    # C: the target is in its own history and is not excluded -> rank 3.
    assert popularity_ranks(split, counts).tolist() == [2, 3, 3]
    assert popularity_ranks(split, counts, exclude_history=False).tolist() == [3, 4, 3]
    rows = np.tile(counts.astype(np.float32), (3, 1))
    ranker = Ranker(FixedScores(rows), batch_size=8)
    assert ranker.full_ranks(split).tolist() == [2, 3, 3]
