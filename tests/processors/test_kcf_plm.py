"""KCFPLMProcessor on the real ml-100k data (recbole's files, all-MiniLM-L6-v2's tokenizer): documents truncated as
stated, aspects personalised by the user's training items, cold-start users and items, bad input, save and load, and
the rating-prediction pipeline and a remote-code bundle with a small model."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

import paperzoo
from paperzoo.processors.kcf_plm import KCFPLMProcessor

from ..hub.fakehub import run_python


@pytest.fixture(scope="module")
def data():
    from paperzoo.data.kg_ratings import build_kg_rating_data

    return build_kg_rating_data("ml-100k", seed=0)


@pytest.fixture(scope="module")
def processor(data):
    from transformers import AutoTokenizer

    from paperzoo.data import sentence_encoder_folder

    return KCFPLMProcessor.from_data(data, AutoTokenizer.from_pretrained(sentence_encoder_folder()),
                                     max_document_length=48, aspect_max_len=6)


def _small_model(processor, **overrides):
    from transformers import BertConfig

    text = BertConfig(vocab_size=processor.tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                      num_attention_heads=2, intermediate_size=37, max_position_embeddings=64)
    torch.manual_seed(0)
    model = paperzoo.KCFPLMForRatingPrediction(paperzoo.KCFPLMConfig(
        text_config=text, kg_hidden_size=16, kg_num_blocks=4, aspect_num_layers=1, aspect_num_heads=2,
        aspect_intermediate_size=16, **processor.config_kwargs(), **overrides))
    model.set_knowledge_graph(*processor.graph_tensors())
    with torch.no_grad():  # heads 20x the official U(-0.02, 0.02), so that a document moves the prediction clearly
        for tower in model.text_towers():
            for layer in (tower.head[0], tower.head[3]):
                layer.weight.mul_(20)
    return model.eval()


def test_documents_are_truncated_keeping_the_most_recent_training_ratings(processor, data):
    train = data.split("train")
    user = train.user.value_counts().index[0]  # the most active user: a document far longer than 48 tokens
    batch = processor([user], ["1"])
    ids = batch["user_input_ids"][0]
    assert ids.shape[0] == 48 and batch["user_attention_mask"].sum() == 48
    assert ids[0] == processor.tokenizer.cls_token_id and ids[-1] == processor.tokenizer.sep_token_id
    latest = train[train.user == user].sort_values("timestamp", kind="stable").iloc[-1]
    title = data.item_documents[latest["item"]].split(" (")[0]
    text = processor.tokenizer.decode(ids, skip_special_tokens=True)
    assert text.lower().startswith(title.lower()[:10])


def test_aspects_are_the_items_kg_neighbours_ranked_and_weighted_by_the_users_history(processor, data):
    train = data.split("train")
    user, item = train.iloc[123][["user", "item"]]
    batch = processor([user], [item])
    n = int(batch["aspect_mask"].sum())
    assert 0 < n <= 6
    history = train[train.user == user]["item"].tolist()
    counts = Counter(e for i in history for e, _ in data.item_aspects[i])
    aspects = data.item_aspects[item]
    expected = sorted(range(len(aspects)), key=lambda j: -counts[aspects[j][0]])[:6]
    for col, j in enumerate(expected):
        entity, kind = aspects[j]
        assert batch["aspect_entity_ids"][0, col] == processor.entities.index(entity)
        assert batch["aspect_type_ids"][0, col] == kind
        torch.testing.assert_close(batch["aspect_weights"][0, col], torch.tensor(1 + counts[entity] / len(history)))


def test_ids_and_kg_nodes_of_known_and_unknown_users_and_items(processor):
    batch = processor(["196", "no-such-user"], ["242", "no-such-item"])
    assert batch["user_ids"].tolist() == [processor.users.index("196") + 1, 0]
    assert batch["item_ids"].tolist() == [processor.items.index("242") + 1, 0]
    assert batch["user_entity_ids"].tolist() == [processor.entities.index("user:196"), 0]
    assert batch["item_entity_ids"].tolist() == [processor.entities.index("item:242"), 0]
    assert batch["aspect_mask"][1].sum() == 0  # an unknown item has no aspects
    assert batch["user_attention_mask"][1].sum() == 2  # [CLS] [SEP]: no document
    given = processor(["no-such-user"], ["242"], user_texts={"no-such-user": "Heat (1995): 5/5."})
    assert given["user_attention_mask"].sum() > 2


@pytest.mark.parametrize("call, match", [
    (lambda p: p(["196"], ["242"], ratings=[6.0]), r"ratings\[0\]=6.0 is outside rating_range"),
    (lambda p: p(["196"], ["242"], ratings=[float("nan")]), r"ratings\[0\]=nan"),
    (lambda p: p(["x"], ["242"], user_texts={"x": "  "}), r"user_texts\['x'\] is empty"),
    (lambda p: p(["196", "1"], ["242"]), "equal length"),
    (lambda p: p(["196"], ["242"], ratings=[1.0, 2.0]), "one value per pair"),
    (lambda p: p(["196"], ["242"], padding=True), "does not use"),
])
def test_bad_input_is_refused_naming_it(processor, call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(processor)


def test_a_processor_without_graph_says_so():
    from ..contract.architectures import tiny_wordpiece_tokenizer

    with pytest.raises(ValueError, match="not built by from_data"):
        KCFPLMProcessor(tiny_wordpiece_tokenizer()).graph_tensors()


def test_graph_tensors_shift_the_data_sets_nodes_past_the_unknown_node(processor, data):
    edges, weights = processor.graph_tensors()
    assert torch.equal(edges[:, :2], torch.as_tensor(data.edges[:, :2]) + 1)
    assert torch.equal(edges[:, 2], torch.as_tensor(data.edges[:, 2]))
    assert processor.entities[1:] == data.entities and weights.shape == (len(edges),)


def test_save_and_load_give_the_same_batches(processor, tmp_path):
    from transformers import AutoProcessor

    processor.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert type(loaded) is KCFPLMProcessor
    args = (["196", "186", "zzz"], ["242", "302", "1"], [3.0, 3.0, 1.0])
    want, got = processor(*args), loaded(*args)
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key


def test_the_pipeline_predicts_in_batches_and_serves_cold_start(processor):
    from transformers import pipeline

    model = _small_model(processor)
    rate = pipeline("rating-prediction", model=model, processor=processor)
    pairs = [("196", "242"), ("186", "302"), ("22", "377"), ("new user", "242"), ("196", "new item")]
    together = rate(pairs, batch_size=2)
    one = rate(("186", "302"))
    assert [(r["user"], r["item"]) for r in together] == pairs
    assert one["rating"] == pytest.approx(together[1]["rating"], abs=1e-5)
    with torch.no_grad():
        direct = model(**processor(*zip(*pairs))).predictions
    assert [r["rating"] for r in together] == pytest.approx(direct.tolist(), abs=1e-5)
    with_text = rate({"user": "new user", "item": "242"}, user_texts={"new user": "Heat (1995): 5/5."})["rating"]
    assert abs(with_text - together[3]["rating"]) > 1e-5  # the given document is read (float32 noise: ~1e-9)
    with pytest.raises(ValueError, match="a pair is"):
        rate([("196",)])


def test_document_encodings_stand_in_for_the_tokens_with_pooled_injection(processor):
    from paperzoo.modeling.kcf_plm_training import CachedDocumentCollator, set_text_encoders_trainable

    model = _small_model(processor, kg_injection="pooled")
    rows = [{"user": "196", "item": "242", "rating": 3.0}, {"user": "zzz", "item": "302", "rating": 4.0}]
    with torch.no_grad():
        want = model(**processor.collate(rows))
        set_text_encoders_trainable(model, False)
        got = model(**CachedDocumentCollator(model, processor)(rows))
    torch.testing.assert_close(got.predictions, want.predictions)
    torch.testing.assert_close(got.loss, want.loss)
    set_text_encoders_trainable(model, True)
    with pytest.raises(ValueError, match="stale"):
        CachedDocumentCollator(model, processor)(rows)
    with pytest.raises(ValueError, match="cls_input"):
        CachedDocumentCollator(_small_model(processor), processor)


def test_the_bundle_with_its_processor_loads_without_paperzoo(processor, tmp_path):
    model = _small_model(processor)
    paperzoo.hub.export(model, tmp_path / "bundle", processor=processor)
    users, items = ["196", "186", "stranger"], ["242", "302", "1"]
    with torch.no_grad():
        want = model(**processor(users, items)).predictions.tolist()
    child = r'''
import json, sys
import torch
from transformers import AutoModel, AutoProcessor
folder, users, items = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
with torch.no_grad():
    out = model(**processor(users, items)).predictions.tolist()
print(json.dumps({"out": out, "paperzoo": sorted(m for m in sys.modules if m.split(".")[0] == "paperzoo"),
                  "processor": type(processor).__name__}))
'''
    proc = run_python(child, str(tmp_path / "bundle"), json.dumps(users), json.dumps(items), cwd=tmp_path,
                      isolated=True, env={"HF_HOME": str(tmp_path / "hf"), "HF_MODULES_CACHE": str(tmp_path / "m"),
                                          "HF_HUB_OFFLINE": "1"})
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["paperzoo"] == [] and got["processor"] == "KCFPLMProcessor"
    assert got["out"] == pytest.approx(want, abs=1e-6)
