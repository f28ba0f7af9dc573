"""LLMs against traditional tools on the same folds (Wang et al., arXiv 2306.01499, with RRL as the strongest tool):

    from paperzoo.diagnosis import compare
    result = compare(frame, target="Class", shots=(0, 4, 8), out="comparison/")   # or `paperzoo diagnose compare`
    result.table          # accuracy and macro-F1, mean ± sd over the folds, seconds per record, per method

Every method sees the same stratified folds (`stratified_folds`, seeded); everything a method learns comes from the
training fold: the traditional tools' preprocessing (imputation, scaling, one-hot) is inside their scikit-learn
pipelines, RRL's inside its estimator, and the LLM's examples, shown features and ranges inside `LLMDiagnoser.fit`.
Traditional tools read every feature; the LLM reads the `max_features` it is shown (stated in the results).

Faithfulness (with RRL and an LLM among the methods): per test case, the LLM's cited features against the features
of the RRL rules that fired on that case, RRL fitted on the same training fold (paperzoo.diagnosis.faithfulness).

`save(folder)` (or `out=`) writes table.md / table.csv, per_fold.csv, predictions.csv, faithfulness.csv,
answers.csv (what the LLM said per case), folds.json, task.json, summary.json and comparison.png (accuracy and macro-F1 with their fold spread) to a temporary folder
renamed into place.
"""

from __future__ import annotations

import importlib.util
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .task import DiagnosisTask

TRADITIONAL = {"rrl": "RRL", "lr": "logistic regression", "cart": "CART", "rf": "random forest",
               "gb": "gradient boosting", "majority": "majority class"}  # the last: the floor any method must beat
PLOT_INSTALL = 'pip install "paperzoo[diagnosis]" (or matplotlib)'
INVALID = "<invalid>"  # the prediction of an LLM answer that names no option: wrong for every class


def stratified_folds(y, n_folds: int = 5, seed: int = 0) -> list[np.ndarray]:
    """The test positions of each of `n_folds` stratified, shuffled folds (seeded): the folds of every method."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y).astype(str)
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 2:
        raise ValueError(f"n_folds={n_folds!r} must be an integer ≥ 2")
    smallest = min(np.unique(y, return_counts=True)[1])
    if smallest < n_folds:
        raise ValueError(f"n_folds={n_folds} but the smallest class has {smallest} rows: every fold needs each class")
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return [test for _, test in splitter.split(np.zeros(len(y)), y)]


def traditional_model(name: str, numeric: list[str], categorical: list[str], seed: int, rrl_params: dict | None):
    """A fresh, unfitted estimator for a traditional tool, its preprocessing fitted with it on the training fold."""
    from sklearn.compose import ColumnTransformer
    from sklearn.dummy import DummyClassifier
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    if name == "rrl":
        from ..estimators.rrl import RRLClassifier

        params = {"max_epochs": 200, "lr_decay_epochs": 100, **(rrl_params or {})}  # benchmarks/rrl.py's ad_data run
        return RRLClassifier(discrete=categorical, random_state=seed, **params)
    scale = [StandardScaler()] if name == "lr" else []  # trees do not care about scale
    columns = ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="median"), *scale), numeric),
        ("categorical", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                      OneHotEncoder(handle_unknown="ignore")), categorical)])
    model = {"lr": lambda: LogisticRegression(max_iter=5000),
             "cart": lambda: DecisionTreeClassifier(random_state=seed),
             "rf": lambda: RandomForestClassifier(n_estimators=300, random_state=seed),
             "gb": lambda: GradientBoostingClassifier(random_state=seed),
             "majority": lambda: DummyClassifier(strategy="most_frequent")}[name]()
    return make_pipeline(columns, model)


@dataclass
class Comparison:
    task: DiagnosisTask
    folds: list[list]  # test row labels of each fold
    per_fold: list[dict] = field(default_factory=list)  # method, fold, accuracy, macro_f1, seconds, invalid
    predictions: dict = field(default_factory=dict)  # method -> {row label: predicted class}
    cases: list[dict] = field(default_factory=list)  # faithfulness per (LLM method, test case)
    answers: list[dict] = field(default_factory=list)  # what the LLM said per (LLM method, test case)
    settings: dict = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(r["method"] for r in self.per_fold))

    @property
    def table(self):
        """One row per method: accuracy and macro-F1 mean ± sd over the folds, seconds per test record (fit
        included for the trained tools), invalid LLM answers."""
        import pandas as pd

        rows = []
        for method in self.methods:
            runs = [r for r in self.per_fold if r["method"] == method]
            row = {"method": method, "name": display_name(method), "folds": len(runs)}
            for key in ("accuracy", "macro_f1"):
                values = [r[key] for r in runs]
                row[f"{key}_mean"] = float(np.mean(values))
                row[f"{key}_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            row["seconds_per_record"] = sum(r["seconds"] for r in runs) / sum(r["records"] for r in runs)
            row["invalid"] = sum(r["invalid"] for r in runs)
            rows.append(row)
        return pd.DataFrame(rows)

    def faithfulness(self) -> dict:
        from .faithfulness import aggregate

        return {m: aggregate([c for c in self.cases if c["method"] == m])
                for m in dict.fromkeys(c["method"] for c in self.cases)}

    def markdown(self) -> str:
        lines = ["| method | accuracy | macro-F1 | s / record | invalid answers |", "|---|---|---|---|---|"]
        for _, r in self.table.iterrows():
            lines.append(f"| {r['name']} | {r.accuracy_mean:.3f} ± {r.accuracy_sd:.3f} | {r.macro_f1_mean:.3f} ± "
                         f"{r.macro_f1_sd:.3f} | {r.seconds_per_record:.4f} | {r.invalid} |")
        faith = self.faithfulness()
        if faith:
            lines += ["", "| LLM | cases | cited ⊂ RRL rules (precision) | recall | Jaccard | chance precision | "
                          "cites nothing |", "|---|---|---|---|---|---|---|"]
            for method, a in faith.items():
                lines.append(f"| {display_name(method)} | {a['cases']} | {a['precision']:.3f} | {a['recall']:.3f} | "
                             f"{a['jaccard']:.3f} | {a['chance']:.3f} | {a['no_citation']:.3f} |")
        return "\n".join(lines)

    def save(self, folder) -> Path:
        """Write the results (see the module docstring) to `folder`, through a temporary sibling renamed into place
        (an existing folder is replaced only once the new one is complete)."""
        import pandas as pd

        from ..hub.export import _make_sibling, _replace

        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = _make_sibling(folder, "tmp")
        try:
            (tmp / "table.md").write_text(self.markdown() + "\n", encoding="utf-8")
            self.task.save(tmp / "task.json")
            self.table.to_csv(tmp / "table.csv", index=False)
            pd.DataFrame(self.per_fold).to_csv(tmp / "per_fold.csv", index=False)
            pd.DataFrame(self.predictions).rename_axis("row").to_csv(tmp / "predictions.csv")
            pd.DataFrame(self.cases).to_csv(tmp / "faithfulness.csv", index=False)
            pd.DataFrame(self.answers).to_csv(tmp / "answers.csv", index=False)
            (tmp / "folds.json").write_text(json.dumps([[_plain(i) for i in f] for f in self.folds]),
                                            encoding="utf-8")
            summary = {"settings": self.settings, "faithfulness": self.faithfulness(),
                       "table": self.table.to_dict(orient="records")}
            (tmp / "summary.json").write_text(json.dumps(summary, indent=1, default=_plain), encoding="utf-8")
            self.plot(tmp / "comparison.png")
            _replace(tmp, folder)
        finally:
            if tmp.exists():
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
        return folder

    @classmethod
    def load(cls, folder) -> Comparison:
        """A comparison written by `save` (to re-plot it, or to join it with another run on the same folds)."""
        import pandas as pd

        folder = Path(folder)
        if not (folder / "summary.json").is_file():
            raise ValueError(f"{folder} holds no saved comparison (no summary.json)")
        def records(name):  # an empty table is written as an empty file
            path = folder / name
            return pd.read_csv(path).to_dict(orient="records") if path.is_file() and path.stat().st_size > 1 else []

        predictions = pd.read_csv(folder / "predictions.csv", index_col="row")
        return cls(DiagnosisTask.load(folder / "task.json"), json.loads((folder / "folds.json").read_text()),
                   records("per_fold.csv"), {m: predictions[m].to_dict() for m in predictions.columns},
                   records("faithfulness.csv"), records("answers.csv"),
                   json.loads((folder / "summary.json").read_text())["settings"])

    def join(self, other: Comparison) -> Comparison:
        """This comparison's methods and those of `other` (a run on the same folds) in one table."""
        if other.folds != self.folds:
            raise ValueError("the two comparisons did not use the same folds: their rows cannot share a table")
        ours = set(self.methods)
        return Comparison(self.task, self.folds, self.per_fold + [r for r in other.per_fold
                                                                  if r["method"] not in ours],
                          {**other.predictions, **self.predictions}, self.cases + other.cases,
                          self.answers + other.answers, {"joined": [self.settings, other.settings]})

    def plot(self, path) -> None:
        """Bars of accuracy and macro-F1 per method, error bars the standard deviation over the folds."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError(f"the comparison plot needs matplotlib: {PLOT_INSTALL}") from None

        table = self.table
        x = np.arange(len(table))
        fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(table)), 4.0))
        for offset, key, label in ((-0.2, "accuracy", "accuracy"), (0.2, "macro_f1", "macro-F1")):
            ax.bar(x + offset, table[f"{key}_mean"], 0.4, yerr=table[f"{key}_sd"], capsize=3, label=label)
        ax.set_xticks(x, table["name"], rotation=30, ha="right")
        ax.set_ylim(0, 1.15)  # room for the legend above the bars
        ax.set_ylabel(f"mean over {len(self.folds)} folds (± sd)")
        ax.set_title(f"{self.task.name}: LLM vs traditional tools, same folds")
        ax.legend(loc="upper right", ncol=2)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)


def display_name(method: str) -> str:
    """"llm-4" → "LLM 4-shot"; "llm-0-gen" (answers generated and parsed) → "LLM zero-shot, generated"."""
    if method.startswith("llm-"):
        k = int(method.split("-")[1])
        return ("LLM zero-shot" if k == 0 else f"LLM {k}-shot") + (", generated" if method.endswith("-gen") else "")
    return TRADITIONAL[method]


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def compare(frame, target: str | None = None, task: DiagnosisTask | None = None,
            methods=("rrl", "lr", "cart", "rf", "gb"), shots=(0, 4, 8), llm=None, tokenizer=None,
            n_folds: int = 5, seed: int = 0, out=None, progress: bool = True, rrl_params: dict | None = None,
            llm_options: dict | None = None, explain_shots=None) -> Comparison:
    """Run the traditional `methods` (keys of TRADITIONAL) and the LLM with each number of `shots` (empty: no LLM) on
    the same stratified folds of `frame`; see the module docstring. `task` describes the features (default: from the
    frame's columns; its target wins over `target`); `llm`/`tokenizer` as for LLMDiagnoser (loaded once);
    `llm_options` go to every LLMDiagnoser (max_features, scoring, explain, missing, chat_template, batch_size, ...);
    `explain_shots`: the LLM rows (numbers of shots) that generate explanations in likelihood mode (None: every row
    with explain on); the faithfulness is measured for those.
    """
    from sklearn.metrics import accuracy_score, f1_score
    from tqdm.auto import tqdm

    from .faithfulness import overlap, rule_features
    from .llm import LLMDiagnoser

    if out is not None and importlib.util.find_spec("matplotlib") is None:  # before hours of work, not after
        raise ImportError(f"compare(out=...) writes a plot and needs matplotlib: {PLOT_INSTALL}")
    unknown = [m for m in methods if m not in TRADITIONAL]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; traditional tools: {sorted(TRADITIONAL)} (the LLM runs for "
                         f"each entry of shots=)")
    bad = [k for k in shots if isinstance(k, bool) or not isinstance(k, int) or k < 0]
    if bad:
        raise ValueError(f"shots={list(shots)!r}: each must be a non-negative integer")
    if task is None:
        if target is None:
            raise ValueError("pass target= (the class column) or task= (a DiagnosisTask)")
        task = DiagnosisTask.from_frame(frame, target)
    elif target is not None and target != task.target:
        raise ValueError(f"target={target!r} but the task's target is {task.target!r}")
    task.check_frame(frame)
    if not frame.index.is_unique:
        raise ValueError(f"the table's index repeats labels (e.g. {frame.index[frame.index.duplicated()][0]!r}): "
                         "predictions and folds are keyed by row label; pass frame.reset_index(drop=True)")
    features = list(task.features)
    X, y = frame[features], frame[task.target].astype(str).to_numpy()
    numeric = [c for c in features if task.features[c].kind == "number"]
    categorical = [c for c in features if task.features[c].kind == "category"]
    folds = stratified_folds(y, n_folds, seed)
    generated = "-gen" if (llm_options or {}).get("scoring") == "generate" else ""
    llm_methods = [f"llm-{k}{generated}" for k in shots]
    result = Comparison(task, [frame.index[f].tolist() for f in folds],
                        settings={"n_folds": n_folds, "seed": seed, "methods": [*methods, *llm_methods],
                                  "rrl_params": rrl_params or {}, "llm_options": llm_options or {},
                                  "explain_shots": None if explain_shots is None else list(explain_shots),
                                  "rows": len(frame), "features": len(features)})
    model = None
    if shots:
        from ..llm import load_causal_lm

        model, tokenizer = load_causal_lm(llm, tokenizer)
        result.settings["llm"] = str(getattr(model.config, "_name_or_path", type(model).__name__))
    bar = tqdm(total=len(folds) * (len(methods) + len(llm_methods)), desc="compare", disable=not progress)
    for fold, test in enumerate(folds):
        train = np.setdiff1d(np.arange(len(frame)), test)
        rrl = None
        for method in [*methods, *llm_methods]:
            bar.set_postfix(fold=fold, method=method)
            start = time.perf_counter()
            if method in TRADITIONAL:
                estimator = traditional_model(method, numeric, categorical, seed, rrl_params)
                estimator.fit(X.iloc[train], y[train])
                predicted = np.asarray(estimator.predict(X.iloc[test])).astype(str)
                rrl = estimator if method == "rrl" else rrl
                outputs = None
            else:
                k = int(method.split("-")[1])
                options = {**(llm_options or {}), **({"explain": False} if explain_shots is not None
                                                     and k not in explain_shots else {})}
                diagnoser = LLMDiagnoser(task, model, tokenizer, shots=k, seed=seed + fold, **options)
                diagnoser.fit(frame.iloc[train])
                outputs = diagnoser.diagnose(frame.iloc[test])
                predicted = np.array([o["label"] or INVALID for o in outputs])
            seconds = time.perf_counter() - start
            result.per_fold.append({
                "method": method, "fold": fold, "accuracy": float(accuracy_score(y[test], predicted)),
                "macro_f1": float(f1_score(y[test], predicted, labels=task.classes, average="macro",
                                           zero_division=0)),
                "seconds": seconds, "records": len(test), "invalid": int((predicted == INVALID).sum())})
            result.predictions.setdefault(method, {}).update(zip(frame.index[test].tolist(), predicted.tolist()))
            if outputs is not None:
                result.per_fold[-1]["examples"] = [_plain(i) for i in diagnoser.example_index_]
                result.per_fold[-1]["shown_features"] = diagnoser.shown_features_
                result.answers += [{"method": method, "fold": fold, "row": row, "label": o["label"],
                                    "answer_text": o["answer_text"], "explanation": o["explanation"],
                                    "cited": o["cited_features"]}
                                   for row, o in zip(frame.index[test].tolist(), outputs)]
                if rrl is not None and (diagnoser.explain or diagnoser.scoring == "generate"):
                    reference = rule_features(rrl, X.iloc[test])
                    for row, o, ref in zip(frame.index[test].tolist(), outputs, reference):
                        result.cases.append({"method": method, "fold": fold, "row": row,
                                             "cited": o["cited_features"], "rule_features": ref,
                                             **overlap(o["cited_features"], ref, o["shown_features"])})
            bar.update()
    bar.close()
    if out is not None:
        result.save(out)
    return result


__all__ = ["Comparison", "INVALID", "PLOT_INSTALL", "TRADITIONAL", "compare", "display_name", "stratified_folds",
           "traditional_model"]
