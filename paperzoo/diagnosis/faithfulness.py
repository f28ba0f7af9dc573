"""Faithfulness of an LLM's explanation against an exact reference: the features of the RRL rules that fired.

RRL's explanation of a row is exact (its logits are the bias plus the weights of the rules that fire, see
`RRLClassifier.explain`), so the features those rules test are the features the decision was read from. The paper
judged GPT-4's explanations against doctors' by hand; here each case gets numbers:

    precision = |cited ∩ rule features| / |cited|     (of what the LLM names, how much the rules used)
    recall    = |cited ∩ rule features| / |rule features|
    jaccard   = |cited ∩ rule features| / |cited ∪ rule features|
    chance    = |shown ∩ rule features| / |shown|     (the precision of naming shown features at random)

Cases where the LLM cites nothing have no precision (NaN) and count in `no_citation`.
"""

from __future__ import annotations

import math


def expression_features(expression, discrete_column_of: dict[int, str], continuous: list[str]) -> set[str]:
    """The columns a rule expression (paperzoo.modeling.rrl_rules canonical tuples) tests."""
    kind = expression[0]
    if kind == "lit":
        return {discrete_column_of[expression[1]]}
    if kind in ("gt", "le"):
        return {continuous[expression[1]]}
    if kind == "not":
        return expression_features(expression[1], discrete_column_of, continuous)
    if kind in ("and", "or"):
        return set().union(*(expression_features(e, discrete_column_of, continuous) for e in expression[1]))
    return set()  # a constant


def rule_features(rrl, X) -> list[list[str]]:
    """Per row of X: the sorted columns of the fitted RRLClassifier's rules that fire on it (exact)."""
    processor = rrl.processor_
    schema = processor.schema()
    discrete_column_of = {literal: column for column, group in zip(processor.discrete_columns,
                                                                   schema["one_hot_groups"]) for literal in group}
    rules = rrl.rule_set_
    per_rule = [expression_features(r.expression, discrete_column_of, schema["continuous_names"])
                for r in rules.rules]
    fired = rules.fired(rrl.model_, rrl._features(X))
    return [sorted(set().union(*(per_rule[r] for r in row))) if row else [] for row in fired]


def overlap(cited, reference, shown=None) -> dict:
    """precision, recall, jaccard (and chance, given the shown features) of one case; see the module docstring."""
    cited, reference = set(cited), set(reference)
    both = cited & reference
    out = {"precision": len(both) / len(cited) if cited else math.nan,
           "recall": len(both) / len(reference) if reference else math.nan,
           "jaccard": len(both) / len(cited | reference) if cited | reference else math.nan}
    if shown is not None:
        shown = set(shown)
        out["chance"] = len(shown & reference) / len(shown) if shown else math.nan
    return out


def aggregate(cases: list[dict]) -> dict:
    """Means over cases (NaN-skipping) of precision, recall, jaccard, chance; the share of cases citing nothing and
    of cases with any cited feature among the rule features."""
    def mean(key):
        values = [c[key] for c in cases if key in c and not math.isnan(c[key])]
        return sum(values) / len(values) if values else math.nan

    n = len(cases)
    return {"cases": n, **{k: mean(k) for k in ("precision", "recall", "jaccard", "chance")},
            "no_citation": sum(math.isnan(c["precision"]) for c in cases) / n if n else math.nan,
            "any_overlap": sum(c["precision"] > 0 for c in cases if not math.isnan(c["precision"])) / n if n
            else math.nan}


__all__ = ["aggregate", "expression_features", "overlap", "rule_features"]
