"""Evaluation metrics as local `evaluate` modules (DESIGN §6), one folder per metric: `metrics/<name>/<name>.py`.

`evaluate.load("f1")` fetches the module from the Hub (and fails offline, see notes/hf_conventions.md §6); these are
loaded by path from the installed package instead, so they need no network:

    >>> from paperzoo import metrics
    >>> metrics.load("macro_f1").compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'macro_f1': 0.6666666666666666, 'accuracy': 0.6666666666666666}
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    """Names of the metrics shipped with paperzoo."""
    return sorted(p.name for p in _HERE.iterdir() if (p / f"{p.name}.py").is_file())


def path(name: str) -> Path:
    """The folder of metric `name` inside the installed package (what `evaluate.load` is given)."""
    known = available()
    if name not in known:
        raise ValueError(f"no paperzoo metric {name!r}; available: {known}")
    return _HERE / name


def load(name: str, **kwargs):
    """`evaluate.load` of the paperzoo metric `name`, by path (never the Hub). Keyword arguments go to
    `evaluate.load` (e.g. `keep_in_memory=True`, `experiment_id=...`)."""
    import evaluate

    return evaluate.load(str(path(name)), **kwargs)


__all__ = ["available", "load", "path"]
