"""FocusLLM training and saving on tiny random bases (float64 where values are compared): the collator's continuation
and reconstruction samples give the loss of the sequential reference, a Trainer run changes the candidates only and
saves them alone, and a candidates-only folder loads (in process, through the Auto class, and in a fresh process
without paperzoo) onto its base."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import paperzoo
from paperzoo.modeling.focusllm import CANDIDATES_ONLY
from paperzoo.modeling.focusllm_training import FocusLLMCollator

from ..hub.fakehub import run_python
from .test_focusllm import base_model, focus_model, reference_next_logits, tokens


def test_collated_samples_train_on_the_token_after_a_local_window_of_their_own_size():
    collator = FocusLLMCollator(local_window=(4, 9), chunk_sizes=(3, 5), seed=0, num_targets=2)
    texts = [tokens(n, seed=n).tolist() for n in (21, 30)]
    batch = collator([{"input_ids": t} for t in texts])
    assert batch["input_ids"].shape[0] == 4 and batch["local_window"].tolist() and batch["chunk_size"].tolist()
    model = focus_model()
    with torch.no_grad():
        out = model(**batch)  # logits at the labelled positions only: the 2 before each sample's end
    assert out.logits.shape[1] == 2
    losses = []
    for b in range(4):
        ids = batch["input_ids"][b][batch["attention_mask"][b].bool()]
        window, chunk = int(batch["local_window"][b]), int(batch["chunk_size"][b])
        if b % 2 == 0:  # continuation: the text itself
            assert ids.tolist() == texts[b // 2]
        else:  # reconstruction: the text, then a copy of one of its spans (the window and the targets)
            text = texts[b // 2]
            assert ids[: len(text)].tolist() == text
            copy = ids[len(text):].tolist()
            assert len(copy) == window + 2 and any(text[i : i + len(copy)] == copy for i in range(len(text)))
        for end in (len(ids) - 2, len(ids) - 1):
            logits = reference_next_logits(model, ids[:end], chunk, window, min(3, window))
            losses.append(torch.nn.functional.cross_entropy(logits[None], ids[end : end + 1]))
    torch.testing.assert_close(out.loss.double(), torch.stack(losses).mean(), rtol=1e-6, atol=1e-6)  # fp32 loss, as HF
    with pytest.raises(ValueError, match="tasks"):
        FocusLLMCollator(tasks=("copy",))
    with pytest.raises(ValueError, match="too short"):
        FocusLLMCollator(local_window=(30, 40))([{"input_ids": list(range(20))}])


def test_trainer_updates_the_candidates_only_and_checkpoints_them_alone(tmp_path):
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    base_dir = tmp_path / "base"
    base_model().float().save_pretrained(base_dir)
    from transformers import AutoModelForCausalLM

    model = paperzoo.FocusLLMForCausalLM.from_base(AutoModelForCausalLM.from_pretrained(base_dir), chunk_size=5,
                                                   local_window=8, dynamic_prompt_len=3)
    assert model.config.base_model_name_or_path == str(base_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.activation_checkpointing_enable()
    texts = Dataset.from_list([{"input_ids": tokens(n, seed=n).tolist()} for n in (24, 31, 27, 40)])
    args = TrainingArguments(output_dir=str(tmp_path / "run"), per_device_train_batch_size=2, max_steps=3,
                             learning_rate=1e-2, save_strategy="steps", save_steps=3, report_to=[], use_cpu=True,
                             remove_unused_columns=False, seed=0)
    collator = FocusLLMCollator(local_window=(4, 9), chunk_sizes=(3, 5), seed=0)
    Trainer(model=model, args=args, train_dataset=texts, data_collator=collator).train()
    for name, p in model.named_parameters():
        changed = not torch.equal(p, before[name])
        assert changed == (".candidate." in name), name
    checkpoint = tmp_path / "run" / "checkpoint-3"
    assert saved_names(checkpoint / "model.safetensors") == {n for n in before if ".candidate." in n}
    # Trainer resumes from it (loading it into the wrapped model): a fresh wrapper gets the trained candidates
    fresh = paperzoo.FocusLLMForCausalLM.from_base(AutoModelForCausalLM.from_pretrained(base_dir), chunk_size=5,
                                                   local_window=8, dynamic_prompt_len=3)
    Trainer(model=fresh, args=args, train_dataset=texts, data_collator=collator).train(resume_from_checkpoint=str(
        checkpoint))
    for name, p in fresh.named_parameters():
        assert torch.equal(p, model.get_parameter(name)), name


def saved_names(path) -> set[str]:
    """The tensor names of a candidates-only weights file (CANDIDATES_ONLY in its metadata)."""
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        assert f.metadata() == CANDIDATES_ONLY
        return set(f.keys())


def test_a_candidates_only_folder_loads_onto_its_base_here_and_in_a_fresh_process(tmp_path):
    from transformers import AutoModelForCausalLM

    base_dir, saved = tmp_path / "base", tmp_path / "focus"
    base_model().save_pretrained(base_dir)
    model = paperzoo.FocusLLMForCausalLM.from_base(AutoModelForCausalLM.from_pretrained(base_dir,
                                                   dtype=torch.float64), chunk_size=5, local_window=8)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".candidate." in name:
                p.add_(0.1)
    model.save_pretrained(saved)
    assert saved_names(saved / "model.safetensors") == set(model.candidate_state_dict())
    ids = tokens(30, seed=9)[None]
    with torch.no_grad():
        want = model(ids, logits_to_keep=3).logits
        loaded = AutoModelForCausalLM.from_pretrained(saved, dtype=torch.float64)
        assert type(loaded) is paperzoo.FocusLLMForCausalLM
        torch.testing.assert_close(loaded(ids, logits_to_keep=3).logits, want, rtol=0, atol=0)
        onto = paperzoo.FocusLLMForCausalLM.from_pretrained(saved, base=AutoModelForCausalLM.from_pretrained(
            base_dir, dtype=torch.float64))
        torch.testing.assert_close(onto(ids, logits_to_keep=3).logits, want, rtol=0, atol=0)
    whole = tmp_path / "whole"
    model.save_pretrained(whole, include_base=True)
    assert {n for n in model.state_dict() if ".candidate." not in n} <= set(load_file(whole / "model.safetensors"))

    child = r'''
import json, sys
import torch
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True, dtype=torch.float64).eval()
with torch.no_grad():
    logits = model(torch.tensor(json.loads(sys.argv[2])), logits_to_keep=3).logits
print(json.dumps({"class": type(model).__name__, "logits": logits.tolist(),
                  "paperzoo": sorted(m for m in sys.modules if m.split(".")[0] == "paperzoo")}))
'''
    proc = run_python(child, str(saved), json.dumps(ids.tolist()), cwd=tmp_path, isolated=True,
                      env={"HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")})
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["class"] == "FocusLLMForCausalLM" and got["paperzoo"] == []
    torch.testing.assert_close(torch.tensor(got["logits"], dtype=torch.float64), want, rtol=0, atol=0)
