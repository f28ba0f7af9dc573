"""RRL's closed-form training step (`modeling.rrl_training`) against autograd through the model (the official loss
`model(x, labels).loss`, backward, the same optimizer), in float64, on real rows (sklearn's wine)."""

import copy

import pytest
import torch
from sklearn.datasets import load_wine

from paperzoo import RRLConfig, RRLForTabularClassification
from paperzoo.estimators.rrl import make_training_step, training_step
from paperzoo.modeling.rrl_training import ClosedFormStep, closed_form_unsupported
from paperzoo.processors.rrl import RRLProcessor


def wine_model(seed=0, **overrides):
    wine = load_wine(as_frame=True)
    processor = RRLProcessor().fit(wine.data)
    features = torch.tensor(processor(wine.data)["input_features"], dtype=torch.float64)
    kwargs = dict(num_discrete_features=0, num_continuous_features=features.shape[1], num_thresholds=3,
                  layer_widths=[8, 6], num_labels=3, kernel_backend="reference", temperature=0.7, weight_decay=1e-3)
    kwargs.update(overrides)
    torch.manual_seed(seed)
    model = RRLForTabularClassification(RRLConfig(**kwargs)).double()
    with torch.no_grad():  # a few edges per node (U(0, 0.5) has none), so discrete values and gradients vary
        for layer in model.layers:
            for w in layer.weights().values():
                w.copy_(torch.where(torch.rand(w.shape) < 3.0 / w.shape[0], 0.6, 0.1) + 0.35 * torch.rand(w.shape))
    return model, features, torch.tensor(wine.target.to_numpy())


CASES = {
    "nlaf, one layer": dict(layer_widths=[16]),
    "nlaf, two layers": dict(),
    "nlaf, three layers, skip, NOT literals, gamma 2": dict(layer_widths=[8, 6, 5], use_skip=True, use_not=True,
                                                            gamma=2.0, alpha=0.9, beta=3.0),
    "nlaf, two layers, skip into the classifier, no weight decay": dict(use_skip=True, weight_decay=0.0),
    "product, two layers, skip": dict(activation="laf", use_skip=True, layer_widths=[8, 6, 4]),
    "product, estimated gradient": dict(activation="laf", estimated_grad=True),
}


@pytest.mark.parametrize("case", CASES)
def test_closed_form_step_equals_autograd_through_the_model(case):
    model, features, targets = wine_model(**CASES[case])
    reference = copy.deepcopy(model).train()
    opt_ref = torch.optim.Adam(reference.parameters(), lr=1e-2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    literals = model.binarization(features)
    assert closed_form_unsupported(model, features) is None
    step = ClosedFormStep(model, opt)
    order = torch.randperm(len(features), generator=torch.Generator().manual_seed(0))
    flips = 0
    for batch in order.split(32)[:5]:  # five Adam steps: a wrong gradient anywhere shows in the parameters
        expected = training_step(reference, opt_ref, features[batch], targets[batch])
        got = step(literals[batch], targets[batch])
        assert torch.allclose(got, expected, rtol=1e-12, atol=0), (got, expected)
        for (name, p), q in zip(model.named_parameters(), reference.parameters()):
            assert torch.allclose(p.grad, q.grad, rtol=1e-9, atol=1e-12), name
            assert torch.allclose(p, q, rtol=0, atol=1e-10), name
            flips += int(((p > 0.5) != (q > 0.5)).sum())
    assert flips == 0
    assert step(literals[:7], targets[:7], with_loss=False) is None


def test_unsupported_models_fall_back_to_autograd():
    model, features, targets = wine_model(grafting="single")
    assert "grafting='single'" in closed_form_unsupported(model, features)
    product, _, _ = wine_model(activation="laf", num_discrete_features=2, num_continuous_features=11)
    assert closed_form_unsupported(product, features) is not None  # wine's first two columns are not one-hot
    assert closed_form_unsupported(product, torch.cat([features[:, :2] > 0, features[:, 2:]], 1).double()) is None
    # the estimator's step factory uses autograd there, and still trains
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = copy.deepcopy(model.state_dict())
    loss = make_training_step(model.train(), opt, features, targets)(torch.arange(32))
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_literals_too_large_to_keep_are_binarized_per_batch(monkeypatch):
    import paperzoo.estimators.rrl as estimator

    model, features, targets = wine_model()
    kept = copy.deepcopy(model)
    batch = torch.arange(40, 72)
    expected = estimator.make_training_step(kept, torch.optim.Adam(kept.parameters(), lr=1e-2), features, targets)
    monkeypatch.setattr(estimator, "LITERAL_CACHE_BYTES", 0)
    step = estimator.make_training_step(model, torch.optim.Adam(model.parameters(), lr=1e-2), features, targets)
    assert torch.equal(step(batch), expected(batch))
    for p, q in zip(model.parameters(), kept.parameters()):
        assert torch.equal(p, q)
