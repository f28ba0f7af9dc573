"""Rule extraction for RRL: the discrete model rewritten as `logits = bias + Σ weights of the rules that fire`.

As in the official `extract_rules`/`get_rule2weights`: W̄ = 1[W > 0.5] gives each node its antecedents, bounds on one
feature are merged (AND keeps the tightest, OR the loosest), identical rules share one id and their linear weights
add up, always-on nodes go into the bias, and thresholds are written back in raw units.

One deliberate difference: the official code drops nodes that never (or always) fire *on the training data*, which
makes its explanation inexact on new rows. Here a node is dropped or folded into the bias only when it is constant for
*every* input the processor can produce (empty AND/OR, x ∧ ¬x, x > 5 ∧ x ≤ 3, x ∨ ¬x, two categories of one
column), so the explanation is exact on any row; rules that never fired in training simply show support 0. The
official pruning is `RRLForTabularClassification.prune_by_support`, which writes it into the model's weights, so the
rules extracted afterwards are again exact on any row.

Expressions are canonical nested tuples, so equal tuples are the same Boolean function of the input:
("lit", i) one-hot literal i · ("gt", j, c) / ("le", j, c) continuous feature j vs bound c (standardised units) ·
("not", e) · ("and", frozenset) / ("or", frozenset) · TRUE / FALSE.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch

TRUE, FALSE = ("const", True), ("const", False)


def negate(e):
    if e in (TRUE, FALSE):
        return FALSE if e == TRUE else TRUE
    if e[0] in ("gt", "le"):  # ¬(x > c) = x ≤ c
        return ("le" if e[0] == "gt" else "gt", e[1], e[2])
    return e[1] if e[0] == "not" else ("not", e)


def combine(kind: str, children, one_hot_group: dict | None = None) -> tuple:
    """The canonical form of AND/OR over `children`: constants absorbed, same-kind children flattened, bounds per
    feature merged, complementary pairs resolved; constant results become TRUE / FALSE. `one_hot_group` maps a
    one-hot literal to its column: two categories of one column never hold together (the processor writes at most
    one 1 per column), so their AND is FALSE and the OR of their negations TRUE."""
    op = "and" if kind == "conjunction" else "or"
    neutral, absorbing = (TRUE, FALSE) if op == "and" else (FALSE, TRUE)
    flat = set()
    for c in children:
        if c == absorbing:
            return absorbing
        if c != neutral:
            flat.update(c[1] if c[0] == op else [c])
    gt, le, rest = defaultdict(list), defaultdict(list), set()
    for c in flat:
        if c[0] == "gt":
            gt[c[1]].append(c[2])
        elif c[0] == "le":
            le[c[1]].append(c[2])
        else:
            rest.add(c)
    if any(negate(c) in rest for c in rest):  # x ∧ ¬x = FALSE, x ∨ ¬x = TRUE
        return absorbing
    if one_hot_group:
        exclusive = [c for c in rest if c[0] == "lit"] if op == "and" else \
            [c[1] for c in rest if c[0] == "not" and c[1][0] == "lit"]
        columns = [one_hot_group[c[1]] for c in exclusive if c[1] in one_hot_group]
        if len(columns) != len(set(columns)):  # color = red ∧ color = blue = FALSE (and its dual)
            return absorbing
    tight = (max, min) if op == "and" else (min, max)  # AND: x > max, x ≤ min; OR: x > min, x ≤ max
    for j in set(gt) | set(le):
        lo = tight[0](gt[j]) if gt[j] else None
        hi = tight[1](le[j]) if le[j] else None
        if lo is not None and hi is not None and (lo >= hi if op == "and" else lo <= hi):
            return absorbing  # empty interval / whole line
        rest.update([("gt", j, lo)] if lo is not None else [])
        rest.update([("le", j, hi)] if hi is not None else [])
    if not rest:
        return neutral
    if len(rest) == 1:
        return next(iter(rest))
    return (op, frozenset(rest))


@dataclass
class Rule:
    text: str
    weights: dict  # {label: w}, temperature folded in
    expression: tuple = field(repr=False)
    support: float | None = None  # fraction of training rows where the rule fires (set by the estimator)


@dataclass
class RuleSet:
    """`logits = bias + Σ_{rules that fire} weights` for every input row, exactly (up to float summation order)."""

    labels: list
    bias: dict
    rules: list[Rule]
    positions: list[int]  # classifier input position → rule index, or -1 for a constant node

    def fired(self, model, input_features: torch.Tensor) -> list[list[int]]:
        """Indices of the rules that fire on each row, read from the discrete model's own node activations."""
        active = model.discrete_features(input_features)[0].bool().cpu()  # [B, positions]
        rows = []
        for row in active:
            ids = {self.positions[p] for p in row.nonzero().flatten().tolist()} - {-1}
            rows.append(sorted(ids))
        return rows

    def logits(self, fired: list[int]) -> dict:
        return {c: self.bias[c] + sum(self.rules[r].weights[c] for r in fired) for c in self.labels}

    def to_markdown(self, max_rules: int | None = None) -> str:
        """The rule table, sorted by the largest |weight|; `|` in rule text is escaped (OR rules contain it)."""
        head = "| # | " + " | ".join(f"{c} (b={self.bias[c]:+.4f})" for c in self.labels) + " | support | rule |"
        lines = [head, "|" + "---|" * (len(self.labels) + 3)]
        for i, r in enumerate(self.rules[:max_rules]):
            support = "" if r.support is None else f"{r.support:.4f}"
            weights = " | ".join(f"{r.weights[c]:+.4f}" for c in self.labels)
            text = r.text.replace("\\", "\\\\").replace("|", "\\|")
            lines.append(f"| {i} | {weights} | {support} | {text} |")
        return "\n".join(lines)


def _binarization_expressions(model) -> list[tuple]:
    binarization = model.binarization
    d = binarization.num_discrete
    exprs = [("lit", i) for i in range(d)]
    if binarization.use_not:
        exprs += [("not", ("lit", i)) for i in range(d)]
    c = binarization.thresholds.detach().double().cpu()  # [n, d_cont]
    n, d_cont = c.shape
    gt = [("gt", j, float(c[k, j])) for j in range(d_cont) for k in range(n)]  # feature-major, as the layer
    return exprs + gt + [negate(e) for e in gt]


def extract_rules(model, schema: dict | None = None) -> RuleSet:
    config = model.config
    one_hot_group = {i: g for g, block in enumerate((schema or {}).get("one_hot_groups", [])) for i in block}
    outputs = [_binarization_expressions(model)]
    for i, layer in enumerate(model.layers):
        inputs = outputs[-1] + (outputs[-2] if config.use_skip and i + 1 >= 3 else [])
        if layer.use_not:
            inputs = inputs + [negate(e) for e in inputs]
        nodes = []
        for kind, w in layer.weights().items():
            w_bar = (w.detach() > 0.5).cpu()  # [n_in, width]
            for j in range(w_bar.shape[1]):
                chosen = [inputs[i] for i in w_bar[:, j].nonzero().flatten().tolist()]
                nodes.append(combine(kind, chosen, one_hot_group))
        outputs.append(nodes)
    positions_expr = outputs[-1] + (outputs[-2] if config.use_skip and len(outputs) >= 3 else [])

    scale = float(torch.exp(-model.log_temperature.detach()).double())
    weight = model.classifier.weight.detach().double().cpu() * scale  # [C, positions]
    bias = model.classifier.bias.detach().double().cpu() * scale
    labels = [config.id2label[i] for i in range(config.num_labels)]
    index, sums, positions = {}, [], []
    for p, e in enumerate(positions_expr):
        if e in (TRUE, FALSE):
            if e == TRUE:
                bias = bias + weight[:, p]
            positions.append(-1)
            continue
        if e not in index:
            index[e] = len(sums)
            sums.append(torch.zeros_like(bias))
        sums[index[e]] = sums[index[e]] + weight[:, p]
        positions.append(index[e])
    describe = _describer(model, schema)
    order = sorted(range(len(sums)), key=lambda r: -float(sums[r].abs().max()))
    order = [r for r in order if float(sums[r].abs().max()) > 0]  # a rule with no weight explains nothing
    new_id = {old: new for new, old in enumerate(order)}
    exprs = {r: e for e, r in index.items()}
    rules = [Rule(describe(exprs[r]), dict(zip(labels, sums[r].tolist())), exprs[r]) for r in order]
    return RuleSet(labels, dict(zip(labels, bias.tolist())), rules, [new_id.get(p, -1) for p in positions])


def _describer(model, schema: dict | None):
    """Text of an expression with the processor's column names and bounds back in raw units (c·σ + μ)."""
    d = model.binarization.num_discrete
    d_cont = model.binarization.thresholds.shape[1]
    schema = schema or {}
    discrete = schema.get("discrete_literals") or [f"x{i}" for i in range(d)]
    continuous = schema.get("continuous_names") or [f"c{j}" for j in range(d_cont)]
    means = schema.get("means") or [0.0] * d_cont
    stds = schema.get("stds") or [1.0] * d_cont

    def text(e, top=True) -> str:
        if e[0] == "lit":
            return discrete[e[1]]
        if e[0] in ("gt", "le"):
            return f"{continuous[e[1]]} {'>' if e[0] == 'gt' else '<='} {e[2] * stds[e[1]] + means[e[1]]:.6g}"
        if e[0] == "not":
            return f"~({text(e[1], False)})"
        body = f" {'&' if e[0] == 'and' else '|'} ".join(sorted(text(c, False) for c in e[1]))
        return body if top else f"({body})"

    return text
