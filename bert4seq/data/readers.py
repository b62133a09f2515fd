"""Readers for interaction logs: sequence files, MovieLens and CSV/TSV/Parquet.

Every reader returns the same columns, so the rest of the pipeline does not
care where a log came from:

- `user` (str): user id as written in the file.
- `item` (str): item id as written in the file.
- `timestamp` (float64): event time, NaN when the format has none.
- `rating` (float64): rating or event weight, NaN when the format has none.
- `row` (int64): 0-based input order, used to break timestamp ties.

Malformed rows are counted and the first few are reported with their line
numbers; with `strict=True` the first malformed row raises instead.
"""

import csv
import dataclasses
import logging
import math
import os
from typing import Iterator, Optional

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

FORMATS = ("sequence", "ml-100k", "ml-1m", "csv", "tsv", "parquet")


class DataFormatError(ValueError):
    """Raised when a log cannot be read: missing, empty, malformed or ambiguous."""


@dataclasses.dataclass
class ReadReport:
    """Counts and malformed-row examples from reading one file.

    Attributes:
        path: The file that was read.
        format: The format it was read as.
        rows_total: Non-empty data rows seen (header excluded).
        rows_read: Rows turned into interactions.
        rows_malformed: Rows skipped because they could not be parsed.
        malformed_examples: `(line_number, reason)` for the first malformed
            rows; line numbers are 1-based, as an editor shows them.
    """

    path: str
    format: str
    rows_total: int = 0
    rows_read: int = 0
    rows_malformed: int = 0
    malformed_examples: list = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        text = (
            f"{self.path} ({self.format}): {self.rows_read} interactions "
            f"read, {self.rows_malformed} malformed rows skipped"
        )
        if self.malformed_examples:
            examples = "; ".join(
                f"line {line}: {reason}"
                for line, reason in self.malformed_examples
            )
            text += f" (first: {examples})"
        return text


@dataclasses.dataclass
class ColumnNames:
    """Column names of a CSV, TSV or Parquet log with a header row.

    Attributes:
        user: Column with the user id.
        item: Column with the item id.
        timestamp: Column with the event time (numbers, or dates that pandas
            can parse); None when the rows are already in time order.
        rating: Column with a rating or event weight; None if absent.
    """

    user: str = "user_id"
    item: str = "item_id"
    timestamp: Optional[str] = "timestamp"
    rating: Optional[str] = None


class _Collector:
    """Accumulates parsed rows and malformed-row bookkeeping."""

    def __init__(self, report: ReadReport, strict: bool, max_examples: int):
        self.report = report
        self.strict = strict
        self.max_examples = max_examples
        self.users: list = []
        self.items: list = []
        self.timestamps: list = []
        self.ratings: list = []

    def add(self, user: str, item: str, timestamp: float, rating: float):
        self.users.append(user)
        self.items.append(item)
        self.timestamps.append(timestamp)
        self.ratings.append(rating)

    def malformed(self, line_number: int, reason: str):
        self.report.rows_malformed += 1
        if self.strict:
            raise DataFormatError(
                f"{self.report.path}, line {line_number}: {reason}. "
                "Fix the row, or run without --strict to skip malformed "
                "rows (they are counted and reported)."
            )
        if len(self.report.malformed_examples) < self.max_examples:
            self.report.malformed_examples.append((line_number, reason))

    def to_frame(self) -> pd.DataFrame:
        self.report.rows_read = len(self.users)
        return pd.DataFrame(
            {
                "user": pd.array(self.users, dtype=object),
                "item": pd.array(self.items, dtype=object),
                "timestamp": np.asarray(self.timestamps, dtype=np.float64),
                "rating": np.asarray(self.ratings, dtype=np.float64),
                "row": np.arange(len(self.users), dtype=np.int64),
            }
        )


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"Interaction log not found: {path!r}. Check the --data path."
        )
    if os.path.isdir(path):
        raise DataFormatError(
            f"{path!r} is a directory; --data expects a file such as "
            "u.data, ratings.dat, beauty.txt or a CSV file."
        )
    if os.path.getsize(path) == 0:
        raise DataFormatError(f"Interaction log {path!r} is empty.")


def _lines(path: str, encoding: str) -> Iterator[tuple]:
    """Yields `(line_number, stripped_line)` for non-blank lines."""
    with open(path, encoding=encoding, errors="replace", newline="") as f:
        for line_number, line in enumerate(f, start=1):
            line = line.strip()
            if line:
                yield line_number, line


def _parse_number(text: str, what: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{what} {text!r} is not a finite number")
    return value


def detect_format(path: str) -> str:
    """Guesses the format of `path` from its name and first lines.

    Returns one of `FORMATS`. Raises `DataFormatError` when the guess would
    be ambiguous, with the formats to choose from.
    """
    name = os.path.basename(path).lower()
    if name == "u.data":
        return "ml-100k"
    if name == "ratings.dat":
        return "ml-1m"
    for suffix, fmt in ((".csv", "csv"), (".tsv", "tsv"), (".parquet", "parquet")):
        if name.endswith(suffix):
            return fmt

    _check_file(path)
    sample = []
    for _, line in _lines(path, "utf-8"):
        sample.append(line)
        if len(sample) >= 20:
            break
    if not sample:
        raise DataFormatError(f"Interaction log {path!r} has no data rows.")

    # A format wins when most sampled lines fit it, so that one malformed
    # row near the top does not hide the format (it is reported later).
    def share(fits):
        return sum(1 for line in sample if fits(line)) / len(sample)

    if share(lambda line: "::" in line) >= 0.8:
        return "ml-1m"
    if share(lambda line: len(line.split("\t")) == 4) >= 0.8:
        return "ml-100k"
    if share(lambda line: len(line.split()) == 2) >= 0.8:
        return "sequence"
    raise DataFormatError(
        f"Cannot detect the format of {path!r} from its first lines "
        f"(first line: {sample[0][:80]!r}). Pass --format with one of: "
        f"{', '.join(FORMATS)}."
    )


def _read_sequence(path, collector):
    # One `user item` pair per line; the order of a user's lines is the
    # order of their actions, so there is no timestamp.
    for line_number, line in _lines(path, "utf-8"):
        collector.report.rows_total += 1
        fields = line.split()
        if len(fields) != 2:
            collector.malformed(
                line_number,
                f"expected 2 fields 'user item', found {len(fields)}",
            )
            continue
        collector.add(fields[0], fields[1], math.nan, math.nan)


def _read_movielens(path, collector, separator, encoding):
    # user, item, rating, timestamp; MovieLens files have no header.
    for line_number, line in _lines(path, encoding):
        collector.report.rows_total += 1
        fields = line.split(separator)
        if len(fields) != 4:
            collector.malformed(
                line_number,
                f"expected 4 fields separated by {separator!r}, "
                f"found {len(fields)}",
            )
            continue
        user, item, rating, timestamp = (field.strip() for field in fields)
        if not user or not item:
            collector.malformed(line_number, "empty user or item id")
            continue
        try:
            rating_value = _parse_number(rating, "rating")
            timestamp_value = _parse_number(timestamp, "timestamp")
        except ValueError as error:
            collector.malformed(line_number, str(error))
            continue
        collector.add(user, item, timestamp_value, rating_value)


def _column_index(header, name, path, required):
    if name is None:
        return None
    if name in header:
        return header.index(name)
    if not required:
        return None
    raise DataFormatError(
        f"Column {name!r} not found in the header of {path!r} "
        f"(columns: {header}). Name the right column with --user_col, "
        "--item_col, --time_col or --rating_col."
    )


def _parse_time(text: str) -> float:
    try:
        return _parse_number(text, "timestamp")
    except ValueError:
        pass
    # Dates such as 2024-01-31T12:00:00; pandas returns NaT for garbage.
    value = pd.to_datetime(text, errors="coerce", utc=True)
    if value is pd.NaT:
        raise ValueError(f"timestamp {text!r} is neither a number nor a date")
    return value.timestamp()


def _read_delimited(path, collector, columns: ColumnNames, delimiter):
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = next(reader, None)
        if not header:
            raise DataFormatError(f"{path!r} has no header row.")
        header = [name.strip() for name in header]
        if len(header) == 1:
            raise DataFormatError(
                f"The header of {path!r} has one column ({header[0][:80]!r}) "
                f"when split on {delimiter!r}: wrong separator? Pass "
                "--format tsv, --format csv or --delimiter."
            )
        user_index = _column_index(header, columns.user, path, True)
        item_index = _column_index(header, columns.item, path, True)
        time_index = _column_index(header, columns.timestamp, path, False)
        rating_index = _column_index(header, columns.rating, path, True)
        if columns.timestamp is not None and time_index is None:
            logger.warning(
                "%s has no column %r: keeping the file order of each user's "
                "rows as their time order.",
                path,
                columns.timestamp,
            )

        for fields in reader:
            line_number = reader.line_num
            if not fields or all(not field.strip() for field in fields):
                continue
            collector.report.rows_total += 1
            if len(fields) != len(header):
                collector.malformed(
                    line_number,
                    f"expected {len(header)} fields, found {len(fields)}",
                )
                continue
            user = fields[user_index].strip()
            item = fields[item_index].strip()
            if not user or not item:
                collector.malformed(line_number, "empty user or item id")
                continue
            try:
                timestamp = (
                    math.nan
                    if time_index is None
                    else _parse_time(fields[time_index].strip())
                )
                rating = (
                    math.nan
                    if rating_index is None
                    else _parse_number(fields[rating_index].strip(), "rating")
                )
            except ValueError as error:
                collector.malformed(line_number, str(error))
                continue
            collector.add(user, item, timestamp, rating)


def _read_parquet(path, collector, columns: ColumnNames):
    frame = pd.read_parquet(path)
    for name in (columns.user, columns.item, columns.rating):
        if name is not None and name not in frame.columns:
            raise DataFormatError(
                f"Column {name!r} not found in {path!r} (columns: "
                f"{list(frame.columns)}). Name the right column with "
                "--user_col, --item_col or --rating_col."
            )
    names = [columns.user, columns.item, columns.timestamp, columns.rating]
    present = [name if name in frame.columns else None for name in names]
    if columns.timestamp is not None and present[2] is None:
        logger.warning(
            "%s has no column %r: keeping the file order of each user's "
            "rows as their time order.",
            path,
            columns.timestamp,
        )
    timestamps = (
        _timestamps_to_seconds(frame[present[2]])
        if present[2]
        else np.full(len(frame), np.nan)
    )
    ratings = (
        pd.to_numeric(frame[present[3]], errors="coerce").to_numpy(np.float64)
        if present[3]
        else np.full(len(frame), np.nan)
    )
    users = frame[columns.user].to_numpy(object)
    items = frame[columns.item].to_numpy(object)
    for index in range(len(frame)):
        collector.report.rows_total += 1
        user, item = users[index], items[index]
        if user is None or item is None or pd.isna(user) or pd.isna(item):
            # Parquet has no lines; report the 1-based row number instead.
            collector.malformed(index + 1, "missing user or item id")
            continue
        collector.add(str(user), str(item), timestamps[index], ratings[index])


def _timestamps_to_seconds(column: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(column):
        return column.to_numpy(np.float64)
    times = pd.to_datetime(column, errors="coerce", utc=True)
    seconds = (times - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return seconds.to_numpy(np.float64)


def read_interactions(
    path: str,
    format: str = "auto",
    columns: Optional[ColumnNames] = None,
    delimiter: Optional[str] = None,
    strict: bool = False,
    max_reported: int = 5,
) -> tuple:
    """Reads an interaction log into a DataFrame.

    Args:
        path: str. The log file.
        format: str. One of `FORMATS`, or "auto" to detect it from the file
            name and first lines.
        columns: ColumnNames. Header names for csv, tsv and parquet.
        delimiter: str. Overrides the field separator of csv and tsv.
        strict: bool. Raise on the first malformed row instead of skipping
            and counting it.
        max_reported: int. How many malformed rows to list in the report.

    Returns:
        `(frame, report)`: a DataFrame with the columns described in this
        module's docstring, in input order, and a `ReadReport`.

    Example:

    >>> frame, report = read_interactions("ml-100k/u.data")
    >>> report.rows_read
    100000
    """
    _check_file(path)
    if format == "auto":
        format = detect_format(path)
    if format not in FORMATS:
        raise DataFormatError(
            f"Unknown format {format!r}; expected 'auto' or one of: "
            f"{', '.join(FORMATS)}."
        )
    columns = columns or ColumnNames()
    report = ReadReport(path=path, format=format)
    collector = _Collector(report, strict, max_reported)

    if format == "sequence":
        _read_sequence(path, collector)
    elif format == "ml-100k":
        _read_movielens(path, collector, "\t", "latin-1")
    elif format == "ml-1m":
        _read_movielens(path, collector, "::", "latin-1")
    elif format in ("csv", "tsv"):
        default_delimiter = "," if format == "csv" else "\t"
        _read_delimited(path, collector, columns, delimiter or default_delimiter)
    else:
        _read_parquet(path, collector, columns)

    frame = collector.to_frame()
    if report.rows_malformed:
        logger.warning("%s", report.summary())
    else:
        logger.info("%s", report.summary())
    if frame.empty:
        raise DataFormatError(
            f"No usable rows in {path!r} read as {format!r} "
            f"({report.rows_total} rows, {report.rows_malformed} malformed"
            + (
                f"; first: line {report.malformed_examples[0][0]}: "
                f"{report.malformed_examples[0][1]}"
                if report.malformed_examples
                else ""
            )
            + "). Check --format and the column flags."
        )
    return frame, report
