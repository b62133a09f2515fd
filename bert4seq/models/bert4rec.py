"""BERT4Rec: a sequence encoder with a tied Cloze (masked item) head."""

import keras

from bert4seq.losses.softmax import masked_softmax_cross_entropy
from bert4seq.models.cloze_head import ClozeHead
from bert4seq.models.encoder import SequenceEncoder


@keras.saving.register_keras_serializable(package="bert4seq")
class BERT4Rec(keras.Model):
    """BERT4Rec (Sun et al., CIKM 2019) built from keras-hub layers.

    The encoder is a `SequenceEncoder`. The head is a `ClozeHead`, which is
    keras-hub's `MaskedLMHead` (dense, activation, layer norm, then the item
    embedding transposed plus an output bias), so logits are computed only
    at `mask_positions`.

    Inputs are a dict with `item_ids` (int32 `[batch, max_len]`, left-padded,
    [MASK] = 1 where an item is hidden) and `mask_positions` (int32
    `[batch, num_predictions]`). The output is logits of shape
    `[batch, num_predictions, vocabulary_size]`.

    Training minimises softmax cross-entropy over the whole vocabulary at
    the masked positions, averaged over real predictions (slots whose sample
    weight is 0 do not count). `set_objective` swaps in a sampled softmax.

    Args:
        vocabulary_size: int. Number of ids, reserved ids included.
        max_len: int. Sequence length.
        hidden_size, num_layers, num_heads, intermediate_size, dropout,
        activation, layer_norm_epsilon, initializer_range: as in
            `SequenceEncoder`. Defaults follow the BERT4Rec paper (hidden
            64, 2 layers, 2 heads, GELU).

    Example:

    >>> model = BERT4Rec(vocabulary_size=1000, max_len=50)
    >>> logits = model({
    ...     "item_ids": keras.ops.ones((2, 50), dtype="int32"),
    ...     "mask_positions": keras.ops.zeros((2, 5), dtype="int32"),
    ... })
    >>> logits.shape
    (2, 5, 1000)
    """

    def __init__(
        self,
        vocabulary_size: int,
        max_len: int,
        hidden_size: int = 64,
        num_layers: int = 2,
        num_heads: int = 2,
        intermediate_size: int = None,
        dropout: float = 0.1,
        activation: str = "gelu",
        layer_norm_epsilon: float = 1e-12,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.encoder = SequenceEncoder(
            vocabulary_size=vocabulary_size,
            max_len=max_len,
            hidden_size=hidden_size,
            num_layers=num_layers,
            num_heads=num_heads,
            intermediate_size=intermediate_size,
            dropout=dropout,
            activation=activation,
            layer_norm_epsilon=layer_norm_epsilon,
            initializer_range=initializer_range,
            name="encoder",
        )
        self.head = ClozeHead(
            vocabulary_size=vocabulary_size,
            token_embedding=self.encoder.item_embedding,
            intermediate_activation=activation,
            layer_norm_epsilon=layer_norm_epsilon,
            kernel_initializer=keras.initializers.TruncatedNormal(
                stddev=initializer_range
            ),
            name="cloze_head",
        )
        self.vocabulary_size = vocabulary_size
        self.max_len = max_len
        self.objective = None
        self.targets_per_row = None

    def set_objective(self, objective=None, targets_per_row=None):
        """Sets the training objective; None is the full softmax.

        Neither setting is saved with the model, because both matter only
        for training.

        Args:
            objective: a callable like `bert4seq.losses.SampledSoftmax`, or
                None for the full softmax.
            targets_per_row: float. The mean number of masked targets per
                row of a training batch (a window, or a packed row). The training loss is then divided by the
                expected number of targets of a batch, not by its own count,
                so that every target weighs the same. See
                `bert4seq.losses.softmax.weighted_mean`.
        """
        self.objective = objective
        self.targets_per_row = targets_per_row

    def build(self, input_shape=None):
        item_shape = (None, self.max_len)
        self.encoder.build(item_shape)
        self.head.build((None, self.max_len, self.encoder.hidden_size))
        self.built = True

    def call(self, inputs, training=None):
        # Packed training rows (see bert4seq.data.cloze.pack_windows) carry
        # positions and segment ids; inference inputs do not.
        sequence = self.encoder(
            inputs["item_ids"],
            training=training,
            positions=inputs.get("positions"),
            segment_ids=inputs.get("segment_ids"),
        )
        if training and self.objective is not None:
            # NOTE: with a sampled objective, training calls return the
            # transformed states, not logits: the objective scores only its
            # candidates. Inference calls always return logits.
            return self.head.transform(sequence, inputs["mask_positions"])
        return self.head(sequence, mask_positions=inputs["mask_positions"])

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        targets_per_row = self.targets_per_row if training else None
        if training and self.objective is not None:
            loss = self.objective(
                y_pred,
                y,
                sample_weight,
                self.encoder.item_embedding.embeddings,
                self.head.output_bias,
                targets_per_row,
            )
        else:
            loss = masked_softmax_cross_entropy(y, y_pred, sample_weight, targets_per_row)
        return loss + sum(self.losses) if self.losses else loss

    def next_item_logits(self, item_ids, training=False):
        """Scores every id for the next item after each history.

        Args:
            item_ids: int32 tensor `[batch, length]`, left-padded, whose last
                position is [MASK] (see `bert4seq.data.cloze.inference_inputs`).
                `length` may be shorter than `max_len` when no history
                needs all of it; the items then keep their positions
                relative to the end.

        Returns:
            float tensor `[batch, vocabulary_size]`. The reserved ids get
            logits too; callers exclude them before ranking.
        """
        batch_size, length = keras.ops.shape(item_ids)[0], keras.ops.shape(item_ids)[1]
        mask_positions = keras.ops.full((batch_size, 1), length - 1, "int32")
        logits = self(
            {"item_ids": item_ids, "mask_positions": mask_positions},
            training=training,
        )
        return logits[:, 0, :]

    def sequence_embedding(self, item_ids):
        """Returns the encoder output at the last position: `[batch, hidden]`."""
        return self.encoder(item_ids, training=False)[:, -1, :]

    def get_config(self):
        config = super().get_config()
        encoder_config = self.encoder.get_config()
        for key in ("name", "trainable", "dtype"):
            encoder_config.pop(key, None)
        config.update(encoder_config)
        return config
