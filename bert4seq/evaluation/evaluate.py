"""Leave-one-out evaluation: full ranking and sampled-negative ranking."""

import logging
import time
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from bert4seq.data.cloze import inference_inputs
from bert4seq.data.prepare import Split
from bert4seq.data.vocabulary import NUM_RESERVED
from bert4seq.evaluation.metrics import DEFAULT_CUTOFFS, metrics_from_ranks

logger = logging.getLogger(__name__)


class Ranker:
    """Ranks held-out items with a `BERT4Rec` model, batch by batch.

    Scoring, history masking and rank counting run in one compiled
    TensorFlow function, so the full `[batch, vocabulary]` score matrix
    never leaves the graph.

    Args:
        model: BERT4Rec. A built model.
        batch_size: int. Users scored per batch.
    """

    def __init__(self, model, batch_size: int = 512):
        self.model = model
        self.batch_size = batch_size
        self._full_ranks = tf.function(self._full_ranks_graph, reduce_retracing=True)
        self._sampled_ranks = tf.function(
            self._sampled_ranks_graph, reduce_retracing=True
        )

    def _scores(self, item_ids):
        logits = self.model.next_item_logits(item_ids, training=False)
        logits = tf.cast(logits, tf.float32)
        # Padding and [MASK] are never recommended.
        reserved = tf.range(tf.shape(logits)[1]) < NUM_RESERVED
        return tf.where(reserved[None, :], -np.inf, logits)

    def _full_ranks_graph(self, item_ids, targets, excluded):
        # Count every id scored at least as high as the target, then take
        # back the reserved ids and the excluded history items among them.
        # This reads the [batch, vocabulary] scores once instead of
        # rewriting them, which is what makes full ranking fast.
        logits = tf.cast(self.model.next_item_logits(item_ids, training=False), tf.float32)
        batch_size = tf.shape(targets)[0]
        rows = tf.range(batch_size)
        target_scores = tf.gather_nd(logits, tf.stack([rows, targets], axis=1))
        at_least = tf.reduce_sum(
            tf.cast(logits >= target_scores[:, None], tf.int64), axis=1
        )
        reserved = tf.reduce_sum(
            tf.cast(logits[:, :NUM_RESERVED] >= target_scores[:, None], tf.int64), axis=1
        )
        excluded_hits = tf.cast(
            tf.gather_nd(logits, excluded) >= tf.gather(target_scores, excluded[:, 0]),
            tf.int64,
        )
        excluded_counts = tf.math.unsorted_segment_sum(
            excluded_hits, excluded[:, 0], batch_size
        )
        return at_least - reserved - excluded_counts

    def _sampled_ranks_graph(self, item_ids, candidates):
        scores = self._scores(item_ids)
        candidate_scores = tf.gather(scores, candidates, batch_dims=1)
        target_scores = candidate_scores[:, :1]
        return tf.reduce_sum(
            tf.cast(candidate_scores >= target_scores, tf.int64), axis=1
        )

    def _batches(self, split: Split):
        """Yields `(rows, item_ids)` batches of users of similar history length.

        Users are sorted by input length so that each batch can be cut to
        its longest input: the model then skips most of the padding of
        short histories. Scores do not change, since padding is masked out
        of attention and inputs keep their positions relative to the end.
        """
        max_len = self.model.max_len
        # The input is the last max_len - 1 items plus [MASK].
        lengths = np.array(
            [np.count_nonzero(h >= NUM_RESERVED) for h in split.histories],
            dtype=np.int64,
        )
        lengths = np.minimum(lengths, max_len - 1) + 1
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(split), self.batch_size):
            rows = order[start:start + self.batch_size]
            item_ids = inference_inputs([split.histories[row] for row in rows], max_len)
            length = int(lengths[rows].max())
            yield rows, item_ids[:, max_len - length:]

    def full_ranks(self, split: Split, exclude_history: bool = True) -> np.ndarray:
        """Ranks each target against every item of the vocabulary.

        Args:
            split: Split. Histories and targets.
            exclude_history: bool. Score items already in the user's history
                (the whole history, not only the last `max_len` items) as -inf.
                The target itself is never excluded.

        Returns:
            int64 array of 1-based ranks, one per user.
        """
        ranks = np.zeros(len(split), dtype=np.int64)
        for rows, item_ids in self._batches(split):
            if exclude_history:
                excluded = _excluded_pairs(
                    [split.histories[row] for row in rows], split.targets[rows]
                )
            else:
                excluded = np.zeros((0, 2), np.int32)
            ranks[rows] = self._full_ranks(
                tf.constant(item_ids),
                tf.constant(split.targets[rows]),
                tf.constant(excluded, tf.int32),
            ).numpy()
        return ranks

    def sampled_ranks(self, split: Split, negatives: np.ndarray) -> np.ndarray:
        """Ranks each target among itself and its sampled negatives.

        Args:
            split: Split.
            negatives: int array `[len(split), num_negatives]`.

        Returns:
            int64 array of 1-based ranks among `num_negatives + 1` items.
        """
        candidates = np.concatenate(
            [split.targets[:, None], negatives], axis=1
        ).astype(np.int32)
        ranks = np.zeros(len(split), dtype=np.int64)
        for rows, item_ids in self._batches(split):
            ranks[rows] = self._sampled_ranks(
                tf.constant(item_ids), tf.constant(candidates[rows])
            ).numpy()
        return ranks


def _excluded_pairs(histories, targets) -> np.ndarray:
    """Returns unique `(row, item)` pairs of history items, targets left out.

    Reserved ids are dropped too: the ranker takes them back separately.
    """
    rows = np.repeat(np.arange(len(histories), dtype=np.int64), [len(h) for h in histories])
    if not len(rows):
        return np.zeros((0, 2), np.int32)
    items = np.concatenate(histories).astype(np.int64)
    keep = (items != np.asarray(targets, np.int64)[rows]) & (items >= NUM_RESERVED)

    # One int64 key per (row, item) pair, so np.unique drops repeated items.
    stride = int(items.max()) + 1
    keys = np.unique(rows[keep] * stride + items[keep])
    pairs = np.stack([keys // stride, keys % stride], axis=1)
    return pairs.astype(np.int32)


def sample_negatives(
    split: Split,
    item_counts: np.ndarray,
    num_negatives: int = 100,
    strategy: str = "popularity",
    seed: int = 12345,
    excluded: Optional[Sequence[np.ndarray]] = None,
) -> np.ndarray:
    """Samples distinct negative items per user with a fixed seed.

    Negatives never include the user's target or history (nor the items in
    `excluded`, for example the user's whole sequence). With
    `strategy="popularity"` an item is drawn with probability proportional
    to its count, as in the BERT4Rec paper's evaluation; with "uniform" every
    item is equally likely.

    Args:
        split: Split. Users, histories and targets.
        item_counts: int array `[vocabulary_size]`. Events per id.
        num_negatives: int.
        strategy: str. "popularity" or "uniform".
        seed: int.
        excluded: optional per-user arrays of further ids to leave out.

    Returns:
        int32 array `[len(split), num_negatives]`.
    """
    vocabulary_size = len(item_counts)
    num_items = vocabulary_size - NUM_RESERVED
    if strategy == "popularity":
        weights = np.asarray(item_counts[NUM_RESERVED:], dtype=np.float64)
    elif strategy == "uniform":
        weights = np.ones(num_items, dtype=np.float64)
    else:
        raise ValueError(
            f"Unknown negative sampling strategy {strategy!r}; expected "
            "'popularity' or 'uniform'."
        )
    if weights.sum() <= 0:
        raise ValueError("item_counts is all zeros: nothing to sample from.")
    cumulative = np.cumsum(weights / weights.sum())
    rng = np.random.default_rng(seed)

    def draw(count):
        picks = np.searchsorted(cumulative, rng.random(count), side="right")
        return np.minimum(picks, num_items - 1) + NUM_RESERVED

    negatives = np.zeros((len(split), num_negatives), dtype=np.int32)
    for row in range(len(split)):
        seen = set(split.histories[row].tolist())
        seen.add(int(split.targets[row]))
        if excluded is not None:
            seen.update(excluded[row].tolist())
        available = num_items - len(seen)
        if available < num_negatives:
            raise ValueError(
                f"User {split.user_ids[row]} leaves only {available} items to "
                f"sample {num_negatives} negatives from; lower num_negatives."
            )
        chosen = []
        chosen_set = set()
        while len(chosen) < num_negatives:
            for item in draw(2 * num_negatives).tolist():
                if item not in seen and item not in chosen_set:
                    chosen.append(item)
                    chosen_set.add(item)
                    if len(chosen) == num_negatives:
                        break
        negatives[row] = chosen
    return negatives


def evaluate(
    model,
    split: Split,
    item_counts: Optional[np.ndarray] = None,
    exclude_history: bool = True,
    num_negatives: int = 100,
    negative_strategy: str = "popularity",
    seed: int = 12345,
    cutoffs: Sequence[int] = DEFAULT_CUTOFFS,
    batch_size: int = 512,
) -> Dict[str, Dict[str, float]]:
    """Evaluates a model on a leave-one-out split.

    Args:
        model: BERT4Rec.
        split: Split.
        item_counts: Events per id; needed for popularity-sampled negatives.
            None (or num_negatives=0) skips the sampled protocol.
        exclude_history, num_negatives, negative_strategy, seed: see
            `Ranker.full_ranks` and `sample_negatives`.
        cutoffs: the values of K for HR@K and NDCG@K.
        batch_size: users per batch.

    Returns:
        `{"full": metrics, "sampled_<strategy>_<n>": metrics}`; each metrics
        dict has HR@K, NDCG@K, MRR and `users`.
    """
    ranker = Ranker(model, batch_size=batch_size)
    started = time.monotonic()
    results = {}
    full = metrics_from_ranks(ranker.full_ranks(split, exclude_history), cutoffs)
    full["users"] = len(split)
    full["exclude_history"] = bool(exclude_history)
    results["full"] = full
    logger.info(
        "Full ranking of %d users took %.1f s.", len(split), time.monotonic() - started
    )

    if item_counts is not None and num_negatives > 0:
        negatives = sample_negatives(
            split, item_counts, num_negatives, negative_strategy, seed
        )
        sampled = metrics_from_ranks(ranker.sampled_ranks(split, negatives), cutoffs)
        sampled["users"] = len(split)
        sampled["negatives"] = num_negatives
        sampled["seed"] = seed
        results[f"sampled_{negative_strategy}_{num_negatives}"] = sampled
    return results


def format_table(results: Dict[str, Dict[str, float]], title: str = "") -> str:
    """Formats `evaluate` results as a plain-text table, one protocol a row."""
    keys = [
        key
        for key in next(iter(results.values()))
        if "@" in key or key == "MRR"
    ]
    header = f"{'protocol':<26}" + "".join(f"{key:>10}" for key in keys)
    lines = [title] if title else []
    lines += [header, "-" * len(header)]
    for protocol, metrics in results.items():
        lines.append(
            f"{protocol:<26}"
            + "".join(f"{metrics.get(key, float('nan')):>10.4f}" for key in keys)
        )
    return "\n".join(lines)
