"""Configuration dataclasses shared by the library, trainers and exports."""

import dataclasses
from typing import Optional, Union


@dataclasses.dataclass
class ModelConfig:
    """BERT4Rec architecture. Defaults follow Sun et al., "BERT4Rec" (CIKM 2019).

    Attributes:
        max_len: Sequence length in items (50 for Beauty, 200 for MovieLens
            in the paper).
        hidden_size: Embedding and hidden width.
        num_layers: Transformer blocks.
        num_heads: Attention heads; must divide hidden_size.
        intermediate_size: Feed-forward width; None uses 4 * hidden_size.
        dropout: Dropout on embeddings and inside every block.
    """

    max_len: int = 50
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: Optional[int] = None
    dropout: float = 0.1


@dataclasses.dataclass
class TrainConfig:
    """Training loop, optimizer and Cloze masking settings.

    Attributes:
        epochs: Maximum passes over the training windows.
        batch_size: Windows per step (global, across replicas).
        learning_rate: Peak AdamW learning rate, reached after warmup.
        weight_decay: AdamW decoupled weight decay (not applied to biases
            and layer norms).
        warmup_ratio: Share of all steps spent warming up.
        clipnorm: Gradient norm clip; 0 disables.
        mask_prob: Probability that an item of a window is masked.
        max_predictions: Cap on masked positions per window.
        last_item_prob: Share of windows that mask only the last item.
        sliding_step: Items between windows over long histories; None
            uses max_len // 2.
        all_prefixes: Train on a window ending at every item of each
            history (many more windows per epoch) instead of sliding
            windows.
        pack_windows: Pack several training windows into each row of
            `max_len` items (attention stays within a window), so that
            short histories carry little padding. See
            `bert4seq.data.cloze.pack_windows`.
        seed: Seed for initialization, shuffling and masking.
        steps_per_epoch: Optimizer steps per epoch; None is one pass over
            the windows. Set it to validate and checkpoint at a fixed step
            interval when one pass is long.
        eval_every: Validate every this many epochs.
        patience: Stop after this many validations without a better
            validation NDCG@10; 0 disables early stopping.
        jit_compile: Compile the training step with XLA: True, False or
            "auto" (Keras compiles only when a GPU or TPU is present). On a
            2-core CPU, a Beauty training step took 0.22 s with XLA and
            0.17 s without.
        time_budget_seconds: Stop at the end of the first epoch past this
            wall time, counted from the start of training; None disables.
        validation_users: Validate on a fixed random subset of this many
            users (faster); None uses all.
        objective: "softmax" (full softmax over every item, as in the
            BERT4Rec paper) or "sampled_softmax" (shared sampled negatives
            with log-Q correction; much faster on large catalogs).
        sampled_negatives: Negatives per step for "sampled_softmax".
        sampling_power: Negatives are drawn proportionally to
            (item count + 1) ** sampling_power; 0 is uniform.
    """

    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    clipnorm: float = 5.0
    mask_prob: float = 0.2
    max_predictions: int = 20
    last_item_prob: float = 0.1
    sliding_step: Optional[int] = None
    all_prefixes: bool = False
    pack_windows: bool = False
    seed: int = 0
    steps_per_epoch: Optional[int] = None
    eval_every: int = 1
    patience: int = 5
    jit_compile: Union[bool, str] = "auto"
    time_budget_seconds: Optional[float] = None
    validation_users: Optional[int] = None
    objective: str = "softmax"
    sampled_negatives: int = 1024
    sampling_power: float = 0.5

    def __post_init__(self):
        if self.objective not in ("softmax", "sampled_softmax"):
            raise ValueError(
                f"Unknown objective {self.objective!r}; expected 'softmax' or "
                "'sampled_softmax'."
            )
