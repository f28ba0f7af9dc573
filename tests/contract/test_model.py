"""The model contract: what a transformers user relies on, checked on every class of every paperzoo architecture
(tests/contract/architectures.py) the way transformers' `ModelTesterMixin` checks its own models: configs, Auto
classes, save/load, return types, tracing (torch.export, full-graph torch.compile), training, embeddings, PEFT.

The reference for each check is an independent computation of the same function: the same model before a save, in
eager mode, row by row, without checkpointing, from token ids instead of embeddings.
"""

from __future__ import annotations

import copy
import inspect
import json

import pytest
import torch
import transformers
from transformers import AutoConfig

from .architectures import ARCHITECTURES, CAPABILITIES, architectures, cases


def outputs_of(model, inputs: dict, **kwargs):
    """The model's main output tensor for `inputs` (no cache: the cache is checked by the generation contract)."""
    if "use_cache" in inspect.signature(model.forward).parameters:
        kwargs.setdefault("use_cache", False)
    out = model(**inputs, **kwargs)
    return main_output(out)


def main_output(out) -> torch.Tensor:
    """logits, else the last hidden state, else a reconstruction (`sample`, as diffusers' VAEs name it), else
    predictions (a regressor's)."""
    for name in ("logits", "last_hidden_state", "sample", "predictions"):
        if name in out:
            return out[name]
    raise KeyError(f"{type(out).__name__} has none of logits / last_hidden_state / sample / predictions")


def training_loss(arch, mc, model, inputs: dict, seed: int = 0) -> torch.Tensor:
    """The loss a trainer minimises: the head's own loss given labels, or (no head) a function of every output."""
    if mc.task is None:
        return outputs_of(model, {**inputs, **arch.loss_kwargs(mc, model.config, inputs, seed)}).square().mean()
    return model(**inputs, labels=arch.labels(mc, model.config, inputs, seed),
                 **arch.loss_kwargs(mc, model.config, inputs, seed)).loss


# ----------------------------------------------------------------------------------------------------------------------
# The registry itself


def test_every_registered_architecture_is_in_the_contract_with_its_auto_classes():
    """paperzoo's registration table (what `import paperzoo` registers) and the contract list the same model types,
    each class under the same Auto class: a new architecture cannot be registered without joining the contract."""
    from paperzoo import _registration

    contract = {arch.config_class.model_type: arch for arch in ARCHITECTURES}
    assert contract.keys() == _registration.ARCHITECTURES.keys()
    for model_type, registered in _registration.ARCHITECTURES.items():
        models = {auto: path for auto, path in registered.auto.items() if auto.startswith("AutoModel")}
        listed = {mc.auto: f"{mc.cls.__module__}.{mc.cls.__name__}" for mc in contract[model_type].classes}
        assert listed == models, model_type


def test_every_not_applicable_entry_names_a_known_capability_and_a_reason():
    for arch in ARCHITECTURES:
        assert set(arch.not_applicable) <= set(CAPABILITIES), arch.name
        assert all(len(reason) > 20 for reason in arch.not_applicable.values()), arch.name
        registered = {m.cls for m in arch.classes}
        assert len(registered) == len(arch.classes), f"{arch.name}: a class is listed twice"


# ----------------------------------------------------------------------------------------------------------------------
# Configs


@pytest.mark.parametrize("arch", architectures())
def test_config_builds_from_defaults_and_through_auto_config(arch):
    config = arch.config_class()
    assert type(AutoConfig.for_model(arch.config_class.model_type)) is arch.config_class
    assert AutoConfig.for_model(arch.config_class.model_type).to_dict() == config.to_dict()
    for mc in arch.classes:  # default sizes can be large: build the model on the meta device (shapes, no memory)
        with torch.device("meta"):
            model = mc.cls(config)
        assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("arch", architectures())
def test_config_round_trip_keeps_every_value(arch, tmp_path):
    config = arch.tiny()
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is arch.config_class
    drop = lambda d: {k: v for k, v in d.items() if k != "_name_or_path"}  # where it was loaded from
    assert drop(loaded.to_dict()) == drop(config.to_dict())
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == arch.config_class.model_type


@pytest.mark.parametrize("arch", architectures())
def test_bad_config_values_raise_value_error_naming_field_and_value(arch):
    assert arch.bad_values, f"{arch.name}: list the values its config must refuse"
    for name, value in arch.bad_values:
        with pytest.raises(ValueError) as err:
            arch.tiny(**{name: value})
        message = str(err.value)
        assert name in message and (repr(value) in message or str(value) in message), (name, value, message)


# ----------------------------------------------------------------------------------------------------------------------
# Auto classes, save / load


@pytest.mark.parametrize("arch, mc", cases())
def test_auto_class_builds_and_loads_the_class(arch, mc, tmp_path):
    auto = getattr(transformers, mc.auto)
    assert type(auto.from_config(arch.tiny())) is mc.cls
    model = arch.model(mc)
    model.save_pretrained(tmp_path)
    assert type(auto.from_pretrained(tmp_path)) is mc.cls


@pytest.mark.parametrize("arch, mc", cases())
def test_save_and_load_are_bit_equal(arch, mc, tmp_path):
    model = arch.model(mc)
    inputs = arch.inputs(model.config, 3, 1)
    model.save_pretrained(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert "model.safetensors" in names and not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl"))]
    loaded = mc.cls.from_pretrained(tmp_path, dtype=torch.float64).eval()
    want, got = model.state_dict(), loaded.state_dict()
    assert want.keys() == got.keys()
    for name in want:
        assert torch.equal(got[name], want[name]), name
    with torch.no_grad():
        assert torch.equal(outputs_of(loaded, inputs), outputs_of(model, inputs))


@pytest.mark.parametrize("arch, mc", cases())
def test_return_dict_false_gives_the_same_values_as_a_tuple(arch, mc):
    model = arch.model(mc)
    inputs = arch.inputs(model.config, 2, 1)
    with torch.no_grad():
        as_dict = model(**inputs)
        as_tuple = model(**inputs, return_dict=False)
        model.config.return_dict = False  # the config default is honoured too
        from_config = model(**inputs)
    want = as_dict.to_tuple()
    for got in (as_tuple, from_config):
        assert isinstance(got, tuple) and len(got) == len(want)
        for a, b in zip(got, want):
            if isinstance(b, torch.Tensor):
                assert torch.equal(a, b)


@pytest.mark.parametrize("arch, mc", cases())
def test_forward_is_deterministic_and_rows_are_independent(arch, mc):
    model = arch.model(mc)
    inputs = arch.inputs(model.config, 3, 2)
    with torch.no_grad():
        batch = outputs_of(model, inputs)
        assert torch.equal(outputs_of(model, inputs), batch)
        for i in range(3):
            alone = outputs_of(model, {k: v[i : i + 1] for k, v in inputs.items()})
            torch.testing.assert_close(alone[0], batch[i], rtol=0, atol=arch.atol)


@pytest.mark.parametrize("arch, mc", cases())
def test_an_unused_keyword_argument_raises_instead_of_vanishing(arch, mc):
    model = arch.model(mc)
    inputs = arch.inputs(model.config, 1, 1)
    with pytest.raises(TypeError, match="cu_seq_lens_q"):
        model(**inputs, cu_seq_lens_q=torch.tensor([0, 4]))
    with pytest.raises(TypeError, match="not_an_argument"):
        model(**inputs, not_an_argument=1)


# ----------------------------------------------------------------------------------------------------------------------
# Tracing: torch.export and full-graph torch.compile equal eager


@pytest.mark.parametrize("arch, mc", cases("tracing"))
def test_torch_export_equals_eager(arch, mc):
    model = arch.model(mc)
    inputs = arch.inputs(model.config, 2, 3)
    kwargs = dict(inputs)
    if "use_cache" in inspect.signature(model.forward).parameters:
        kwargs["use_cache"] = False
    with torch.no_grad():
        program = torch.export.export(model, (), kwargs)
        exported = program.module()(**kwargs)
        eager = model(**kwargs)
    torch.testing.assert_close(main_output(exported), main_output(eager), rtol=0, atol=arch.atol)


@pytest.mark.parametrize("arch, mc", cases("tracing"))
def test_full_graph_compile_equals_eager(arch, mc):
    model = arch.model(mc)
    inputs = arch.inputs(model.config, 2, 3)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")  # fullgraph: a graph break is an error
    with torch.no_grad():
        torch.testing.assert_close(outputs_of(compiled, inputs), outputs_of(model, inputs), rtol=0, atol=arch.atol)
    model.train()  # and the training graph (forward and backward)
    training_loss(arch, mc, compiled, inputs).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    training_loss(arch, mc, model, inputs).backward()
    for name, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(grads[name], p.grad, rtol=0, atol=arch.atol, msg=name)


# ----------------------------------------------------------------------------------------------------------------------
# Training


@pytest.mark.parametrize("arch, mc", cases())
def test_a_training_step_reaches_every_parameter(arch, mc):
    model = arch.model(mc).train()
    loss = training_loss(arch, mc, model, arch.inputs(model.config, 4, 5))
    assert loss.isfinite()
    loss.backward()
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not p.grad.isfinite().all())]
    assert not missing, f"no finite gradient for {missing}"
    assert any(p.grad.abs().max() > 0 for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("arch, mc", cases(tasks=("causal_lm", "classification", "next_item", "last_item", "rating")))
def test_trainer_gradient_accumulation_equals_the_full_batch(arch, mc, tmp_path):
    """Trainer at batch 2 × 2 accumulation steps makes the same update as batch 4 (SGD, one step), with rows whose
    label counts differ (causal LMs: -100 tails), so a per-micro-batch mean would show."""
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments, default_data_collator

    config = arch.tiny()
    rows = []
    for i in range(4):
        inputs = {k: v[0] for k, v in arch.inputs(config, 1, 10 + i).items()}
        batch = {k: v[None] for k, v in inputs.items()}
        labels = arch.labels(mc, config, batch, 10 + i)[0]
        inputs.update({k: v[0] for k, v in arch.loss_kwargs(mc, config, batch, 10 + i).items()})
        if mc.task in ("causal_lm", "next_item"):
            labels[4 + 3 * i:] = -100
        rows.append({**{k: v.tolist() for k, v in inputs.items()}, "labels": labels.tolist()})
    updates = []
    for batch, accumulation in ((4, 1), (2, 2)):
        model = arch.model(mc, dtype=torch.float32).train()
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        args = TrainingArguments(output_dir=str(tmp_path / f"{batch}x{accumulation}"),
                                 per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
                                 max_steps=1, learning_rate=1e-2, optim="sgd",
                                 lr_scheduler_type="constant", report_to=[], save_strategy="no", use_cpu=True,
                                 seed=0, data_seed=0)
        Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                data_collator=default_data_collator).train()
        updates.append({n: p.detach() - before[n] for n, p in model.named_parameters()})
    for name in updates[0]:
        torch.testing.assert_close(updates[1][name], updates[0][name], rtol=1e-4, atol=1e-7, msg=name)
    assert any(d.abs().max() > 0 for d in updates[0].values())


@pytest.mark.parametrize("arch, mc", cases("activation_checkpointing"))
def test_activation_checkpointing_gives_the_same_gradients(arch, mc):
    inputs = None
    grads = []
    for checkpointing in (False, True):
        model = arch.model(mc).train()
        inputs = inputs or arch.inputs(model.config, 2, 6)
        if checkpointing:
            model.activation_checkpointing_enable()
            assert model.is_activation_checkpointing
        training_loss(arch, mc, model, inputs).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=0, atol=1e-12, msg=name)


# ----------------------------------------------------------------------------------------------------------------------
# Token embeddings and hidden states


@pytest.mark.parametrize("arch, mc", cases("token_embeddings"))
def test_inputs_embeds_equal_input_ids(arch, mc):
    model = arch.model(mc)
    ids = arch.token_ids(model.config, 2, 7)
    with torch.no_grad():
        embeds = model.get_input_embeddings()(ids)
        torch.testing.assert_close(outputs_of(model, {"inputs_embeds": embeds}), outputs_of(model, {"input_ids": ids}),
                                   rtol=0, atol=arch.atol)


@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("arch, mc", cases("token_embeddings"))
def test_resize_token_embeddings_keeps_the_old_tokens(arch, mc, tie):
    model = arch.model(mc, tie_word_embeddings=tie)
    vocab = model.config.vocab_size
    ids = arch.token_ids(model.config, 2, 8)
    with torch.no_grad():
        before = outputs_of(model, {"input_ids": ids})
        model.resize_token_embeddings(vocab + 7)
        after = outputs_of(model, {"input_ids": ids})
    assert model.config.vocab_size == vocab + 7 and model.get_input_embeddings().weight.shape[0] == vocab + 7
    if mc.task == "causal_lm":  # the old tokens' logits are unchanged, new columns are appended
        assert after.shape[-1] == vocab + 7
        after = after[..., :vocab]
        assert (model.get_output_embeddings().weight is model.get_input_embeddings().weight) == tie
    torch.testing.assert_close(after, before, rtol=0, atol=arch.atol)
    with torch.no_grad():
        new_id = torch.full_like(ids[:, :1], vocab + 3)  # a new token id is accepted
        outputs_of(model, {"input_ids": torch.cat([ids, new_id], 1)})


@pytest.mark.parametrize("arch, mc", cases("token_embeddings", tasks=("causal_lm",)))
def test_tied_word_embeddings_survive_save_and_load(arch, mc, tmp_path):
    model = arch.model(mc, tie_word_embeddings=True)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    model.save_pretrained(tmp_path)
    loaded = mc.cls.from_pretrained(tmp_path, dtype=torch.float64).eval()
    assert loaded.get_output_embeddings().weight is loaded.get_input_embeddings().weight
    inputs = arch.inputs(model.config, 2, 9)
    with torch.no_grad():
        assert torch.equal(outputs_of(loaded, inputs), outputs_of(model, inputs))


@pytest.mark.parametrize("arch, mc", cases("hidden_states"))
def test_hidden_states_one_per_layer_plus_the_final_one(arch, mc):
    model = arch.model(mc)
    inputs = arch.inputs(model.config, 2, 4)
    B, T = inputs["input_ids"].shape
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
        model.config.output_hidden_states = True
        from_config = model(**inputs)
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1
    assert all(h.shape == (B, T, model.config.hidden_size) for h in out.hidden_states)
    assert len(from_config.hidden_states) == len(out.hidden_states)
    if mc.task is None:
        assert torch.equal(out.hidden_states[-1], out.last_hidden_state)


# ----------------------------------------------------------------------------------------------------------------------
# PEFT


@pytest.mark.parametrize("arch, mc", cases("peft"))
def test_peft_lora_needs_no_target_modules(arch, mc):
    """`get_peft_model(model, LoraConfig(task_type=...))` works as it does for Llama: paperzoo registers the default
    LoRA targets of its model types with PEFT; the adapter trains and only the adapter (and a new head) does."""
    from peft import LoraConfig, get_peft_model

    model = arch.model(mc, dtype=torch.float32)
    base = copy.deepcopy(model)
    peft_model = get_peft_model(model, LoraConfig(task_type=mc.peft_task, r=4, init_lora_weights=False))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "modules_to_save" in n for n in trainable), trainable
    inputs = arch.inputs(base.config, 2, 3)
    with torch.no_grad():
        assert not torch.allclose(outputs_of(peft_model, inputs), outputs_of(base, inputs))
