"""Model pieces: length-cut inputs, Philox dropout, the sampled softmax."""

import keras
import numpy as np
import tensorflow as tf

from bert4seq.data.cloze import inference_inputs, make_windows, pack_windows
from bert4seq.data.vocabulary import NUM_RESERVED
from bert4seq.losses.sampled_softmax import SampledSoftmax
from bert4seq.models.bert4rec import BERT4Rec
from bert4seq.models.dropout import PhiloxDropout


def small_model(max_len=12, dropout=0.1):
    keras.utils.set_random_seed(4)
    model = BERT4Rec(vocabulary_size=40, max_len=max_len, hidden_size=16, num_heads=2, dropout=dropout)
    model.build()
    return model


def test_cut_inputs_score_like_full():
    model = small_model()
    rng = np.random.default_rng(0)
    histories = [rng.integers(NUM_RESERVED, 40, size=size) for size in (1, 3, 4)]
    full = inference_inputs(histories, 12)
    # The longest input is 4 items plus [MASK], so the last 5 columns contain it.
    cut = full[:, -5:]
    np.testing.assert_allclose(
        model.next_item_logits(cut).numpy(),
        model.next_item_logits(full).numpy(),
        rtol=1e-5,
        atol=1e-5,
    )
    # Cutting into the history changes the scores: the check can fail.
    assert not np.allclose(
        model.next_item_logits(full[:, -3:]).numpy(), model.next_item_logits(full).numpy()
    )


def test_dropouts_stay_philox_after_loading(tmp_path):
    model = small_model()
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    for candidate in (model, loaded):
        dropouts = [
            layer
            for layer in candidate._flatten_layers(recursive=True)
            if isinstance(layer, keras.layers.Dropout)
        ]
        # The embedding dropout and three per block.
        assert len(dropouts) == 1 + 3 * 2
        assert all(type(layer) is PhiloxDropout for layer in dropouts)


def test_philox_dropout_rate_and_scale():
    layer = PhiloxDropout(0.25, seed=1)
    inputs = tf.ones((200, 500))
    outputs = layer(inputs, training=True).numpy()
    dropped = np.mean(outputs == 0.0)
    assert abs(dropped - 0.25) < 0.01
    np.testing.assert_allclose(outputs[outputs > 0], 1.0 / 0.75, rtol=1e-6)
    # A new mask on every call; none at inference.
    assert not np.array_equal(outputs, layer(inputs, training=True).numpy())
    assert np.array_equal(layer(inputs, training=False).numpy(), inputs.numpy())


def test_sampled_softmax_matches_estimate():
    # Uniform sampling over 8 items: with log-Q correction the loss is
    # log(1 + N / 8 * sum over other items of exp(s_k - s_positive)),
    # and an accidental hit (a negative equal to the positive) counts 0.
    vocabulary = NUM_RESERVED + 8
    probabilities = np.zeros(vocabulary)
    probabilities[NUM_RESERVED:] = 1.0 / 8
    num_negatives = 200_000
    loss = SampledSoftmax(probabilities, num_negatives)

    rng = np.random.default_rng(1)
    embeddings = rng.normal(size=(vocabulary, 4)).astype(np.float32)
    bias = rng.normal(size=vocabulary).astype(np.float32)
    hidden = rng.normal(size=(3, 2, 4)).astype(np.float32)
    labels = np.array([[2, 5], [9, 3], [4, 4]], np.int32)
    weights = np.array([[1, 1], [1, 0], [1, 1]], np.float32)

    tf.random.set_seed(7)
    value = float(loss(hidden, labels, weights, embeddings, bias))

    scores = hidden.reshape(-1, 4) @ embeddings.T + bias
    expected = []
    for row, label in enumerate(labels.reshape(-1)):
        others = [k for k in range(NUM_RESERVED, vocabulary) if k != label]
        ratio = np.exp(scores[row, others] - scores[row, label]).sum()
        expected.append(np.log1p(num_negatives / 8 * ratio))
    expected = np.sum(np.array(expected) * weights.reshape(-1)) / weights.sum()
    np.testing.assert_allclose(value, expected, rtol=0.01)


def test_packed_rows_encode_windows_alone():
    model = small_model(max_len=10, dropout=0.0)
    rng = np.random.default_rng(3)
    sequences = [rng.integers(NUM_RESERVED, 40, size=size).astype(np.int32) for size in (2, 5, 3, 9, 1, 4)]
    windows = make_windows(sequences, 10)
    item_ids, positions, segment_ids = pack_windows(windows, seed=0)
    assert len(item_ids) < len(windows)
    packed = model.encoder(item_ids, positions=positions, segment_ids=segment_ids).numpy()
    alone = model.encoder(windows).numpy()
    found = 0
    for row in range(len(item_ids)):
        for segment in np.unique(segment_ids[row][segment_ids[row] > 0]):
            columns = np.flatnonzero(segment_ids[row] == segment)
            items = item_ids[row, columns]
            match = [
                w for w in range(len(windows))
                if windows[w][windows[w] != 0].tolist() == items.tolist()
            ][0]
            np.testing.assert_allclose(
                packed[row, columns], alone[match, 10 - len(columns):], rtol=1e-4, atol=1e-5
            )
            found += 1
    assert found == len(windows)
