"""PEFT without hand-written target_modules (paperzoo/_registration.py registers each model type's defaults): RetNet
gets, tuner by tuner, what PEFT chooses for Llama, whose projections it names alike; RRL gets none.

The reference for "what PEFT chooses for Llama" is PEFT itself applied to a tiny transformers LlamaForCausalLM."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import peft.utils.constants
import pytest
import torch
from peft import IA3Config, LNTuningConfig, LoHaConfig, LoraConfig, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer
from transformers import LlamaConfig, LlamaForCausalLM

from paperzoo import RetNetConfig, RetNetForCausalLM, RRLConfig, RRLForTabularClassification

LAYERS = 2
# Llama's module names -> RetNet's, where they differ (the pre-norms are named after their sublayer)
LLAMA_TO_RETNET = {"input_layernorm": "retention_norm", "post_attention_layernorm": "ffn_norm"}


def retnet(seed: int = 0) -> RetNetForCausalLM:
    torch.manual_seed(seed)
    return RetNetForCausalLM(RetNetConfig(vocab_size=64, hidden_size=32, num_hidden_layers=LAYERS,
                                          num_attention_heads=2, intermediate_size=48, chunk_size=8,
                                          kernel_backend="reference")).eval()


def llama() -> LlamaForCausalLM:
    return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=LAYERS, num_attention_heads=2,
                                        num_key_value_heads=2, intermediate_size=48))


def adapted(peft_model) -> set[str]:
    """Names (in the base model) of the modules the tuner wrapped."""
    return {name.removeprefix("base_model.model.") for name, module in peft_model.named_modules()
            if isinstance(module, BaseTunerLayer)}


def suffixes(names: set[str]) -> set[str]:
    return {name.rpartition(".")[2] for name in names}


def test_lora_defaults_wrap_q_and_v_projections_like_llama():
    peft_model = get_peft_model(retnet(), LoraConfig(task_type="CAUSAL_LM"))
    expected = {f"model.layers.{i}.retention.{p}" for i in range(LAYERS) for p in ("q_proj", "v_proj")}
    assert adapted(peft_model) == expected
    assert suffixes(adapted(get_peft_model(llama(), LoraConfig(task_type="CAUSAL_LM")))) == suffixes(expected)


@pytest.mark.parametrize("config", [
    lambda: IA3Config(task_type="CAUSAL_LM"),  # reads its own target and feed-forward mappings
    lambda: LoHaConfig(task_type="CAUSAL_LM"),  # a copy of LoRA's mapping made when peft is imported
    lambda: LNTuningConfig(task_type="CAUSAL_LM"),  # norms: the one mapping where the names differ
], ids=["ia3", "loha", "ln_tuning"])
def test_other_tuners_get_llamas_choice(config):
    ours = suffixes(adapted(get_peft_model(retnet(), config())))
    theirs = suffixes(adapted(get_peft_model(llama(), config())))
    assert ours == {LLAMA_TO_RETNET.get(name, name) for name in theirs}


def test_every_default_peft_has_for_llama_names_retnet_modules():
    """Should PEFT change a Llama default to names RetNet lacks, this fails here rather than in users' hands."""
    names = [name for name, _ in retnet().named_modules() if name]
    mappings = {name: mapping for name, mapping in vars(peft.utils.constants).items()
                if name.startswith("TRANSFORMERS_MODELS_TO_") and name.endswith("_MODULES_MAPPING")}
    with_llama = {name: mapping for name, mapping in mappings.items() if "llama" in mapping}
    assert "TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING" in with_llama
    assert {name for name, mapping in mappings.items() if "paperzoo_retnet" in mapping} == set(with_llama)
    for name, mapping in with_llama.items():
        targets = mapping["paperzoo_retnet"]
        if isinstance(targets, str):  # a regex over full module names
            assert any(re.fullmatch(targets, n) for n in names), (name, targets)
        else:
            missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
            assert not missing, (name, missing)


def test_rrl_has_no_defaults():
    """Its logical layers are not nn.Linear and its one Linear is the small head that SEQ_CLS trains in full."""
    model = RRLForTabularClassification(RRLConfig(num_discrete_features=2, num_continuous_features=1, layer_widths=[4]))
    assert not any("paperzoo_rrl" in mapping for mapping in vars(peft.utils.constants).values()
                   if isinstance(mapping, dict))
    with pytest.raises(ValueError, match="specify `target_modules`"):
        get_peft_model(model, LoraConfig(task_type="SEQ_CLS"))


RELOAD = """
import json, sys, torch
import paperzoo
from peft import PeftModel
from transformers import AutoModelForCausalLM
base, adapter, ids = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter).eval()
with torch.no_grad():
    print(json.dumps(model(input_ids=torch.tensor(ids)).logits.double().tolist()))
"""


def test_lora_trains_only_the_adapter_and_reloads_in_a_fresh_process(tmp_path):
    model = retnet()
    model.save_pretrained(tmp_path / "base")
    frozen = {name: p.detach().clone() for name, p in model.named_parameters()}
    peft_model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM"))
    x = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    peft_model.train()
    losses = []
    for _ in range(3):
        optimizer.zero_grad()
        loss = peft_model(input_ids=x, labels=x).loss
        loss.backward()
        with_grad = {name for name, p in peft_model.named_parameters() if p.grad is not None}
        assert with_grad and all(".lora_A." in name or ".lora_B." in name for name in with_grad), with_grad
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    for name, p in peft_model.get_base_model().named_parameters():
        if "lora_" not in name:
            assert torch.equal(p, frozen[name.replace(".base_layer", "")]), name

    peft_model.eval()
    with torch.no_grad():
        logits = peft_model(input_ids=x).logits.double()
    peft_model.save_pretrained(tmp_path / "adapter")
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert set(saved["target_modules"]) == {"q_proj", "v_proj"}
    result = subprocess.run([sys.executable, "-c", RELOAD, str(tmp_path / "base"), str(tmp_path / "adapter"),
                             json.dumps(x.tolist())], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    reloaded = torch.tensor(json.loads(result.stdout.splitlines()[-1]), dtype=torch.float64)
    torch.testing.assert_close(reloaded, logits, rtol=0, atol=1e-5)
    # the adapter changed the model: the reload would pass trivially with the base weights otherwise
    with torch.no_grad():
        assert not torch.allclose(retnet()(input_ids=x).logits.double(), logits, atol=1e-4)
