"""Non-learned baselines that a trained model must beat."""

import numpy as np

from bert4seq.data.prepare import Split
from bert4seq.data.vocabulary import NUM_RESERVED


def popularity_ranks(
    split: Split, item_counts: np.ndarray, exclude_history: bool = True
) -> np.ndarray:
    """Ranks each target by item popularity, as `Ranker.full_ranks` does.

    Every user gets the same scores (the item counts), so a target's rank is
    1 + the number of other items counted at least as often, minus those in
    the user's history when `exclude_history` is set. Ties count against the
    target, and the target itself is never excluded.

    Args:
        split: Split. Histories and targets.
        item_counts: int array `[vocabulary_size]`, e.g. from
            `PreparedData.item_counts()` (counted on all sequences).
        exclude_history: bool.

    Returns:
        int64 array of 1-based ranks.
    """
    counts = np.asarray(item_counts, dtype=np.int64)[NUM_RESERVED:]
    sorted_counts = np.sort(counts)
    ranks = np.zeros(len(split), dtype=np.int64)
    for row in range(len(split)):
        target = int(split.targets[row])
        target_count = item_counts[target]
        # Items (target included) counted at least as often as the target.
        at_least = len(sorted_counts) - np.searchsorted(sorted_counts, target_count, "left")
        rank = at_least
        if exclude_history:
            history = np.unique(split.histories[row])
            history = history[history != target]
            rank -= int((np.asarray(item_counts)[history] >= target_count).sum())
        ranks[row] = rank
    return ranks
