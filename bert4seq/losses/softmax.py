"""Full softmax cross-entropy over the vocabulary at masked positions."""

import keras


def masked_softmax_cross_entropy(labels, logits, weights=None):
    """Averages softmax cross-entropy over real predictions.

    Args:
        labels: int tensor `[batch, num_predictions]`.
        logits: float tensor `[batch, num_predictions, vocabulary_size]`.
        weights: float tensor `[batch, num_predictions]`; 0 marks unused
            slots, which do not count in the average. None counts all.

    Returns:
        A scalar loss.
    """
    losses = keras.ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    if weights is None:
        return keras.ops.mean(losses)
    weights = keras.ops.cast(weights, losses.dtype)
    return keras.ops.sum(losses * weights) / keras.ops.maximum(
        keras.ops.sum(weights), 1.0
    )
