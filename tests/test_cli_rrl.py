"""`paperzoo rrl train` on the real tic-tac-toe table: cross-validation lines, rules, the Hub folder and the errors."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import paperzoo
from paperzoo.cli import build_parser, main

from .tabular_data import TIC_TAC_TOE_COLUMNS, tic_tac_toe

SMALL = ["--folds", "2", "--epochs", "3", "--layer-widths", "8", "--kernel-backend", "reference", "--seed", "0"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The layers are tiny matmuls: intra-op threads only add overhead, and on a busy machine their spinning made a
    3-epoch run take 45 s instead of 1 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    X, y = tic_tac_toe()
    return X.assign(**{"class": y})


@pytest.fixture(scope="module")
def csv(table, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tic-tac-toe.csv"
    table.to_csv(path, index=False)
    return path


def _run(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def trained(csv, tmp_path_factory):
    """One run with the default --output (<csv stem>-rrl in the working directory)."""
    workdir = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        code, out, err = _run(["rrl", "train", str(csv), "--target", "class", *SMALL])
    return code, out, err, workdir / "tic-tac-toe-rrl"


def test_train_succeeds(trained):
    code, out, err, _ = trained
    assert code == 0, err[-2000:]
    assert "958 rows, 9 feature columns (9 discrete, 0 continuous), target 'class' with 2 classes" in out
    assert f"discrete columns (one-hot encoded; no value is a number): {TIC_TAC_TOE_COLUMNS}\n" in out
    assert "continuous columns (standardised): []\n" in out


def test_fold_and_mean_lines(trained):
    _, out, err, _ = trained
    folds = re.findall(r"^fold (\d)/2: macro-F1 (\d\.\d{4})  accuracy (\d\.\d{4})$", out, re.M)
    assert [k for k, _, _ in folds] == ["1", "2"]
    assert out.count("fold 1/2: training on 479 rows, testing on 479") == 1
    mean = re.search(r"^cross-validation \(2 folds, mean ± sd\): macro-F1 (\d\.\d{4}) ± (\d\.\d{4})  "
                     r"accuracy (\d\.\d{4}) ± (\d\.\d{4})$", out, re.M)
    assert mean, out
    f1s = np.array([float(f) for _, f, _ in folds])
    accuracies = np.array([float(a) for _, _, a in folds])
    assert float(mean[1]) == pytest.approx(f1s.mean(), abs=1e-4)
    assert float(mean[2]) == pytest.approx(f1s.std(ddof=1), abs=1e-4)
    assert float(mean[3]) == pytest.approx(accuracies.mean(), abs=1e-4)
    assert all(0 < f <= 1 for f in f1s) and all(0.5 < a <= 1 for a in accuracies)
    assert "RRL epochs" in err  # the estimator's progress bar (verbose=True)


def test_rule_table_and_complexity(trained):
    _, out, _, _ = trained
    header = re.search(r"^\| # \| negative \(b=[-+]\d\.\d{4}\) \| positive \(b=[-+]\d\.\d{4}\) \| support \| rule \|$",
                       out, re.M)
    assert header, out
    rows = re.findall(r"^\| \d+ \| [-+]\d\.\d{4} \| [-+]\d\.\d{4} \| (\d\.\d{4}) \| (.+) \|$", out, re.M)
    size = re.search(r"^complexity: (\d+) rules, (\d+) edges$", out, re.M)
    assert size and len(rows) == int(size[1]) >= 1
    assert all(0 <= float(support) <= 1 for support, _ in rows)
    assert all(re.search(r"\b(top|middle|bottom)_(left|middle|right) = [xob]\b", rule) for _, rule in rows)  # literals name column = category


def test_hub_folder_reproduces_the_estimator(trained, table):
    code, out, err, folder = trained
    assert code == 0, err[-2000:]
    assert f"saved -> {folder.name}" in out
    for name in ("config.json", "model.safetensors", "README.md"):
        assert (folder / name).is_file(), sorted(p.name for p in folder.iterdir())

    model = paperzoo.RRLForTabularClassification.from_pretrained(folder).eval()
    processor = paperzoo.RRLProcessor.from_pretrained(folder)
    X, y = table.drop(columns=["class"]), table["class"].to_numpy()
    with torch.no_grad():
        logits = model(**processor(X, return_tensors="pt")).logits.double().numpy()
    labels = np.array([model.config.id2label[i] for i in logits.argmax(axis=1)])

    # the same fit through the estimator: the CLI passes its settings through unchanged
    clf = paperzoo.RRLClassifier(layer_widths=(8,), max_epochs=3, kernel_backend="reference", random_state=0)
    clf.fit(X, y)
    np.testing.assert_allclose(logits, clf.decision_function(X), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(labels, clf.predict(X))
    assert re.search(rf"^complexity: {clf.complexity()['rules']} rules, {clf.complexity()['edges']} edges$", out, re.M)


def test_no_header_and_target_position(table, tmp_path):
    path = tmp_path / "plain.csv"
    table.to_csv(path, index=False, header=False)
    code, out, err = _run(["rrl", "train", str(path), "--no-header", "--target", "-1", "--folds", "0",
                           "--epochs", "1", "--layer-widths", "4", "--kernel-backend", "reference", "--quiet",
                           "--output", str(tmp_path / "out")])
    assert code == 0, err[-2000:]
    assert "target '9' with 2 classes" in out and "fold " not in out and "RRL epochs" not in err
    assert (tmp_path / "out" / "config.json").is_file()


def test_max_rules_bounds_the_saved_rule_set(csv, tmp_path):
    code, out, err = _run(["rrl", "train", str(csv), "--target", "class", "--folds", "0", "--epochs", "2",
                           "--max-rules", "6", "--kernel-backend", "reference", "--quiet",
                           "--output", str(tmp_path / "out")])
    assert code == 0, err[-2000:]
    rules = int(out.split("complexity: ")[1].split(" rules")[0])
    assert 1 <= rules <= 6 and "(max_rules=6: chose {'layer_widths': (" in out
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["layer_widths"][-1] <= 3


def test_training_pruning_reaches_the_model(csv, tmp_path, monkeypatch):
    """--pruning training prunes the final model on its training rows, and leaves no rule constant on them."""
    from paperzoo import RRLForTabularClassification

    pruned_rows = []
    real = RRLForTabularClassification.prune_by_support
    monkeypatch.setattr(RRLForTabularClassification, "prune_by_support",
                        lambda self, x: pruned_rows.append(len(x)) or real(self, x))
    code, out, err = _run(["rrl", "train", str(csv), "--target", "class", "--folds", "0", "--epochs", "2",
                           "--pruning", "training", "--kernel-backend", "reference", "--quiet",
                           "--output", str(tmp_path / "out")])
    assert code == 0, err[-2000:]
    assert pruned_rows == [int(out.split(" rows,")[0].split(": ")[-1])]  # once, on every row of the table
    table = out.split("rules (support")[1].split("complexity:")[0]
    supports = [float(line.split(" | ")[-2]) for line in table.splitlines() if re.match(r"\| \d+ \|", line)]
    assert supports and all(0 < s < 1 for s in supports), supports


# ---------------------------------------------------------------------------------------------------- errors


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("paperzoo rrl: error: "), err
    return err


def test_missing_target_column(csv, capsys):
    err = _error(capsys, ["rrl", "train", str(csv), "--target", "outcome"])
    assert "'outcome'" in err and "'class'" in err and "'bottom_right'" in err  # names the target and lists the columns


def test_one_class_target(table, tmp_path, capsys):
    path = tmp_path / "positive.csv"
    table[table["class"] == "positive"].to_csv(path, index=False)
    err = _error(capsys, ["rrl", "train", str(path), "--target", "class", "--output", str(tmp_path / "out")])
    assert "single class" in err and "'positive'" in err
    assert not (tmp_path / "out").exists()


def test_missing_and_empty_files(tmp_path, capsys):
    missing = tmp_path / "nowhere.csv"
    assert str(missing) in _error(capsys, ["rrl", "train", str(missing), "--target", "class"])
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert "is empty (" in _error(capsys, ["rrl", "train", str(empty), "--target", "class"])
    header_only = tmp_path / "header.csv"
    header_only.write_text("a,b,class\n")
    assert "no data rows" in _error(capsys, ["rrl", "train", str(header_only), "--target", "class"])


def test_non_numeric_continuous_column(csv, capsys):
    # bottom_right left out of --discrete is continuous, but holds x / o / b
    discrete = ",".join(TIC_TAC_TOE_COLUMNS[:-1])
    err = _error(capsys, ["rrl", "train", str(csv), "--target", "class", "--discrete", discrete])
    assert "'bottom_right'" in err and "non-numeric" in err
    assert "'nine'" in _error(capsys, ["rrl", "train", str(csv), "--target", "class", "--discrete", "top_left,nine"])


@pytest.fixture(scope="module")
def wine_csv(tmp_path_factory) -> Path:
    """scikit-learn's wine as a CSV (13 numeric columns, then `target`), with 'abc' in `alcohol` on data row 17."""
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame.astype({"alcohol": object})
    frame.loc[17, "alcohol"] = "abc"
    path = tmp_path_factory.mktemp("wine") / "wine.csv"
    frame.to_csv(path, index=False)
    return path


def test_a_stray_bad_value_names_column_line_and_value(wine_csv, tmp_path, capsys):
    err = _error(capsys, ["rrl", "train", str(wine_csv), "--target", "target", "--output", str(tmp_path / "out")])
    line = 17 + 2  # the header is line 1, data row 0 is line 2
    assert f"column 'alcohol' is continuous but line {line} holds 'abc', which is not a number" in err
    assert wine_csv.read_text().splitlines()[line - 1].startswith("abc,")  # the line the message names
    assert "--bad-values missing" in err and not (tmp_path / "out").exists()


def test_bad_values_missing_keeps_the_column_continuous(wine_csv, tmp_path):
    code, out, err = _run(["rrl", "train", str(wine_csv), "--target", "target", "--bad-values", "missing",
                           "--folds", "0", "--epochs", "1", "--layer-widths", "4", "--kernel-backend", "reference",
                           "--quiet", "--output", str(tmp_path / "out")])
    assert code == 0, err[-2000:]
    columns = list(pd.read_csv(wine_csv).columns[:-1])
    assert "178 rows, 13 feature columns (0 discrete, 13 continuous), target 'target' with 3 classes" in out
    assert "discrete columns (one-hot encoded; no value is a number): []\n" in out
    assert f"continuous columns (standardised; values that are not numbers count as missing): {columns}\n" in out


def test_continuous_target_is_one_clear_error(wine_csv, tmp_path, capsys):
    distinct = pd.read_csv(wine_csv)["malic_acid"].nunique()
    err = _error(capsys, ["rrl", "train", str(wine_csv), "--target", "malic_acid", "--bad-values", "missing",
                          "--output", str(tmp_path / "out")])
    assert err.count("\n") == 1 and "target 'malic_acid' looks continuous" in err
    assert f"{distinct} distinct values in 178 rows" in err and "Did you mean another column?" in err
    assert not (tmp_path / "out").exists()


def test_bad_device_is_a_usage_error(csv, capsys):
    assert "'nope'" in _error(capsys, ["rrl", "train", str(csv), "--target", "class", "--device", "nope"])


def test_refuses_to_replace_a_folder_that_is_not_a_model(csv, tmp_path, capsys):
    keep = tmp_path / "notes"
    keep.mkdir()
    (keep / "todo.txt").write_text("keep me")
    err = _error(capsys, ["rrl", "train", str(csv), "--target", "class", "--output", str(keep)])
    assert "config.json" in err and (keep / "todo.txt").read_text() == "keep me"


def test_other_subcommands_still_parse():
    parser = build_parser()
    assert parser.parse_args(["export", "m", "o"]).command == "export"
    assert parser.parse_args(["push", "f", "user/repo"]).repo_id == "user/repo"
    assert parser.parse_args(["convert", "torchscale-retnet", "--checkpoint", "c", "--output", "o"]).source
    args = parser.parse_args(["rrl", "train", "d.csv", "--target", "y", "--layer-widths", "16@8"])
    assert args.layer_widths == [16, 8] and args.folds == 5 and args.activation == "nlaf"
