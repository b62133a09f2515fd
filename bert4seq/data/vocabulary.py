"""Item vocabulary: string item ids at the edges, integer ids inside."""

import os
from typing import Iterable, Sequence

import numpy as np

PAD_TOKEN = "[PAD]"
MASK_TOKEN = "[MASK]"
PAD_ID = 0
MASK_ID = 1
NUM_RESERVED = 2


class Vocabulary:
    """Maps item id strings to integer ids and back.

    Id 0 is padding and id 1 is [MASK]; items start at `NUM_RESERVED`. The
    file form is one token per line, line number = id, which is also what
    `tf.lookup.TextFileInitializer` reads inside the exported SavedModel.

    Args:
        items: sequence of str. Item ids in id order (id = index + 2).

    Example:

    >>> vocabulary = Vocabulary(["apple", "pear"])
    >>> vocabulary.encode(["pear", "plum"])
    array([3, 0], dtype=int32)
    """

    def __init__(self, items: Sequence[str]):
        items = list(items)
        index = {}
        for position, item in enumerate(items):
            if not isinstance(item, str) or not item:
                raise ValueError(
                    f"Item ids must be non-empty strings; got {item!r} at "
                    f"position {position}."
                )
            if "\n" in item or "\r" in item:
                raise ValueError(
                    f"Item id {item!r} contains a line break, which the "
                    "vocabulary file cannot store."
                )
            if item in (PAD_TOKEN, MASK_TOKEN):
                raise ValueError(
                    f"Item id {item!r} is a reserved token name; rename it."
                )
            if item in index:
                raise ValueError(f"Item id {item!r} appears twice.")
            index[item] = position + NUM_RESERVED
        self._items = items
        self._index = index

    @classmethod
    def from_sequences(cls, sequences: Iterable[Sequence[str]]):
        """Builds a vocabulary in order of first appearance."""
        seen = {}
        for sequence in sequences:
            for item in sequence:
                seen.setdefault(item, None)
        return cls(list(seen))

    @property
    def items(self) -> list:
        return list(self._items)

    @property
    def num_items(self) -> int:
        return len(self._items)

    @property
    def size(self) -> int:
        """Number of ids, reserved ids included (the model's vocabulary size)."""
        return len(self._items) + NUM_RESERVED

    def tokens(self) -> list:
        """Returns all tokens in id order, reserved tokens first."""
        return [PAD_TOKEN, MASK_TOKEN] + self._items

    def __contains__(self, item: str) -> bool:
        return item in self._index

    def encode(self, items: Sequence[str], unknown: int = PAD_ID) -> np.ndarray:
        """Maps item ids to integer ids; unknown items map to `unknown`."""
        return np.asarray(
            [self._index.get(item, unknown) for item in items], dtype=np.int32
        )

    def decode(self, ids: Iterable[int]) -> list:
        """Maps integer ids back to item ids; reserved ids raise."""
        tokens = []
        for token_id in ids:
            token_id = int(token_id)
            if not NUM_RESERVED <= token_id < self.size:
                raise ValueError(
                    f"Id {token_id} is not an item id (valid: "
                    f"{NUM_RESERVED}..{self.size - 1})."
                )
            tokens.append(self._items[token_id - NUM_RESERVED])
        return tokens

    def save(self, path: str) -> None:
        """Writes one token per line, atomically."""
        temporary = f"{path}.tmp-{os.getpid()}"
        with open(temporary, "w", encoding="utf-8", newline="\n") as f:
            for token in self.tokens():
                f.write(token + "\n")
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: str):
        with open(path, encoding="utf-8", newline="\n") as f:
            tokens = [line.rstrip("\n") for line in f]
        if tokens[:NUM_RESERVED] != [PAD_TOKEN, MASK_TOKEN]:
            raise ValueError(
                f"{path!r} is not a bert4seq vocabulary: its first lines are "
                f"{tokens[:NUM_RESERVED]}, expected {[PAD_TOKEN, MASK_TOKEN]}."
            )
        return cls(tokens[NUM_RESERVED:])
