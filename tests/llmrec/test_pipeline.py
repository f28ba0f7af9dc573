"""pipeline("llm-recommendation"): a tiny SASRec folder retrieves, a tiny random Llama reranks; the result is the
recommender's top-k unseen items in the order of the reranker's scores, batched as alone; bad input is a ValueError."""

from __future__ import annotations

import pytest
import torch
from transformers import pipeline

from paperzoo.llmrec import LLMReranker

from .conftest import TITLES


@pytest.fixture(scope="module")
def pipe(sasrec, llm, tmp_path_factory):
    model, processor = sasrec
    folder = tmp_path_factory.mktemp("sasrec")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return pipeline("llm-recommendation", model=str(folder), llm=llm, titles=TITLES, num_candidates=8,
                    max_history=4)


HISTORIES = [["m3", "m7", "m1", "m20"], ["m5"], ["m30", "m2", "m9", "m11", "m4", "m6", "m8"]]


def test_results_are_the_retrieved_candidates_in_the_rerankers_order(pipe, sasrec, llm):
    model, processor = sasrec
    for history in HISTORIES:
        result = pipe(history)
        ids = processor.item_ids(history)
        _, top = model.recommend(torch.tensor([processor(ids, return_tensors=None)["input_ids"][0]]), k=8)
        retrieved = processor.item_keys_of(top[0].tolist())  # the recommender's best unseen items, in order
        assert sorted(r["retrieval_rank"] for r in result) == list(range(1, 9))
        assert [retrieved[r["retrieval_rank"] - 1] for r in result] == [r["item"] for r in result]
        assert not {r["item"] for r in result} & set(history)
        assert all(r["title"] == TITLES[r["item"]] for r in result)
        # the scores are the reranker's for these candidates, best first
        reranker = LLMReranker(llm, max_history=4, num_candidates=8)
        want = reranker.score([[TITLES[k] for k in history]], [[TITLES[k] for k in retrieved]])[0]
        assert [r["score"] for r in result] == pytest.approx(sorted(want, reverse=True), abs=1e-12)
        assert [r["score"] for r in result] == pytest.approx([want[r["retrieval_rank"] - 1] for r in result],
                                                             abs=1e-12)
    assert pipe.reranker.prompt_format == "plain"  # the tiny tokenizer has no chat template


def test_a_batch_equals_each_history_alone_and_top_k_truncates(pipe):
    batch = pipe(HISTORIES)
    assert len(batch) == len(HISTORIES)
    for history, got in zip(HISTORIES, batch):
        alone = pipe(history)
        assert [r["item"] for r in got] == [r["item"] for r in alone]
        assert [r["score"] for r in got] == pytest.approx([r["score"] for r in alone], abs=1e-9)
    assert pipe(HISTORIES[0], top_k=3) == pipe(HISTORIES[0])[:3]


def test_bad_input_is_a_value_error_naming_it(pipe, sasrec, llm, tmp_path):
    with pytest.raises(ValueError, match="item 'nope' is not in the vocabulary"):
        pipe(["m1", "nope"])
    with pytest.raises(ValueError, match="non-empty history"):
        pipe([])
    with pytest.raises(ValueError, match="history 1 is empty"):
        pipe([["m1"], []])
    with pytest.raises(ValueError, match="top_k=0"):
        pipe(["m1"], top_k=0)
    model, processor = sasrec
    folder = tmp_path / "sasrec"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    missing = {k: v for k, v in TITLES.items() if k != "m17"}
    with pytest.raises(ValueError, match="1 of the 30 items have no title, e.g. item 'm17'"):
        pipeline("llm-recommendation", model=str(folder), llm=llm, titles=missing)
    with pytest.raises(ValueError, match="needs titles="):
        pipeline("llm-recommendation", model=str(folder), llm=llm)
    csv = tmp_path / "titles.csv"
    csv.write_text("item,title\n" + "".join(f"{k},{v}\n" for k, v in TITLES.items()))
    from_file = pipeline("llm-recommendation", model=str(folder), llm=llm, titles=str(csv), num_candidates=8,
                         max_history=4)
    assert [r["item"] for r in from_file(HISTORIES[0])] == [r["item"] for r in pipe(HISTORIES[0])]
