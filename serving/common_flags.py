"""Flags that both `bert4seq-serve` and `bert4seq-recommend` define.

absl raises DuplicateFlagError when two modules define the same flag name,
so the shared flag lives here and both entry points import it.
"""

from absl import flags

MODEL_NAME = flags.DEFINE_string(
    "model_name",
    "default",
    "Model name: the server serves the model under this name, and clients send it in "
    "model_spec.name or the REST path.",
)
