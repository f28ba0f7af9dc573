"""Sequential recommenders: the leave-one-out processor on ml-100k, left padding and causality, the in-model losses
against paperzoo.losses, Trainer training with selection by validation NDCG@10, the `sequential-recommendation`
pipeline (the model contract covers the rest: tests/contract)."""

from __future__ import annotations

import pytest
import torch

import paperzoo
from paperzoo.data.interactions import load_interactions
from paperzoo.processors.seqrec import SequentialRecommendationProcessor

MODELS = {"sasrec": (paperzoo.SASRecConfig, paperzoo.SASRecForSequentialRecommendation),
          "gru4rec": (paperzoo.GRU4RecConfig, paperzoo.GRU4RecForSequentialRecommendation),
          "caser": (paperzoo.CaserConfig, paperzoo.CaserForSequentialRecommendation),
          "fmlprec": (paperzoo.FMLPRecConfig, paperzoo.FMLPRecForSequentialRecommendation)}


def tiny(name, **overrides):
    config_class, model_class = MODELS[name]
    torch.manual_seed(0)
    kwargs = dict(num_items=30, max_length=10, hidden_size=16, hidden_dropout_prob=0.0)
    kwargs.update(overrides)
    return model_class(config_class(**kwargs)).eval()


@pytest.fixture(scope="module")
def ml100k():
    frame = load_interactions("ml-100k")
    processor = SequentialRecommendationProcessor(max_length=50).fit(frame)
    return frame, processor, processor.split(frame)


def test_leave_one_out_on_ml100k(ml100k, tmp_path):
    frame, processor, (train, valid, test) = ml100k
    assert processor.num_items == 1682 and len(valid.targets) == len(test.targets) == 943
    targets = sum(sum(1 for x in row["labels"] if x > 0) for row in train)
    assert targets == 100_000 - 3 * 943  # every next item of every training sequence, once
    user = frame[frame.user == "196"].sort_values("timestamp", kind="stable")
    ids = processor.item_ids(user["item"])
    history = processor.histories(frame)["196"]
    assert history == ids
    row = list(processor.histories(frame)).index("196")
    assert test.targets[row] == ids[-1] and valid.targets[row] == ids[-2] and test.histories[row] == ids[:-1]
    processor.save_pretrained(tmp_path)
    loaded = SequentialRecommendationProcessor.from_pretrained(tmp_path)
    assert loaded.item_keys == processor.item_keys and loaded.max_length == 50
    assert loaded.item_keys_of(loaded.item_ids(["242", "50"])) == ["242", "50"]
    with pytest.raises(ValueError, match="'nope' is not in the vocabulary"):
        processor.item_ids(["nope"])
    prefixes = processor.prefix_rows([3, 4, 5, 6])
    assert [r["labels"][-1] for r in prefixes] == [4, 5, 6] and all(set(r["labels"][:-1]) == {-100}
                                                                       for r in prefixes)


def test_a_users_csv_with_named_columns(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("who,what,when\na,x,3\na,y,1\nb,x,2\n")
    frame = load_interactions(path, user="who", item="what", timestamp="when")
    assert list(frame.columns) == ["user", "item", "timestamp"] and len(frame) == 3
    processor = SequentialRecommendationProcessor(max_length=4).fit(frame)
    assert processor.histories(frame)["a"] == processor.item_ids(["y", "x"])  # ordered by time
    with pytest.raises(ValueError, match="no column 'user'"):
        load_interactions(path)
    path.write_text("user,item,timestamp\na,x,yesterday\n")
    with pytest.raises(ValueError, match="'timestamp' holds 'yesterday'"):
        load_interactions(path)


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "caser"])
def test_left_padding_and_causality(name):
    """The same history after 6 or 2 padding ids (windows of 10 and 6) gets the same scores; changing the item at
    position 7 leaves every earlier position's state bit-identical."""
    model = tiny(name)
    items = torch.tensor([3, 7, 1, 9])
    with torch.no_grad():
        wide = model(torch.cat([torch.zeros(6, dtype=torch.long), items])[None]).logits
        narrow = model(torch.cat([torch.zeros(2, dtype=torch.long), items])[None]).logits
        window = torch.tensor([[0, 0, 5, 8, 3, 7, 1, 9, 4, 12]])
        moved = window.clone()
        moved[0, 7] = 20
        a, b = model(window).last_hidden_state, model(moved).last_hidden_state
    torch.testing.assert_close(wide, narrow, rtol=1e-5, atol=1e-6)
    assert torch.equal(a[0, :7], b[0, :7]) and not torch.allclose(a[0, 7:], b[0, 7:])


@pytest.mark.parametrize("loss", ["ce", "sce", "nce", "bce", "bpr"])
def test_the_model_loss_is_the_losses_module_on_its_scores(loss):
    from paperzoo.losses import recommendation as losses

    model = tiny("sasrec", loss_type=loss)
    ids = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8, 9, 2], [1, 2, 3, 4, 5, 6, 7, 9, 11, 12]])
    labels = torch.tensor([[-100, -100, 4, 5, 6, 7, 8, 9, 2, 10], [2, 3, 4, 5, 6, 7, 9, 11, 12, 13]])
    torch.manual_seed(5)
    with torch.no_grad():
        out = model(ids, labels=labels)
    valid = labels > 0
    h, targets = out.last_hidden_state[valid], labels[valid]
    table = model.item_embeddings.weight
    if loss == "ce":
        want = torch.nn.functional.cross_entropy(h @ table[1:].T, targets - 1)
    else:
        torch.manual_seed(5)
        seen = None
        if model.config.negative_pool == "unseen":
            rows = torch.arange(2)[:, None].expand_as(labels)[valid]
            mask = torch.zeros(2, 31, dtype=torch.bool)
            for r in range(2):
                mask[r, ids[r]] = True
                mask[r, labels[r].clamp(min=0)] = True
            seen = mask[rows]
        neg = losses.sample_negatives((len(targets), model.config.num_negatives), 30, pool=model.config.negative_pool,
                                      seen=seen)
        pos_s = (h * table[targets]).sum(-1, keepdim=True)
        neg_s = torch.einsum("md,mkd->mk", h, table[neg])
        fn = {"sce": lambda p, n: losses.scaled_cross_entropy(p, n, 100.0),
              "nce": lambda p, n: losses.noise_contrastive_estimation(p, n, 30, 10.0),
              "bce": losses.binary_cross_entropy, "bpr": losses.bpr}[loss]
        want = fn(pos_s, neg_s)
    torch.testing.assert_close(out.loss, want, rtol=1e-5, atol=1e-6)


def test_fmlprec_refuses_labels_before_the_last_position():
    model = tiny("fmlprec")
    ids = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8, 9, 2]])
    with pytest.raises(ValueError, match="last position"):
        model(ids, labels=ids)
    labels = torch.full_like(ids, -100)
    labels[0, -1] = 11
    assert model(ids, labels=labels).loss.isfinite()


def test_trainer_learns_ml100k_and_keeps_the_best_validation_checkpoint(ml100k, tmp_path):
    from datasets import Dataset
    from transformers import Trainer

    from paperzoo.modeling.seqrec_training import RankingMetrics, evaluation_rows, ranking_training_arguments

    _, processor, (train, valid, test) = ml100k
    model = paperzoo.SASRecForSequentialRecommendation(paperzoo.SASRecConfig(
        num_items=processor.num_items, max_length=50, hidden_size=32, hidden_dropout_prob=0.2))
    args = ranking_training_arguments(str(tmp_path), epochs=4, steps_per_epoch=5, eval_every_epochs=2,
                                      per_device_train_batch_size=512, learning_rate=2e-3, use_cpu=True, seed=0,
                                      disable_tqdm=True, max_steps=20)
    trainer = Trainer(model, args=args, train_dataset=Dataset.from_list(train),
                      eval_dataset=Dataset.from_list(evaluation_rows(processor, valid)),
                      compute_metrics=RankingMetrics(valid))
    trainer.train()
    history = [e["eval_ndcg@10"] for e in trainer.state.log_history if "eval_ndcg@10" in e]
    assert len(history) == 2 and trainer.state.best_metric == max(history)
    metrics = RankingMetrics(test)(trainer.predict(Dataset.from_list(evaluation_rows(processor, test))))
    assert metrics["ndcg@10"] > 3 * (1 / 1682) * 10 / 2  # far above a random ranking (≈ 0.003)


def test_the_pipeline_recommends_unseen_items_for_histories_of_any_length(tmp_path):
    from transformers import pipeline

    model = tiny("sasrec")
    processor = SequentialRecommendationProcessor(item_keys=[f"m{i}" for i in range(1, 31)], max_length=10)
    pipe = pipeline("sequential-recommendation", model=model, feature_extractor=processor)
    histories = [["m3", "m7", "m1"], ["m5"], [f"m{i}" for i in range(1, 15)]]
    together = pipe(histories, top_k=5)
    for history, result in zip(histories, together):
        alone = pipe(history, top_k=5)
        assert [r["item"] for r in result] == [r["item"] for r in alone]
        assert len(result) == 5 and not {r["item"] for r in result} & set(history)
        scores = [r["score"] for r in result]
        assert scores == sorted(scores, reverse=True)
    with_seen = pipe(["m3"], top_k=30, exclude_seen=False)
    assert "m3" in {r["item"] for r in with_seen}
    with pytest.raises(ValueError, match="top_k=0"):
        pipe(["m3"], top_k=0)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        pipe(["zzz"])


def test_fused_cross_entropy_equals_the_plain_logits():
    """loss_type="ce" through the fused linear cross-entropy equals the materialised logits, loss and gradients."""
    ids = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8, 9, 2], [1, 2, 3, 4, 5, 6, 7, 9, 11, 12]])
    labels = torch.tensor([[-100, -100, 4, 5, 6, 7, 8, 9, 2, 10], [2, 3, 4, 5, 6, 7, 9, 11, 12, 13]])
    grads = []
    for fused in (True, False):
        model = tiny("sasrec", fused_cross_entropy=fused).double()
        loss = model(ids, labels=labels, num_items_in_batch=torch.tensor(25)).loss
        loss.backward()
        grads.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-12, atol=1e-12)
    for name, grad in grads[1][1].items():
        torch.testing.assert_close(grads[0][1][name], grad, rtol=1e-10, atol=1e-12, msg=name)
