"""E4SRec (paperzoo.modeling.e4srec) around a tiny random Llama: the CE loss against an independent float64
computation, building from a pretrained LLM and a SASRec item table, the LoRA recipe through PEFT, and Trainer learning
a next-item pattern on truncated windows. The shared model contract (tests/contract) covers Auto classes, save/load,
remote code, gradient accumulation, checkpointing and PEFT defaults."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel, pipeline

from paperzoo import (E4SRecConfig, E4SRecForSequentialRecommendation, SASRecConfig,
                      SASRecForSequentialRecommendation)
from paperzoo.modeling.e4srec_training import TRAINED_IN_FULL, last_window_rows, lora_config
from paperzoo.processors.seqrec import EvaluationRows, SequentialRecommendationProcessor

from ..tiny_llm import tiny_causal_lm


def tiny(num_items: int = 12, seed: int = 0, **overrides) -> E4SRecForSequentialRecommendation:
    llm, _ = tiny_causal_lm(seed)
    torch.manual_seed(seed)
    return E4SRecForSequentialRecommendation.from_llm(llm, num_items=num_items, hidden_size=16,
                                                      hidden_dropout_prob=0.0, max_length=8, **overrides)


def test_ce_loss_equals_an_independent_float64_computation():
    model = tiny().double().eval()
    ids = torch.tensor([[0, 0, 3, 5, 7, 2, 9, 4], [1, 2, 3, 4, 5, 6, 7, 8]])
    labels = torch.tensor([[-100, -100, 5, 7, 2, 9, 4, 11], [2, 3, 4, 5, 6, 7, 8, -100]])
    with torch.no_grad():
        loss = model(ids, labels=labels).loss
        # the model written out: project the items, run the LLM from each row's first item, project back, softmax
        E = model.item_embeddings.weight  # [N + 1, d]
        losses = []
        for row, row_labels in zip(ids, labels):
            items = row[row > 0]
            x = model.input_proj(E[items])[None]  # [1, t, D]
            g = model.llm(inputs_embeds=x, position_ids=torch.arange(len(items))[None]).last_hidden_state[0]
            h = model.output_proj(g)  # [t, d]
            for t, target in enumerate(row_labels[row > 0].tolist()):
                if target > 0:
                    s = h[t] @ E[1:].T  # every item but the padding
                    losses.append(torch.logsumexp(s, 0) - s[target - 1])
    assert len(losses) == 13
    torch.testing.assert_close(loss, torch.stack(losses).mean(), rtol=0, atol=1e-10)


def test_from_llm_keeps_the_llm_weights_and_the_item_table(tmp_path):
    llm, _ = tiny_causal_lm(3)
    sasrec = SASRecForSequentialRecommendation(SASRecConfig(num_items=12, hidden_size=16, max_length=8))
    model = E4SRecForSequentialRecommendation.from_llm(llm, item_embeddings=sasrec.item_embeddings, max_length=8)
    assert model.config.num_items == 12 and model.config.hidden_size == 16
    assert model.config.base_config.hidden_size == llm.config.hidden_size
    assert torch.equal(model.item_embeddings.weight, sasrec.item_embeddings.weight)
    want = {k: v for k, v in llm.model.state_dict().items() if not k.startswith("embed_tokens")}
    got = model.llm.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert model.llm.embed_tokens is None  # the token table is not kept
    model.save_pretrained(tmp_path)
    SequentialRecommendationProcessor([f"i{i}" for i in range(1, 13)], max_length=8).save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    ids = torch.tensor([[0, 3, 4, 5], [6, 7, 8, 9]])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model.eval()(ids).logits)
        _, top = model.recommend(torch.tensor([[3, 4, 5]]), k=3)
    # the sequential-recommendation pipeline serves it as any sequential recommender
    assert [r["item_id"] for r in pipeline("sequential-recommendation", model=str(tmp_path))(
        ["i3", "i4", "i5"], top_k=3)] == top[0].tolist()
    with pytest.raises(ValueError, match=r"item_embeddings must be \[num_items \+ 1, d\]"):
        E4SRecForSequentialRecommendation.from_llm(llm, num_items=5, item_embeddings=torch.zeros(4, 16))
    with pytest.raises(ValueError, match="num_items is needed"):
        E4SRecForSequentialRecommendation.from_llm(llm)
    with pytest.raises(ValueError, match="llm=dict is not a transformers model"):
        E4SRecForSequentialRecommendation.from_llm({}, num_items=3)
    with pytest.raises(ValueError, match="max_length=65 is beyond"):
        E4SRecConfig(base_config=llm.config.to_dict() | {"max_position_embeddings": 64}, max_length=65)


def test_the_lora_recipe_trains_adapters_and_the_item_side_only_and_reloads(tmp_path):
    from peft import PeftModel, get_peft_model

    model = get_peft_model(tiny(), lora_config(init_lora_weights=False))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "modules_to_save" in n for n in trainable)
    for name in TRAINED_IN_FULL:  # the item table and both projections train in full
        assert any(f"{name}.modules_to_save" in n for n in trainable), name
    assert any("self_attn.q_proj.lora_A" in n for n in trainable) and any("v_proj.lora_B" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = torch.tensor([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1).step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == trainable
    model.eval()
    model.save_pretrained(tmp_path)
    reloaded = PeftModel.from_pretrained(tiny(), tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids=ids).logits, model(input_ids=ids).logits)
        assert not torch.allclose(tiny().eval()(ids).logits, model(input_ids=ids).logits)


def test_last_window_rows_keep_the_most_recent_items_with_every_position_a_target():
    processor = SequentialRecommendationProcessor([str(i) for i in range(1, 13)], max_length=4)
    rows = last_window_rows(processor, [[1, 2, 3, 4, 5, 6, 7], [8, 9], [10]])
    assert rows == [{"input_ids": [3, 4, 5, 6], "labels": [4, 5, 6, 7]},
                    {"input_ids": [0, 0, 0, 8], "labels": [-100, -100, -100, 9]}]


def test_trainer_with_the_lora_recipe_learns_a_next_item_pattern(tmp_path):
    """Users walk the items in a cycle (item i is followed by i + 1): after training on their last windows, the
    held-out next item is ranked first for most users."""
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import Trainer

    from paperzoo.modeling.seqrec_training import RankingMetrics, evaluation_rows, ranking_training_arguments

    N = 12
    walks = [[(start + t) % N + 1 for t in range(length)] for start in range(N) for length in (5, 7)]
    processor = SequentialRecommendationProcessor([str(i) for i in range(1, N + 1)], max_length=8)
    train = last_window_rows(processor, [w[:-1] for w in walks])
    held_out = EvaluationRows([w[:-1] for w in walks], [w[-1] for w in walks])
    model = get_peft_model(tiny(N), lora_config())
    args = ranking_training_arguments(str(tmp_path), epochs=40, steps_per_epoch=3, eval_every_epochs=40,
                                      per_device_train_batch_size=8, per_device_eval_batch_size=32, learning_rate=1e-2,
                                      use_cpu=True, seed=0, data_seed=0, logging_steps=3, disable_tqdm=True)
    trainer = Trainer(model, args=args, train_dataset=Dataset.from_list(train),
                      eval_dataset=Dataset.from_list(evaluation_rows(processor, held_out)),
                      compute_metrics=RankingMetrics(held_out))
    losses_before = trainer.evaluate()["eval_loss"]
    trainer.train()
    metrics = trainer.evaluate()
    assert metrics["eval_loss"] < losses_before / 3
    assert metrics["eval_hr@1"] > 0.9
