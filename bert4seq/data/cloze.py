"""Cloze-task training examples built inside tf.data.

Histories are cut into fixed-length windows once, in NumPy. Masks are drawn
per batch with stateless random ops inside `Dataset.map`, so every epoch draws
new masks, runs are repeatable for a seed, and all shapes are static (the
same pipeline runs on TPU).

Windows are left-padded: the most recent item is always at position
`max_len - 1`, which is also where inference puts [MASK].
"""

import dataclasses
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from bert4seq.data.vocabulary import MASK_ID, NUM_RESERVED, PAD_ID


@dataclasses.dataclass
class ClozeConfig:
    """How training examples are cut and masked.

    Attributes:
        max_len: Window length in items (the model's sequence length).
        mask_prob: Probability that an item in a window is masked.
        max_predictions: Cap on masked positions per window.
        last_item_prob: Share of windows in which only the last item is
            masked, as in inference requests.
        sliding_step: Step in items between windows over a history longer
            than `max_len`; None uses `max_len // 2`.
        all_prefixes: Cut a window ending at every item of a history (from
            its second item on) instead of sliding windows. Many more
            windows, each shaped like an inference request.
        batch_size: Windows per batch.
        seed: Seed for shuffling and masking.
        length_buckets: Most window lengths batches are cut to: `max_len`,
            then halved down to 2 (`max_len = 50` gives 50, 25, 13, 7, 4
            and 2). A window goes to the shortest bucket that holds its
            items and loses the padding beyond it, so short histories cost
            less compute. 1 pads every window to `max_len`.
    """

    max_len: int = 50
    mask_prob: float = 0.2
    max_predictions: int = 20
    last_item_prob: float = 0.1
    sliding_step: Optional[int] = None
    all_prefixes: bool = False
    batch_size: int = 256
    seed: int = 0
    length_buckets: int = 8

    def __post_init__(self):
        if self.max_len < 2:
            raise ValueError(f"max_len must be at least 2; got {self.max_len}.")
        if not 0.0 < self.mask_prob <= 1.0:
            raise ValueError(
                f"mask_prob must be in (0, 1]; got {self.mask_prob}."
            )
        if not 0.0 <= self.last_item_prob <= 1.0:
            raise ValueError(
                f"last_item_prob must be in [0, 1]; got {self.last_item_prob}."
            )
        if self.max_predictions < 1:
            raise ValueError(
                f"max_predictions must be at least 1; got {self.max_predictions}."
            )
        if self.sliding_step is not None and self.sliding_step < 1:
            raise ValueError(
                f"sliding_step must be at least 1; got {self.sliding_step}."
            )
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1; got {self.batch_size}.")
        if self.length_buckets < 1:
            raise ValueError(
                f"length_buckets must be at least 1; got {self.length_buckets}."
            )

    @property
    def num_predictions(self) -> int:
        """Masked slots per window: the cap, at most the window length."""
        return min(self.max_predictions, self.max_len)


def bucket_lengths(max_len: int, num_buckets: int) -> list:
    """Returns the bucket window lengths, shortest first.

    `max_len`, then repeatedly halved (rounded up), `num_buckets` lengths in
    all, none shorter than 2.
    """
    lengths = [max_len]
    while len(lengths) < num_buckets and lengths[-1] > 2:
        lengths.append(max(2, -(-lengths[-1] // 2)))
    return sorted(set(lengths))


def window_lengths(windows: np.ndarray) -> np.ndarray:
    """Returns the number of items (non-padding ids) in each window."""
    return np.count_nonzero(windows != PAD_ID, axis=1)


def left_pad(sequences: Sequence[np.ndarray], length: int) -> np.ndarray:
    """Keeps the last `length` items of each sequence, left-padded with 0."""
    padded = np.full((len(sequences), length), PAD_ID, dtype=np.int32)
    for row, sequence in enumerate(sequences):
        tail = sequence[-length:] if len(sequence) else sequence
        if len(tail):
            padded[row, length - len(tail):] = tail
    return padded


def inference_inputs(histories: Sequence[np.ndarray], max_len: int) -> np.ndarray:
    """Builds model inputs for next-item prediction from id histories.

    Drops padding and reserved ids, keeps the last `max_len - 1` items of
    each history, appends [MASK] and left-pads to `max_len`, which is the
    layout of the training windows.

    Args:
        histories: sequence of int arrays. Item ids, oldest first.
        max_len: int. The model's sequence length.

    Returns:
        int32 array `[len(histories), max_len]`.
    """
    items = [np.asarray(h, dtype=np.int32) for h in histories]
    items = [h[h >= NUM_RESERVED] for h in items]
    padded = left_pad(items, max_len - 1)
    mask_column = np.full((len(items), 1), MASK_ID, dtype=np.int32)
    return np.concatenate([padded, mask_column], axis=1)


def make_windows(
    sequences: Sequence[np.ndarray],
    max_len: int,
    step: Optional[int] = None,
    all_prefixes: bool = False,
) -> np.ndarray:
    """Cuts histories into left-padded windows of `max_len` items.

    A history of at most `max_len` items gives one window. A longer one
    gives windows ending at its last item and then every `step` items
    earlier, down to the window that starts at its first item, so every item
    is inside at least one window. With `all_prefixes`, a history of n items
    gives n - 1 windows instead, ending at its 2nd, 3rd, ..., n-th item
    (a one-item history gives one window).

    Args:
        sequences: sequence of int32 arrays. Item ids in time order.
        max_len: int. Window length.
        step: int. Distance between window ends; None uses `max_len // 2`.
        all_prefixes: bool. One window per prefix, as described above.

    Returns:
        int32 array of shape `[num_windows, max_len]`. Empty histories give
        no window.
    """
    step = step or max(1, max_len // 2)
    windows = []
    for sequence in sequences:
        length = len(sequence)
        if length == 0:
            continue
        if all_prefixes:
            for end in range(min(2, length), length + 1):
                windows.append(sequence[max(0, end - max_len):end])
            continue
        if length <= max_len:
            windows.append(sequence)
            continue
        ends = list(range(length, max_len, -step))
        ends.append(max_len)
        for end in ends:
            windows.append(sequence[end - max_len:end])
    return left_pad(windows, max_len)


def mask_batch(item_ids: tf.Tensor, seed: tf.Tensor, config: ClozeConfig):
    """Masks a batch of windows for the Cloze task.

    Args:
        item_ids: int32 tensor `[batch, max_len]`, left-padded windows.
        seed: int64 tensor `[2]`, the stateless seed for this batch.
        config: ClozeConfig.

    Returns:
        `(inputs, labels, weights)`: `inputs` is a dict with `item_ids`
        (masked items replaced by [MASK]) and `mask_positions` (int32
        `[batch, num_predictions]`); `labels` contains the original items at
        those positions; `weights` is 1.0 for real predictions and 0.0 for
        unused slots. Padding is never masked, every window with an item has
        at least one mask, and no window has more than `num_predictions`.
    """
    batch_size = tf.shape(item_ids)[0]
    max_len = config.max_len
    num_predictions = config.num_predictions
    seeds = tf.random.experimental.stateless_split(
        tf.cast(seed, tf.int64), num=4
    )
    is_item = item_ids >= NUM_RESERVED

    draw = tf.random.stateless_uniform([batch_size, max_len], seed=seeds[0])
    masked = (draw < config.mask_prob) & is_item

    # Some windows mask only the last item, as inference does.
    last_only = (
        tf.random.stateless_uniform([batch_size], seed=seeds[1])
        < config.last_item_prob
    )
    last_position = tf.one_hot(max_len - 1, max_len, on_value=True, off_value=False)
    masked = tf.where(last_only[:, None], last_position[None, :] & is_item, masked)

    # A window with nothing masked would teach nothing: mask one random item.
    pick = tf.random.stateless_uniform([batch_size, max_len], seed=seeds[2])
    random_item = tf.argmax(tf.where(is_item, pick, -1.0), axis=1, output_type=tf.int32)
    nothing_masked = ~tf.reduce_any(masked, axis=1) & tf.reduce_any(is_item, axis=1)
    masked |= nothing_masked[:, None] & tf.one_hot(
        random_item, max_len, on_value=True, off_value=False
    )

    # Cap: keep a random subset of at most num_predictions masked positions.
    priority = tf.random.stateless_uniform([batch_size, max_len], seed=seeds[3])
    priority = tf.where(masked, priority, -1.0)
    top_priority, mask_positions = tf.math.top_k(priority, k=num_predictions)
    used = top_priority >= 0.0
    mask_positions = tf.where(used, mask_positions, 0)
    weights = tf.cast(used, tf.float32)

    labels = tf.gather(item_ids, mask_positions, batch_dims=1)
    labels = tf.where(used, labels, PAD_ID)
    chosen = tf.reduce_any(
        tf.one_hot(mask_positions, max_len, on_value=True, off_value=False)
        & used[:, :, None],
        axis=1,
    )
    inputs = tf.where(chosen, tf.constant(MASK_ID, tf.int32), item_ids)
    return {"item_ids": inputs, "mask_positions": mask_positions}, labels, weights


def num_batches(windows: np.ndarray, config: ClozeConfig) -> int:
    """Batches in one pass of `make_cloze_dataset(windows, config)`."""
    lengths = window_lengths(windows)
    buckets = bucket_lengths(config.max_len, config.length_buckets)
    sizes = np.bincount(np.searchsorted(buckets, lengths), minlength=len(buckets))
    return int(
        sum(
            size // config.batch_size if size >= config.batch_size else 1
            for size in sizes
            if size
        )
    )


def make_cloze_dataset(
    windows: np.ndarray, config: ClozeConfig, repeat: bool = False
) -> tf.data.Dataset:
    """Builds the training dataset: shuffled, batched, masked windows.

    Windows are grouped into `config.length_buckets` length buckets and cut
    to their bucket's length (the most recent items are kept, so the last
    position is still the last item). Each batch comes from one bucket;
    buckets are drawn at random in proportion to their windows. Shuffling,
    bucket draws and masking are seeded by `config.seed` and drawn anew
    every time the dataset is iterated (every epoch of `fit`).

    Args:
        windows: int32 array `[num_windows, max_len]` from `make_windows`.
        config: ClozeConfig.
        repeat: bool. Repeat forever (for step-based training).

    Returns:
        A dataset of `(inputs, labels, weights)` batches, as `mask_batch`.
        The window length (second dimension) varies between batches when
        there is more than one bucket.
    """
    if windows.ndim != 2 or windows.shape[1] != config.max_len:
        raise ValueError(
            f"windows must have shape [num_windows, {config.max_len}]; "
            f"got {windows.shape}."
        )
    if len(windows) == 0:
        raise ValueError("No training windows: every training history is empty.")

    buckets = bucket_lengths(config.max_len, config.length_buckets)
    assignment = np.searchsorted(buckets, window_lengths(windows))
    datasets, sizes = [], []
    for index, length in enumerate(buckets):
        members = windows[assignment == index][:, config.max_len - length:]
        if not len(members):
            continue
        bucket_config = dataclasses.replace(config, max_len=length)
        seed = config.seed + index
        dataset = tf.data.Dataset.from_tensor_slices(members)
        dataset = dataset.shuffle(
            len(members), seed=seed, reshuffle_each_iteration=True
        )
        if repeat:
            dataset = dataset.repeat()
        # Full batches keep shapes static; a bucket smaller than one batch
        # keeps its single partial batch rather than producing nothing.
        drop_remainder = len(members) >= config.batch_size
        dataset = dataset.batch(config.batch_size, drop_remainder=drop_remainder)
        seeds = tf.data.Dataset.random(
            seed=seed, rerandomize_each_iteration=True
        ).batch(2)
        dataset = tf.data.Dataset.zip((dataset, seeds))
        dataset = dataset.map(
            lambda items, seed, c=bucket_config: mask_batch(items, seed, c),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        datasets.append(dataset)
        sizes.append(len(members))

    if len(datasets) == 1:
        dataset = datasets[0]
    else:
        dataset = tf.data.Dataset.sample_from_datasets(
            datasets,
            weights=[size / sum(sizes) for size in sizes],
            seed=config.seed,
            stop_on_empty_dataset=False,
            rerandomize_each_iteration=True,
        )
    return dataset.prefetch(tf.data.AUTOTUNE)
