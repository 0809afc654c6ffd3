"""`medloop aggregate ANSWERS.csv`: default method, --gold, --output, --evaluate, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_support import run
from medloop.aggregation import DEFAULT_METHOD


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    # two reliable workers and one who always says the opposite; t4 is only in gold
    rows = ["task,worker,label"]
    truth = {"t1": "yes", "t2": "no", "t3": "yes", "t5": "no", "t6": "yes"}
    for task, label in truth.items():
        other = "no" if label == "yes" else "yes"
        rows += [f"{task},a,{label}", f"{task},b,{label}", f"{task},c,{other}"]
    paths = {
        "answers": tmp_path / "answers.csv",
        "gold": tmp_path / "gold.csv",
        "truth": tmp_path / "truth.csv",
        "output": tmp_path / "labels.csv",
    }
    paths["answers"].write_text("\n".join(rows) + "\n")
    paths["gold"].write_text("task,label\nt1,yes\nt4,no\n")
    paths["truth"].write_text("task,label\n" + "".join(f"{t},{v}\n" for t, v in truth.items()))
    return paths


def test_default_method_with_gold_output_and_evaluation(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        monkeypatch,
        capsys,
        "aggregate",
        str(files["answers"]),
        "--gold",
        str(files["gold"]),
        "--output",
        str(files["output"]),
        "--evaluate",
        str(files["truth"]),
        "--json",
    )
    assert code == 0
    report = json.loads(out)
    assert report["method"] == DEFAULT_METHOD.value
    # t1's label was given to the fit: scoring it would score the answer key itself
    assert report["accuracy"] == 1.0 and report["tasks_scored"] == 4
    assert report["known_left_out"] == 1
    assert report["seconds"] >= 0
    lines = files["output"].read_text().splitlines()
    assert lines[0] == "task,label,p_no,p_yes"
    labels = dict(line.split(",")[:2] for line in lines[1:])
    assert labels["t4"] == "no"  # a gold-only task comes out with its known label
    assert labels["t1"] == "yes"


@pytest.mark.parametrize(
    "method", ["wawa", "one_coin", "glad", "mace", "dawid_skene", "minimax_entropy"]
)
def test_every_method_by_name(
    method: str,
    files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(
        monkeypatch,
        capsys,
        "aggregate",
        str(files["answers"]),
        "--method",
        method,
        "--evaluate",
        str(files["truth"]),
        "--json",
    )
    assert code == 0
    report = json.loads(out)
    assert report["method"] == method and report["tasks_scored"] == 5


def test_unknown_method_suggests_a_name(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(monkeypatch, capsys, "aggregate", str(files["answers"]), "--method", "mac")
    assert code != 0
    assert "mace" in err


def test_gold_labels_must_be_the_answers_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A gold file read as floats (a blank cell) still names the answers' classes; a
    label nobody could have answered is a typo, refused rather than made a new class."""
    answers = tmp_path / "answers.csv"
    answers.write_text("task,worker,label\nt1,a,1\nt1,b,1\nt2,a,0\nt2,b,1\nt3,a,0\nt3,b,0\n")
    gold = tmp_path / "gold.csv"
    gold.write_text("task,label\nt2,0\nt3,\n")  # read as 0.0 and NaN
    output = tmp_path / "labels.csv"
    code, _, err = run(
        monkeypatch, capsys, "aggregate", str(answers), "--gold", str(gold), "--output", str(output)
    )
    assert code == 0, err
    assert output.read_text().splitlines()[0] == "task,label,p_0,p_1"  # no class "0.0"
    assert "t2,0," in output.read_text()
    gold.write_text("task,label\nt2,7\n")
    code, _, err = run(monkeypatch, capsys, "aggregate", str(answers), "--gold", str(gold))
    assert code == 2 and "label '7' (task 't2') is not among the answers' labels" in err


def test_a_truth_file_of_known_tasks_only_scores_nothing(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Evaluating on the very labels given with --gold is refused, not reported as 1.0."""
    gold = str(files["gold"])
    code, _, err = run(
        monkeypatch, capsys, "aggregate", str(files["answers"]), "--gold", gold, "--evaluate", gold
    )
    assert code == 2
    assert "other than the known (gold) ones" in " ".join(err.split())
