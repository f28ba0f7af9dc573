"""The architectures the model contract runs on. A new architecture joins by adding one `Architecture` entry to
`ARCHITECTURES`; a check that does not apply to it is named in `not_applicable` with the reason, never skipped.

Each entry gives a tiny config (hidden 32, 2 layers, as transformers' own model testers do), the model classes with the
Auto class that loads each, inputs and labels for a batch, and config values that must be refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch
from transformers import PreTrainedConfig, PreTrainedModel

import paperzoo

# Checks that only some architectures can take; every other check runs on every entry.
CAPABILITIES = {
    "generation": "a causal LM head: generate (greedy, beam, sample), caches, left padding",
    "token_embeddings": "token ids in, an embedding matrix: inputs_embeds, resize_token_embeddings, tied weights",
    "hidden_states": "output_hidden_states returns one state per layer plus the final one",
    "activation_checkpointing": "repeated blocks that activation_checkpointing_enable() wraps",
    "peft": "default LoRA target modules registered with PEFT for the model type",
    "tracing": "one graph for the forward: torch.export and full-graph torch.compile",
    "static_cache": "a StaticCache and the compiled one-token decoding step",
}


@dataclass(frozen=True)
class ModelClass:
    cls: type[PreTrainedModel]
    auto: str  # the transformers Auto class that loads it
    task: str | None  # what its labels are: "causal_lm", "classification" (one label per row), "next_item" (an item
    # id per position, as input_ids), "rating" (a float per row), None (no head)
    peft_task: str  # PEFT's TaskType for LoraConfig(task_type=...)


@dataclass(frozen=True)
class Architecture:
    name: str
    config_class: type[PreTrainedConfig]
    tiny: Callable[..., PreTrainedConfig]  # tiny config; keyword overrides
    classes: tuple[ModelClass, ...]
    inputs: Callable[[PreTrainedConfig, int, int], dict]  # (config, rows, seed) -> forward kwargs
    bad_values: tuple[tuple[str, object], ...]  # (field, value) that the config must refuse
    not_applicable: dict[str, str] = field(default_factory=dict)  # capability -> why it does not apply
    prepare: Callable[[PreTrainedModel], None] = lambda model: None  # in place, after construction (e.g. sharpen)
    processor: Callable[[PreTrainedConfig], object] | None = None  # the input processor exported with the model
    atol: float = 1e-10  # float64 agreement between two computations of the same function
    # token ids the model takes on their own (generation prompts, embedding checks), when `inputs` holds more than
    # text (e.g. latents for placeholder tokens); None: inputs' input_ids
    text_ids: Callable[[PreTrainedConfig, int, int], torch.Tensor] | None = None
    # keyword arguments that go with labels (e.g. fixed diffusion draws, so that a loss is a function of its inputs)
    loss_inputs: Callable[[ModelClass, PreTrainedConfig, dict, int], dict] | None = None

    def supports(self, capability: str) -> bool:
        return capability not in self.not_applicable

    def model(self, model_class: ModelClass, seed: int = 0, dtype=torch.float64, **overrides) -> PreTrainedModel:
        """A tiny model of `model_class`, seeded, in eval mode."""
        torch.manual_seed(seed)
        model = model_class.cls(self.tiny(**overrides)).to(dtype).eval()
        self.prepare(model)
        return model

    def token_ids(self, config: PreTrainedConfig, rows: int, seed: int) -> torch.Tensor:
        if self.text_ids is not None:
            return self.text_ids(config, rows, seed)
        return self.inputs(config, rows, seed)["input_ids"]

    def loss_kwargs(self, model_class: ModelClass, config: PreTrainedConfig, inputs: dict, seed: int) -> dict:
        return self.loss_inputs(model_class, config, inputs, seed) if self.loss_inputs is not None else {}

    def labels(self, model_class: ModelClass, config: PreTrainedConfig, inputs: dict, seed: int) -> torch.Tensor:
        if model_class.task in ("causal_lm", "next_item"):
            return inputs["input_ids"].clone()
        if model_class.task == "rating":  # a rating in [1, 5] per row
            rows = inputs["user_ids"].shape[0]
            return 1 + 4 * torch.rand(rows, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        if model_class.task == "last_item":  # an item id at the last position only, -100 before
            labels = torch.full_like(inputs["input_ids"], -100)
            labels[:, -1] = inputs["input_ids"][:, -1]
            return labels
        rows = next(iter(inputs.values())).shape[0]
        return torch.randint(0, config.num_labels, (rows,), generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------------------------------
# RetNet


def _retnet_config(**overrides):
    kwargs = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                  chunk_size=8, kernel_backend="reference", pad_token_id=0, bos_token_id=1, eos_token_id=2,
                  num_labels=3)
    kwargs.update(overrides)
    return paperzoo.RetNetConfig(**kwargs)


def _token_ids(config, rows: int, seed: int, length: int = 13) -> dict:
    ids = torch.randint(3, config.vocab_size, (rows, length), generator=torch.Generator().manual_seed(seed))
    return {"input_ids": ids}


def _sharpen_retnet(model):
    """8× larger q/k than the 2^-2.5 xavier init, so that outputs depend on the context and a cache that drops or
    repeats tokens changes the logits measurably."""
    with torch.no_grad():
        for layer in model.base_model.layers:
            layer.retention.q_proj.weight.mul_(8)
            layer.retention.k_proj.weight.mul_(8)


def _sharpen_retnet_trunk(model):
    """`_sharpen_retnet` on a model whose trunk is a RetNet (LatentLM's language_model)."""
    trunk = model.language_model if hasattr(model, "language_model") else model.model.language_model
    with torch.no_grad():
        for layer in trunk.layers:
            layer.retention.q_proj.weight.mul_(8)
            layer.retention.k_proj.weight.mul_(8)


RETNET = Architecture(
    name="retnet",
    config_class=paperzoo.RetNetConfig,
    tiny=_retnet_config,
    classes=(
        ModelClass(paperzoo.RetNetModel, "AutoModel", None, "FEATURE_EXTRACTION"),
        ModelClass(paperzoo.RetNetForCausalLM, "AutoModelForCausalLM", "causal_lm", "CAUSAL_LM"),
        ModelClass(paperzoo.RetNetForSequenceClassification, "AutoModelForSequenceClassification", "classification",
                   "SEQ_CLS"),
    ),
    inputs=_token_ids,
    bad_values=(("hidden_size", 0), ("num_attention_heads", 3), ("intermediate_size", -4), ("value_size", 51),
                ("chunk_size", 24), ("kernel_backend", "cuda"), ("hidden_act", "nope"), ("vocab_size", 0),
                ("rms_norm_eps", -1.0), ("rope_theta", 0.0)),
    prepare=_sharpen_retnet,
)


# ----------------------------------------------------------------------------------------------------------------------
# YOCO: the gated-retention and the sliding-window self-decoder (a window shorter than the 13-token inputs)


def _yoco_config(**overrides):
    kwargs = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, intermediate_size=48, num_self_heads=2,
                  num_attention_heads=4, num_key_value_heads=2, chunk_size=8, prefill_segment_size=8,
                  kernel_backend="reference", pad_token_id=0, bos_token_id=1, eos_token_id=2)
    kwargs.update(overrides)
    return paperzoo.YOCOConfig(**kwargs)


def _sharpen_yoco(model):
    """8× larger gated-retention q/k than the 2^-2.5 xavier init (as for RetNet), so that a cache that drops or
    repeats tokens changes the logits measurably."""
    with torch.no_grad():
        for layer in model.base_model.self_layers:
            if hasattr(layer.mixer, "gt_proj"):
                layer.mixer.q_proj.weight.mul_(8)
                layer.mixer.k_proj.weight.mul_(8)


_YOCO_CLASSES = (
    ModelClass(paperzoo.YOCOModel, "AutoModel", None, "FEATURE_EXTRACTION"),
    ModelClass(paperzoo.YOCOForCausalLM, "AutoModelForCausalLM", "causal_lm", "CAUSAL_LM"),
)
_YOCO_BAD_VALUES = (("num_hidden_layers", 3), ("num_self_heads", 3), ("num_attention_heads", 5),
                    ("num_key_value_heads", 3), ("self_decoder", "mamba"), ("sliding_window", 16),
                    ("chunk_size", 24), ("kernel_backend", "cuda"), ("gate_logit_normalizer", 0.0),
                    ("rms_norm_eps", -1.0), ("rope_theta", 0.0), ("prefill_segment_size", 0))

YOCO = Architecture(name="yoco", config_class=paperzoo.YOCOConfig, tiny=_yoco_config, classes=_YOCO_CLASSES,
                    inputs=_token_ids, bad_values=_YOCO_BAD_VALUES, prepare=_sharpen_yoco)


def _yoco_swa_config(**overrides):
    return _yoco_config(**{"self_decoder": "sliding_window", "sliding_window": 4, **overrides})


YOCO_SWA = Architecture(name="yoco-swa", config_class=paperzoo.YOCOConfig, tiny=_yoco_swa_config,
                        classes=_YOCO_CLASSES, inputs=_token_ids,
                        bad_values=(("sliding_window", 0), ("sliding_window", -3), ("self_decoder", "window")))


# ----------------------------------------------------------------------------------------------------------------------
# RRL


def _rrl_config(**overrides):
    kwargs = dict(num_discrete_features=4, num_continuous_features=3, num_thresholds=3, layer_widths=[6, 6],
                  use_not=True, use_skip=True, num_labels=3, kernel_backend="reference")
    kwargs.update(overrides)
    return paperzoo.RRLConfig(**kwargs)


def _table_rows(config, rows: int, seed: int) -> dict:
    """One-hot discrete block (one column of 2 and one of 2 categories) and standardised continuous columns."""
    g = torch.Generator().manual_seed(seed)
    d, c = config.num_discrete_features, config.num_continuous_features
    onehot = torch.zeros(rows, d)
    for start in range(0, d, 2):  # columns of two categories each
        width = min(2, d - start)
        onehot[torch.arange(rows), start + torch.randint(0, width, (rows,), generator=g)] = 1.0
    return {"input_features": torch.cat([onehot, torch.randn(rows, c, generator=g)], dim=1)}


def _table_processor(config):
    """An RRLProcessor whose schema gives `_table_rows`' layout: two-category columns, then continuous ones."""
    from paperzoo import RRLProcessor

    d, c = config.num_discrete_features, config.num_continuous_features
    rows = [{**{f"d{j}": "ab"[(i + j) % 2] for j in range(d // 2)}, **{f"c{j}": float(i * (j + 1)) for j in range(c)}}
            for i in range(4)]
    processor = RRLProcessor().fit(rows, discrete=[f"d{j}" for j in range(d // 2)])
    assert processor.num_discrete_features == d and processor.num_continuous_features == c
    return processor


RRL = Architecture(
    name="rrl",
    config_class=paperzoo.RRLConfig,
    tiny=_rrl_config,
    classes=(ModelClass(paperzoo.RRLForTabularClassification, "AutoModel", "classification", "SEQ_CLS"),),
    inputs=_table_rows,
    processor=_table_processor,
    bad_values=(("num_discrete_features", -1), ("num_thresholds", 0), ("layer_widths", [4, 0]),
                ("activation", "relu"), ("grafting", "double"), ("alpha", 1.5), ("beta", 0.5), ("gamma", 0.0),
                ("temperature", -1.0), ("weight_decay", -0.1), ("kernel_backend", "cuda"), ("num_labels", 1)),
    not_applicable={
        "generation": "a classifier of table rows, not a language model",
        "token_embeddings": "inputs are one-hot and standardised table columns, not token ids",
        "hidden_states": "its layers are logical layers of different widths; rules are read with extract_rules",
        "activation_checkpointing": "no repeated blocks: binarization, a few logical layers and a linear layer",
        "peft": "its logical layers are products/unions of clipped weights, not linear maps a low-rank update "
                "preserves; fine-tuning is retraining (RRLClassifier.fit)",
    },
)


# ----------------------------------------------------------------------------------------------------------------------
# FocusLLM around a tiny Llama (GQA): 13-token inputs have 7 memory tokens before a 6-token local window, so most
# positions condense 2 full chunks of 3 and a partial one


def _focusllm_config(**overrides):
    from transformers import LlamaConfig

    base = {k: overrides.pop(k) for k in ("tie_word_embeddings",) if k in overrides}
    base_config = LlamaConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                              num_key_value_heads=2, intermediate_size=48, max_position_embeddings=64,
                              pad_token_id=0, bos_token_id=1, eos_token_id=2, **base)
    kwargs = dict(base_config=base_config, chunk_size=3, local_window=6, dynamic_prompt_len=2)
    kwargs.update(overrides)
    return paperzoo.FocusLLMConfig(**kwargs)


def _focusllm_candidates(model):
    """Candidates that differ from their base copies (as after training), so that a mix-up of the two shows."""
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        for name, p in model.named_parameters():
            if ".candidate." in name:
                p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))


FOCUSLLM = Architecture(
    name="focusllm",
    config_class=paperzoo.FocusLLMConfig,
    tiny=_focusllm_config,
    classes=(ModelClass(paperzoo.FocusLLMForCausalLM, "AutoModelForCausalLM", "causal_lm", "CAUSAL_LM"),),
    inputs=_token_ids,
    bad_values=(("chunk_size", 0), ("local_window", -1), ("local_window", 64), ("dynamic_prompt_len", 0),
                ("min_len_for_focus", 0), ("candidate_modules", []), ("chunk_batch_size", 0), ("decoding", "official")),
    prepare=_focusllm_candidates,
    not_applicable={
        "hidden_states": "its outputs come from three passes (chunks, prompts, local window), one row per prediction: "
                         "no one hidden state per layer and position exists",
        "tracing": "the forward plans its passes in Python from each row's length (which chunks exist, which "
                   "predictions condense a memory): a plan per input that one traced graph cannot hold; the base "
                   "model's passes can be compiled on their own",
        "static_cache": "each new token changes the dynamic prompt, so every candidate and the local window are "
                        "recomputed: there is no fixed-shape one-token step to compile",
        "peft": "the candidate projections are already the trainable adapter (copies of the frozen base's); LoRA on "
                "the wrapper would have to target inside them",
    },
    atol=1e-6,  # transformers computes rotary angles in fp32 even in a float64 model
)


# ----------------------------------------------------------------------------------------------------------------------
# σ-VAE: 8×8 grey images, 2×2 patches (16 latents of 4 channels)


def _sigma_vae_config(**overrides):
    kwargs = dict(in_channels=1, image_size=8, patch_size=2, latent_channels=4, hidden_size=16, num_blocks=1)
    kwargs.update(overrides)
    return paperzoo.SigmaVAEConfig(**kwargs)


def _pixels(config, rows: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"pixel_values": torch.rand(rows, config.in_channels, config.image_size, config.image_size, generator=g)
            * 2 - 1}


def _sigma_draws(model_class, config, inputs: dict, seed: int) -> dict:
    """A fixed σ per row and ε, so that a training-mode loss (which samples z = μ + σ·ε) is a function of its inputs."""
    g = torch.Generator().manual_seed(seed + 1000)
    rows, side = inputs["pixel_values"].shape[0], config.image_size // config.patch_size
    return {"sigma": torch.randn(rows, generator=g) * config.sigma_std,
            "noise": torch.randn(rows, config.latent_channels, side, side, generator=g)}


SIGMA_VAE = Architecture(
    name="sigma_vae",
    config_class=paperzoo.SigmaVAEConfig,
    tiny=_sigma_vae_config,
    classes=(ModelClass(paperzoo.SigmaVAEModel, "AutoModel", None, "FEATURE_EXTRACTION"),),
    inputs=_pixels,
    loss_inputs=_sigma_draws,
    bad_values=(("patch_size", 3), ("spatial_dims", 3), ("sigma_std", -1.0), ("mu_l2_weight", -0.5),
                ("latent_channels", 0), ("scaling_factor", 0.0), ("image_size", 0)),
    not_applicable={
        "generation": "an autoencoder of images and signals; LatentLM generates its latents",
        "token_embeddings": "its inputs are pixels or signal samples, not token ids",
        "hidden_states": "convolutional encoder and decoder of different shapes, no stack of equal layers",
        "activation_checkpointing": "a few small convolution blocks; checkpointing them saves nothing worth it",
        "peft": "convolutions without the q/v projections LoRA targets; fine-tune it in full (it is small)",
        "static_cache": "no cache: one encoder-decoder pass per input",
    },
)


# ----------------------------------------------------------------------------------------------------------------------
# LatentLM: a 13-token text, then an image span <boi> + 4 latents + <eoi> (ids 96..98 of a 99-token vocabulary), on a
# tiny Llama and on paperzoo's RetNet; fixed diffusion draws, so that losses are functions of the inputs


def _latentlm_config(text_config, **overrides):
    tie = overrides.pop("tie_word_embeddings", None)
    if tie is not None:
        text_config.tie_word_embeddings = tie
    kwargs = dict(text_config=text_config, vae_config=_sigma_vae_config(image_size=4),
                  head_config=dict(num_hidden_layers=2, kernel_backend="reference"), boi_token_id=96,
                  eoi_token_id=97, latent_token_id=98, ddpm_batch_mul=2)
    kwargs.update(overrides)
    config = paperzoo.LatentLMConfig(**kwargs)
    if tie is not None:
        config.tie_word_embeddings = tie
    return config


def _latentlm_llama(**overrides):
    from transformers import LlamaConfig

    text = LlamaConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, intermediate_size=48, max_position_embeddings=64, pad_token_id=0,
                       bos_token_id=1, eos_token_id=2)
    return _latentlm_config(text, **overrides)


def _latentlm_retnet(**overrides):
    return _latentlm_config(_retnet_config(), **overrides)


def _latentlm_text(config, rows: int, seed: int) -> torch.Tensor:
    return torch.randint(3, 96, (rows, 13), generator=torch.Generator().manual_seed(seed))


def _latentlm_inputs(config, rows: int, seed: int) -> dict:
    span = torch.tensor([96, 98, 98, 98, 98, 97]).expand(rows, 6)
    latents = torch.randn(rows, 4, config.vae_config.latent_channels, generator=torch.Generator().manual_seed(seed))
    return {"input_ids": torch.cat([_latentlm_text(config, rows, seed), span], 1), "latents": latents}


def _diffusion_draws(model_class, config, inputs: dict, seed: int) -> dict:
    """(t, ε) for each of the 4 latents of each row × ddpm_batch_mul copies (the head's loss: causal LM only)."""
    if model_class.task != "causal_lm":
        return {}
    g = torch.Generator().manual_seed(seed + 1000)
    rows, k, d = inputs["input_ids"].shape[0], config.ddpm_batch_mul, config.vae_config.latent_channels
    return {"diffusion_timesteps": torch.randint(0, config.num_train_timesteps, (rows, 4, k), generator=g),
            "diffusion_noise": torch.randn(rows, 4, k, d, generator=g)}


_LATENTLM_CLASSES = (
    ModelClass(paperzoo.LatentLMModel, "AutoModel", None, "FEATURE_EXTRACTION"),
    ModelClass(paperzoo.LatentLMForConditionalGeneration, "AutoModelForCausalLM", "causal_lm", "CAUSAL_LM"),
)
_LATENTLM_BAD_VALUES = (("boi_token_id", 99), ("latent_token_id", -1), ("num_classes", -1), ("label_dropout", 1.0),
                        ("diffusion_loss_weight", -1.0), ("ddpm_batch_mul", 0), ("beta_schedule", "cosine"),
                        ("prediction_type", "sample"), ("noise_scheduler_class", "EulerSampler"),
                        ("guidance_scale", -1.0), ("num_inference_steps", 0))



def _text_only(model):
    """The generation contract checks text decoding against full forwards of token ids: `<boi>` (which would start
    an image span, whose latents those forwards do not have) is suppressed, and so is the pad id 0 (generated inside
    a sequence, generate() would take it for padding when the sequence is fed again); image spans are tested in
    tests/modeling/test_latentlm.py."""
    if model.can_generate():
        model.generation_config.suppress_tokens = [0, 96]


def _latentlm_retnet_prepare(model):
    _sharpen_retnet_trunk(model)
    _text_only(model)


_LATENTLM_NOT_APPLICABLE = {
    "tracing": "the training loss gathers the latents to model and their conditions with data-dependent masks (how "
               "many latents a batch models varies), which one traced graph cannot hold; the text-and-latent forward "
               "without labels has no such branch",
}
LATENTLM = Architecture(name="latentlm", config_class=paperzoo.LatentLMConfig, tiny=_latentlm_llama,
                        classes=_LATENTLM_CLASSES, inputs=_latentlm_inputs, text_ids=_latentlm_text,
                        loss_inputs=_diffusion_draws, bad_values=_LATENTLM_BAD_VALUES, prepare=_text_only,
                        not_applicable=_LATENTLM_NOT_APPLICABLE, atol=1e-6)
LATENTLM_RETNET = Architecture(name="latentlm-retnet", config_class=paperzoo.LatentLMConfig, tiny=_latentlm_retnet,
                               classes=_LATENTLM_CLASSES, inputs=_latentlm_inputs, text_ids=_latentlm_text,
                               loss_inputs=_diffusion_draws, bad_values=(("num_train_timesteps", 0),),
                               prepare=_latentlm_retnet_prepare, not_applicable=_LATENTLM_NOT_APPLICABLE)


# ----------------------------------------------------------------------------------------------------------------------
# Sequential recommenders: 40 items, windows of 13 (some rows left-padded), full-softmax CE (deterministic: the
# sampled losses draw negatives; their formulas are tested in tests/losses)


def _seqrec_inputs(config, rows: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, config.num_items + 1, (rows, 13), generator=g)
    pads = torch.randint(0, 5, (rows,), generator=g)
    ids[torch.arange(13)[None] < pads[:, None]] = 0
    return {"input_ids": ids}


def _seqrec_processor(config):
    from paperzoo.processors.seqrec import SequentialRecommendationProcessor

    return SequentialRecommendationProcessor(item_keys=[f"item{i}" for i in range(1, config.num_items + 1)],
                                             max_length=13)


_SEQREC_NOT_APPLICABLE = {
    "generation": "it scores the next item over the item table; there are no tokens to generate",
    "token_embeddings": "item ids in, the item table both embeds and scores them; no inputs_embeds path",
    "hidden_states": "one encoder output per position (last_hidden_state), no per-layer states exposed",
    "activation_checkpointing": "one or two small blocks over 50-item windows: nothing worth recomputing",
    "peft": "small item models trained in full; the item table is most of their parameters",
    "tracing": "the loss gathers the positions that have a next item with a data-dependent mask (and GRU4Rec packs "
               "each row by its length)",
    "static_cache": "no cache: each recommendation reads the whole window once",
}


def _seqrec_architecture(name: str, config_class, model_class, bad_values, task: str = "next_item", **config):
    def tiny(**overrides):
        return config_class(**{"num_items": 40, "max_length": 13, "hidden_size": 32, "hidden_dropout_prob": 0.0,
                               **config, **overrides})

    return Architecture(name=name, config_class=config_class, tiny=tiny,
                        classes=(ModelClass(model_class, "AutoModel", task, "FEATURE_EXTRACTION"),),
                        inputs=_seqrec_inputs, processor=_seqrec_processor, not_applicable=_SEQREC_NOT_APPLICABLE,
                        atol=1e-9,
                        bad_values=(("num_items", 0), ("loss_type", "mse"), ("negative_pool", "seen"),
                                    ("sce_alpha", 0.0), ("max_length", 0), ("fused_cross_entropy", "yes"),
                                    *bad_values))


SASREC = _seqrec_architecture("sasrec", paperzoo.SASRecConfig, paperzoo.SASRecForSequentialRecommendation,
                              (("num_attention_heads", 3), ("layer_norm_eps", 0.0)), num_attention_heads=2)
GRU4REC = _seqrec_architecture("gru4rec", paperzoo.GRU4RecConfig, paperzoo.GRU4RecForSequentialRecommendation,
                               (("num_hidden_layers", 0), ("intermediate_size", -1)))

CASER = _seqrec_architecture("caser", paperzoo.CaserConfig, paperzoo.CaserForSequentialRecommendation,
                             (("num_vertical_filters", 0), ("num_horizontal_filters", -2)), max_length=5)
FMLPREC = _seqrec_architecture("fmlprec", paperzoo.FMLPRecConfig, paperzoo.FMLPRecForSequentialRecommendation,
                               (("layer_norm_eps", -1.0), ("intermediate_size", 0)), task="last_item",
                               num_hidden_layers=2)

# E4SRec: a tiny Llama (GQA) as the sequence encoder over the same item windows as the sequential recommenders


def _e4srec_config(**overrides):
    from transformers import LlamaConfig

    base_config = LlamaConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                              num_key_value_heads=2, intermediate_size=48, max_position_embeddings=64)
    kwargs = dict(base_config=base_config, num_items=40, max_length=13, hidden_size=24, hidden_dropout_prob=0.0)
    kwargs.update(overrides)
    return paperzoo.E4SRecConfig(**kwargs)


E4SREC = Architecture(
    name="e4srec",
    config_class=paperzoo.E4SRecConfig,
    tiny=_e4srec_config,
    classes=(ModelClass(paperzoo.E4SRecForSequentialRecommendation, "AutoModel", "next_item", "FEATURE_EXTRACTION"),),
    inputs=_seqrec_inputs,
    processor=_seqrec_processor,
    bad_values=(("num_items", 0), ("loss_type", "mse"), ("max_length", 65), ("hidden_dropout_prob", 1.0)),
    not_applicable={
        **{k: v for k, v in _SEQREC_NOT_APPLICABLE.items() if k not in ("peft", "activation_checkpointing")},
        "hidden_states": "one encoder output per position (last_hidden_state); the LLM's per-layer states are its own "
                         "(model.llm(..., output_hidden_states=True))",
    },
    atol=1e-6,  # transformers computes rotary angles in fp32 even in a float64 model
)

# ----------------------------------------------------------------------------------------------------------------------
# KCF-PLM: two tiny BERT towers, a random 30-edge KG over 14 nodes, pairs with 0-4 aspects (one row with none)


def _kcf_plm_config(**overrides):
    from transformers import BertConfig

    text = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                      max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                      pad_token_id=0)
    kwargs = dict(text_config=text, num_users=5, num_items=6, num_entities=14, num_relations=3, kg_hidden_size=16,
                  kg_num_blocks=4, text_feature_size=7, text_head_hidden_size=12, pair_size=9, aspect_num_layers=2,
                  aspect_num_heads=2, aspect_intermediate_size=24, aspect_max_len=4, fm_factors=3,
                  hidden_dropout_prob=0.0, aspect_dropout_prob=0.0, kernel_backend="reference")
    kwargs.update(overrides)
    return paperzoo.KCFPLMConfig(**kwargs)


def _kcf_plm_prepare(model):
    """A random weighted graph (self-loops and duplicate edges included) in the model's buffers, and tower heads 20×
    the official U(−0.02, 0.02), so that the documents move the prediction measurably (as after training)."""
    with torch.no_grad():
        for tower in model.text_towers():
            for layer in (tower.head[0], tower.head[3]):
                layer.weight.mul_(20)
    g = torch.Generator().manual_seed(7)
    c = model.config
    edges = torch.stack([torch.randint(0, c.num_entities, (30,), generator=g),
                         torch.randint(0, c.num_entities, (30,), generator=g),
                         torch.randint(0, c.num_relations, (30,), generator=g)], 1)
    model.set_knowledge_graph(edges, torch.rand(30, generator=g) + 0.5)


def _kcf_plm_inputs(config, rows: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    A = 4
    batch = {}
    for side, length in (("user", 9), ("item", 7)):
        ids = torch.randint(4, config.text_config.vocab_size, (rows, length), generator=g)
        lengths = torch.randint(2, length + 1, (rows,), generator=g)
        mask = (torch.arange(length)[None] < lengths[:, None]).long()  # right padding, as a BERT tokenizer pads
        batch[f"{side}_input_ids"], batch[f"{side}_attention_mask"] = ids * mask, mask
    batch["user_ids"] = torch.randint(0, config.num_users + 1, (rows,), generator=g)
    batch["item_ids"] = torch.randint(0, config.num_items + 1, (rows,), generator=g)
    batch["user_entity_ids"] = torch.randint(0, config.num_entities, (rows,), generator=g)
    batch["item_entity_ids"] = torch.randint(0, config.num_entities, (rows,), generator=g)
    counts = torch.randint(0, A + 1, (rows,), generator=g)
    counts[0] = 0 if rows > 2 else counts[0]  # a pair without aspects
    mask = (torch.arange(A)[None] < counts[:, None]).long()
    batch["aspect_entity_ids"] = torch.randint(0, config.num_entities, (rows, A), generator=g) * mask
    batch["aspect_type_ids"] = torch.randint(0, config.num_aspect_types, (rows, A), generator=g) * mask
    batch["aspect_weights"] = (1 + torch.rand(rows, A, generator=g, dtype=torch.float64)) * mask
    batch["aspect_mask"] = mask
    return batch


def tiny_wordpiece_tokenizer(words=()):
    """A BERT-style tokenizer ([CLS] text [SEP], right padding) over a small word vocabulary, built in memory."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
    for word in words:
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", model_max_length=64)


def _kcf_plm_processor(config):
    from paperzoo.processors.kcf_plm import KCFPLMProcessor

    users = [f"u{i}" for i in range(1, config.num_users + 1)]
    items = [f"i{i}" for i in range(1, config.num_items + 1)]
    words = ["rated", "good", "film", "drama", "comedy"]
    return KCFPLMProcessor(
        tiny_wordpiece_tokenizer(words), users=users, items=items,
        entities=["<unknown>", *[f"user:{u}" for u in users], *[f"item:{i}" for i in items], "genre:drama"],
        user_documents={u: "rated good film" for u in users}, item_documents={i: "drama film" for i in items},
        item_aspects={i: [("genre:drama", 0)] for i in items}, user_histories={users[0]: items[:2]},
        relations=["rated", "rated^-1", "has_genre"], aspect_max_len=config.aspect_max_len)


KCF_PLM = Architecture(
    name="kcf_plm",
    config_class=paperzoo.KCFPLMConfig,
    tiny=_kcf_plm_config,
    classes=(ModelClass(paperzoo.KCFPLMForRatingPrediction, "AutoModel", "rating", "FEATURE_EXTRACTION"),),
    inputs=_kcf_plm_inputs,
    prepare=_kcf_plm_prepare,
    processor=_kcf_plm_processor,
    atol=1e-9,
    bad_values=(("num_users", 0), ("kg_num_blocks", 5), ("text_pooling", "max"), ("hidden_dropout_prob", 1.0),
                ("entity_loss_weight", -0.1), ("aspect_num_heads", 3), ("num_edges", -1), ("use_aspects", "yes"),
                ("kernel_backend", "cuda")),
    not_applicable={
        "generation": "a rating regressor: one number per (user, item) pair, nothing to generate",
        "token_embeddings": "two documents, graph ids and aspects in; each text tower's token embeddings are its "
                            "encoder's own (model.user_tower.encoder), replaced at [CLS] by the KG injection",
        "hidden_states": "two encoders, an R-GCN layer and an aspect transformer: no single stack of layers (each "
                         "tower's encoder returns its own hidden states)",
        "static_cache": "no cache: a prediction reads both documents once",
    },
)


ARCHITECTURES = (RETNET, YOCO, YOCO_SWA, RRL, FOCUSLLM, SIGMA_VAE, LATENTLM, LATENTLM_RETNET, SASREC, GRU4REC, CASER,
                 FMLPREC, E4SREC, KCF_PLM)


def cases(capability: str | None = None, tasks: tuple[str | None, ...] | None = None) -> list:
    """pytest params (architecture, model class) for every class of every architecture that has `capability`, and
    whose head is one of `tasks` when given."""
    return [pytest.param(arch, mc, id=f"{arch.name}-{mc.cls.__name__}")
            for arch in ARCHITECTURES if capability is None or arch.supports(capability)
            for mc in arch.classes if tasks is None or mc.task in tasks]


def architectures(capability: str | None = None) -> list:
    return [pytest.param(arch, id=arch.name) for arch in ARCHITECTURES
            if capability is None or arch.supports(capability)]
