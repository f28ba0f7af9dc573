"""`RRLClassifier`: RRL as a scikit-learn estimator (fit on a table, predict, print the rules, save to the Hub)."""

from __future__ import annotations

import sys

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from ..configuration.rrl import RRLConfig
from ..modeling.rrl import RRLForTabularClassification
from ..processors.rrl import RRLProcessor


class RRLClassifier(ClassifierMixin, BaseEstimator):
    """Rule-based Representation Learner. Preprocessing is fitted inside `fit`, on the training rows only, so it
    never sees a test fold (the official experiment fits it on the whole data set).

    Parameters follow the official command line: `num_thresholds` and `layer_widths` are `-s n@w1@w2`,
    `learning_rate` `-lr`, `lr_decay_rate`/`lr_decay_epochs` `-lrdr`/`-lrde`, `weight_decay` `-wd`, `batch_size`
    `-bs`, `max_epochs` `-e`; `activation="nlaf"` is `--nlaf` (with `alpha`, `beta`, `gamma`), `use_not`, `use_skip`,
    `temperature` likewise. `thresholds="quantile"` starts the candidate bounds at training quantiles of each feature,
    and gives the slots that ties would fill with a repeated bound to the feature's class-boundary cuts (a documented
    improvement); "random" draws them from N(0, 1) in standardised units as the official code does.
    `discrete` lists the columns to one-hot encode (None: every non-numeric column, one with values of which none is a
    number); `bad_values` says what a value that is not a number does in a continuous column: "error" (ValueError
    naming the column, the row and the value) or "missing" (a missing value). See `paperzoo.processors.rrl`.
    The target must be class labels: `fit` refuses one that looks continuous (see `class_labels`).

    Accuracy against complexity (the paper's trade-off), mechanism by mechanism:

    - `layer_widths`: each logical layer has w conjunction and w disjunction nodes. The rules are the nodes of the
      last layer that the linear output reads: at most 2 × `layer_widths[-1]` of them (without `use_skip`). Earlier
      widths bound how many sub-clauses a rule can combine (its edges).
    - `weight_decay`: the paper's L2 penalty λ·Σ‖W‖² on the logical and linear weights. It pushes logical weights
      under 0.5, so rules lose conditions (fewer edges) and nodes left with none are constant and dropped.
    - `num_thresholds`: the bound slots per continuous feature (candidate cut points; `-s n@...`). Fewer slots give
      coarser intervals and fewer distinct conditions.
    - `pruning`: "exact" (default) drops only nodes that are constant for every possible input, so the explanation
      of any row is exact. "training" is the official pruning: nodes that never or always fire on the training
      rows are removed, always-on ones folded into the bias (`prune_by_support`). The official code prints the
      pruned rules but predicts with the unpruned model; here the model becomes the pruned rule set, so explanations
      stay exact by construction and predictions on the training rows are unchanged, but a new row on which a pruned
      node would have fired is classified by the pruned rules.
    - `max_rules=N` is the handle on top: `fit` tries last-layer widths of N // 2, N // 4, N // 8 and N // 16 with
      weight decay × 1 and × 10, each trained on a stratified `1 - validation_fraction` of the training rows and
      scored by macro-F1 on the rest (never on rows `fit` was not given), keeps the one with the fewest rules among
      those within one validation row (1 / its size) of the best F1, and refits it on every training row: at most N
      rules by construction (`pruning` applies to every try). `selection_` records every try, `selected_params_`
      the choice.
    """

    def __init__(self, layer_widths=(64,), num_thresholds=10, activation="nlaf", alpha=0.999, beta=8.0, gamma=1.0,
                 use_not=False, use_skip=False, estimated_grad=False, grafting="hierarchical", temperature=1.0,
                 weight_decay=1e-4, learning_rate=2e-3, lr_decay_rate=0.75, lr_decay_epochs=100, batch_size=32,
                 max_epochs=100, thresholds="quantile", discrete=None, bad_values="error", device="cpu",
                 kernel_backend="auto", random_state=None, verbose=False, pruning="exact", max_rules=None,
                 validation_fraction=0.2):
        self.layer_widths = layer_widths
        self.num_thresholds = num_thresholds
        self.activation = activation
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma
        self.use_not = use_not
        self.use_skip = use_skip
        self.estimated_grad = estimated_grad
        self.grafting = grafting
        self.temperature = temperature
        self.weight_decay = weight_decay
        self.learning_rate = learning_rate
        self.lr_decay_rate = lr_decay_rate
        self.lr_decay_epochs = lr_decay_epochs
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.thresholds = thresholds
        self.discrete = discrete
        self.bad_values = bad_values
        self.device = device
        self.kernel_backend = kernel_backend
        self.random_state = random_state
        self.verbose = verbose
        self.pruning = pruning
        self.max_rules = max_rules
        self.validation_fraction = validation_fraction

    # -------------------------------------------------------------------------------------------------- fit

    def _check_params(self):
        for name in ("max_epochs", "batch_size", "lr_decay_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        if self.pruning not in ("exact", "training"):
            raise ValueError(f"pruning={self.pruning!r} is not one of ('exact', 'training')")
        if self.thresholds not in ("quantile", "random"):
            raise ValueError(f"thresholds={self.thresholds!r} is not one of ('quantile', 'random')")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate={self.learning_rate!r} must be > 0")
        if self.max_rules is not None:
            if isinstance(self.max_rules, bool) or not isinstance(self.max_rules, (int, np.integer)) \
                    or self.max_rules < 2:
                raise ValueError(f"max_rules={self.max_rules!r} must be an integer ≥ 2 (a conjunction and a "
                                 f"disjunction per unit of the last logical layer)")
            if self.use_skip:
                raise ValueError("max_rules needs use_skip=False: the skip connections feed earlier nodes and literals "
                                 "to the output, which the last layer's width does not bound")
            if not 0 < self.validation_fraction < 1:
                raise ValueError(f"validation_fraction={self.validation_fraction!r} must be in (0, 1)")

    def fit(self, X, y):
        self._check_params()
        if self.max_rules is not None:
            return self._fit_max_rules(X, y)
        classes = class_labels(y, getattr(y, "name", None))
        y = np.asarray(y)
        processor = RRLProcessor(bad_values=self.bad_values).fit(X, discrete=self.discrete)
        features = torch.as_tensor(processor(X)["input_features"])
        if len(features) != len(y):
            raise ValueError(f"X has {len(features)} rows but y has {len(y)} labels")
        self.classes_ = classes
        targets = torch.as_tensor(np.searchsorted(classes, y))
        labels = [str(c) for c in classes]
        config = RRLConfig(
            num_discrete_features=processor.num_discrete_features,
            num_continuous_features=processor.num_continuous_features, num_thresholds=self.num_thresholds,
            layer_widths=list(self.layer_widths), use_not=self.use_not, use_skip=self.use_skip,
            activation=self.activation, alpha=self.alpha, beta=self.beta, gamma=self.gamma,
            estimated_grad=self.estimated_grad, grafting=self.grafting, temperature=self.temperature,
            weight_decay=self.weight_decay, kernel_backend=self.kernel_backend,
            id2label=dict(enumerate(labels)), label2id={c: i for i, c in enumerate(labels)},
        )
        seed = int(np.random.RandomState(self.random_state).randint(2**31 - 1))
        with torch.random.fork_rng(devices=[]):  # the caller's global RNG is left as it was
            torch.manual_seed(seed)
            model = RRLForTabularClassification(config)
        if self.thresholds == "quantile" and processor.num_continuous_features:
            bounds = _quantile_thresholds(features, targets, processor, self.num_thresholds)
            model.binarization.thresholds.copy_(bounds)
        model.to(self.device)
        self._train(model, features, targets, torch.Generator().manual_seed(seed))
        self.model_, self.processor_ = model.eval(), processor
        self.n_features_in_ = len(processor.columns)
        self.feature_names_in_ = np.array(processor.columns, dtype=object)
        self._rules = None
        if self.pruning == "training":
            self._prune_by_support(features)
        else:
            self._measure_support(features)
        return self

    def max_rules_candidates(self) -> list[dict]:
        """The settings `max_rules` chooses from: last-layer widths N // 2 … N // 16 (distinct, ≥ 1) × weight decay
        × 1 and × 10 (1e-4 and 1e-3 when it is 0); earlier layers are kept."""
        top = int(self.max_rules) // 2
        widths = sorted({max(1, top >> k) for k in range(4)}, reverse=True)
        decays = [self.weight_decay, self.weight_decay * 10] if self.weight_decay else [1e-4, 1e-3]
        return [{"layer_widths": (*tuple(self.layer_widths)[:-1], w), "weight_decay": d} for w in widths
                for d in decays]

    def _fit_max_rules(self, X, y):
        """Choose the setting by validation inside (X, y), then refit it on all of (X, y); see the class docstring."""
        import pandas as pd
        from sklearn.base import clone
        from sklearn.metrics import f1_score
        from sklearn.model_selection import StratifiedShuffleSplit

        class_labels(y, getattr(y, "name", None))
        y = np.asarray(y)

        def rows(index):  # a table stays a table (its column names name the rules), an array an array
            return X.iloc[index] if isinstance(X, pd.DataFrame) else np.asarray(X)[index]

        split = StratifiedShuffleSplit(1, test_size=self.validation_fraction, random_state=self.random_state)
        inner, held = next(split.split(np.zeros(len(y)), y))
        self.selection_ = []
        for setting in self.max_rules_candidates():
            model = clone(self).set_params(max_rules=None, **setting).fit(rows(inner), y[inner])
            self.selection_.append({**setting, "rules": model.complexity()["rules"],
                                    "validation_macro_f1": float(f1_score(y[held], model.predict(rows(held)),
                                                                          average="macro"))})
        # the fewest rules among the settings within one validation row's worth of the best F1 (a difference that
        # small is noise, and the smaller rule set is the one a clinician can read)
        top = max(r["validation_macro_f1"] for r in self.selection_)
        eligible = [r for r in self.selection_ if r["validation_macro_f1"] >= top - 1 / len(held)]
        best = min(eligible, key=lambda r: (r["rules"], -r["validation_macro_f1"]))
        final = clone(self).set_params(max_rules=None, layer_widths=best["layer_widths"],
                                       weight_decay=best["weight_decay"]).fit(X, y)
        for name, value in vars(final).items():  # the fitted state (model_, processor_, classes_, rules ...)
            if name.endswith("_") or name == "_rules":
                setattr(self, name, value)
        self.selected_params_ = {"layer_widths": best["layer_widths"], "weight_decay": best["weight_decay"]}
        return self

    def _train(self, model, features, targets, generator):
        from transformers.utils import logging as hf_logging

        optimizer = make_optimizer(model, self.learning_rate)
        schedule = torch.optim.lr_scheduler.StepLR(optimizer, self.lr_decay_epochs, self.lr_decay_rate)
        step = make_training_step(model, optimizer, features.to(self.device), targets.to(self.device))
        n = len(features)
        epochs = hf_logging.tqdm(range(self.max_epochs), desc="RRL epochs", disable=not self.verbose)
        model.train()
        for _ in epochs:
            total = 0.0  # the epoch's loss, only shown with `verbose`; summed on the device: no sync per step
            for batch in torch.randperm(n, generator=generator).to(self.device).split(self.batch_size):
                loss = step(batch, with_loss=self.verbose)
                if self.verbose:
                    total = total + loss * len(batch)
            schedule.step()
            if self.verbose:
                epochs.set_postfix(loss=f"{float(total) / n:.4f}")
        model.eval()

    # ---------------------------------------------------------------------------------------------- predict

    def _features(self, X) -> torch.Tensor:
        check_is_fitted(self, "model_")
        return torch.as_tensor(self.processor_(X)["input_features"]).to(self.device)

    @torch.no_grad()
    def decision_function(self, X) -> np.ndarray:
        """The discrete model's logits (temperature included): what the softmax is applied to."""
        features = self._features(X)  # first: it raises NotFittedError before `self.model_` is looked up
        return self.model_(features).logits.double().cpu().numpy()

    def predict_proba(self, X) -> np.ndarray:
        z = self.decision_function(X)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        scores = self.decision_function(X)  # first: it raises NotFittedError before `self.classes_` is looked up
        return self.classes_[scores.argmax(axis=1)]

    # -------------------------------------------------------------------------------------------------- rules

    @property
    def rule_set_(self):
        """The `RuleSet` of the fitted model; each rule's support is measured on the training rows by `fit`."""
        check_is_fitted(self, "model_")
        if self._rules is None:
            self._rules = self.model_.extract_rules(self.processor_.schema())
        return self._rules

    @property
    def rules_(self) -> list[dict]:
        """One dict per rule: `rule` (text), `weights` {class: w}, `support` (training fraction, when measured)."""
        return [{"rule": r.text, "weights": dict(r.weights), "support": r.support} for r in self.rule_set_.rules]

    def measure_support(self, X) -> None:
        """Set each rule's support to the fraction of the rows of X on which it fires (`fit` measures it on the
        training rows)."""
        self._measure_support(self._features(X))

    def _measure_support(self, features: torch.Tensor) -> None:
        fired = self.rule_set_.fired(self.model_, features.to(self.device))
        counts = np.zeros(len(self.rule_set_.rules))
        for row in fired:
            counts[row] += 1
        for rule, count in zip(self.rule_set_.rules, counts):
            rule.support = float(count / max(len(fired), 1))

    def prune_by_support(self, X) -> dict:
        """Remove the rules (and the edges inside rules) that never or always fire on the rows of X, as
        `pruning="training"` does with the training rows; the model becomes the pruned rule set, so `predict` and
        `explain` stay consistent and exact. Returns what was removed (`RRLForTabularClassification.prune_by_support`),
        and re-measures each rule's support on X."""
        return self._prune_by_support(self._features(X))

    def _prune_by_support(self, features: torch.Tensor) -> dict:
        removed = self.model_.prune_by_support(features.to(self.device))
        self._rules = None  # the weights changed: extract the rules again
        self._measure_support(features)
        return removed

    def explain(self, X) -> list[dict]:
        """Per row: bias, the rules that fired with their weights, and logits = bias + Σ weights (exact)."""
        rules = self.rule_set_
        out = []
        for fired in rules.fired(self.model_, self._features(X)):
            out.append({"bias": dict(rules.bias), "logits": rules.logits(fired),
                        "rules": [{"rule": rules.rules[r].text, "weights": dict(rules.rules[r].weights)}
                                  for r in fired]})
        return out

    def print_rules(self, file=None) -> None:
        print(self.rule_set_.to_markdown(), file=file or sys.stdout)

    def complexity(self) -> dict:
        """Model size as reported in the papers: rules used by the output layer and edges of the discrete model."""
        return {"rules": len(self.rule_set_.rules), "edges": self.model_.edge_count()}

    def save_pretrained(self, folder) -> None:
        """A self-contained Hub folder (model, processor, card, remote code) through `paperzoo.hub.export`."""
        from ..hub.export import export

        check_is_fitted(self, "model_")
        export(self.model_, folder, processor=self.processor_)


def class_labels(y, name=None) -> np.ndarray:
    """The sorted classes of the labels `y`, or ValueError when `y` cannot be a classification target: not 1-D or
    empty, a single class, or a continuous quantity. Continuous means float labels of which one is not an integer
    (wine's `alcohol`: each distinct value would be a class), or more classes than half the rows (fewer than two rows
    per class on average: an identifier, or a measurement such as wine's integer-valued `proline`). Integral floats
    (integer labels read with missing values) and strings are labels. `name`: the target's name in messages (default
    "y")."""
    name = "y" if name is None else str(name)
    y = np.asarray(y)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of labels; got shape {y.shape}")
    classes = np.unique(y)
    if len(classes) < 2:
        only = classes[0].item() if isinstance(classes[0], np.generic) else classes[0]  # 'a', not np.str_('a')
        raise ValueError(f"target {name!r} has a single class ({only!r}); a classifier needs two")
    fractional = [v for v in classes if isinstance(v, (float, np.floating)) and not float(v).is_integer()]
    if fractional or len(classes) > len(y) / 2:
        why = (f"{len(fractional)} of them not integers (e.g. {float(fractional[0])!r})" if fractional
               else "more classes than half the rows")
        raise ValueError(f"target {name!r} looks continuous, not like class labels: {len(classes)} distinct values in "
                         f"{len(y)} rows, {why}; RRL makes one class per distinct value. Did you mean another column? "
                         "(Bin a continuous target into classes first.)")
    return classes


def make_optimizer(model: torch.nn.Module, learning_rate: float) -> torch.optim.Adam:
    """The official optimizer, Adam; fused (one kernel for every parameter) where torch has it (CPU, CUDA): at
    batch 32 the unfused step is a third of a training step."""
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in model.parameters())
    return torch.optim.Adam(model.parameters(), lr=learning_rate, fused=fused)


def training_step(model, optimizer, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """One step of the official training loop: loss (CE + L2), backward, Adam, then W clipped to [0, 1] (the official
    `clip`). Returns the detached loss, left on the device."""
    loss = model(x, labels=t).loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    model.clip_weights()
    return loss.detach()


LITERAL_CACHE_BYTES = 1 << 30  # literals of every training row kept for the whole fit up to this size


def make_training_step(model, optimizer, features: torch.Tensor, targets: torch.Tensor):
    """`step(batch, with_loss)`: one official training step on the rows `batch` of (features, targets), returning
    the detached loss (or None without `with_loss`). The closed-form step (`modeling.rrl_training`) where it applies
    (hierarchical grafting on the reference backend), else `training_step`. The bounds are fixed buffers, so the
    closed-form step binarizes every training row once, when their literals fit in `LITERAL_CACHE_BYTES`."""
    from ..modeling.rrl_training import ClosedFormStep, closed_form_unsupported

    if closed_form_unsupported(model, features) is not None:

        def autograd_step(batch, with_loss=True):
            loss = training_step(model, optimizer, features[batch], targets[batch])
            return loss if with_loss else None

        return autograd_step
    closed_form = ClosedFormStep(model, optimizer)
    features = features.to(model.classifier.weight.dtype)
    binarize = torch.no_grad()(model.binarization)
    if len(features) * model.binarization.output_dim * features.element_size() <= LITERAL_CACHE_BYTES:
        literals = binarize(features)  # [N, n_literals]
        return lambda batch, with_loss=True: closed_form(literals[batch], targets[batch], with_loss)
    return lambda batch, with_loss=True: closed_form(binarize(features[batch]), targets[batch], with_loss)


def _quantile_thresholds(
    features: torch.Tensor, targets: torch.Tensor, processor: RRLProcessor, n: int
) -> torch.Tensor:
    """[n, d_cont] candidate bounds per standardised continuous feature: the distinct training quantiles at levels
    k/(n + 1), k = 1..n. Where ties make levels share a value (a column that is mostly 0, say) or put one at the
    maximum, the spare slots take the feature's own class-boundary cuts: the splits a best-first decision tree on that
    column alone finds, so a bound that isolates a rare class in a tail is a candidate literal instead of a second
    copy of the mode. Bounds that split the training rows alike count as one."""
    from sklearn.tree import DecisionTreeClassifier

    continuous = features[:, processor.num_discrete_features :].double()  # [N, d_cont]
    levels = torch.arange(1, n + 1, dtype=torch.float64) / (n + 1)
    quantiles = torch.quantile(continuous, levels, dim=0)  # [n, d_cont]
    min_leaf = max(1, len(continuous) // 1000)  # a cut must hold 0.1% of the rows on each side
    columns = []
    for j, column in enumerate(continuous.t().numpy()):
        ordered = np.sort(column)

        def split(b: float) -> int:  # rows with x ≤ b: which literal the bound makes on the training rows
            return int(np.searchsorted(ordered, b, side="right"))

        # a quantile at the column's maximum makes x > b false on every training row: its slot is spare too
        bounds = sorted({q for q in quantiles[:, j].tolist() if split(q) < len(column)}) or [quantiles[0, j].item()]
        if len(bounds) < n:
            tree = DecisionTreeClassifier(max_leaf_nodes=n + 1, min_samples_leaf=min_leaf, random_state=0)
            tree.fit(column[:, None], targets.numpy())
            taken = {split(b) for b in bounds}
            for cut in tree.tree_.threshold[tree.tree_.feature >= 0].tolist():  # internal nodes, the root's first
                if len(bounds) < n and split(cut) not in taken:  # a cut splitting the rows as a bound does is a copy
                    bounds.append(cut)
                    taken.add(split(cut))
        bounds += bounds[-1:] * (n - len(bounds))  # a column with fewer than n distinct splits repeats its last
        columns.append(sorted(bounds))
    return torch.tensor(columns, dtype=torch.float64).t().float()


__all__ = ["RRLClassifier", "class_labels"]
