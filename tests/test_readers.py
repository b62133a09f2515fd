"""Readers on the real datasets and on malformed input."""


import pytest

from bert4seq.data.readers import (
    ColumnNames,
    DataFormatError,
    detect_format,
    read_interactions,
)
from shared_data import BEAUTY, ML_100K



def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_beauty_sequence_file():
    frame, report = read_interactions(BEAUTY)
    assert report.format == "sequence"
    assert len(frame) == 353962
    assert report.rows_malformed == 0
    assert frame["user"].nunique() == 40226
    assert frame["item"].nunique() == 54542
    assert frame["timestamp"].isna().all()


def test_movielens_100k_file():
    frame, report = read_interactions(ML_100K)
    assert report.format == "ml-100k"
    assert len(frame) == 100000
    assert frame["user"].nunique() == 943
    assert frame["item"].nunique() == 1682
    first = frame.iloc[0]
    assert (first["user"], first["item"], first["rating"], first["timestamp"]) == (
        "196",
        "242",
        3.0,
        881250949.0,
    )


def test_movielens_1m_separator(tmp_path):
    path = write(tmp_path, "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    frame, report = read_interactions(path)
    assert report.format == "ml-1m"
    assert frame["item"].tolist() == ["1193", "661"]


def test_bad_rows_counted_with_lines(tmp_path):
    text = "1\t10\t5\t100\n1\t11\t5\n1\t12\tfive\t102\n2\t13\t4\t103\n"
    path = write(tmp_path, "log.tsv", text)
    frame, report = read_interactions(path, format="ml-100k")
    assert len(frame) == 2
    assert report.rows_malformed == 2
    assert [line for line, _ in report.malformed_examples] == [2, 3]
    assert "expected 4 fields" in report.malformed_examples[0][1]
    assert "five" in report.malformed_examples[1][1]


def test_strict_raises_on_bad_row(tmp_path):
    path = write(tmp_path, "log.txt", "1 10\n1 10 extra\n")
    with pytest.raises(DataFormatError, match="line 2"):
        read_interactions(path, format="sequence", strict=True)


def test_wrong_separator_is_reported(tmp_path):
    path = write(tmp_path, "log.csv", "user_id;item_id;timestamp\n1;2;3\n")
    with pytest.raises(DataFormatError, match="wrong separator"):
        read_interactions(path)


def test_wrong_format_gives_no_usable_rows(tmp_path):
    path = write(tmp_path, "u.data", "1 2 3 4\n5 6 7 8\n")
    with pytest.raises(DataFormatError, match="No usable rows"):
        read_interactions(path)


def test_empty_file(tmp_path):
    path = write(tmp_path, "empty.txt", "")
    with pytest.raises(DataFormatError, match="empty"):
        read_interactions(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_interactions(str(tmp_path / "nope.txt"))


def test_undetectable_format_asks_for_flag(tmp_path):
    path = write(tmp_path, "log.txt", "a b c\nd e f\n")
    with pytest.raises(DataFormatError, match="--format"):
        detect_format(path)


def test_csv_with_named_columns_and_dates(tmp_path):
    text = (
        "uid,product,when,stars\n"
        "u1,p1,2024-01-02T00:00:00,5\n"
        "u1,p2,2024-01-01T00:00:00,3\n"
        "u2,p1,1700000000,4\n"
    )
    path = write(tmp_path, "events.csv", text)
    columns = ColumnNames(user="uid", item="product", timestamp="when", rating="stars")
    frame, report = read_interactions(path, columns=columns)
    assert report.format == "csv"
    assert frame["item"].tolist() == ["p1", "p2", "p1"]
    assert frame["timestamp"].iloc[1] < frame["timestamp"].iloc[0]
    assert frame["rating"].tolist() == [5.0, 3.0, 4.0]


def test_csv_missing_column_names_the_flag(tmp_path):
    path = write(tmp_path, "events.csv", "user,item\n1,2\n")
    with pytest.raises(DataFormatError, match="--user_col"):
        read_interactions(path)
