"""Full softmax cross-entropy over the vocabulary at masked positions."""

import keras


def masked_softmax_cross_entropy(labels, logits, weights=None, targets_per_row=None):
    """Averages softmax cross-entropy over real predictions.

    Args:
        labels: int tensor `[batch, num_predictions]`.
        logits: float tensor `[batch, num_predictions, vocabulary_size]`.
        weights: float tensor `[batch, num_predictions]`; 0 marks unused
            slots, which do not count in the average. None counts all.
        targets_per_row: float. See `weighted_mean`.

    Returns:
        A scalar loss.
    """
    losses = keras.ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    if weights is None:
        return keras.ops.mean(losses)
    return weighted_mean(losses, weights, targets_per_row)


def weighted_mean(losses, weights, targets_per_row=None):
    """Averages per-target losses over the real targets of a batch.

    Args:
        losses: float tensor, one loss per prediction slot.
        weights: float tensor of the same shape; 0 marks unused slots.
        targets_per_row: float. None divides by the batch's own number of
            real targets. A number divides by `rows * targets_per_row`
            instead, the expected count, so that every target weighs the
            same in every batch. A row is a window, or a packed row of
            several windows.

    Returns:
        A scalar loss.
    """
    weights = keras.ops.cast(weights, losses.dtype)
    total = keras.ops.sum(losses * weights)
    if targets_per_row is None:
        return total / keras.ops.maximum(keras.ops.sum(weights), 1.0)
    rows = keras.ops.cast(keras.ops.shape(weights)[0], losses.dtype)
    return total / (rows * targets_per_row)
