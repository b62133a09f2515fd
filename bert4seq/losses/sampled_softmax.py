"""Sampled softmax in the retrieval style, with log-Q correction."""

from typing import Optional

import keras
import keras_rs
import numpy as np
import tensorflow as tf

from bert4seq.data.vocabulary import NUM_RESERVED
from bert4seq.losses.softmax import weighted_mean

# Logit given to a sampled negative that is the row's positive item.
ACCIDENTAL_HIT_LOGIT = -1e9


class SampledSoftmax:
    """Softmax over the positive item and negatives shared by the batch.

    Each step draws `num_negatives` item ids (with replacement) from
    `sampling_probabilities`; every masked position is scored against its
    positive and all of them. Logits are corrected by the log of each
    candidate's sampling probability (keras-rs `SamplingProbabilityCorrection`),
    so the loss estimates the full softmax, and a sampled negative equal to
    the row's positive is masked out.

    NOTE: keras-rs 0.4.0 `RemoveAccidentalHits` adds a tiny positive number
    instead of a large negative one, so accidental hits stay in place. This
    class masks them itself.

    Args:
        sampling_probabilities: float array `[vocabulary_size]`; reserved ids
            must be 0. See `popularity_distribution`.
        num_negatives: int. Shared negatives per step.

    Example:

    >>> counts = data.item_counts()
    >>> loss = SampledSoftmax(popularity_distribution(counts, 0.5), 1024)
    """

    def __init__(self, sampling_probabilities: np.ndarray, num_negatives: int = 1024):
        probabilities = np.asarray(sampling_probabilities, dtype=np.float64)
        if probabilities.ndim != 1 or (probabilities < 0).any():
            raise ValueError(
                "sampling_probabilities must be a 1-D array of non-negative "
                f"numbers; got shape {probabilities.shape}."
            )
        if probabilities[:NUM_RESERVED].any():
            raise ValueError("Reserved ids must have sampling probability 0.")
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be at least 1; got {num_negatives}.")
        probabilities = probabilities / probabilities.sum()
        self.num_negatives = num_negatives
        self.probabilities = tf.constant(probabilities, tf.float32)
        # Inverse-CDF sampling costs O(num_negatives * log V); categorical
        # sampling would cost O(num_negatives * V).
        cumulative = np.cumsum(probabilities)
        cumulative[-1] = 1.0
        self.cumulative = tf.constant(cumulative, tf.float32)
        self.correction = keras_rs.layers.SamplingProbabilityCorrection()

    def __call__(
        self, hidden, labels, weights, item_embeddings, item_bias, targets_per_row=None
    ):
        """Computes the loss.

        Args:
            hidden: float `[batch, num_predictions, hidden_size]`, the head's
                transformed states at the masked positions.
            labels: int `[batch, num_predictions]`.
            weights: float `[batch, num_predictions]`; 0 marks unused slots.
            item_embeddings: float `[vocabulary_size, hidden_size]`.
            item_bias: float `[vocabulary_size]`.
            targets_per_row: float. See `bert4seq.losses.softmax.weighted_mean`.

        Returns:
            A scalar loss averaged over real predictions.
        """
        rows = tf.shape(hidden)[0]
        hidden_size = tf.shape(hidden)[-1]
        queries = tf.reshape(hidden, [-1, hidden_size])
        positives = tf.reshape(tf.cast(labels, tf.int32), [-1])
        weights = tf.reshape(tf.cast(weights, tf.float32), [-1])

        draws = tf.random.uniform([self.num_negatives], dtype=tf.float32)
        negatives = tf.searchsorted(self.cumulative, draws, side="right", out_type=tf.int32)
        # Guard against float round-off at the top of the CDF.
        negatives = tf.minimum(negatives, tf.size(self.cumulative, tf.int32) - 1)

        queries = tf.cast(queries, tf.float32)
        embeddings = tf.cast(item_embeddings, tf.float32)
        bias = tf.cast(item_bias, tf.float32)

        # The log-Q correction is applied to the [num_negatives] row and
        # broadcast. This gives the same result as a [queries, candidates]
        # matrix of probabilities with one pass fewer over the logits.
        positive_logits = tf.reduce_sum(
            queries * tf.gather(embeddings, positives), axis=-1
        ) + tf.gather(bias, positives)
        positive_logits = self.correction(
            positive_logits, tf.gather(self.probabilities, positives)
        )
        negative_logits = tf.matmul(
            queries, tf.gather(embeddings, negatives), transpose_b=True
        ) + tf.gather(bias, negatives)[None, :]
        negative_logits = self.correction(
            negative_logits, tf.gather(self.probabilities, negatives)[None, :]
        )
        accidental = tf.equal(negatives[None, :], positives[:, None])
        negative_logits = tf.where(accidental, ACCIDENTAL_HIT_LOGIT, negative_logits)

        # Cross-entropy with the positive as class 0.
        logits = tf.concat([positive_logits[:, None], negative_logits], axis=1)
        losses = tf.reduce_logsumexp(logits, axis=1) - positive_logits
        return weighted_mean(
            tf.reshape(losses, [rows, -1]),
            tf.reshape(weights, [rows, -1]),
            targets_per_row,
        )


def popularity_distribution(
    item_counts: np.ndarray, power: float = 1.0, smoothing: float = 1.0
) -> np.ndarray:
    """Sampling probabilities proportional to `(count + smoothing) ** power`.

    `power=0` gives uniform sampling over items; reserved ids get 0.
    """
    counts = np.asarray(item_counts, dtype=np.float64)
    weights = (counts + smoothing) ** power
    weights[:NUM_RESERVED] = 0.0
    return weights / weights.sum()
