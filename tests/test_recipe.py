"""Guard for the Beauty recipe: a short run must clearly beat popularity.

Not a timing test: it checks that the documented preset still learns.
"""


import numpy as np
import pytest

from bert4seq.config import ModelConfig, TrainConfig
from bert4seq.data.prepare import prepare
from bert4seq.data.readers import read_interactions
from bert4seq.evaluation.baselines import popularity_ranks
from bert4seq.evaluation.evaluate import Ranker
from bert4seq.evaluation.metrics import metrics_from_ranks
from bert4seq.training.trainer import train
from trainers.common import PRESETS
from shared_data import BEAUTY

STEPS = 600
VALIDATION_USERS = 5000

pytestmark = pytest.mark.slow


def recipe_configs(steps):
    """The beauty preset as config objects, shortened to `steps` steps."""
    preset = dict(PRESETS["beauty"])
    model_fields = {"max_len", "dropout"}
    model_config = ModelConfig(**{k: v for k, v in preset.items() if k in model_fields})
    train_fields = set(TrainConfig.__dataclass_fields__)
    train_values = {k: v for k, v in preset.items() if k in train_fields}
    train_values.update(
        epochs=2,
        steps_per_epoch=steps // 2,
        time_budget_seconds=None,
        validation_users=VALIDATION_USERS,
        patience=0,
    )
    return model_config, TrainConfig(**train_values)


def test_beauty_recipe_beats_popularity(tmp_path):
    frame, _ = read_interactions(BEAUTY)
    data = prepare(frame)
    model_config, train_config = recipe_configs(STEPS)
    model = train(data, model_config, train_config, str(tmp_path), verbose=0)

    validation = data.validation_split().subsample(VALIDATION_USERS, seed=1)
    model_ndcg = metrics_from_ranks(Ranker(model).full_ranks(validation))["NDCG@10"]
    popularity_ndcg = metrics_from_ranks(
        popularity_ranks(validation, data.item_counts())
    )["NDCG@10"]
    assert popularity_ndcg > 0.0
    assert model_ndcg > 1.3 * popularity_ndcg, (model_ndcg, popularity_ndcg)
