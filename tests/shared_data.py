"""Paths of the shared datasets the tests read (read-only)."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# `make test` sets DATA_ROOT (see scripts/data_root.sh); a bare pytest run
# looks beside the checkout.
DATASETS = os.environ.get("DATA_ROOT") or os.path.join(ROOT, "..", "shared", "datasets")
ML_100K = os.path.join(DATASETS, "ml-100k", "u.data")
BEAUTY = os.path.join(DATASETS, "beauty", "beauty.txt")
