"""RRL model: the discrete model against an independent evaluation of its nodes, Gradient Grafting against the
surrogate's own autograd gradient, rule extraction exact against the logits on arbitrary rows."""

import copy
import itertools

import pytest
import torch
from transformers import AutoConfig, AutoModel

import paperzoo  # noqa: F401  (registers the Auto classes)
from paperzoo import RRLConfig, RRLForTabularClassification
from paperzoo.modeling.rrl_rules import FALSE, TRUE, combine


def make_model(seed=0, dtype=torch.float64, **overrides) -> RRLForTabularClassification:
    kwargs = dict(num_discrete_features=5, num_continuous_features=3, num_thresholds=4, layer_widths=[6, 5, 4],
                  use_not=True, use_skip=True, num_labels=3, kernel_backend="reference", temperature=0.5)
    kwargs.update(overrides)
    torch.manual_seed(seed)
    model = RRLForTabularClassification(RRLConfig(**kwargs)).to(dtype)
    with torch.no_grad():  # about three edges per node (init U(0, 0.5) has none), so rules are not all constant
        for layer in model.layers:
            for w in layer.weights().values():
                on = torch.rand(w.shape) < 3.0 / w.shape[0]
                w.copy_(torch.where(on, 0.6, 0.1) + 0.3 * torch.rand(w.shape))
    return model


def rows(n, config, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    one_hot = (torch.rand(n, config.num_discrete_features, generator=g) < 0.4).to(dtype)
    continuous = torch.randn(n, config.num_continuous_features, generator=g, dtype=dtype)
    return torch.cat([one_hot, continuous], dim=1)


def naive_discrete_logits(model, x):
    """The discrete model evaluated literal by literal, node by node, in plain Python (independent of the code)."""
    c = model.config
    thresholds = model.binarization.thresholds
    out = []
    for row in x.tolist():
        disc, cont = row[: c.num_discrete_features], row[c.num_discrete_features :]
        literals = disc + ([1 - v for v in disc] if c.use_not else [])
        gt = [1.0 if cont[j] > thresholds[k, j].item() else 0.0 for j in range(len(cont)) for k in range(c.num_thresholds)]
        outputs = [literals + gt + [1 - v for v in gt]]
        for i, layer in enumerate(model.layers):
            inputs = outputs[-1] + (outputs[-2] if c.use_skip and i + 1 >= 3 else [])
            if layer.use_not:
                inputs = inputs + [1 - v for v in inputs]
            nodes = []
            for kind, w in layer.weights().items():
                for j in range(w.shape[1]):
                    chosen = [inputs[i] for i in range(w.shape[0]) if w[i, j] > 0.5]
                    nodes.append(float(all(v == 1 for v in chosen)) if kind == "conjunction"
                                 else float(any(v == 1 for v in chosen)))
            outputs.append(nodes)
        features = outputs[-1] + (outputs[-2] if c.use_skip and len(outputs) >= 3 else [])
        logits = [sum(wi * f for wi, f in zip(wrow, features)) + b
                  for wrow, b in zip(model.classifier.weight.tolist(), model.classifier.bias.tolist())]
        out.append([z / model.log_temperature.exp().item() for z in logits])
    return torch.tensor(out, dtype=x.dtype)


@pytest.mark.parametrize("use_not, use_skip", [(False, False), (True, False), (True, True)])
def test_discrete_model_matches_node_by_node_evaluation(use_not, use_skip):
    model = make_model(use_not=use_not, use_skip=use_skip).eval()
    x = rows(40, model.config)
    torch.testing.assert_close(model(x).logits, naive_discrete_logits(model, x), rtol=0, atol=1e-12)


def test_binarization_literal_layout():
    model = make_model(use_not=True)
    x = rows(3, model.config)
    out = model.binarization(x)
    d, n, d_cont = 5, 4, 3
    assert out.shape == (3, 2 * d + 2 * n * d_cont)
    torch.testing.assert_close(out[:, d : 2 * d], 1 - x[:, :d])
    for j, k in itertools.product(range(d_cont), range(n)):  # feature-major: literal j·n + k is x_j > c_kj
        above = (x[:, d + j] > model.binarization.thresholds[k, j]).double()
        torch.testing.assert_close(out[:, 2 * d + j * n + k], above)
        torch.testing.assert_close(out[:, 2 * d + n * d_cont + j * n + k], 1 - above)


def test_hierarchical_grafting_gradient_is_the_surrogates_at_discrete_inputs():
    model = make_model().train()
    x = rows(16, model.config)
    labels = torch.randint(0, 3, (16,))
    model(x, labels=labels).loss.backward()

    # independent: evaluate each layer's surrogate by hand at the discrete inputs, with the discrete value
    # substituted in the forward via (ỹ − ỹ.detach() + ȳ)
    ref = copy.deepcopy(model)
    ref.zero_grad()
    cfg = ref.config
    G = lambda t: 1 - 1 / (1 - (cfg.alpha * t) ** cfg.beta)
    outputs = [ref.binarization(x)]
    for i, layer in enumerate(ref.layers):
        h = outputs[-1] if not (cfg.use_skip and i + 1 >= 3) else torch.cat([outputs[-1], outputs[-2]], 1)
        h = torch.cat([h, 1 - h], 1) if layer.use_not else h
        conj = (1 + G(1 - h) @ G(layer.conjunction_weight)) ** (-cfg.gamma)
        disj = 1 - (1 + G(h) @ G(layer.disjunction_weight)) ** (-cfg.gamma)
        surrogate = torch.cat([conj, disj], 1)
        discrete = layer.binarized(h[:, : layer.input_dim])
        outputs.append(surrogate - surrogate.detach() + discrete)
    features = torch.cat([outputs[-1], outputs[-2]], 1)
    logits = ref.classifier(features) * torch.exp(-ref.log_temperature)
    loss = torch.nn.functional.cross_entropy(logits, labels) + cfg.weight_decay * ref.l2_penalty()
    loss.backward()
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-12, msg=name)
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("activation", ["nlaf", "laf"])
@pytest.mark.parametrize("use_skip", [False, True])
def test_training_step_matches_the_per_kind_grafted_layers(activation, use_skip):
    """One Adam step of the model (each logical layer: one fused grafted op) against the same step written with each
    layer's own `binarized` (the value) and `continuous` (the gradient) per kind, CE(logits / T) + λ Σ W² by hand."""
    model = make_model(activation=activation, use_skip=use_skip, layer_widths=[6, 5], weight_decay=1e-2).train()
    ref = copy.deepcopy(model)
    x, labels = rows(16, model.config), torch.randint(0, 3, (16,), generator=torch.Generator().manual_seed(2))
    opt, ref_opt = (torch.optim.Adam(m.parameters(), lr=0.05) for m in (model, ref))

    loss = model(x, labels=labels).loss
    loss.backward()
    outputs = [ref.binarization(x)]
    for i, layer in enumerate(ref.layers):
        h = torch.cat([outputs[-1], outputs[-2]], 1) if use_skip and i + 1 >= 3 else outputs[-1]
        surrogate = layer.continuous(h)
        outputs.append(surrogate - surrogate.detach() + layer.binarized(h))
    features = torch.cat([outputs[-1], outputs[-2]], 1) if use_skip else outputs[-1]
    logits = ref.classifier(features) / torch.exp(ref.log_temperature)
    weights = [ref.classifier.weight] + [w for layer in ref.layers for w in layer.weights().values()]
    ref_loss = torch.nn.functional.cross_entropy(logits, labels) + 1e-2 * sum(w.pow(2).sum() for w in weights)
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss, rtol=1e-13, atol=0)
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-12, msg=name)
        assert p.grad.abs().sum() > 0, name
    opt.step()
    ref_opt.step()
    model.clip_weights()
    ref.clip_weights()
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12, msg=name)
    assert sum(((p > 0.5) != (q > 0.5)).sum() for p, q in zip(model.parameters(), ref.parameters())) == 0


def test_single_grafting_injects_discrete_loss_gradient_into_continuous_model():
    model = make_model(grafting="single", use_skip=False, layer_widths=[6, 4]).train()
    x = rows(12, model.config)
    labels = torch.randint(0, 3, (12,))
    out = model(x, labels=labels)
    out.loss.backward()
    with torch.no_grad():
        discrete_logits = model.eval()(x).logits
    model.train()
    torch.testing.assert_close(out.logits, discrete_logits)  # the forward value is the discrete model's
    ref = copy.deepcopy(model)
    ref.zero_grad()
    h = ref.binarization(x)
    for layer in ref.layers:
        h = layer.continuous(h)
    continuous = ref.classifier(h) * torch.exp(-ref.log_temperature)
    # official v1: Ŷ.backward((softmax(Ȳ) − onehot) / B)
    grad = (discrete_logits.softmax(-1) - torch.nn.functional.one_hot(labels, 3)) / len(labels)
    continuous.backward(grad)
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        if name != "log_temperature":
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-12, msg=name)
    # T scales the discrete logits z (the model's output), so ∂CE/∂log T = Σ (softmax(z) − onehot)/B · (−z)
    torch.testing.assert_close(model.log_temperature.grad, (grad * -discrete_logits).sum())


@pytest.mark.parametrize("activation", ["nlaf", "laf"])
@pytest.mark.parametrize("use_not, use_skip", [(False, False), (True, True)])
def test_rules_explain_logits_exactly_on_any_row(activation, use_not, use_skip):
    # seed 5: a random model whose third layer is not all constant nodes in either setting
    model = make_model(seed=5, activation=activation, use_not=use_not, use_skip=use_skip).eval()
    rules = model.extract_rules()
    x = rows(200, model.config, seed=5)
    logits = model(x).logits
    for row, fired in zip(logits, rules.fired(model, x)):
        z = rules.logits(fired)
        torch.testing.assert_close(torch.tensor([z[c] for c in rules.labels], dtype=row.dtype), row,
                                   rtol=0, atol=1e-10)
    assert rules.rules and len({r.text for r in rules.rules}) == len(rules.rules)  # one entry per distinct rule


def test_rule_text_uses_schema_and_raw_units():
    model = make_model(layer_widths=[4], use_not=False, use_skip=False, num_discrete_features=2,
                       num_continuous_features=1, num_thresholds=2)
    with torch.no_grad():
        model.binarization.thresholds.copy_(torch.tensor([[-1.0], [0.5]]))
        for w in model.layers[0].weights().values():
            w.zero_()
        model.layers[0].conjunction_weight[[0, 2 + 1, 4 + 0], 0] = 1.0  # color = red & age > 0.5σ+μ & age <= −σ+μ
        model.layers[0].conjunction_weight[[2, 5], 1] = 1.0  # age > −1 & age <= 0.5  → interval
        model.layers[0].disjunction_weight[[0, 1], 2] = 1.0  # color = red | color = blue
        model.layers[0].disjunction_weight[[2, 4], 3] = 1.0  # age > −1 | age <= −1 → always true (bias)
    schema = {"discrete_literals": ["color = red", "color = blue"], "continuous_names": ["age"],
              "means": [40.0], "stds": [10.0]}
    rules = model.extract_rules(schema)
    texts = {r.text for r in rules.rules}
    assert "age <= 45 & age > 30" in texts
    assert "color = blue | color = red" in texts
    assert not any("color = red & age" in t for t in texts)  # x > 45 & x <= 30 is empty: dropped
    # the always-true OR (position 4 + 3) and the two empty ANDs (positions 2, 3) went into the bias
    scale = torch.exp(-model.log_temperature.double())
    folded = (model.classifier.bias.double() + model.classifier.weight[:, [2, 3, 7]].double().sum(1)) * scale
    torch.testing.assert_close(torch.tensor(list(rules.bias.values()), dtype=torch.float64), folded)


def test_combine_simplifies_only_what_is_constant():
    a, b = ("lit", 0), ("lit", 1)
    assert combine("conjunction", []) == TRUE and combine("disjunction", []) == FALSE
    assert combine("conjunction", [a, ("not", a)]) == FALSE
    assert combine("disjunction", [a, ("not", a)]) == TRUE
    assert combine("conjunction", [("gt", 0, 1.0), ("gt", 0, 2.0), ("le", 0, 3.0)]) == (
        "and", frozenset({("gt", 0, 2.0), ("le", 0, 3.0)}))
    assert combine("conjunction", [("gt", 0, 3.0), ("le", 0, 3.0)]) == FALSE
    assert combine("disjunction", [("gt", 0, 1.0), ("le", 0, 1.0)]) == TRUE
    assert combine("disjunction", [("gt", 0, 2.0), ("le", 0, 1.0)]) == ("or", frozenset({("gt", 0, 2.0), ("le", 0, 1.0)}))
    assert combine("conjunction", [a, combine("conjunction", [b, TRUE])]) == ("and", frozenset({a, b}))
    assert combine("disjunction", [a]) == a


def test_clip_l2_edges_and_save_load(tmp_path):
    model = make_model(dtype=torch.float32)
    with torch.no_grad():
        model.layers[0].conjunction_weight[0, 0] = 1.7
        model.layers[0].disjunction_weight[0, 0] = -0.3
    model.clip_weights()
    for layer in model.layers:
        for w in layer.weights().values():
            assert 0 <= w.min() and w.max() <= 1
    l2 = model.classifier.weight.pow(2).sum() + sum(w.pow(2).sum() for l in model.layers for w in l.weights().values())
    torch.testing.assert_close(model.l2_penalty(), l2)
    assert model.edge_count() == reachable_edges(model)
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, RRLForTabularClassification)
    x = rows(10, model.config, dtype=torch.float32)
    torch.testing.assert_close(loaded.eval()(x).logits, model.eval()(x).logits)
    torch.testing.assert_close(loaded.binarization.thresholds, model.binarization.thresholds)


def reachable_edges(model) -> int:
    """Edges (W̄ = 1) counted by walking, node by node, from every classifier input with a nonzero weight down to
    the literals (plain Python, independent of `edge_count`)."""
    widths = [model.binarization.output_dim] + [layer.output_dim for layer in model.layers]

    def sources(position, i):  # input i of layer `position` (1-based) → (layer output index, node)
        if i < widths[position - 1]:
            return position - 1, i
        return position - 2, i - widths[position - 1]  # a skip input

    seen, edges = set(), 0
    stack = [(len(widths) - 1, p) if p < widths[-1] else (len(widths) - 2, p - widths[-1])
             for p in range(model.classifier.weight.shape[1]) if bool((model.classifier.weight[:, p] != 0).any())]
    while stack:
        position, node = stack.pop()
        if position == 0 or (position, node) in seen:
            continue
        seen.add((position, node))
        layer = model.layers[position - 1]
        half = layer.output_dim // 2  # conjunctions first, then disjunctions
        w = list(layer.weights().values())[node // half]
        j = node % half
        for i in range(w.shape[0]):
            if w[i, j] > 0.5:
                edges += 1
                stack.append(sources(position, i % layer.input_dim if layer.use_not else i))
    return edges


@pytest.mark.parametrize("use_not, use_skip", [(False, False), (True, True)])
def test_edges_are_those_the_output_depends_on(use_not, use_skip):
    model = make_model(use_not=use_not, use_skip=use_skip)
    everything = sum(int((w > 0.5).sum()) for layer in model.layers for w in layer.weights().values())
    assert model.edge_count() == reachable_edges(model) <= everything
    with torch.no_grad():  # the output stops reading half of the last layer: its nodes' edges no longer count
        model.classifier.weight[:, : model.layers[-1].output_dim // 2] = 0
    assert model.edge_count() == reachable_edges(model) < everything


@pytest.mark.parametrize("use_not, use_skip", [(False, False), (True, True)])
def test_pruning_by_support_keeps_the_rows_and_stays_exact(use_not, use_skip):
    """The official pruning, folded into the model: on the pruning rows every layer's nodes and the logits are
    unchanged, no rule left is constant on them, and on new rows the rules explain the pruned model exactly."""
    model = make_model(use_not=use_not, use_skip=use_skip, layer_widths=[10, 8]).eval()
    seen, new = rows(12, model.config), rows(50, model.config, seed=7)
    before_nodes, before_logits = model.discrete_features(seen)[1], model(seen).logits
    rules_before = len(model.extract_rules().rules)
    removed = model.prune_by_support(seen)
    assert removed["output_nodes_removed"] > 0 and removed["edges_dropped"] > 0  # the case is not vacuous
    for a, b in zip(before_nodes, model.discrete_features(seen)[1]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(model(seen).logits, before_logits)
    rule_set = model.extract_rules()
    assert len(rule_set.rules) < rules_before
    fired = rule_set.fired(model, seen)
    counts = [sum(r in row for row in fired) for r in range(len(rule_set.rules))]
    assert all(0 < k < len(seen) for k in counts), counts
    explained = torch.tensor([[rule_set.logits(row)[c] for c in rule_set.labels]
                              for row in rule_set.fired(model, new)], dtype=torch.float64)
    torch.testing.assert_close(explained, naive_discrete_logits(model, new), rtol=0, atol=1e-9)
    torch.testing.assert_close(model(new).logits, naive_discrete_logits(model, new), rtol=0, atol=1e-12)
    assert model.prune_by_support(seen)["edges_dropped"] == 0  # idempotent
    with pytest.raises(ValueError, match="at least one row"):
        model.prune_by_support(seen[:0])


def test_triton_backend_gives_reference_model():
    """Model level: fp32 Triton kernels (interpreter on CPU, or CUDA) against the float64 reference model."""
    for activation in ("nlaf", "laf"):
        reference = make_model(dtype=torch.float64, activation=activation).train()
        fast = copy.deepcopy(reference).float()
        fast.config.kernel_backend = "triton"
        x = rows(9, reference.config)
        labels = torch.tensor([0, 1, 2] * 3)
        reference(x, labels=labels).loss.backward()
        fast(x.float(), labels=labels).loss.backward()
        torch.testing.assert_close(fast.eval()(x.float()).logits.double(), reference.eval()(x).logits,
                                   rtol=1e-5, atol=1e-5)
        for (name, p), q in zip(reference.named_parameters(), fast.parameters()):
            # G′ is steep near W = 1 (β = 8): fp32 keeps ~1e-4 relative there
            torch.testing.assert_close(q.grad.double(), p.grad, rtol=2e-3, atol=1e-5, msg=name)


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(num_discrete_features=-1), "num_discrete_features"),
        (dict(num_discrete_features=0, num_continuous_features=0), "num_discrete_features"),
        (dict(num_thresholds=0), "num_thresholds"),
        (dict(layer_widths=[]), "layer_widths"),
        (dict(activation="relu"), "activation"),
        (dict(grafting="double"), "grafting"),
        (dict(alpha=1.0), "alpha"),
        (dict(beta=0.5), "beta"),
        (dict(temperature=0), "temperature"),
        (dict(kernel_backend="cuda"), "kernel_backend"),
        (dict(num_labels=1), "num_labels"),
    ],
)
def test_invalid_config_names_field(overrides, field):
    kwargs = dict(num_discrete_features=2, num_continuous_features=1, num_labels=2)
    kwargs.update(overrides)
    with pytest.raises(ValueError, match=field):
        RRLConfig(**kwargs)


def test_default_config_builds_a_model(tmp_path):
    """Every transformers config builds with its defaults (AutoConfig.for_model, the contract suite), and a model
    builds from it; a saved config with no continuous column keeps 0 (every field is written, never left to the
    class default)."""
    for config in (RRLConfig(), AutoConfig.for_model("paperzoo_rrl")):
        assert isinstance(config, RRLConfig)
        model = RRLForTabularClassification(config).eval()
        width = config.num_discrete_features + config.num_continuous_features
        logits = model(torch.randn(4, width)).logits
        assert logits.shape == (4, config.num_labels) and bool(torch.isfinite(logits).all())
    RRLConfig(num_discrete_features=27, num_continuous_features=0).save_pretrained(tmp_path)
    loaded = RRLConfig.from_pretrained(tmp_path)
    assert (loaded.num_discrete_features, loaded.num_continuous_features) == (27, 0)


def test_wrong_input_width_is_a_clear_error():
    model = make_model()
    with pytest.raises(ValueError, match=r"input_features must be \[batch, 8\]"):
        model(torch.zeros(2, 7, dtype=torch.float64))


def test_one_hot_columns_make_two_categories_exclusive():
    red, blue, big = ("lit", 0), ("lit", 1), ("lit", 2)
    groups = {0: 0, 1: 0, 2: 1}
    assert combine("conjunction", [red, blue], groups) == FALSE
    assert combine("conjunction", [red, big], groups) == ("and", frozenset({red, big}))
    assert combine("disjunction", [("not", red), ("not", blue)], groups) == TRUE
    assert combine("conjunction", [red, blue]) == ("and", frozenset({red, blue}))  # without a schema: kept
