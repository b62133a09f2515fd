"""The BERT4Rec sequence encoder: item and position embeddings + Transformer."""

import keras
import keras_hub

from bert4seq.data.vocabulary import PAD_ID
from bert4seq.models.dropout import PhiloxDropout, use_philox_dropout


@keras.saving.register_keras_serializable(package="bert4seq")
class SequenceEncoder(keras.layers.Layer):
    """Encodes left-padded item-id sequences with a bidirectional Transformer.

    Item embeddings (a `ReversibleEmbedding`, so an output head can reuse
    them) plus learned position embeddings, a layer norm and dropout, then
    `num_layers` keras-hub `TransformerEncoder` blocks with a padding mask.
    Padding is item id 0.

    Args:
        vocabulary_size: int. Number of ids, reserved ids included.
        max_len: int. Sequence length the position embedding covers.
        hidden_size: int. Embedding and hidden width.
        num_layers: int. Transformer blocks.
        num_heads: int. Attention heads; must divide `hidden_size`.
        intermediate_size: int. Feed-forward width; None uses
            `4 * hidden_size`.
        dropout: float. Dropout on embeddings and inside each block.
        activation: str. Feed-forward activation.
        layer_norm_epsilon: float.
        initializer_range: float. Standard deviation of the truncated-normal
            weight initializer.

    Example:

    >>> encoder = SequenceEncoder(vocabulary_size=1000, max_len=50)
    >>> encoder(keras.ops.ones((2, 50), dtype="int32")).shape
    (2, 50, 64)
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
        if hidden_size % num_heads:
            raise ValueError(
                f"hidden_size ({hidden_size}) must be divisible by num_heads "
                f"({num_heads})."
            )
        self.vocabulary_size = vocabulary_size
        self.max_len = max_len
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.intermediate_size = intermediate_size or 4 * hidden_size
        self.dropout = dropout
        self.activation = activation
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_range = initializer_range

        initializer = keras.initializers.TruncatedNormal(stddev=initializer_range)
        self.item_embedding = keras_hub.layers.ReversibleEmbedding(
            vocabulary_size,
            hidden_size,
            tie_weights=True,
            embeddings_initializer=initializer,
            name="item_embedding",
        )
        self.position_embedding = keras_hub.layers.PositionEmbedding(
            max_len, initializer=initializer, name="position_embedding"
        )
        self.embedding_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, name="embedding_norm"
        )
        self.embedding_dropout = PhiloxDropout(dropout, name="embedding_dropout")
        self.blocks = [
            keras_hub.layers.TransformerEncoder(
                intermediate_dim=self.intermediate_size,
                num_heads=num_heads,
                dropout=dropout,
                activation=activation,
                layer_norm_epsilon=layer_norm_epsilon,
                kernel_initializer=initializer,
                name=f"transformer_block_{index}",
            )
            for index in range(num_layers)
        ]

    def build(self, input_shape):
        self.item_embedding.build(input_shape)
        embedded_shape = tuple(input_shape) + (self.hidden_size,)
        self.position_embedding.build(embedded_shape)
        self.embedding_norm.build(embedded_shape)
        for block in self.blocks:
            block.build(embedded_shape)
            use_philox_dropout(block)
        self.built = True

    def call(self, item_ids, training=None, positions=None, segment_ids=None):
        """Encodes `item_ids` `[batch, length]` into `[batch, length, hidden]`.

        `positions` and `segment_ids` (int `[batch, length]`, both or
        neither) describe rows that pack several windows, as made by
        `bert4seq.data.cloze.pack_windows`: each item then attends only to
        items of its own window and takes the given position embedding.
        """
        if len(item_ids.shape) != 2:
            raise ValueError(
                "SequenceEncoder expects item ids of shape [batch, max_len]; "
                f"got shape {item_ids.shape}."
            )
        if item_ids.shape[1] is not None and item_ids.shape[1] > self.max_len:
            raise ValueError(
                f"Sequences are {item_ids.shape[1]} items long but the model "
                f"was built for max_len={self.max_len}; keep the last "
                f"{self.max_len} items."
            )
        if (positions is None) != (segment_ids is None):
            missing = "segment_ids" if segment_ids is None else "positions"
            raise ValueError(
                f"Packed rows need positions and segment_ids, but {missing} is "
                "missing. Pass both for packed rows, or neither for left-padded "
                "windows."
            )
        embedded = self.item_embedding(item_ids)
        if segment_ids is None:
            padding_mask = keras.ops.not_equal(item_ids, PAD_ID)
            attention_mask = None
            # Sequences shorter than max_len are the most recent part of a
            # left-padded window, so they take the last position embeddings.
            start = self.max_len - keras.ops.shape(item_ids)[1]
            position_embedded = self.position_embedding(embedded, start_index=start)
        else:
            # Items attend within their window. Padding (segment 0) attends
            # to padding only, which keeps its softmax finite.
            padding_mask = None
            attention_mask = keras.ops.equal(
                keras.ops.expand_dims(segment_ids, 2), keras.ops.expand_dims(segment_ids, 1)
            )
            position_embedded = self.position_embedding(embedded, positions=positions)
        hidden = embedded + position_embedded
        hidden = self.embedding_norm(hidden)
        hidden = self.embedding_dropout(hidden, training=training)
        for block in self.blocks:
            hidden = block(
                hidden,
                padding_mask=padding_mask,
                attention_mask=attention_mask,
                training=training,
            )
        return hidden

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.hidden_size,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "max_len": self.max_len,
                "hidden_size": self.hidden_size,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "intermediate_size": self.intermediate_size,
                "dropout": self.dropout,
                "activation": self.activation,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "initializer_range": self.initializer_range,
            }
        )
        return config
