"""Learning-rate schedules."""

import keras


@keras.saving.register_keras_serializable(package="bert4seq")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `peak_learning_rate`, then linear decay.

    The rate rises over `warmup_steps`, then falls linearly to
    `peak_learning_rate * end_ratio` at `total_steps` and stays there.

    Args:
        peak_learning_rate: float. Rate at the end of warmup.
        warmup_steps: int. Optimizer steps of warmup.
        total_steps: int. Step at which decay ends.
        end_ratio: float. Final rate as a share of the peak.

    Example:

    >>> schedule = WarmupLinearDecay(1e-3, warmup_steps=100, total_steps=1000)
    >>> float(schedule(50))
    0.0005
    """

    def __init__(
        self,
        peak_learning_rate: float,
        warmup_steps: int,
        total_steps: int,
        end_ratio: float = 0.0,
    ):
        if total_steps < 1 or warmup_steps < 0:
            raise ValueError(
                f"Need total_steps >= 1 and warmup_steps >= 0; got "
                f"total_steps={total_steps}, warmup_steps={warmup_steps}."
            )
        self.peak_learning_rate = peak_learning_rate
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.end_ratio = end_ratio

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        peak = keras.ops.cast(self.peak_learning_rate, "float32")
        warmup = keras.ops.cast(max(self.warmup_steps, 1), "float32")
        decay_steps = keras.ops.cast(
            max(self.total_steps - self.warmup_steps, 1), "float32"
        )
        warmup_rate = peak * keras.ops.minimum(step / warmup, 1.0)
        progress = keras.ops.clip(
            (step - float(self.warmup_steps)) / decay_steps, 0.0, 1.0
        )
        decay_rate = peak * (1.0 - (1.0 - self.end_ratio) * progress)
        return keras.ops.where(
            step < float(self.warmup_steps), warmup_rate, decay_rate
        )

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "end_ratio": self.end_ratio,
        }
