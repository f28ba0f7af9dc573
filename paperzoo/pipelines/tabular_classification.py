"""The `tabular-classification` pipeline: class, probabilities and the exact rule explanation of a rule-based model.

    pipe = pipeline("tabular-classification", model=folder)          # import paperzoo first, or, without paperzoo,
    pipe = pipeline(model=folder, trust_remote_code=True)            # from an exported folder or Hub repo
    pipe({"outlook": "sunny", "temperature": 31.0})                  # one row  -> one result
    pipe([{...}, {...}])  /  pipe(dataframe)                         # rows     -> one result per row

Each result is plain Python (JSON-serialisable):

    {"label": "yes",                                   # argmax of the logits
     "probabilities": {"no": 0.31, "yes": 0.69},       # softmax of the logits
     "logits": {"no": -0.12, "yes": 0.68},             # z = bias + Σ weights of the rules that fired
     "bias": {"no": 0.05, "yes": -0.02},
     "rules": [{"rule": "outlook = sunny & temperature > 28.5", "weights": {"no": -0.17, "yes": 0.70}}, ...]}

The model must offer `extract_rules(schema)` and `discrete_features(input_features)` (RRL,
`RRLForTabularClassification`) and the feature extractor `schema()` and `columns` (`RRLProcessor`). The explanation is
the model's `RuleSet` (built once per pipeline and cached): the logits reported are b + Σ w over the rules that fire,
which is exactly the discrete model's output (checked against the model's own logits on every call; a stale rule set,
e.g. after the weights were changed in place, is rebuilt). A model pruned by training support (the official pruning,
`RRLClassifier(pruning="training")`) has the pruning in its weights, so its explanations are exact on new rows too:
there is no approximate explanation to flag.

This module imports only torch, transformers and the standard library: `paperzoo.hub.export` copies it into exported
folders as remote code, where paperzoo is not installed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from transformers import Pipeline

TASK = "tabular-classification"


class _Rows:
    """Rows that go through the pipeline as one batch (a list input; `Pipeline.__call__` would run a list row by row
    and read a row with "role" and "content" columns as a chat message)."""

    def __init__(self, rows: list[dict]):
        self.rows = rows


def _is_dataframe(inputs) -> bool:
    return hasattr(inputs, "columns") and hasattr(inputs, "iloc") and hasattr(inputs, "__len__")


def _is_scalar(value) -> bool:
    """False for containers (a list, a dict, an array or Series with a dimension): a dict input is one row."""
    if isinstance(value, (str, bytes)):
        return True
    if isinstance(value, (list, tuple, set, frozenset, Mapping)):
        return False
    shape = getattr(value, "shape", None)  # numpy / torch scalars have shape ()
    return shape is None or tuple(shape) == ()


class TabularClassificationPipeline(Pipeline):
    """Classify table rows with a rule-based model and explain each prediction by the rules that fired (see the module
    docstring for the inputs and the result format)."""

    _load_tokenizer = False
    _load_image_processor = False
    _load_video_processor = False
    _load_processor = False
    _load_feature_extractor = True

    # Model types this pipeline serves: paperzoo.hub.export records it in config.json (`custom_pipelines`) for them.
    model_types = ("paperzoo_rrl",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.feature_extractor is None:
            raise ValueError(
                f"the {TASK} pipeline needs the model's feature extractor (the table schema): pass "
                "feature_extractor=... or load from a folder that has a preprocessor_config.json"
            )
        missing = [name for name in ("extract_rules", "discrete_features") if not hasattr(self.model, name)]
        if missing:
            raise ValueError(f"the {TASK} pipeline needs a rule-based model with {missing}; "
                             f"{type(self.model).__name__} has none")
        self._rule_set = None

    # ------------------------------------------------------------------------------------------------- explanation

    @property
    def rule_set(self):
        """The model's `RuleSet`, named with the feature extractor's schema (built on first use, then cached)."""
        if self._rule_set is None:
            self._rule_set = self.model.extract_rules(self.feature_extractor.schema())
        return self._rule_set

    def _explain(self, input_features: torch.Tensor) -> tuple[list[list[int]], list[dict]]:
        fired = self.rule_set.fired(self.model, input_features)
        return fired, [self.rule_set.logits(row) for row in fired]

    # ------------------------------------------------------------------------------------------------------- steps

    def _sanitize_parameters(self, **kwargs):
        if kwargs:
            raise ValueError(f"unexpected argument(s) {sorted(kwargs)}: the {TASK} pipeline takes only its inputs")
        return {}, {}, {}

    def __call__(self, inputs, **kwargs):
        """`inputs`: a pandas DataFrame (a list of results, one per row), a dict (one row: one result) or a list of
        dicts (a list of results)."""
        if isinstance(inputs, (list, tuple)):
            if not inputs:
                raise ValueError("empty input: the list holds no rows")
            bad = next((i for i, row in enumerate(inputs) if not isinstance(row, Mapping)), None)
            if bad is not None:
                raise ValueError(f"row {bad} is a {type(inputs[bad]).__name__}: a list input must hold one dict "
                                 "(column -> value) per row")
            inputs = _Rows([dict(row) for row in inputs])
        elif not (isinstance(inputs, Mapping) or _is_dataframe(inputs)):
            raise ValueError(f"expected a pandas DataFrame, a dict (one row) or a list of dicts; got "
                             f"{type(inputs).__name__}")
        return super().__call__(inputs, **kwargs)

    def _check_columns(self, columns, where: str) -> None:
        expected = list(self.feature_extractor.columns)
        names = [str(c) for c in columns]
        missing = [c for c in expected if c not in names]
        extra = [c for c in names if c not in expected]
        if missing or extra:
            parts = ([f"missing column(s) {missing}"] if missing else []) + (
                [f"unexpected column(s) {extra}"] if extra else [])
            raise ValueError(f"{where}: {', '.join(parts)}; the model expects the columns {expected}")

    def preprocess(self, inputs):
        expected = list(self.feature_extractor.columns)
        if isinstance(inputs, _Rows):
            single, rows = False, inputs.rows
        elif isinstance(inputs, Mapping):
            single, rows = True, [dict(inputs)]
        else:  # DataFrame
            if len(inputs) == 0:
                raise ValueError("empty input: the DataFrame has no rows")
            self._check_columns(inputs.columns, "the DataFrame")  # the processor matches columns by name
            return {"input_features": self.feature_extractor(inputs, return_tensors="pt")["input_features"],
                    "single": False}
        for i, row in enumerate(rows):
            self._check_columns(row.keys(), "the row" if single else f"row {i}")
            for column, value in row.items():
                if not _is_scalar(value):
                    raise ValueError(
                        f"{'the row' if single else f'row {i}'}: column {column!r} holds a "
                        f"{type(value).__name__}, not a single value (a dict is one row; pass a DataFrame or a list "
                        "of dicts for several rows)"
                    )
        ordered = [{c: row[c] for c in expected} for row in rows]  # key order does not matter to the caller
        return {"input_features": self.feature_extractor(ordered, return_tensors="pt")["input_features"],
                "single": single}

    def _forward(self, model_inputs):
        x = model_inputs["input_features"]
        weight = next(self.model.parameters(), None)
        if weight is not None:
            x = x.to(device=weight.device, dtype=weight.dtype)
        logits = self.model(input_features=x).logits.double()
        fired, explained = self._explain(x)
        if not self._matches(explained, logits):  # weights changed since the rule set was built: rebuild once
            self._rule_set = None
            fired, explained = self._explain(x)
            if not self._matches(explained, logits):
                raise RuntimeError(f"the rules extracted from {type(self.model).__name__} do not reproduce its logits "
                                   "on these rows: the model does not run its discrete rule model")
        return {"fired": fired, "single": model_inputs["single"]}

    def _matches(self, explained: list[dict], logits: torch.Tensor) -> bool:
        labels = self.rule_set.labels
        z = torch.tensor([[row[c] for c in labels] for row in explained], dtype=torch.float64)
        logits = logits.cpu()
        tolerance = 1e-4 * (1.0 + (float(logits.abs().max()) if logits.numel() else 0.0))
        return z.shape == logits.shape and bool(((z - logits).abs() <= tolerance).all())

    def postprocess(self, model_outputs):
        rules = self.rule_set
        results = []
        for fired in model_outputs["fired"]:
            z = rules.logits(fired)
            top = max(z.values())
            exp = {c: math.exp(v - top) for c, v in z.items()}
            total = sum(exp.values())
            results.append({
                "label": max(rules.labels, key=lambda c: z[c]),  # first label on ties, as argmax
                "probabilities": {c: exp[c] / total for c in rules.labels},
                "logits": {c: float(z[c]) for c in rules.labels},
                "bias": {c: float(rules.bias[c]) for c in rules.labels},
                "rules": [{"rule": rules.rules[r].text, "weights": {c: float(rules.rules[r].weights[c])
                                                                    for c in rules.labels}}
                          for r in fired],
            })
        return results[0] if model_outputs["single"] else results


__all__ = ["TASK", "TabularClassificationPipeline"]
