"""KCF-PLM against the paper's formula written out independently (float64, dense R-GCN), the official code's defects
fixed (the item tower and the aspect transformer ignore padding), the KG propagated once per batch, the towers
shared or not, the freezing schedule and the per-module learning rates through Trainer."""

from __future__ import annotations

import pytest
import torch

import paperzoo
from paperzoo.modeling import kcf_plm as kcf_module
from paperzoo.modeling.kcf_plm_training import (TextEncoderFreezeCallback, kcf_plm_optimizer, parameter_group)

from ..contract.architectures import KCF_PLM, _kcf_plm_inputs


def _model(seed=0, **overrides):
    mc = KCF_PLM.classes[0]
    return KCF_PLM.model(mc, seed=seed, **overrides)


def _dense_rgcn(model, x):
    """x W_root + b + Σ_r A_r x BlockDiag(W_r), A_r[i, j] = Σ_{edges j→i of r} w / |in-edges of i in r|."""
    conv = model.knowledge_graph.conv
    edges, weights = model.knowledge_graph.edges, model.knowledge_graph.edge_weights.to(torch.float64)
    N, R = x.shape[0], conv.weight.shape[0]
    out = x @ conv.root + conv.bias
    for r in range(R):
        A = torch.zeros(N, N, dtype=torch.float64)
        sel = edges[:, 2] == r
        counts = torch.zeros(N, dtype=torch.float64).index_add_(0, edges[sel, 1], torch.ones(int(sel.sum()),
                                                                                           dtype=torch.float64))
        for (s, d, _), w in zip(edges[sel].tolist(), weights[sel].tolist()):
            A[d, s] += w / counts[d]
        out = out + A @ x @ torch.block_diag(*conv.weight[r])
    return out


def _reference_forward(model, batch):
    """The paper's prediction written out from the modules' weights (eval mode: no dropout)."""
    c = model.config
    nodes = torch.relu(_dense_rgcn(model, model.knowledge_graph.node_features))
    e_u, e_i = nodes[batch["user_entity_ids"]], nodes[batch["item_entity_ids"]]

    def tower(tower, ids, mask, node):
        emb = tower.encoder.embeddings.word_embeddings(ids).clone()
        emb[:, 0] = (emb[:, 0] + model.kg_to_text(node)) / 2
        pooled = tower.encoder(inputs_embeds=emb, attention_mask=mask).pooler_output
        return tower.head(pooled)

    user_feature = tower(model.text_towers()[-1], batch["item_input_ids"], batch["item_attention_mask"], e_u)  # swapped
    item_feature = tower(model.user_tower, batch["user_input_ids"], batch["user_attention_mask"], e_i)
    u = user_feature + model.user_node_proj(e_u)
    i = item_feature + model.item_node_proj(e_i)
    pair = model.pair_proj(torch.cat([u, i], -1))
    rows = []
    for b in range(pair.shape[0]):
        keep = batch["aspect_mask"][b].bool()
        if not keep.any():
            rows.append(pair[b])
            continue
        ids = batch["aspect_entity_ids"][b][keep]
        tokens = torch.cat([nodes[ids], model.aspects.type_embeddings(batch["aspect_type_ids"][b][keep])], -1)
        tokens = tokens * batch["aspect_weights"][b][keep][:, None]
        keys = model.aspects.proj(model.aspects.transformer(tokens[None]))[0]  # only the real aspects: no mask
        alpha = torch.softmax(keys @ pair[b], 0)
        rows.append(pair[b] + torch.tanh(alpha @ keys))
    z = torch.stack(rows)
    fm = model.fm
    second = 0.5 * ((z @ fm.factors).square() - z.square() @ fm.factors.square()).sum(-1)
    return (fm.linear(z)[:, 0] + second + fm.user_bias.weight[batch["user_ids"], 0]
            + fm.item_bias.weight[batch["item_ids"], 0])


def test_forward_equals_the_paper_formula_written_out():
    model = _model()
    batch = _kcf_plm_inputs(model.config, 5, 3)
    assert batch["aspect_mask"][0].sum() == 0 and batch["aspect_mask"].sum() > 0  # a pair without aspects too
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).predictions, _reference_forward(model, batch), rtol=0, atol=1e-10)


def test_the_loss_is_mse_plus_the_weighted_entity_type_loss():
    model = _model()
    batch = _kcf_plm_inputs(model.config, 4, 1)
    labels = torch.tensor([1.0, 2.5, 4.0, 5.0], dtype=torch.float64)
    with torch.no_grad():
        out = model(**batch, labels=labels)
        nodes = model.knowledge_graph()
        torch.testing.assert_close(out.rating_loss, (out.predictions - labels).square().mean())
        # per pair: (CE(user → 0) + CE(item → 1) + Σ_aspects CE(aspect → 2) / A_max) / (2 + n_aspects / A_max)
        logp = torch.log_softmax(model.entity_classifier(nodes), -1)
        per_pair = []
        for b in range(4):
            n = int(batch["aspect_mask"][b].sum())
            ids = batch["aspect_entity_ids"][b][:n]
            total = -logp[batch["user_entity_ids"][b], 0] - logp[batch["item_entity_ids"][b], 1]
            total = total - logp[ids, 2].sum() / 4
            per_pair.append(total / (2 + n / 4))
        torch.testing.assert_close(out.entity_loss, torch.stack(per_pair).mean())
        torch.testing.assert_close(out.loss, out.rating_loss + 0.2 * out.entity_loss)


def test_the_item_tower_ignores_padding():
    """The official item tower passes the token ids as the attention mask; here padding changes nothing."""
    model = _model()
    batch = _kcf_plm_inputs(model.config, 3, 4)
    with torch.no_grad():
        want = model(**batch).predictions
        for side in ("item", "user"):
            padded = dict(batch)
            ids, mask = batch[f"{side}_input_ids"], batch[f"{side}_attention_mask"]
            padded[f"{side}_input_ids"] = torch.cat([torch.where(mask.bool(), ids, 57), torch.full((3, 5), 91)], 1)
            padded[f"{side}_attention_mask"] = torch.cat([mask, torch.zeros(3, 5, dtype=mask.dtype)], 1)
            torch.testing.assert_close(model(**padded).predictions, want, rtol=0, atol=1e-10)
        # and the mask matters: unmasking the padding changes the prediction
        unmasked = dict(batch, item_attention_mask=torch.ones_like(batch["item_attention_mask"]))
        assert (model(**unmasked).predictions - want).abs().max() > 1e-12  # float64 noise is ~1e-16


def test_the_guided_attention_ignores_padded_aspects():
    model = _model()
    batch = _kcf_plm_inputs(model.config, 4, 6)
    with torch.no_grad():
        out = model(**batch)
        assert (out.aspect_attention[batch["aspect_mask"] == 0] == 0).all()
        torch.testing.assert_close(out.aspect_attention.sum(1), (batch["aspect_mask"].sum(1) > 0).to(torch.float64))
        noisy = dict(batch)
        pad = batch["aspect_mask"] == 0
        noisy["aspect_entity_ids"] = torch.where(pad, 9, batch["aspect_entity_ids"])
        noisy["aspect_type_ids"] = torch.where(pad, 3, batch["aspect_type_ids"])
        noisy["aspect_weights"] = torch.where(pad, 7.0, batch["aspect_weights"])
        torch.testing.assert_close(model(**noisy).predictions, out.predictions, rtol=0, atol=1e-10)


def test_the_query_is_detached_unless_query_grad():
    for query_grad in (False, True):
        model = _model(query_grad=query_grad).train()
        batch = _kcf_plm_inputs(model.config, 3, 2)
        pooled, _ = model.aspects(torch.randn(3, 4, 16, dtype=torch.float64), batch["aspect_type_ids"],
                                  batch["aspect_weights"], torch.ones(3, 4), pair := torch.randn(3, 9,
                                                                                               dtype=torch.float64,
                                                                                               requires_grad=True))
        pooled.sum().backward()
        assert (pair.grad is not None and pair.grad.abs().sum() > 0) == query_grad


def test_the_knowledge_graph_is_propagated_once_per_batch(monkeypatch):
    calls = []
    original = kcf_module.rgcn_aggregate
    monkeypatch.setattr(kcf_module, "rgcn_aggregate", lambda *a, **k: calls.append(1) or original(*a, **k))
    model = _model().train()
    model(**_kcf_plm_inputs(model.config, 6, 0), labels=torch.full((6,), 3.0, dtype=torch.float64)).loss.backward()
    assert len(calls) == 1


def test_ablations_remove_their_component():
    no_kg = _model(use_knowledge_graph=False)
    batch = _kcf_plm_inputs(no_kg.config, 3, 5)
    with torch.no_grad():
        torch.testing.assert_close(no_kg.knowledge_graph(), no_kg.knowledge_graph.node_features)
    no_aspects = _model(use_aspects=False)
    assert no_aspects.aspects is None
    assert not any(n.startswith("aspects.") for n, _ in no_aspects.named_parameters())
    without = {k: v for k, v in batch.items() if not k.startswith("aspect_")}
    assert no_aspects(**without).predictions.shape == (3,)
    with pytest.raises(ValueError, match="aspect_entity_ids"):
        _model()(**without)


def test_a_shared_text_encoder_is_one_module_and_survives_save_and_load(tmp_path):
    two, one = _model(), _model(shared_text_encoder=True)
    assert one.item_tower is None and one.text_towers() == [one.user_tower]
    text = [n for n, _ in two.named_parameters() if parameter_group(n) == "text"]
    shared = [n for n, _ in one.named_parameters() if parameter_group(n) == "text"]
    assert len(shared) * 2 == len(text)
    one.save_pretrained(tmp_path)
    loaded = paperzoo.KCFPLMForRatingPrediction.from_pretrained(tmp_path, dtype=torch.float64).eval()
    assert loaded.item_tower is None
    batch = _kcf_plm_inputs(one.config, 3, 1)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).predictions, one(**batch).predictions, rtol=0, atol=0)


def test_the_knowledge_graph_is_saved_with_the_model(tmp_path):
    model = _model()
    model.save_pretrained(tmp_path)
    loaded = paperzoo.KCFPLMForRatingPrediction.from_pretrained(tmp_path, dtype=torch.float64)
    assert loaded.config.num_edges == 30
    assert torch.equal(loaded.knowledge_graph.edges, model.knowledge_graph.edges)
    torch.testing.assert_close(loaded.knowledge_graph.edge_weights, model.knowledge_graph.edge_weights)


@pytest.mark.parametrize("field, edges, weights, match", [
    ("node", [[0, 14, 0]], [1.0], "outside"),
    ("relation", [[0, 1, 3]], [1.0], "outside"),
    ("weight", [[0, 1, 0]], [-1.0], "edge_weight"),
    ("shape", [[0, 1]], [1.0], r"edges must be \[E, 3\]"),
])
def test_a_bad_knowledge_graph_is_refused(field, edges, weights, match):
    model = _model()
    before = model.knowledge_graph.edges.clone()
    with pytest.raises(ValueError, match=match):
        model.set_knowledge_graph(torch.tensor(edges), torch.tensor(weights))
    assert torch.equal(model.knowledge_graph.edges, before)  # nothing half-set


@pytest.mark.parametrize("name, value, match", [
    ("user_ids", 6, "user_ids holds 6"), ("item_entity_ids", 14, "item_entity_ids holds 14"),
    ("aspect_entity_ids", -1, "aspect_entity_ids holds -1"),
])
def test_out_of_range_ids_raise_naming_the_input(name, value, match):
    model = _model()
    batch = _kcf_plm_inputs(model.config, 2, 0)
    batch[name] = torch.full_like(batch[name], value)
    with pytest.raises(ValueError, match=match):
        model(**batch)


def test_labels_of_the_wrong_shape_raise():
    model = _model()
    with pytest.raises(ValueError, match="labels must be"):
        model(**_kcf_plm_inputs(model.config, 2, 0), labels=torch.ones(2, 1))


# ----------------------------------------------------------------------------------------------------------------------
# Training: per-module learning rates and the freezing schedule, through Trainer


def _rows(n=8):
    config = KCF_PLM.tiny()
    rows = []
    for i in range(n):
        inputs = {k: v[0].tolist() for k, v in _kcf_plm_inputs(config, 1, 20 + i).items()}
        rows.append({**inputs, "labels": 1.0 + (i % 5)})
    return rows


def _train(tmp_path, model, epochs=1, optimizer=None, callbacks=()):
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments, default_data_collator

    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, num_train_epochs=epochs,
                             learning_rate=1e-3, report_to=[], save_strategy="no", use_cpu=True, seed=0,
                             lr_scheduler_type="constant", logging_strategy="no")
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(_rows()),
                      data_collator=default_data_collator, optimizers=(optimizer, None),
                      callbacks=list(callbacks))
    trainer.train()
    return trainer


def test_per_module_learning_rates_apply(tmp_path):
    """Adam's first step moves every weight by about its lr (|m̂ / √v̂| = 1): each group moves by its own."""
    model = _model(dtype=torch.float32).train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rates = {"text": 1e-5, "kg": 1e-2, "aspect": 1e-4, "rating": 1e-3}
    optimizer = kcf_plm_optimizer(model, lr=rates["rating"], text_lr=rates["text"], kg_lr=rates["kg"],
                                  aspect_lr=rates["aspect"], weight_decay=0.0)
    trainer = _train(tmp_path, model, optimizer=optimizer)
    assert trainer.state.global_step == 2
    for group, lr in rates.items():
        steps = torch.cat([(p.detach() - before[n]).abs().flatten() for n, p in model.named_parameters()
                           if parameter_group(n) == group])
        moved = steps[steps > 0]
        assert moved.numel() > 0, group
        assert lr * 0.2 < moved.median() <= lr * 2.0 + 1e-9, (group, moved.median().item(), lr)


def test_bad_learning_rates_raise():
    with pytest.raises(ValueError, match="text_lr=-1"):
        kcf_plm_optimizer(_model(), text_lr=-1)


@pytest.mark.parametrize("own_optimizer", [True, False])
def test_the_text_encoders_stay_frozen_then_train(tmp_path, own_optimizer):
    model = _model(dtype=torch.float32).train()
    text = [n for n, _ in model.named_parameters() if parameter_group(n) == "text"]
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    snapshots = []

    class Snapshot(TextEncoderFreezeCallback):
        def on_epoch_end(self, args, state, control, model=None, **kwargs):
            snapshots.append({n: p.detach().clone() for n, p in model.named_parameters()})

    optimizer = kcf_plm_optimizer(model, lr=1e-3) if own_optimizer else None
    _train(tmp_path, model, epochs=2, optimizer=optimizer, callbacks=[Snapshot(unfreeze_after_epochs=1)])
    first, second = snapshots
    assert all(torch.equal(first[n], start[n]) for n in text)  # frozen in epoch 0
    assert not torch.equal(first["fm.factors"], start["fm.factors"])  # while the rest trained
    assert sum(not torch.equal(second[n], first[n]) for n in text) > len(text) // 2  # trained in epoch 1
    assert all(p.requires_grad for p in model.parameters())


def test_the_freeze_callback_needs_a_way_to_unfreeze():
    with pytest.raises(ValueError, match="never unfreeze"):
        TextEncoderFreezeCallback()


def test_from_text_encoder_loads_the_pretrained_weights_into_both_towers():
    from transformers import AutoModel

    from paperzoo.data import sentence_encoder_folder

    folder = sentence_encoder_folder()
    model = paperzoo.KCFPLMForRatingPrediction.from_text_encoder(text_pooling="mean", num_entities=5)  # the default
    encoder = AutoModel.from_pretrained(folder)
    want = encoder.state_dict()
    for tower in (model.user_tower, model.item_tower):
        got = tower.encoder.state_dict()
        for name in ("embeddings.word_embeddings.weight", "encoder.layer.5.output.dense.weight"):
            assert torch.equal(got[name], want[name])
    assert model.user_tower is not model.item_tower


@pytest.mark.parametrize("injection", ["pooled", "none"])
def test_other_injections_train_every_parameter_and_read_the_partner_node_only_if_asked(injection):
    model = _model(kg_injection=injection).train()
    batch = _kcf_plm_inputs(model.config, 4, 8)
    model(**batch, labels=torch.full((4,), 3.0, dtype=torch.float64)).loss.backward()
    assert (model.kg_to_text is None) == (injection == "none")
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    model.eval()
    with torch.no_grad():  # the user tower's input: the user document, plus the item's node when injected
        tower = model.user_tower
        doc = tower(batch["user_input_ids"], batch["user_attention_mask"], None if injection == "none" else
                    model.kg_to_text(model.knowledge_graph()[batch["item_entity_ids"]]))
        plain = tower.head(tower.encode(batch["user_input_ids"], batch["user_attention_mask"]))
        assert torch.allclose(doc, plain) == (injection == "none")
