"""LLMs against traditional tools for clinical diagnosis (Wang et al., "Can LLMs like GPT-4 outperform traditional AI
tools in dementia diagnosis? Maybe, but not today", arXiv 2306.01499), as stages a user points at their own table:

- `DiagnosisTask`: the target, its classes, each feature's description and unit (JSON; `builtin("ad_data")`).
- `LLMDiagnoser`: a record → a multiple-choice prompt (zero- or k-shot, examples from the training rows only) → the
  class (option log-likelihoods, or generation + `parse_answer`), probabilities and the cited features.
- `compare`: RRL, logistic regression, CART, random forest, gradient boosting and the LLM on the same folds, with the
  faithfulness of the LLM's cited features to RRL's fired rules; `pipeline("clinical-diagnosis")` serves one model.

Names are imported lazily, so `import paperzoo.diagnosis` loads neither torch nor transformers.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DiagnosisTask": "task", "Feature": "task",
    "LLMDiagnoser": "llm", "cited_features": "llm", "parse_answer": "llm",
    "Comparison": "comparison", "compare": "comparison", "stratified_folds": "comparison",
    "load_ad_data": "data",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = sorted(_EXPORTS)
