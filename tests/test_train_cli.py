"""bert4seq-train rejects bad input with one clear message."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_train(*flags):
    return subprocess.run(
        [sys.executable, "-m", "trainers.train", *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_missing_log_file(tmp_path):
    result = run_train(f"--data={tmp_path / 'nope.txt'}", f"--model_dir={tmp_path / 'run'}")
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("bert4seq-train: error:")
    assert "nope.txt" in last_line
    assert "Traceback" not in result.stderr


def test_strict_malformed_row(tmp_path):
    log = tmp_path / "log.txt"
    rows = [f"1 {item}" for item in range(10, 20)]
    rows[2] += " extra"
    log.write_text("\n".join(rows) + "\n")
    result = run_train(f"--data={log}", f"--model_dir={tmp_path / 'run'}", "--strict")
    assert result.returncode == 1
    assert "line 3" in result.stderr.strip().splitlines()[-1]


def test_model_dir_prepared_from_other_data(tmp_path):
    first = tmp_path / "a.txt"
    second = tmp_path / "b.txt"
    first.write_text("".join(f"u{u} i{i}\n" for u in range(3) for i in range(6)))
    second.write_text(first.read_text())
    # Store data prepared from the first log, as an earlier run would have.
    from bert4seq.data.prepare import prepare
    from bert4seq.data.readers import read_interactions

    data = prepare(read_interactions(str(first))[0])
    data.report.update({"source": str(first), "format": "sequence"})
    data.save(str(tmp_path / "run" / "data"))
    result = run_train(f"--data={second}", f"--model_dir={tmp_path / 'run'}")
    assert result.returncode == 1
    assert "Use a new --model_dir" in result.stderr.strip().splitlines()[-1]
