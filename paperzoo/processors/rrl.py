"""The tabular input processor of RRL: a feature schema fitted on training data, saved as JSON.

Discrete columns become one-hot blocks (one column per category seen in training, in sorted order); continuous
columns are standardised with the training mean and standard deviation.

Which columns are discrete: the ones the user names (`discrete=`), else the non-numeric ones, where a column is
non-numeric when it has values and none of them is a number (a finite float, or a string that parses as one; a bool
is a category, not a number). A column with at least one number is continuous, so a stray value that is not a number
(`abc`, `?`, `13,2`, `inf`) in a numeric column does not turn the column into one category per distinct value: it is
an error naming the column, the row and the value, or, with `bad_values="missing"`, a missing value (at fit and at
encoding time alike). Errors name a row by its DataFrame index label, after the index's name when it has one
("row 17", "line 19"), and by position for other inputs. A column that the user leaves continuous but that holds no
number at all is always an error. Missing values: a missing continuous value is
replaced by the training mean (z = 0), as the official `DBEncoder` does; a missing or unseen discrete value encodes
as all zeros in its block (no category fires; the official encoder fails on unseen values). The official encoder
drops the first category of every column; here every category keeps its column, so each rule names its categories.
Pandas DataFrames, numpy arrays, a dict (one row) or a list of dicts are accepted; nothing imports pandas.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from transformers import BatchFeature, FeatureExtractionMixin


def _is_missing(value) -> bool:
    if value is None or type(value).__name__ == "NAType":  # pandas.NA, recognised without importing pandas
        return True
    try:
        return bool(isinstance(value, float) and math.isnan(value)) or bool(np.isnan(value))
    except TypeError:
        return False


def _by_position(r: int) -> str:
    """How a message names row `r` of an array, a dict or a list of dicts."""
    return f"row {r}"


def _table(X, columns: list[str] | None = None) -> tuple[list[str], list[list], Callable[[int], str]]:
    """(column names, columns as lists, row position -> the row's name in messages) for a DataFrame (named by its
    index, see the module docstring), an array, a dict or a list of dicts (named by position)."""
    if hasattr(X, "columns") and hasattr(X, "__getitem__"):  # pandas DataFrame, duck-typed
        names = [str(c) for c in X.columns]
        index = X.index
        kind = "row" if index.name is None else index.name
        return names, [list(X[c]) for c in X.columns], lambda r: f"{kind} {index[r]}"
    if isinstance(X, dict):
        X = [X]
    if isinstance(X, list) and X and isinstance(X[0], dict):
        keys = list(X[0])
        for i, row in enumerate(X):
            if set(row) != set(keys):
                raise ValueError(f"row {i} has columns {sorted(map(str, row))}, but row 0 has {sorted(map(str, keys))}")
        return [str(k) for k in keys], [[row[k] for row in X] for k in keys], _by_position
    array = np.asarray(X, dtype=object)
    if array.ndim == 1 and array.size:
        array = array[None]
    if array.ndim != 2:
        raise ValueError(f"expected a table (DataFrame, 2-D array, dict or list of dicts); got shape {array.shape}")
    names = columns if columns is not None else [f"x{i}" for i in range(array.shape[1])]
    return names, [list(array[:, i]) for i in range(array.shape[1])], _by_position


BAD_VALUES = ("error", "missing")


class RRLProcessor(FeatureExtractionMixin):
    """Turns tables into RRL's `input_features` [rows, one-hot discrete columns + standardised continuous ones].

    `bad_values`: what a value that is not a number does in a continuous column: "error" (ValueError naming the
    column, the row and the value) or "missing" (encoded as a missing value: the training mean)."""

    model_input_names = ["input_features"]

    def __init__(self, columns=None, discrete_columns=None, categories=None, continuous_columns=None, means=None,
                 stds=None, bad_values="error", **kwargs):
        super().__init__(**kwargs)
        if bad_values not in BAD_VALUES:
            raise ValueError(f"bad_values={bad_values!r} is not one of {BAD_VALUES}")
        self.bad_values = bad_values
        self.columns = list(columns or [])
        self.discrete_columns = list(discrete_columns or [])
        self.categories = {str(k): [str(c) for c in v] for k, v in (categories or {}).items()}
        self.continuous_columns = list(continuous_columns or [])
        self.means = [float(m) for m in (means or [])]
        self.stds = [float(s) for s in (stds or [])]

    # ------------------------------------------------------------------------------------------------ fitting

    def fit(self, X, discrete=None) -> "RRLProcessor":
        """Learn the schema from training rows. `discrete`: column names (or indices) to one-hot encode; None means
        every non-numeric column (see the module docstring for the rule)."""
        names, cols, row_name = _table(X)
        if not cols or not cols[0]:
            raise ValueError("cannot fit on an empty table (no rows or no columns)")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate column names: {names}")
        if discrete is None:
            discrete = [n for n, col in zip(names, cols) if _non_numeric(col)]
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
            elif _non_numeric(col):  # continuous only because the user left it out of `discrete`
                example = next(v for v in col if not _is_missing(v))
                raise ValueError(f"column {name!r} is continuous but all its values are non-numeric (e.g. "
                                 f"{example!r}): name it in discrete= (CLI: --discrete) if it is categorical")
            else:
                values = self._continuous(name, col, row_name)
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
        names, cols, row_name = _table(X, self.columns)
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
            values = self._continuous(name, by_name[name], row_name)
            values = np.where(np.isnan(values), mean, values)
            blocks.append(((values - mean) / std).astype(np.float32)[:, None])
        features = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(cols[0]), 0), np.float32)
        return BatchFeature({"input_features": features}, tensor_type=return_tensors)

    def _continuous(self, name: str, column: list, row_name: Callable[[int], str]) -> np.ndarray:
        """[rows] float64 values of a continuous column, NaN where missing, and where a value is not a number
        under bad_values="missing"; under "error" such a value raises, naming the column, the row and the value."""
        values = [_parse(v) for v in column]
        bad = [r for r, v in enumerate(values) if v is None]
        if bad and self.bad_values == "error":
            more = f" (and {len(bad) - 1} more row(s) like it)" if len(bad) > 1 else ""
            raise ValueError(f"column {name!r} is continuous but {row_name(bad[0])} holds {column[bad[0]]!r}, which "
                             f"is not a number{more}: fix the data, or treat such values as missing with "
                             f"bad_values='missing' (CLI: --bad-values missing)")
        return np.array([math.nan if v is None else v for v in values], dtype=np.float64)

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


def _parse(value) -> float | None:
    """A cell of a continuous column as a float: NaN when missing, None when it is not a finite number."""
    if _is_missing(value):
        return math.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isinf(number) else number


def _is_number(value) -> bool:
    """A present value that parses as a finite number; a bool is a category here, not a number."""
    if isinstance(value, (bool, np.bool_)):
        return False
    number = _parse(value)
    return number is not None and not math.isnan(number)


def _non_numeric(column: list) -> bool:
    """What makes a column discrete when the user names none: it has values, and none of them is a number."""
    return not any(_is_number(v) for v in column) and not all(_is_missing(v) for v in column)


__all__ = ["RRLProcessor"]
