"""The Cloze head: keras-hub's MaskedLMHead with its two stages exposed."""

import keras
import keras_hub


@keras.saving.register_keras_serializable(package="bert4seq")
class ClozeHead(keras_hub.layers.MaskedLMHead):
    """A `MaskedLMHead` whose transform and output weights can be used apart.

    Calling it is exactly `MaskedLMHead`: gather the masked positions, apply
    dense + activation + layer norm, project onto the tied item embeddings
    and add the output bias. `transform` stops before the projection, so a
    sampled objective can score a few candidates instead of every item.

    NOTE: `transform` and `output_bias` read private attributes of keras-hub's
    `MaskedLMHead` (checked with keras-hub 0.32); setup.py pins the version
    range.
    """

    def transform(self, inputs, mask_positions):
        """Returns the transformed states `[batch, num_predictions, hidden]`."""
        mask_positions = keras.ops.expand_dims(mask_positions, axis=-1)
        gathered = keras.ops.take_along_axis(inputs, mask_positions, axis=1)
        return self._intermediate_layer_norm(self._intermediate_dense(gathered))

    @property
    def output_bias(self):
        """The output bias `[vocabulary_size]`."""
        return self._bias
