"""Masking invariants of the Cloze pipeline."""

import numpy as np
import pytest
import tensorflow as tf

from bert4seq.data.cloze import (
    ClozeConfig,
    inference_inputs,
    make_cloze_dataset,
    make_windows,
    num_batches,
    pack_windows,
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
    for inputs, labels, weights in make_cloze_dataset(windows, config).take(4):
        item_ids = inputs["item_ids"].numpy()
        positions = inputs["mask_positions"].numpy()
        labels = labels.numpy()
        weights = weights.numpy()
        assert positions.shape == labels.shape == weights.shape == (64, 5)
        for row in range(64):
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
                assert masked.tolist() == [19]


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
        restored.append(item_ids)
    restored = np.concatenate(restored)
    assert sorted(map(tuple, restored.tolist())) == sorted(map(tuple, windows.tolist()))


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


def test_packing_keeps_windows_and_positions():
    windows = make_windows(random_sequences(200, seed=9, max_length=12), 16, all_prefixes=True)
    item_ids, positions, segment_ids = pack_windows(windows, seed=4)
    assert item_ids.shape == positions.shape == segment_ids.shape
    assert item_ids.shape[1] == 16
    # Far fewer rows than windows, since most windows are short.
    assert len(item_ids) < len(windows) / 2
    unpacked = []
    for row in range(len(item_ids)):
        segments = segment_ids[row]
        # Windows are numbered 1, 2, ... in order; padding only at the end.
        used = segments[segments > 0]
        assert (np.diff(used) >= 0).all()
        assert (segments[len(used):] == 0).all()
        for segment in np.unique(used):
            columns = np.flatnonzero(segments == segment)
            items = item_ids[row, columns]
            # A window keeps its left-padded positions: the last item at 15.
            assert positions[row, columns].tolist() == list(range(16 - len(items), 16))
            unpacked.append(tuple(items.tolist()))
    expected = [tuple(w[w != PAD_ID].tolist()) for w in windows]
    assert sorted(unpacked) == sorted(expected)


def test_packed_masking_per_window():
    config = ClozeConfig(max_len=16, mask_prob=0.15, last_item_prob=0.3, batch_size=64, seed=5, pack=True)
    windows = make_windows(random_sequences(300, seed=2, max_length=20), 16, all_prefixes=True)
    saw_last_only = False
    for inputs, labels, weights in make_cloze_dataset(windows, config).take(3):
        item_ids = inputs["item_ids"].numpy()
        segment_ids = inputs["segment_ids"].numpy()
        positions = inputs["mask_positions"].numpy()
        assert config.num_predictions == 8
        assert positions.shape[1] == config.num_predictions
        for row in range(len(item_ids)):
            used = weights.numpy()[row] > 0
            masked = np.flatnonzero(item_ids[row] == MASK_ID)
            assert sorted(positions[row][used].tolist()) == masked.tolist()
            assert (segment_ids[row][masked] > 0).all()
            segments = np.unique(segment_ids[row][segment_ids[row] > 0])
            if len(segments) <= config.num_predictions:
                # Every window has a masked item when the row cap allows it.
                assert set(segments) <= set(segment_ids[row][masked].tolist())
            for segment in segments:
                columns = np.flatnonzero(segment_ids[row] == segment)
                hits = np.intersect1d(columns, masked)
                if hits.tolist() == [columns[-1]]:
                    saw_last_only = True
    assert saw_last_only
    assert num_batches(windows, config) == len(list(make_cloze_dataset(windows, config)))
