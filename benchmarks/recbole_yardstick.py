"""Train RecBole's BERT4Rec on a `user item` sequence file as a yardstick for bert4seq.

RecBole (https://recbole.io, version 1.2.1) is a PyTorch library, and it cannot
be imported beside bert4seq's TensorFlow stack because it needs NumPy < 2. This
script therefore runs in two parts:

1. The launcher runs under any Python 3. It creates a virtual environment of
   its own (default `benchmarks/.recbole-venv`), installs torch, RecBole and
   the pins that RecBole 1.2.1 needs into it with `pip install`, and starts
   this same file inside that environment with `--worker`.
2. The worker converts the sequence file into a RecBole atomic file in a
   scratch directory and lets RecBole build its leave-one-out split. It then
   trains RecBole's BERT4Rec on the CPU batch by batch and scores the test
   users with the metric definitions of `bert4seq.evaluation`. It writes
   `recbole_results.json` to the output directory.

Two measurements, chosen with `--mode`:

- throughput: seconds per batch and masked targets per second over a fixed
  number of batches after a few warm-up batches, plus the estimated length of
  one RecBole epoch.
- budget: training for a wall-clock budget counted from the start of data
  loading, then full-ranking and popularity-sampled test metrics.

RecBole trains BERT4Rec on every prefix of every training sequence (one row per
prefix, each masked independently), so its epoch is not comparable to a
bert4seq epoch. Compare the two at equal wall-clock time.

Example:

    .venv/bin/python benchmarks/recbole_yardstick.py \\
        --data path/to/beauty.txt --mode both --budget_minutes 30 \\
        --output_dir runs/recbole-beauty
"""

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

logger = logging.getLogger("recbole_yardstick")

DEFAULT_VENV = Path(__file__).resolve().parent / ".recbole-venv"

# RecBole 1.2.1 imports pkg_resources (gone from setuptools 81) and uses NumPy
# aliases that NumPy 2 removed, so its environment pins the releases before
# those changes.
RECBOLE_REQUIREMENTS = (
    "torch==2.13.0",
    "recbole==1.2.1",
    "setuptools<81",
    "numpy<2",
    "pandas<2.3",
    "scipy<1.14",
)
REQUIREMENTS_MARKER = ".bert4seq-requirements.txt"

RESULTS_FILE = "recbole_results.json"
DATASET_NAME = "yardstick"

# Leave-one-out needs a training prefix, a validation item and a test item.
# bert4seq prepares logs with min_user_interactions=5 by default, and this
# script does not reproduce that filter, so it only accepts logs that pass it.
MIN_USER_INTERACTIONS = 5

# Kept equal to bert4seq.evaluation.metrics.DEFAULT_CUTOFFS.
CUTOFFS = (1, 5, 10)

EPOCH_NOTE = (
    "RecBole trains BERT4Rec on every prefix of every training sequence: each "
    "user with n actions gives n - 3 training rows (one per prefix), and each "
    "row is masked independently. A RecBole epoch is therefore not comparable "
    "to a bert4seq epoch; compare at equal wall-clock time."
)

TARGETS_DEFINITION = (
    "Masked targets are the target slots that RecBole's CE loss weights "
    "(MASK_INDEX > 0): at most int(mask_ratio * max_seq_length) per row, "
    "without padding slots and without a [MASK] at position 0."
)

LOGITS_NOTE = (
    "RecBole's CE loss computes full-vocabulary logits for all "
    "int(mask_ratio * max_seq_length) target slots of every row, padding "
    "slots included, and averages the loss over the real targets only."
)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults in the help, except for required flags and None defaults."""

    def _get_help_string(self, action):
        if action.required or action.default is None:
            return action.help
        return super()._get_help_string(action)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parses the flags shared by the launcher and the worker."""
    parser = argparse.ArgumentParser(
        description=(
            "Train RecBole's BERT4Rec (PyTorch, CPU) on a `user item` sequence "
            "file and measure its throughput and its test metrics after a "
            "wall-clock budget, for comparison with bert4seq."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--data",
        required=True,
        help="Sequence file with one 'user item' pair per line, a user's lines "
        "in the order of their actions (for example the BERT4Rec authors' "
        "beauty.txt). Read only.",
    )
    parser.add_argument(
        "--mode",
        choices=("throughput", "budget", "both"),
        default="both",
        help="throughput: time a fixed number of batches and stop. budget: "
        "train for --budget_minutes, then evaluate on the test users. both: "
        "the throughput figures come from the first batches of the budget run.",
    )
    parser.add_argument(
        "--batches",
        type=int,
        default=30,
        help="Timed training batches for the throughput figures (count).",
    )
    parser.add_argument(
        "--warmup_batches",
        type=int,
        default=3,
        help="Training batches run before the timed ones (count).",
    )
    parser.add_argument(
        "--budget_minutes",
        type=float,
        default=30.0,
        help="Wall-clock training budget in minutes, counted from the start of "
        "data loading; training stops at the first batch boundary after it.",
    )
    parser.add_argument(
        "--max_eval_users",
        type=int,
        default=0,
        help="Evaluate only the first N test users in order of first "
        "appearance in --data (count; 0 evaluates all of them).",
    )
    parser.add_argument(
        "--output_dir",
        default=None,
        help=f"Directory for {RESULTS_FILE}; default a new temporary directory.",
    )
    parser.add_argument(
        "--venv",
        default=str(DEFAULT_VENV),
        help="Virtual environment for torch and RecBole; created and filled "
        "with pip on first use, reused afterwards.",
    )
    parser.add_argument(
        "--scratch_dir",
        default=None,
        help="Working directory for the atomic file and RecBole's log and "
        "checkpoint folders; default a temporary directory that is deleted "
        "at the end.",
    )
    parser.add_argument(
        "--log_every",
        type=int,
        default=10,
        help="Log a progress line every N training batches (count).",
    )

    model = parser.add_argument_group("model and training (RecBole config keys)")
    model.add_argument("--hidden_size", type=int, default=64, help="Embedding and hidden width (units).")
    model.add_argument("--num_layers", type=int, default=2, help="Transformer layers (n_layers).")
    model.add_argument("--num_heads", type=int, default=2, help="Attention heads per layer (n_heads).")
    model.add_argument("--inner_size", type=int, default=256, help="Feed-forward width (units).")
    model.add_argument(
        "--max_seq_length",
        type=int,
        default=50,
        help="Items per input sequence (MAX_ITEM_LIST_LENGTH).",
    )
    model.add_argument(
        "--mask_ratio",
        type=float,
        default=0.2,
        help="Probability that a training position is replaced by [MASK] "
        "(fraction).",
    )
    model.add_argument(
        "--ft_ratio",
        type=float,
        default=0.5,
        help="Probability that a training batch masks only the last item of "
        "each row instead of random positions (fraction; RecBole's default).",
    )
    model.add_argument(
        "--train_batch_size", type=int, default=256, help="Training rows per batch."
    )
    model.add_argument(
        "--learning_rate", type=float, default=0.001, help="Adam learning rate."
    )
    model.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch.set_num_threads value, also exported as OMP_NUM_THREADS "
        "and MKL_NUM_THREADS (threads).",
    )
    model.add_argument(
        "--seed", type=int, default=2020, help="RecBole's training seed."
    )

    evaluation = parser.add_argument_group("evaluation (bert4seq's definitions)")
    evaluation.add_argument(
        "--num_negatives",
        type=int,
        default=100,
        help="Popularity-sampled negatives per test user (count; 0 skips the "
        "sampled protocol).",
    )
    evaluation.add_argument(
        "--eval_seed",
        type=int,
        default=12345,
        help="Seed of the negative sampler; bert4seq's default, so both sample "
        "the same negatives.",
    )
    evaluation.add_argument(
        "--eval_batch_size", type=int, default=512, help="Test users scored per batch."
    )
    evaluation.add_argument(
        "--history_input",
        choices=("full", "recbole"),
        default="full",
        help="full: the model sees the last max_seq_length - 1 history items "
        "followed by [MASK], as bert4seq's inference input. recbole: the "
        "input that RecBole's own evaluation builds, which drops the oldest "
        "history item even when the history is shorter than max_seq_length.",
    )

    # Set by the launcher when it starts this file inside the RecBole venv.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)

    args = parser.parse_args(argv)
    check_args(parser, args)
    return args


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Rejects flag values that cannot work, naming the flag and the fix."""
    if not os.path.isfile(args.data):
        parser.error(f"--data {args.data!r} is not a file; check the path.")
    positive = (
        "batches",
        "log_every",
        "hidden_size",
        "num_layers",
        "num_heads",
        "inner_size",
        "train_batch_size",
        "threads",
        "eval_batch_size",
    )
    for name in positive:
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1; got {getattr(args, name)}.")
    if args.max_seq_length < 2:
        parser.error(
            f"--max_seq_length must be at least 2 (one history item and [MASK]); "
            f"got {args.max_seq_length}."
        )
    for name in ("warmup_batches", "max_eval_users", "num_negatives"):
        if getattr(args, name) < 0:
            parser.error(f"--{name} must be 0 or more; got {getattr(args, name)}.")
    if args.budget_minutes <= 0:
        parser.error(f"--budget_minutes must be positive; got {args.budget_minutes}.")
    if not 0.0 < args.mask_ratio < 1.0:
        parser.error(f"--mask_ratio must be in (0, 1); got {args.mask_ratio}.")
    if int(args.mask_ratio * args.max_seq_length) < 1:
        parser.error(
            f"--mask_ratio {args.mask_ratio} * --max_seq_length "
            f"{args.max_seq_length} leaves RecBole no masked target per row "
            "(it keeps int(mask_ratio * max_seq_length)); raise either value."
        )
    if not 0.0 <= args.ft_ratio <= 1.0:
        parser.error(f"--ft_ratio must be in [0, 1]; got {args.ft_ratio}.")
    if args.hidden_size % args.num_heads:
        parser.error(
            f"--hidden_size {args.hidden_size} is not divisible by --num_heads "
            f"{args.num_heads}."
        )


# ---------------------------------------------------------------------------
# Launcher: virtual environment and worker process
# ---------------------------------------------------------------------------


def ensure_venv(venv_dir: Path) -> Path:
    """Creates the RecBole virtual environment if needed and returns its python.

    The requirements are installed once; a marker file with the installed
    requirement list lets later runs skip pip. Changing `RECBOLE_REQUIREMENTS`
    makes the next run install again into the same environment.
    """
    python = venv_dir / "bin" / "python"
    marker = venv_dir / REQUIREMENTS_MARKER
    expected_marker = "\n".join(RECBOLE_REQUIREMENTS) + "\n"

    if venv_dir.exists() and not python.exists():
        raise RuntimeError(
            f"{venv_dir} exists but has no bin/python, so it is not a virtual "
            "environment. Delete it or pass another --venv."
        )
    if not venv_dir.exists():
        logger.info("Creating the RecBole virtual environment %s.", venv_dir)
        subprocess.run([sys.executable, "-m", "venv", str(venv_dir)], check=True)

    if marker.exists() and marker.read_text() == expected_marker:
        logger.info("Reusing the RecBole virtual environment %s.", venv_dir)
        return python

    logger.info(
        "Installing %s into %s with pip (several minutes on first use).",
        " ".join(RECBOLE_REQUIREMENTS),
        venv_dir,
    )
    command = [str(python), "-m", "pip", "install", *RECBOLE_REQUIREMENTS]
    completed = subprocess.run(command)
    if completed.returncode != 0:
        raise RuntimeError(
            f"pip install failed with exit status {completed.returncode}: "
            f"{' '.join(command)}. Read pip's output above; delete {venv_dir} "
            "to start from an empty environment."
        )
    marker.write_text(expected_marker)
    return python


def worker_environment(threads: int) -> Dict[str, str]:
    """Returns the worker's environment with thread caps and without inherited Python paths."""
    environment = dict(os.environ)
    # The launcher may run inside bert4seq's venv; nothing from it may leak
    # into the RecBole interpreter.
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        environment.pop(name, None)
    environment["PYTHONNOUSERSITE"] = "1"
    environment["OMP_NUM_THREADS"] = str(threads)
    environment["MKL_NUM_THREADS"] = str(threads)
    return environment


def launch(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Prepares directories and the venv, then runs the worker and returns its exit status."""
    data = Path(args.data).resolve()
    python = ensure_venv(Path(args.venv).resolve())

    output_dir = Path(
        args.output_dir or tempfile.mkdtemp(prefix="recbole-yardstick-")
    ).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)

    own_scratch = args.scratch_dir is None
    scratch = Path(
        args.scratch_dir or tempfile.mkdtemp(prefix="recbole-scratch-")
    ).resolve()
    scratch.mkdir(parents=True, exist_ok=True)

    # The worker gets absolute paths because it runs from the scratch
    # directory: RecBole writes ./log_tensorboard and ./saved into its working
    # directory.
    command = [
        str(python),
        str(Path(__file__).resolve()),
        *argv,
        "--worker",
        "--data",
        str(data),
        "--output_dir",
        str(output_dir),
        "--scratch_dir",
        str(scratch),
    ]
    logger.info("Starting the worker in %s.", scratch)
    try:
        completed = subprocess.run(
            command, cwd=scratch, env=worker_environment(args.threads)
        )
    finally:
        if own_scratch:
            shutil.rmtree(scratch, ignore_errors=True)

    if completed.returncode == 0:
        logger.info("Results: %s", output_dir / RESULTS_FILE)
    else:
        logger.error("The worker failed with exit status %d.", completed.returncode)
    return completed.returncode


# ---------------------------------------------------------------------------
# Worker: data
# ---------------------------------------------------------------------------


def read_sequences(path: Path) -> Tuple[List[str], List[List[str]]]:
    """Reads a `user item` file into per-user item lists.

    Users are in order of first appearance, and each list keeps the file
    order of the user's lines, as `bert4seq.data.readers` reads the sequence
    format.
    """
    sequences: Dict[str, List[str]] = {}
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        for line_number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                raise ValueError(
                    f"{path}, line {line_number}: expected 2 fields 'user item', "
                    f"found {len(fields)}. Fix or remove the line."
                )
            sequences.setdefault(fields[0], []).append(fields[1])

    if not sequences:
        raise ValueError(f"{path} contains no 'user item' lines.")
    short = [user for user, items in sequences.items() if len(items) < MIN_USER_INTERACTIONS]
    if short:
        raise ValueError(
            f"{len(short)} users in {path} have fewer than "
            f"{MIN_USER_INTERACTIONS} actions (first: {short[0]!r}). bert4seq "
            "drops such users before splitting and this script does not; "
            "filter the file first."
        )
    return list(sequences), list(sequences.values())


def build_vocabulary(sequences: Sequence[Sequence[str]]) -> List[str]:
    """Returns item tokens in order of first appearance, as bert4seq's `Vocabulary`.

    bert4seq's id of `items[k]` is `k + 2` (ids 0 and 1 are padding and [MASK]).
    """
    seen: Dict[str, None] = {}
    for sequence in sequences:
        for item in sequence:
            seen.setdefault(item, None)
    return list(seen)


def write_atomic_file(
    directory: Path, users: Sequence[str], sequences: Sequence[Sequence[str]]
) -> Path:
    """Writes RecBole's `.inter` atomic file with the position in the sequence as timestamp."""
    dataset_dir = directory / DATASET_NAME
    dataset_dir.mkdir(parents=True, exist_ok=True)
    path = dataset_dir / f"{DATASET_NAME}.inter"
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for user, items in zip(users, sequences):
            for position, item in enumerate(items):
                f.write(f"{user}\t{item}\t{position}\n")
    return path


# ---------------------------------------------------------------------------
# Worker: RecBole
# ---------------------------------------------------------------------------


def recbole_config_dict(args: argparse.Namespace, scratch: Path) -> dict:
    """Returns RecBole's configuration for BERT4Rec with bert4seq's leave-one-out split."""
    return {
        "data_path": str(scratch),
        "checkpoint_dir": str(scratch / "saved"),
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        # For a dataset without a preset RecBole loads only the user and item
        # columns, and its sequential augmentation then fails on the missing
        # time column.
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "MAX_ITEM_LIST_LENGTH": args.max_seq_length,
        # Ordered by time, the last interaction of each user is the test
        # target and the one before it the validation target.
        "eval_args": {
            "split": {"LS": "valid_and_test"},
            "order": "TO",
            "group_by": "user",
            "mode": "full",
        },
        "n_layers": args.num_layers,
        "n_heads": args.num_heads,
        "hidden_size": args.hidden_size,
        "inner_size": args.inner_size,
        "mask_ratio": args.mask_ratio,
        "ft_ratio": args.ft_ratio,
        "loss_type": "CE",
        # RecBole rejects negative sampling together with the CE loss.
        "train_neg_sample_args": None,
        "train_batch_size": args.train_batch_size,
        "learning_rate": args.learning_rate,
        "use_gpu": False,
        "device": "cpu",
        "seed": args.seed,
        "reproducibility": True,
        "show_progress": False,
        "worker": 0,
        "save_dataset": False,
        "save_dataloaders": False,
        "log_wandb": False,
    }


def token_ids(dataset, field: str) -> Dict[str, int]:
    """Returns RecBole's token-to-internal-id map for `field` (id 0 is padding)."""
    return dict(dataset.field2token_id[field])


def verify_split(
    dataset,
    train_data,
    valid_data,
    test_data,
    users: Sequence[str],
    sequences: Sequence[Sequence[str]],
    max_seq_length: int,
) -> dict:
    """Checks that RecBole's split is bert4seq's leave-one-out split.

    For every user: the test target is the last item, its history (RecBole's
    item list) is the last `max_seq_length` items before it, and the
    validation target is the second to last item. The training rows must be
    one per prefix, with targets from the second item to the third to last.
    Raises RuntimeError on the first mismatch.
    """
    import numpy as np

    user_tokens = dataset.field2id_token["user_id"]
    item_tokens = dataset.field2id_token["item_id"]
    by_user = dict(zip(users, sequences))

    def check_targets(part, name: str, offset: int) -> None:
        inter = part._dataset.inter_feat
        row_users = user_tokens[inter["user_id"].numpy()]
        row_targets = item_tokens[inter["item_id"].numpy()]
        if len(row_users) != len(users) or len(set(row_users.tolist())) != len(users):
            raise RuntimeError(
                f"RecBole's {name} split has {len(row_users)} rows for "
                f"{len(set(row_users.tolist()))} users; expected one row for "
                f"each of {len(users)} users."
            )
        for user, target in zip(row_users.tolist(), row_targets.tolist()):
            expected = by_user[user][offset]
            if target != expected:
                raise RuntimeError(
                    f"RecBole's {name} target for user {user!r} is {target!r}; "
                    f"leave-one-out expects {expected!r}."
                )

    check_targets(test_data, "test", -1)
    check_targets(valid_data, "validation", -2)

    # Test histories: the item list RecBole's evaluation feeds the model.
    inter = test_data._dataset.inter_feat
    lists = inter["item_id_list"].numpy()
    lengths = inter["item_length"].numpy()
    for row, user in enumerate(user_tokens[inter["user_id"].numpy()].tolist()):
        history = item_tokens[lists[row, : lengths[row]]].tolist()
        expected = by_user[user][:-1][-max_seq_length:]
        if history != expected:
            raise RuntimeError(
                f"RecBole's test history for user {user!r} is {history[:5]}... "
                f"({len(history)} items); expected {expected[:5]}... "
                f"({len(expected)} items)."
            )

    # Training rows: one per prefix, the targets run from the second item to
    # the third to last.
    train = train_data._dataset.inter_feat
    train_users = user_tokens[train["user_id"].numpy()]
    train_targets = item_tokens[train["item_id"].numpy()]
    expected_rows = sum(len(s) - 3 for s in sequences)
    if len(train_users) != expected_rows:
        raise RuntimeError(
            f"RecBole's training split has {len(train_users)} rows; one per "
            f"training prefix gives {expected_rows}."
        )
    examples = {}
    for user in users[:2]:
        got = sorted(train_targets[train_users == user].tolist())
        expected = sorted(by_user[user][1:-2])
        if got != expected:
            raise RuntimeError(
                f"RecBole's training targets for user {user!r} are {got}; "
                f"leave-one-out expects {expected}."
            )
        examples[user] = {
            "sequence": " ".join(by_user[user]),
            "training_targets": " ".join(by_user[user][1:-2]),
            "validation_target": by_user[user][-2],
            "test_target": by_user[user][-1],
        }
    logger.info(
        "Split verified: %d users, %d training rows (one per prefix), "
        "validation and test targets are the second to last and last items.",
        len(users),
        len(train_users),
    )
    return {
        "users_checked": len(users),
        "training_rows": int(len(train_users)),
        "examples": examples,
        "note": (
            "RecBole trains BERT4Rec on the item lists of its training rows, "
            "which end before each row's target, so the last training item of "
            "each user (third to last overall) is never an input or a "
            "masked target."
        ),
    }


class TrainingLog:
    """Per-batch wall-clock seconds, masked targets and losses of one run.

    `seconds` is a batch's whole time; `loading_seconds` is the part spent in
    RecBole's DataLoader (row lookup and the masking transform).
    """

    def __init__(self, started: float, log_every: int):
        self.started = started
        self.log_every = log_every
        self.seconds: List[float] = []
        self.loading_seconds: List[float] = []
        self.targets: List[int] = []
        self.mask_tokens: List[int] = []
        self.losses: List[float] = []
        self.epochs_completed = 0
        self.stop_reason = ""

    @property
    def batches(self) -> int:
        return len(self.seconds)

    def record(
        self, seconds: float, loading_seconds: float, targets: int, mask_tokens: int
    ) -> None:
        self.seconds.append(seconds)
        self.loading_seconds.append(loading_seconds)
        self.targets.append(targets)
        self.mask_tokens.append(mask_tokens)
        if self.batches % self.log_every == 0:
            recent = slice(-self.log_every, None)
            recent_seconds = sum(self.seconds[recent])
            losses = self.losses[recent]
            logger.info(
                "batch %d (epoch %d): %.1f s elapsed, %.2f s/batch, %.0f masked "
                "targets/s, mean loss %.4f over the last %d batches.",
                self.batches,
                self.epochs_completed,
                time.monotonic() - self.started,
                recent_seconds / len(self.seconds[recent]),
                sum(self.targets[recent]) / recent_seconds,
                sum(losses) / max(len(losses), 1),
                len(self.seconds[recent]),
            )


class LimitedBatches:
    """One epoch of a RecBole training loader that stops early at a batch count or deadline.

    RecBole's `Trainer._train_epoch` iterates over this object instead of the
    loader, so training runs RecBole's own step (forward, CE loss, backward,
    Adam). Each batch's time runs from the request for the batch (loading and
    masking included) to the request for the next one (the training step
    included).

    Args:
        loader: RecBole's training DataLoader.
        model: the BERT4Rec model, for the field names of the masked batch.
        log: TrainingLog that receives one record per batch.
        max_batches: stop once the log contains this many batches (None: no limit).
        deadline: `time.monotonic()` value after which no batch starts (None: no limit).
    """

    def __init__(self, loader, model, log: TrainingLog, max_batches, deadline):
        self.loader = loader
        self.model = model
        self.log = log
        self.max_batches = max_batches
        self.deadline = deadline
        self.finished_epoch = False
        # _train_epoch reads these two attributes of its loader.
        self.shuffle = loader.shuffle
        self.sampler = getattr(loader, "sampler", None)

    def __len__(self) -> int:
        return len(self.loader)

    def _should_stop(self) -> bool:
        if self.max_batches is not None and self.log.batches >= self.max_batches:
            self.log.stop_reason = f"reached {self.max_batches} batches"
            return True
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.log.stop_reason = "budget ran out"
            return True
        return False

    def __iter__(self):
        requested = time.perf_counter()
        batches = iter(self.loader)
        while not self._should_stop():
            try:
                interaction = next(batches)
            except StopIteration:
                self.finished_epoch = True
                return
            loaded = time.perf_counter()

            # The CE loss weights a slot by masked_index > 0, so padding slots
            # and a [MASK] at position 0 do not count. [MASK] tokens beyond
            # the row's target slots stay in the input but are not targets.
            targets = int((interaction[self.model.MASK_INDEX] > 0).sum())
            mask_tokens = int(
                (interaction[self.model.MASK_ITEM_SEQ] == self.model.mask_token).sum()
            )
            yield interaction

            now = time.perf_counter()
            self.log.record(now - requested, loaded - requested, targets, mask_tokens)
            requested = now


def train(trainer, model, train_data, log: TrainingLog, max_batches, deadline) -> None:
    """Runs RecBole training epochs until `max_batches` or `deadline` stops them."""

    def loss_with_record(interaction):
        loss = model.calculate_loss(interaction)
        log.losses.append(float(loss.detach()))
        return loss

    epoch = 0
    while True:
        batches = LimitedBatches(train_data, model, log, max_batches, deadline)
        trainer._train_epoch(batches, epoch, loss_func=loss_with_record)
        if not batches.finished_epoch:
            break
        epoch += 1
        log.epochs_completed = epoch
        logger.info(
            "Epoch %d finished after %d batches, %.1f s elapsed.",
            epoch,
            log.batches,
            time.monotonic() - log.started,
        )


def throughput_summary(log: TrainingLog, warmup: int, batches: int, batches_per_epoch: int) -> dict:
    """Summarizes the timed batches after the warm-up ones."""
    timed = slice(warmup, warmup + batches)
    seconds = sum(log.seconds[timed])
    count = len(log.seconds[timed])
    if count == 0:
        return {
            "error": (
                f"No timed batch: training stopped after {log.batches} batches "
                f"({log.stop_reason}), within the {warmup} warm-up batches."
            )
        }
    targets = sum(log.targets[timed])
    seconds_per_batch = seconds / count
    summary = {
        "warmup_batches": warmup,
        "timed_batches": count,
        "timed_seconds": seconds,
        "seconds_per_batch": seconds_per_batch,
        "loading_seconds_per_batch": sum(log.loading_seconds[timed]) / count,
        "masked_targets": targets,
        "masked_targets_per_second": targets / seconds,
        "masked_targets_definition": TARGETS_DEFINITION,
        "mask_tokens_in_inputs": sum(log.mask_tokens[timed]),
        "batches_per_epoch": batches_per_epoch,
        "estimated_epoch_seconds": batches_per_epoch * seconds_per_batch,
        "note": EPOCH_NOTE,
    }
    if count < batches:
        summary["warning"] = (
            f"Only {count} of {batches} requested batches were timed "
            f"({log.stop_reason})."
        )
    return summary


# ---------------------------------------------------------------------------
# Worker: evaluation with bert4seq's definitions
# ---------------------------------------------------------------------------


def ranks_from_scores(scores, targets):
    """Returns 1-based ranks: 1 + the other candidates scoring at least the target.

    Mirrors `bert4seq.evaluation.metrics.ranks_from_scores`: ties count
    against the target.
    """
    import numpy as np

    target_scores = scores[np.arange(len(targets)), targets]
    return (scores >= target_scores[:, None]).sum(axis=1).astype(np.int64)


def metrics_from_ranks(ranks, cutoffs: Sequence[int] = CUTOFFS) -> Dict[str, float]:
    """Computes HR@K, NDCG@K and MRR, as `bert4seq.evaluation.metrics.metrics_from_ranks`."""
    import numpy as np

    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size == 0:
        raise ValueError("No ranks to average: the evaluation split is empty.")
    metrics = {}
    for k in cutoffs:
        hit = ranks <= k
        metrics[f"HR@{k}"] = float(hit.mean())
        metrics[f"NDCG@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0).mean())
    metrics["MRR"] = float((1.0 / ranks).mean())
    return metrics


def sample_popularity_negatives(sequences, item_counts, num_negatives: int, seed: int):
    """Samples distinct negatives per user by popularity, as `bert4seq.evaluation.evaluate.sample_negatives`.

    Works on vocabulary indices (bert4seq id - 2) but keeps bert4seq's random
    stream: one `np.random.default_rng(seed)` for all users in order,
    inverse-CDF draws of `2 * num_negatives` at a time, and a user's whole
    sequence (history and target) excluded. For the same users in the same
    order the negatives are the same items as bert4seq's.

    Args:
        sequences: one int array of vocabulary indices per test user.
        item_counts: int array `[num_items]`, actions per item over the file.
        num_negatives: negatives per user.
        seed: the sampler's seed.

    Returns:
        int64 array `[len(sequences), num_negatives]` of vocabulary indices.
    """
    import numpy as np

    num_items = len(item_counts)
    weights = np.asarray(item_counts, dtype=np.float64)
    cumulative = np.cumsum(weights / weights.sum())
    rng = np.random.default_rng(seed)

    def draw(count):
        picks = np.searchsorted(cumulative, rng.random(count), side="right")
        return np.minimum(picks, num_items - 1)

    negatives = np.zeros((len(sequences), num_negatives), dtype=np.int64)
    for row, sequence in enumerate(sequences):
        seen = set(sequence.tolist())
        if num_items - len(seen) < num_negatives:
            raise ValueError(
                f"Test user {row} leaves only {num_items - len(seen)} items to "
                f"sample {num_negatives} negatives from; lower --num_negatives."
            )
        chosen = []
        chosen_set = set()
        while len(chosen) < num_negatives:
            for item in draw(2 * num_negatives).tolist():
                if item not in seen and item not in chosen_set:
                    chosen.append(item)
                    chosen_set.add(item)
                    if len(chosen) == num_negatives:
                        break
        negatives[row] = chosen
    return negatives


def model_inputs(histories, max_seq_length: int, history_input: str):
    """Builds RecBole's left-aligned `item_id_list` and `item_length` for `full_sort_predict`.

    RecBole's BERT4Rec drops the first column of its input, appends [MASK]
    after the last item and reads the output there. With "recbole" the input
    is RecBole's own test row (the last `max_seq_length` items), so an
    oldest item is dropped even from a short history. With "full" a
    placeholder column goes first, so the model's input is the last
    `max_seq_length - 1` items and [MASK], the layout of bert4seq's input.

    Args:
        histories: RecBole internal item ids per user, oldest first.
        max_seq_length: RecBole's MAX_ITEM_LIST_LENGTH.
        history_input: "full" or "recbole".

    Returns:
        `(item_id_list, item_length)` int64 arrays `[B, max_seq_length]` and `[B]`.
    """
    import numpy as np

    item_lists = np.zeros((len(histories), max_seq_length), dtype=np.int64)
    lengths = np.zeros(len(histories), dtype=np.int64)
    start = 1 if history_input == "full" else 0
    for row, history in enumerate(histories):
        kept = history[-(max_seq_length - start):]
        item_lists[row, start : start + len(kept)] = kept
        lengths[row] = start + len(kept)
    return item_lists, lengths


def rank_targets(scores, sequences, negatives=None):
    """Ranks each user's last item with full ranking and, given negatives, among them.

    Full ranking scores the whole history (every item before the target, not
    only the last `max_seq_length`) as -inf and keeps the target's own score,
    as `bert4seq.evaluation.evaluate.Ranker.full_ranks` with
    `exclude_history=True`. The sampled protocol ranks the target among itself
    and its negatives with the raw scores, as `Ranker.sampled_ranks`.

    Args:
        scores: float array `[B, num_items]` in vocabulary order. Overwritten.
        sequences: B int arrays of vocabulary indices; the last is the target.
        negatives: int array `[B, num_negatives]` of vocabulary indices, or None.

    Returns:
        `(full_ranks, sampled_ranks)`, int64 arrays `[B]`; `sampled_ranks` is
        None without negatives.
    """
    import numpy as np

    rows = np.arange(len(sequences))
    targets = np.asarray([s[-1] for s in sequences], dtype=np.int64)

    sampled = None
    if negatives is not None:
        candidates = np.concatenate([targets[:, None], negatives], axis=1)
        candidate_scores = np.take_along_axis(scores, candidates, axis=1)
        sampled = ranks_from_scores(candidate_scores, np.zeros(len(rows), dtype=np.int64))

    target_scores = scores[rows, targets]
    for row, sequence in enumerate(sequences):
        scores[row, sequence[:-1]] = -np.inf
    scores[rows, targets] = target_scores
    return ranks_from_scores(scores, targets), sampled


def evaluate_test_users(
    model,
    recbole_item_ids,
    sequences,
    item_counts,
    args: argparse.Namespace,
) -> dict:
    """Scores every test user with RecBole's model and computes bert4seq's metrics.

    Scores are moved from RecBole's item columns to bert4seq's vocabulary
    order (`recbole_item_ids[k]` is the RecBole id of vocabulary index k),
    which also removes RecBole's padding column, and ranked by `rank_targets`.

    Args:
        model: trained RecBole BERT4Rec.
        recbole_item_ids: int array, RecBole id per vocabulary index.
        sequences: int arrays of vocabulary indices, one per test user.
        item_counts: actions per vocabulary index over the whole file.
        args: the parsed flags.

    Returns:
        `{"full": metrics, "sampled_popularity_<n>": metrics}` with `users`.
    """
    import numpy as np
    import torch
    from recbole.data.interaction import Interaction

    negatives = None
    if args.num_negatives > 0:
        started = time.monotonic()
        negatives = sample_popularity_negatives(
            sequences, item_counts, args.num_negatives, args.eval_seed
        )
        logger.info(
            "Sampled %d negatives for %d users in %.1f s.",
            args.num_negatives,
            len(sequences),
            time.monotonic() - started,
        )

    full_ranks = np.zeros(len(sequences), dtype=np.int64)
    sampled_ranks = np.zeros(len(sequences), dtype=np.int64)
    model.eval()
    for start in range(0, len(sequences), args.eval_batch_size):
        stop = min(start + args.eval_batch_size, len(sequences))
        batch = sequences[start:stop]
        histories = [recbole_item_ids[s[:-1]] for s in batch]
        item_lists, lengths = model_inputs(
            histories, args.max_seq_length, args.history_input
        )
        interaction = Interaction(
            {
                model.ITEM_SEQ: torch.from_numpy(item_lists),
                model.ITEM_SEQ_LEN: torch.from_numpy(lengths),
            }
        )
        with torch.no_grad():
            recbole_scores = model.full_sort_predict(interaction).numpy()
        scores = recbole_scores[:, recbole_item_ids]

        full, sampled = rank_targets(
            scores, batch, None if negatives is None else negatives[start:stop]
        )
        full_ranks[start:stop] = full
        if sampled is not None:
            sampled_ranks[start:stop] = sampled

        if (start // args.eval_batch_size + 1) % 20 == 0:
            logger.info("Scored %d of %d test users.", stop, len(sequences))

    results = {"full": metrics_from_ranks(full_ranks)}
    results["full"].update(users=len(sequences), exclude_history=True)
    if negatives is not None:
        sampled = metrics_from_ranks(sampled_ranks)
        sampled.update(
            users=len(sequences), negatives=args.num_negatives, seed=args.eval_seed
        )
        results[f"sampled_popularity_{args.num_negatives}"] = sampled
    return results


# ---------------------------------------------------------------------------
# Worker: main
# ---------------------------------------------------------------------------


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def build_recbole(args: argparse.Namespace, users, sequences, item_tokens) -> dict:
    """Builds RecBole's config, dataset, split loaders, BERT4Rec model and trainer.

    Returns:
        A dict with keys config, dataset, train_data, model, trainer and
        split_check (the result of `verify_split`).
    """
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    scratch = Path(args.scratch_dir)
    write_atomic_file(scratch, users, sequences)

    # RecBole's Config also reads `--key=value` pairs from sys.argv as config
    # keys, so this script's own flags are hidden from it.
    command_line = sys.argv
    sys.argv = command_line[:1]
    try:
        config = Config(
            model="BERT4Rec",
            dataset=DATASET_NAME,
            config_dict=recbole_config_dict(args, scratch),
        )
    finally:
        sys.argv = command_line
    init_seed(config["seed"], config["reproducibility"])

    dataset = create_dataset(config)
    if dataset.user_num - 1 != len(users) or dataset.item_num - 1 != len(item_tokens):
        raise RuntimeError(
            f"RecBole loaded {dataset.user_num - 1} users and "
            f"{dataset.item_num - 1} items; the file has {len(users)} and "
            f"{len(item_tokens)}. Check RecBole's filtering settings."
        )
    train_data, valid_data, test_data = data_preparation(config, dataset)
    split_check = verify_split(
        dataset, train_data, valid_data, test_data, users, sequences, args.max_seq_length
    )

    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    return {
        "config": config,
        "dataset": dataset,
        "train_data": train_data,
        "model": model,
        "trainer": trainer,
        "split_check": split_check,
    }


def run_config(args: argparse.Namespace, config, model) -> dict:
    """Returns the settings that shape the measurement, for the results file."""
    recbole_keys = (
        "n_layers",
        "n_heads",
        "hidden_size",
        "inner_size",
        "hidden_dropout_prob",
        "attn_dropout_prob",
        "hidden_act",
        "layer_norm_eps",
        "initializer_range",
        "MAX_ITEM_LIST_LENGTH",
        "mask_ratio",
        "ft_ratio",
        "loss_type",
        "train_batch_size",
        "learner",
        "learning_rate",
        "weight_decay",
        "clip_grad_norm",
        "eval_args",
        "seed",
    )
    return {
        "data": str(Path(args.data).resolve()),
        "model": "BERT4Rec",
        "recbole": {key: config[key] for key in recbole_keys},
        # RecBole keeps at most int(mask_ratio * max_seq_length) masked
        # positions per row as targets.
        "masked_targets_per_row_max": model.mask_item_length,
        "history_input": args.history_input,
        "warmup_batches": args.warmup_batches,
        "batches": args.batches,
        "budget_minutes": args.budget_minutes,
        "max_eval_users": args.max_eval_users,
        "num_negatives": args.num_negatives,
        "eval_seed": args.eval_seed,
    }


def budget_summary(
    log: TrainingLog, args: argparse.Namespace, batches_per_epoch: int, stopped_after: float
) -> dict:
    """Summarizes a budget run.

    `stopped_after` is the time in seconds from the start of data loading to
    the end of the last batch.
    """
    training_seconds = sum(log.seconds)
    recent_losses = log.losses[-args.log_every :]
    return {
        "budget_seconds": 60.0 * args.budget_minutes,
        "seconds_until_training_stopped": stopped_after,
        "training_seconds": training_seconds,
        "batches_trained": log.batches,
        "epochs_completed": log.epochs_completed,
        "batches_in_last_epoch": log.batches - log.epochs_completed * batches_per_epoch,
        "seconds_per_batch": training_seconds / max(log.batches, 1),
        "loading_seconds_per_batch": sum(log.loading_seconds) / max(log.batches, 1),
        "masked_targets": sum(log.targets),
        "masked_targets_per_second": sum(log.targets) / max(training_seconds, 1e-9),
        "mean_loss_last_batches": (
            sum(recent_losses) / len(recent_losses) if recent_losses else None
        ),
        "stop_reason": log.stop_reason,
    }


def evaluate_run(model, dataset, item_tokens, sequences, args: argparse.Namespace) -> dict:
    """Evaluates the test users in bert4seq's vocabulary and user order and logs the metrics."""
    import numpy as np

    item_index = {token: index for index, token in enumerate(item_tokens)}
    recbole_ids = token_ids(dataset, "item_id")
    recbole_item_ids = np.asarray([recbole_ids[t] for t in item_tokens], dtype=np.int64)
    indexed = [np.asarray([item_index[t] for t in s], dtype=np.int64) for s in sequences]
    # Popularity over the whole file, as bert4seq's PreparedData.item_counts.
    item_counts = np.bincount(np.concatenate(indexed), minlength=len(item_tokens))
    if args.max_eval_users:
        indexed = indexed[: args.max_eval_users]

    results = evaluate_test_users(model, recbole_item_ids, indexed, item_counts, args)
    for protocol, metrics in results.items():
        logger.info(
            "Test %s (%d users): %s",
            protocol,
            metrics["users"],
            ", ".join(
                f"{key} {value:.4f}"
                for key, value in metrics.items()
                if "@" in key or key == "MRR"
            ),
        )
    return results


def run_worker(args: argparse.Namespace) -> None:
    """Loads the data into RecBole, trains, evaluates and writes the results file."""
    import importlib.metadata

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    timestamps = {"worker_started": utc_now()}

    # The budget counts from here: reading, conversion and RecBole's
    # preprocessing are part of what a RecBole user waits for.
    started = time.monotonic()
    timestamps["data_loading_started"] = utc_now()
    users, sequences = read_sequences(Path(args.data))
    item_tokens = build_vocabulary(sequences)
    num_actions = sum(len(s) for s in sequences)
    logger.info(
        "Read %d users, %d items, %d actions from %s.",
        len(users),
        len(item_tokens),
        num_actions,
        args.data,
    )
    recbole = build_recbole(args, users, sequences, item_tokens)
    model, train_data = recbole["model"], recbole["train_data"]
    data_seconds = time.monotonic() - started
    batches_per_epoch = len(train_data)
    logger.info(
        "Data and model ready after %.1f s: %d training rows, %d batches per "
        "epoch, %d torch threads.",
        data_seconds,
        len(train_data._dataset),
        batches_per_epoch,
        torch.get_num_threads(),
    )
    logger.info("%s", EPOCH_NOTE)

    # Train.
    timestamps["training_started"] = utc_now()
    log = TrainingLog(started, args.log_every)
    if args.mode == "throughput":
        max_batches, deadline = args.warmup_batches + args.batches, None
    else:
        max_batches, deadline = None, started + 60.0 * args.budget_minutes
    train(recbole["trainer"], model, train_data, log, max_batches, deadline)
    stopped_after = time.monotonic() - started
    timestamps["training_finished"] = utc_now()
    logger.info(
        "Training stopped after %d batches (%s), %.1f s after data loading started.",
        log.batches,
        log.stop_reason,
        stopped_after,
    )

    results = {
        "mode": args.mode,
        "config": run_config(args, recbole["config"], model),
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "recbole": importlib.metadata.version("recbole"),
            "numpy": np.__version__,
        },
        "threads": {
            "torch_num_threads": torch.get_num_threads(),
            "torch_num_interop_threads": torch.get_num_interop_threads(),
            "cpu_count": os.cpu_count(),
        },
        "data": {
            "users": len(users),
            "items": len(item_tokens),
            "actions": num_actions,
            "split_check": recbole["split_check"],
        },
        "data_loading_seconds": data_seconds,
        "batches_per_epoch": batches_per_epoch,
        "throughput": throughput_summary(
            log, args.warmup_batches, args.batches, batches_per_epoch
        ),
        "notes": [EPOCH_NOTE, recbole["split_check"]["note"], LOGITS_NOTE],
    }

    # Evaluate.
    if args.mode != "throughput":
        results["budget"] = budget_summary(log, args, batches_per_epoch, stopped_after)
        evaluation_started = time.monotonic()
        results["test"] = evaluate_run(
            model, recbole["dataset"], item_tokens, sequences, args
        )
        results["evaluation_seconds"] = time.monotonic() - evaluation_started
        timestamps["evaluation_finished"] = utc_now()

    results["timestamps"] = timestamps
    path = Path(args.output_dir) / RESULTS_FILE
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(results, indent=2, default=str) + "\n")
    os.replace(temporary, path)
    logger.info("Wrote %s.", path)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return 0
    return launch(args, argv)


if __name__ == "__main__":
    sys.exit(main())
