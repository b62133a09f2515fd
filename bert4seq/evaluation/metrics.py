"""Ranking metrics for one held-out item per user (leave-one-out).

Ranks are 1-based. Ties are counted against the target: an item with the
same score as the target is ranked ahead of it, so a model that scores
everything equally gets the worst rank, not the best.
"""

from typing import Dict, Sequence

import numpy as np

DEFAULT_CUTOFFS = (1, 5, 10)


def ranks_from_scores(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Ranks each row's target item among the row's candidates.

    Args:
        scores: float array `[num_users, num_candidates]`. Excluded
            candidates should hold -inf.
        targets: int array `[num_users]`. Column of each row's target.

    Returns:
        int64 array `[num_users]`: 1 + the number of other candidates whose
        score is at least the target's.
    """
    scores = np.asarray(scores)
    targets = np.asarray(targets)
    if scores.ndim != 2 or targets.shape != (scores.shape[0],):
        raise ValueError(
            "scores must be [num_users, num_candidates] and targets "
            f"[num_users]; got {scores.shape} and {targets.shape}."
        )
    target_scores = scores[np.arange(len(targets)), targets]
    # Count the target itself once, then every other candidate that ties or
    # beats it.
    return (scores >= target_scores[:, None]).sum(axis=1).astype(np.int64)


def metrics_from_ranks(
    ranks: np.ndarray, cutoffs: Sequence[int] = DEFAULT_CUTOFFS
) -> Dict[str, float]:
    """Computes HR@K, NDCG@K and MRR from 1-based ranks of one target each.

    With one relevant item per user, Recall@K equals HR@K and the ideal DCG
    is 1, so NDCG@K = 1 / log2(rank + 1) when rank <= K, else 0.

    Args:
        ranks: int array `[num_users]`.
        cutoffs: the values of K.

    Returns:
        A dict such as `{"HR@10": ..., "NDCG@10": ..., "MRR": ...}` of
        averages over users.
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size == 0:
        raise ValueError("No ranks to average: the evaluation split is empty.")
    if (ranks < 1).any():
        raise ValueError(f"Ranks are 1-based; got minimum {ranks.min()}.")
    metrics = {}
    for k in cutoffs:
        hit = ranks <= k
        metrics[f"HR@{k}"] = float(hit.mean())
        metrics[f"NDCG@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0).mean())
    metrics["MRR"] = float((1.0 / ranks).mean())
    return metrics
