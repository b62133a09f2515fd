"""Exports a trained BERT4Rec model as a TensorFlow Serving SavedModel.

The export is a version directory `EXPORT_BASE/<version>/` that
`tensorflow_model_server --model_base_path=EXPORT_BASE` loads as is. It is
written to a temporary directory beside the version directories and renamed
into place, so a server polling EXPORT_BASE never loads half a model (TF
Serving ignores directory names that are not integers).

Signatures (batch dimension first):

- `serving_default`: input `history` (DT_STRING `[batch, length]`, item ids
  oldest first; "" is padding, unknown ids are ignored) returns `item_ids`
  (DT_STRING `[batch, top_k]`) and `scores` (DT_FLOAT `[batch, top_k]`,
  logits, highest first). Items in the history are never recommended.
- `embed`: input `history` as above returns `embedding` (DT_FLOAT
  `[batch, hidden_size]`), the encoder output at the [MASK] position, for
  nearest-neighbour retrieval against the item embeddings.

Assets: `vocabulary.txt` (read by the in-graph lookup table; line number =
id), `config.json` (model and training configuration, export settings) and,
when given, `metrics.json`.
"""

import json
import logging
import os
import shutil
import tempfile
from typing import Optional

import tensorflow as tf

from bert4seq.data.vocabulary import MASK_ID, NUM_RESERVED, PAD_ID, Vocabulary

logger = logging.getLogger(__name__)

SIGNATURE_KEY = "serving_default"
EMBED_SIGNATURE_KEY = "embed"
INPUT_KEY = "history"


class _ServingModule(tf.Module):
    """Wraps the Keras model with string-id lookups for serving."""

    def __init__(self, model, vocabulary_path: str, tokens: list, top_k: int):
        super().__init__()
        self.model = model
        self.max_len = model.max_len
        self.top_k = top_k
        self.vocabulary_asset = tf.saved_model.Asset(vocabulary_path)
        initializer = tf.lookup.TextFileInitializer(
            self.vocabulary_asset,
            key_dtype=tf.string,
            key_index=tf.lookup.TextFileIndex.WHOLE_LINE,
            value_dtype=tf.int64,
            value_index=tf.lookup.TextFileIndex.LINE_NUMBER,
        )
        # Unknown ids map to -1 and are dropped like padding.
        self.lookup = tf.lookup.StaticHashTable(initializer, default_value=-1)
        self.tokens = tf.constant(tokens, dtype=tf.string)

    def _encode(self, history):
        """Maps a string batch to left-padded ids ending in [MASK]."""
        ids = tf.cast(self.lookup.lookup(history), tf.int32)
        known = tf.ragged.boolean_mask(ids, ids >= NUM_RESERVED)
        recent = known[:, -(self.max_len - 1):]

        # Left-pad: reverse each row, pad on the right, reverse back.
        reversed_rows = tf.RaggedTensor.from_row_lengths(
            tf.gather(recent.flat_values, _reverse_within_rows(recent)),
            recent.row_lengths(),
        )
        padded = reversed_rows.to_tensor(
            default_value=PAD_ID, shape=[None, self.max_len - 1]
        )
        padded = tf.reverse(padded, axis=[1])
        batch_size = tf.shape(padded)[0]
        mask_column = tf.fill([batch_size, 1], tf.constant(MASK_ID, tf.int32))
        return tf.concat([padded, mask_column], axis=1), known

    @tf.function(
        input_signature=[tf.TensorSpec([None, None], tf.string, name=INPUT_KEY)]
    )
    def recommend(self, history):
        item_ids, known = self._encode(history)
        logits = tf.cast(self.model.next_item_logits(item_ids), tf.float32)
        vocabulary_size = tf.shape(logits)[1]

        # Exclude reserved ids and everything already in the history.
        reserved = tf.range(vocabulary_size) < NUM_RESERVED
        logits = tf.where(reserved[None, :], tf.float32.min, logits)
        rows = tf.cast(known.value_rowids(), tf.int32)
        history_index = tf.stack([rows, known.flat_values], axis=1)
        logits = tf.tensor_scatter_nd_update(
            logits,
            history_index,
            tf.fill([tf.shape(history_index)[0]], tf.float32.min),
        )

        scores, indices = tf.math.top_k(logits, k=self.top_k)
        return {"item_ids": tf.gather(self.tokens, indices), "scores": scores}

    @tf.function(
        input_signature=[tf.TensorSpec([None, None], tf.string, name=INPUT_KEY)]
    )
    def embed(self, history):
        item_ids, _ = self._encode(history)
        return {"embedding": tf.cast(self.model.sequence_embedding(item_ids), tf.float32)}


def _reverse_within_rows(ragged):
    """Indices into `ragged.flat_values` that reverse every row."""
    starts = ragged.row_starts()
    limits = ragged.row_limits()
    rows = ragged.value_rowids()
    positions = tf.range(tf.shape(ragged.flat_values, out_type=tf.int64)[0])
    return tf.gather(starts, rows) + tf.gather(limits, rows) - 1 - positions


def next_version(export_base: str) -> int:
    """Returns 1 + the highest integer version directory under `export_base`."""
    if not os.path.isdir(export_base):
        return 1
    versions = [int(name) for name in os.listdir(export_base) if name.isdigit()]
    return max(versions, default=0) + 1


def export_saved_model(
    model,
    vocabulary: Vocabulary,
    export_base: str,
    top_k: int = 100,
    config: Optional[dict] = None,
    metrics: Optional[dict] = None,
    version: Optional[int] = None,
) -> str:
    """Writes a TF Serving version directory and returns its path.

    Args:
        model: BERT4Rec. A trained model.
        vocabulary: Vocabulary. The ids the model was trained with.
        export_base: str. The model base path TF Serving watches.
        top_k: int. Recommendations per request in `serving_default`.
        config: dict. Stored as `assets/config.json`.
        metrics: dict. Stored as `assets/metrics.json`.
        version: int. Version number; None takes the next free one.

    Returns:
        The path of the new version directory.
    """
    if not 1 <= top_k <= vocabulary.num_items:
        raise ValueError(
            f"top_k must be between 1 and the number of items "
            f"({vocabulary.num_items}); got {top_k}."
        )
    os.makedirs(export_base, exist_ok=True)
    version = version or next_version(export_base)
    final_path = os.path.join(export_base, str(version))
    if os.path.exists(final_path):
        raise FileExistsError(
            f"Version directory {final_path!r} already exists; remove it or "
            "export a different version."
        )

    # The temporary name is not an integer, so TF Serving ignores it.
    temporary = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=export_base)
    try:
        staging = os.path.join(temporary, "staging")
        os.makedirs(staging)
        vocabulary_path = os.path.join(staging, "vocabulary.txt")
        vocabulary.save(vocabulary_path)

        module = _ServingModule(model, vocabulary_path, vocabulary.tokens(), top_k)
        saved_path = os.path.join(temporary, "model")
        tf.saved_model.save(
            module,
            saved_path,
            signatures={
                SIGNATURE_KEY: module.recommend,
                EMBED_SIGNATURE_KEY: module.embed,
            },
        )

        assets = os.path.join(saved_path, "assets")
        export_config = dict(config or {})
        export_config.update(
            {"top_k": top_k, "max_len": model.max_len, "version": version}
        )
        with open(os.path.join(assets, "config.json"), "w") as f:
            json.dump(export_config, f, indent=2, sort_keys=True)
        if metrics is not None:
            with open(os.path.join(assets, "metrics.json"), "w") as f:
                json.dump(metrics, f, indent=2, sort_keys=True)

        os.rename(saved_path, final_path)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    logger.info("Exported SavedModel version %d to %s.", version, final_path)
    return final_path
