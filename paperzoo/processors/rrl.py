"""The tabular input processor of RRL: a feature schema fitted on training data, saved as JSON.

Discrete columns become one-hot blocks (one column per category seen in training, in sorted order); continuous
columns are standardised with the training mean and standard deviation. Missing values: a missing continuous value is
replaced by the training mean (z = 0), as the official `DBEncoder` does; a missing or unseen discrete value encodes
as all zeros in its block (no category fires; the official encoder fails on unseen values). The official encoder
drops the first category of every column; here every category keeps its column, so each rule names its categories.
Pandas DataFrames, numpy arrays, a dict (one row) or a list of dicts are accepted; nothing imports pandas.
"""

from __future__ import annotations

import math

import numpy as np
from transformers import BatchFeature, FeatureExtractionMixin


def _is_missing(value) -> bool:
    if value is None or type(value).__name__ == "NAType":  # pandas.NA, recognised without importing pandas
        return True
    try:
        return bool(isinstance(value, float) and math.isnan(value)) or bool(np.isnan(value))
    except TypeError:
        return False


def _table(X, columns: list[str] | None = None) -> tuple[list[str], list[list]]:
    """(column names, columns as lists) for a DataFrame, an array, a dict or a list of dicts."""
    if hasattr(X, "columns") and hasattr(X, "__getitem__"):  # pandas DataFrame, duck-typed
        names = [str(c) for c in X.columns]
        return names, [list(X[c]) for c in X.columns]
    if isinstance(X, dict):
        X = [X]
    if isinstance(X, list) and X and isinstance(X[0], dict):
        keys = list(X[0])
        for i, row in enumerate(X):
            if set(row) != set(keys):
                raise ValueError(f"row {i} has columns {sorted(map(str, row))}, but row 0 has {sorted(map(str, keys))}")
        return [str(k) for k in keys], [[row[k] for row in X] for k in keys]
    array = np.asarray(X, dtype=object)
    if array.ndim == 1 and array.size:
        array = array[None]
    if array.ndim != 2:
        raise ValueError(f"expected a table (DataFrame, 2-D array, dict or list of dicts); got shape {array.shape}")
    names = columns if columns is not None else [f"x{i}" for i in range(array.shape[1])]
    return names, [list(array[:, i]) for i in range(array.shape[1])]


class RRLProcessor(FeatureExtractionMixin):
    """Turns tables into RRL's `input_features` [rows, one-hot discrete columns + standardised continuous ones]."""

    model_input_names = ["input_features"]

    def __init__(self, columns=None, discrete_columns=None, categories=None, continuous_columns=None, means=None,
                 stds=None, **kwargs):
        super().__init__(**kwargs)
        self.columns = list(columns or [])
        self.discrete_columns = list(discrete_columns or [])
        self.categories = {str(k): [str(c) for c in v] for k, v in (categories or {}).items()}
        self.continuous_columns = list(continuous_columns or [])
        self.means = [float(m) for m in (means or [])]
        self.stds = [float(s) for s in (stds or [])]

    # ------------------------------------------------------------------------------------------------ fitting

    def fit(self, X, discrete=None) -> "RRLProcessor":
        """Learn the schema from training rows. `discrete`: column names (or indices) to one-hot encode; None means
        every column that is not numeric."""
        names, cols = _table(X)
        if not cols or not cols[0]:
            raise ValueError("cannot fit on an empty table (no rows or no columns)")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate column names: {names}")
        if discrete is None:
            discrete = [n for n, col in zip(names, cols) if not all(_numeric(v) for v in col)]
        discrete = [names[d] if isinstance(d, int) and not isinstance(d, bool) else str(d) for d in discrete]
        unknown = [d for d in discrete if d not in names]
        if unknown:
            raise ValueError(f"discrete column(s) {unknown} are not in the table's columns {names}")
        self.columns = names
        self.discrete_columns = [n for n in names if n in discrete]
        self.continuous_columns = [n for n in names if n not in discrete]
        self.categories, self.means, self.stds = {}, [], []
        for name, col in zip(names, cols):
            if name in discrete:
                self.categories[name] = sorted({str(v) for v in col if not _is_missing(v)})
            else:
                values = np.array([_float(name, v) for v in col], dtype=np.float64)
                present = values[~np.isnan(values)]
                mean = float(present.mean()) if present.size else 0.0
                std = float(present.std()) if present.size else 1.0
                self.means.append(mean)
                self.stds.append(std if std > 0 else 1.0)  # a constant column carries no bound: keep z finite
        return self

    # ----------------------------------------------------------------------------------------------- encoding

    @property
    def num_discrete_features(self) -> int:
        return sum(len(self.categories[c]) for c in self.discrete_columns)

    @property
    def num_continuous_features(self) -> int:
        return len(self.continuous_columns)

    def __call__(self, X, return_tensors=None, **kwargs) -> BatchFeature:
        if not self.columns:
            raise ValueError("this RRLProcessor is not fitted: call fit(X) on training data first")
        names, cols = _table(X, self.columns)
        if not cols or not cols[0]:
            raise ValueError("empty input: no rows to encode")
        missing = [c for c in self.columns if c not in names]
        extra = [c for c in names if c not in self.columns]
        if missing or extra:
            raise ValueError(f"columns do not match the fitted schema: missing {missing}, unexpected {extra}")
        by_name = dict(zip(names, cols))
        blocks = []
        for name in self.discrete_columns:
            index = {c: i for i, c in enumerate(self.categories[name])}
            block = np.zeros((len(by_name[name]), len(index)), dtype=np.float32)
            for r, v in enumerate(by_name[name]):
                if not _is_missing(v) and str(v) in index:  # missing / unseen: all zeros
                    block[r, index[str(v)]] = 1.0
            blocks.append(block)
        for name, mean, std in zip(self.continuous_columns, self.means, self.stds):
            values = np.array([_float(name, v) for v in by_name[name]], dtype=np.float64)
            values = np.where(np.isnan(values), mean, values)
            blocks.append(((values - mean) / std).astype(np.float32)[:, None])
        features = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(cols[0]), 0), np.float32)
        return BatchFeature({"input_features": features}, tensor_type=return_tensors)

    def schema(self) -> dict:
        """Names for rule text: one per one-hot column ("col = category"), continuous names, means and stds, and
        the one-hot blocks (at most one 1 per block, which lets rule extraction drop `col = a & col = b`)."""
        sizes = [len(self.categories[c]) for c in self.discrete_columns]
        starts = np.cumsum([0] + sizes)
        return {
            "discrete_literals": [f"{c} = {v}" for c in self.discrete_columns for v in self.categories[c]],
            "one_hot_groups": [list(range(int(a), int(a + n))) for a, n in zip(starts, sizes)],
            "continuous_names": list(self.continuous_columns),
            "means": list(self.means),
            "stds": list(self.stds),
        }


def _numeric(value) -> bool:
    if _is_missing(value) or isinstance(value, bool):
        return _is_missing(value)
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def _float(column: str, value) -> float:
    if _is_missing(value):
        return math.nan
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"column {column!r} is continuous but holds the non-numeric value {value!r}") from None


__all__ = ["RRLProcessor"]
