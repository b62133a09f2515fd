"""Masking invariants of the Cloze pipeline."""

import numpy as np
import pytest
import tensorflow as tf

from bert4seq.data.cloze import (
    ClozeConfig,
    bucket_lengths,
    inference_inputs,
    make_cloze_dataset,
    make_windows,
    num_batches,
)
from bert4seq.data.vocabulary import MASK_ID, NUM_RESERVED, PAD_ID


def random_sequences(count, seed=0, max_length=80):
    rng = np.random.default_rng(seed)
    return [
        rng.integers(NUM_RESERVED, 500, size=rng.integers(1, max_length)).astype(np.int32)
        for _ in range(count)
    ]


def test_windows_cover_every_item_left_padded():
    sequence = np.arange(NUM_RESERVED, NUM_RESERVED + 23, dtype=np.int32)
    windows = make_windows([sequence, sequence[:3]], max_len=10, step=5)
    # Ends at 23, 18, 13, then the window that starts at the first item.
    assert windows.shape == (5, 10)
    assert windows[0].tolist() == sequence[13:23].tolist()
    assert windows[3].tolist() == sequence[:10].tolist()
    assert windows[4].tolist() == [PAD_ID] * 7 + sequence[:3].tolist()
    covered = set(np.concatenate(windows[:4]).tolist())
    assert covered == set(sequence.tolist())


@pytest.mark.parametrize("mask_prob,last_item_prob", [(0.2, 0.1), (0.9, 0.0), (0.05, 1.0)])
def test_masking_invariants(mask_prob, last_item_prob):
    config = ClozeConfig(
        max_len=20,
        mask_prob=mask_prob,
        max_predictions=5,
        last_item_prob=last_item_prob,
        batch_size=64,
        seed=3,
    )
    windows = make_windows(random_sequences(300), config.max_len)
    for inputs, labels, weights in make_cloze_dataset(windows, config).take(6):
        item_ids = inputs["item_ids"].numpy()
        positions = inputs["mask_positions"].numpy()
        labels = labels.numpy()
        weights = weights.numpy()
        rows, length = item_ids.shape
        assert length in bucket_lengths(20, config.length_buckets)
        assert positions.shape == labels.shape == weights.shape == (rows, min(5, length))
        for row in range(rows):
            used = weights[row] > 0
            masked = np.flatnonzero(item_ids[row] == MASK_ID)
            # At least one mask, at most the cap, no position twice.
            assert 1 <= used.sum() <= 5
            assert sorted(positions[row][used].tolist()) == masked.tolist()
            # Labels are real items, only at masked positions.
            assert (labels[row][used] >= NUM_RESERVED).all()
            assert (labels[row][~used] == PAD_ID).all()
            # Padding is never masked: where the input is padding it stays so.
            original_pad = item_ids[row] == PAD_ID
            assert not np.isin(np.flatnonzero(original_pad), positions[row][used]).any()
            if last_item_prob == 1.0:
                assert masked.tolist() == [length - 1]


def test_labels_restore_the_window():
    config = ClozeConfig(max_len=12, mask_prob=0.5, max_predictions=12, batch_size=8, seed=1)
    windows = make_windows(random_sequences(8, seed=5, max_length=12), config.max_len)
    dataset = make_cloze_dataset(windows, config)
    restored = []
    for inputs, labels, weights in dataset:
        item_ids = inputs["item_ids"].numpy().copy()
        for row in range(len(item_ids)):
            used = weights.numpy()[row] > 0
            item_ids[row, inputs["mask_positions"].numpy()[row][used]] = labels.numpy()[row][used]
        # Bucketed batches are shorter than max_len: pad them back.
        padding = np.full((len(item_ids), config.max_len - item_ids.shape[1]), PAD_ID)
        restored.append(np.concatenate([padding, item_ids], axis=1))
    restored = np.concatenate(restored)
    assert sorted(map(tuple, restored.tolist())) == sorted(map(tuple, windows.tolist()))


def test_buckets_cut_only_padding_and_count_batches():
    assert bucket_lengths(50, 4) == [7, 13, 25, 50]
    assert bucket_lengths(50, 8) == [2, 4, 7, 13, 25, 50]
    assert bucket_lengths(50, 1) == [50]
    assert bucket_lengths(4, 8) == [2, 4]
    config = ClozeConfig(max_len=40, mask_prob=0.3, batch_size=16, seed=2)
    windows = make_windows(random_sequences(500, seed=7, max_length=60), config.max_len)
    batches = list(make_cloze_dataset(windows, config))
    assert len(batches) == num_batches(windows, config)
    lengths = {x["item_ids"].shape[1] for x, _, _ in batches}
    assert lengths == set(bucket_lengths(40, 8))
    for inputs, labels, weights in batches:
        item_ids = inputs["item_ids"].numpy()
        length = item_ids.shape[1]
        # Each window is in the shortest bucket that holds all its items.
        items = np.count_nonzero(item_ids != PAD_ID, axis=1)
        shorter = [b for b in bucket_lengths(40, 8) if b < length]
        assert (items <= length).all()
        if shorter:
            assert (items > max(shorter)).all()
    # One bucket pads every window to max_len.
    single = ClozeConfig(max_len=40, batch_size=16, seed=2, length_buckets=1)
    shapes = {x["item_ids"].shape[1] for x, _, _ in make_cloze_dataset(windows, single)}
    assert shapes == {40}


def test_masks_change_between_epochs_and_repeat_with_seed():
    config = ClozeConfig(max_len=20, mask_prob=0.3, batch_size=300, seed=11)
    windows = make_windows(random_sequences(300, max_length=20), config.max_len)

    def epoch_masks(dataset):
        return [x["item_ids"].numpy() for x, _, _ in dataset]

    dataset = make_cloze_dataset(windows, config)
    first, second = epoch_masks(dataset), epoch_masks(dataset)
    assert not np.array_equal(first[0], second[0])
    again = epoch_masks(make_cloze_dataset(windows, config))
    assert np.array_equal(first[0], again[0])


def test_inference_inputs_layout():
    inputs = inference_inputs([np.array([5, 6, 7]), np.arange(2, 30), np.array([], np.int32)], 6)
    assert inputs.tolist() == [
        [PAD_ID, PAD_ID, 5, 6, 7, MASK_ID],
        [25, 26, 27, 28, 29, MASK_ID],
        [PAD_ID] * 5 + [MASK_ID],
    ]


def test_invalid_config_is_rejected():
    with pytest.raises(ValueError, match="mask_prob"):
        ClozeConfig(mask_prob=0.0)
    with pytest.raises(ValueError, match="shape"):
        make_cloze_dataset(np.zeros((4, 7), np.int32), ClozeConfig(max_len=8))


def test_all_prefixes_gives_one_window_per_prefix():
    sequence = np.arange(NUM_RESERVED, NUM_RESERVED + 6, dtype=np.int32)
    windows = make_windows([sequence, sequence[:1]], max_len=4, all_prefixes=True)
    # Prefixes ending at items 2..6 of the first history, then the lone item.
    assert windows.shape == (6, 4)
    assert windows[0].tolist() == [PAD_ID, PAD_ID] + sequence[:2].tolist()
    assert windows[4].tolist() == sequence[2:6].tolist()
    assert windows[5].tolist() == [PAD_ID] * 3 + sequence[:1].tolist()
    assert [w[-1] for w in windows[:5]] == sequence[1:].tolist()
