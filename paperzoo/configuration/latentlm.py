"""LatentLM configuration (Sun et al., "Multimodal Latent Language Modeling with Next-Token Diffusion",
arXiv 2412.08635; official code: microsoft/unilm `LatentLM/models/Transformer.py`, `train_hf.py`): a causal LM over
text tokens and σ-VAE latents, with a small diffusion head that models each latent from the hidden state before it."""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .retnet import RetNetConfig
from .sigma_vae import SigmaVAEConfig, positive_int
from .yoco import YOCOConfig

PREDICTION_TYPES = ("v_prediction", "epsilon")
# paperzoo's own decoders as trunks, built without AutoConfig: a remote-code bundle (no paperzoo installed) has no
# AutoConfig registration for their model types
OWN_TEXT_CONFIGS = {config.model_type: config for config in (RetNetConfig, YOCOConfig)}
# the schedules diffusers' DDPMScheduler knows; the official "cosine" is "squaredcos_cap_v2"
BETA_SCHEDULES = ("squaredcos_cap_v2", "linear", "scaled_linear", "sigmoid", "laplace")


class LatentLMDiffusionHeadConfig(PreTrainedConfig):
    r"""The per-token diffusion head (official `forward_diffusion`, `MLPBlock`, `FinalLayer`, `TimestepEmbedder`).

    Args:
        hidden_size (`int`, *optional*): the head's width; None takes the language model's (as the official code).
        num_hidden_layers (`int`) [diffusion_depth]: adaLN-SwiGLU blocks (official 6 for B, 8 for L).
        intermediate_size (`int`, *optional*): SwiGLU width; None is the official int(hidden·4·2/3/64)·64.
        latent_size (`int`): d, the latent dimension it denoises; must equal the σ-VAE's `latent_channels`.
        frequency_embedding_size (`int`), max_period (`float`): the sinusoidal timestep embedding (256, 10 000).
        rms_norm_eps (`float`): eps of its RMSNorms (no affine weight, as the official `RMSNorm(elementwise_affine=False)`).
        kernel_backend (`str`): "auto", "reference" or "triton" for the fused adaLN modulation (paperzoo.kernels.adaln).
    """

    model_type = "paperzoo_latentlm_head"

    hidden_size: int | None = None
    num_hidden_layers: int = 3
    intermediate_size: int | None = None
    latent_size: int = 4
    frequency_embedding_size: int = 256
    max_period: float = 10000.0
    rms_norm_eps: float = 1e-6
    initializer_range: float = 0.02
    kernel_backend: str = "auto"

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.validate()

    def validate(self):
        for name in ("num_hidden_layers", "latent_size", "frequency_embedding_size"):
            positive_int(name, getattr(self, name))
        for name in ("hidden_size", "intermediate_size"):
            if getattr(self, name) is not None:
                positive_int(name, getattr(self, name))
        if self.frequency_embedding_size % 2:
            raise ValueError(f"frequency_embedding_size={self.frequency_embedding_size} must be even (cos ‖ sin)")
        if not self.max_period > 0:
            raise ValueError(f"max_period={self.max_period!r} must be > 0")
        if not self.rms_norm_eps > 0:
            raise ValueError(f"rms_norm_eps={self.rms_norm_eps!r} must be > 0")
        if self.kernel_backend not in ("auto", "reference", "triton"):
            raise ValueError(f"kernel_backend={self.kernel_backend!r} is not one of ('auto', 'reference', 'triton')")

    def width(self, lm_hidden_size: int) -> int:
        return self.hidden_size or lm_hidden_size

    def ffn_width(self, lm_hidden_size: int) -> int:
        return self.intermediate_size or int(self.width(lm_hidden_size) * 4 * 2 / 3 / 64) * 64 or 64


class LatentLMConfig(PreTrainedConfig):
    r"""Configuration of LatentLM: one causal LM over text and latents, a σ-VAE tokenizer and a diffusion head.

    A sequence is text with images (or signals) spliced in as `<boi>` + one `latent_token_id` placeholder per latent +
    `<eoi>`. The input at a placeholder is a linear map of its (normalised) latent; the hidden state at the position
    *before* it conditions the diffusion head that predicts it (the explicit shift of the official `forward_parallel`).

    Args:
        text_config (`PreTrainedConfig` or `dict`): any decoder-only LM config `AutoModel` builds (Llama, Qwen2,
            paperzoo's RetNet or YOCO...). Default: a small Llama (CPU-sized).
        vae_config (`SigmaVAEConfig` or `dict`): the tokenizer; its scaling/shift factors normalise the latents.
        head_config (`LatentLMDiffusionHeadConfig` or `dict`): the diffusion head.
        boi_token_id, eoi_token_id, latent_token_id (`int`, *optional*): the span delimiters and the placeholder,
            ids in the text vocabulary. None: the model has no image spans (text only).
        num_classes (`int`): > 0 for the paper's class-conditional setting: a class embedding (and a null class for
            guidance, id `num_classes`) is added to the `<boi>` input; `label_dropout` of training labels become null.
        diffusion_loss_weight (`float`): weight of one latent's diffusion loss against one text token's
            cross-entropy; the loss is their weighted sum over the batch divided by the number of predicted items
            (text tokens + latents), which keeps gradient accumulation exact.
        ddpm_batch_mul (`int`): noise copies (t, ε) per latent; the trunk runs once, only the head sees them (official 4).
        num_train_timesteps (`int`), beta_schedule (`str`): the DDPM schedule of training (official cosine = diffusers'
            "squaredcos_cap_v2", 1000 steps); t is drawn uniformly over the whole range.
        prediction_type (`str`): "v_prediction" (default) or "epsilon" (the official default, which collapses on this
            schedule's near-zero terminal SNR with DPM-Solver++: a warning says so).
        guidance_prefix_ids (`list[int]`): the tokens before `<boi>` in the unconditional branch of classifier-free
            guidance, e.g. `[bos_token_id]` when the tokenizer starts every text with BOS and training dropped the
            prompt after it. Empty: `<boi>` alone (with the null class in class-conditional mode).
        noise_scheduler_class (`str`), num_inference_steps (`int`), guidance_scale (`float`): generation defaults, a
            diffusers multistep scheduler class name built from the training schedule; each can be overridden per
            `generate` call (or in the generation config).
    """

    model_type = "paperzoo_latentlm"
    keys_to_ignore_at_inference = ["cache"]
    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama", init_kwargs={
            "vocab_size": 512, "hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4,
            "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 1024}),
        "vae_config": SubConfigSpec(config_class=SigmaVAEConfig),
        "head_config": SubConfigSpec(config_class=LatentLMDiffusionHeadConfig),
    }

    text_config: dict | PreTrainedConfig | None = None
    vae_config: dict | PreTrainedConfig | None = None
    head_config: dict | PreTrainedConfig | None = None
    boi_token_id: int | None = None
    eoi_token_id: int | None = None
    latent_token_id: int | None = None
    num_classes: int = 0
    label_dropout: float = 0.1
    diffusion_loss_weight: float = 1.0
    ddpm_batch_mul: int = 4
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "v_prediction"
    guidance_prefix_ids: list[int] | tuple[int, ...] = ()
    noise_scheduler_class: str = "DPMSolverMultistepScheduler"
    num_inference_steps: int = 20
    guidance_scale: float = 1.0
    use_cache: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    def __post_init__(self, **kwargs):
        text = self.text_config
        if isinstance(text, dict) and text.get("model_type") in OWN_TEXT_CONFIGS:
            self.text_config = OWN_TEXT_CONFIGS[text["model_type"]](**{k: v for k, v in text.items()
                                                                       if k != "model_type"})
        super().__post_init__(**kwargs)
        self.guidance_prefix_ids = list(self.guidance_prefix_ids)
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            if getattr(self, name) is None:
                setattr(self, name, getattr(self.text_config, name, None))
        self.validate()

    def validate(self):
        """ValueError naming the first field that cannot work."""
        from transformers import MODEL_MAPPING

        text = self.text_config
        known = type(text) in MODEL_MAPPING or type(text) in OWN_TEXT_CONFIGS.values()
        if not isinstance(text, PreTrainedConfig) or text.is_encoder_decoder or not known:
            raise ValueError(f"text_config={type(text).__name__} (model_type={getattr(text, 'model_type', None)!r}) "
                             f"is not the config of a decoder-only model registered with AutoModel")
        if not isinstance(self.vae_config, SigmaVAEConfig):
            raise ValueError(f"vae_config={type(self.vae_config).__name__} must be a SigmaVAEConfig")
        if self.head_config.latent_size != self.vae_config.latent_channels:
            raise ValueError(f"head_config.latent_size={self.head_config.latent_size} differs from "
                             f"vae_config.latent_channels={self.vae_config.latent_channels}: the head denoises the "
                             f"VAE's latents")
        ids = {name: getattr(self, name) for name in ("boi_token_id", "eoi_token_id", "latent_token_id")}
        if any(v is not None for v in ids.values()):
            for name, value in ids.items():
                if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < text.vocab_size:
                    raise ValueError(f"{name}={value!r} must be a token id in [0, {text.vocab_size}) (the three "
                                     f"span ids are set together)")
            if len(set(ids.values())) != 3:
                raise ValueError(f"boi_token_id, eoi_token_id, latent_token_id = {list(ids.values())} must differ")
        prefix = self.guidance_prefix_ids
        if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < text.vocab_size for i in prefix):
            raise ValueError(f"guidance_prefix_ids={prefix!r} must be token ids in [0, {text.vocab_size})")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 0:
            raise ValueError(f"num_classes={self.num_classes!r} must be an integer >= 0")
        if not 0 <= self.label_dropout < 1:
            raise ValueError(f"label_dropout={self.label_dropout!r} must be in [0, 1)")
        if not self.diffusion_loss_weight >= 0:
            raise ValueError(f"diffusion_loss_weight={self.diffusion_loss_weight!r} must be >= 0")
        for name in ("ddpm_batch_mul", "num_train_timesteps", "num_inference_steps"):
            positive_int(name, getattr(self, name))
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"beta_schedule={self.beta_schedule!r} is not one of {BETA_SCHEDULES}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type={self.prediction_type!r} is not one of {PREDICTION_TYPES}")
        check_noise_scheduler(self.noise_scheduler_class)
        check_guidance_scale(self.guidance_scale)
        super_validate = getattr(super(), "validate", None)
        if super_validate is not None:
            super_validate()

    @property
    def vocab_size(self) -> int:
        return self.text_config.vocab_size

    @vocab_size.setter
    def vocab_size(self, value: int):
        self.text_config.vocab_size = value

    @property
    def hidden_size(self) -> int:
        return self.text_config.hidden_size

    @property
    def num_hidden_layers(self) -> int:
        return self.text_config.num_hidden_layers

    def get_text_config(self, decoder=None, encoder=None) -> PreTrainedConfig:
        return self.text_config


def check_noise_scheduler(name) -> str:
    """ValueError unless `name` is a diffusers scheduler class that samples step by step from a `step()` history."""
    import diffusers

    scheduler = getattr(diffusers, name, None) if isinstance(name, str) else None
    if scheduler is None or not hasattr(scheduler, "set_timesteps") or not hasattr(scheduler, "step") \
            or not name.endswith("Scheduler"):
        raise ValueError(f"noise_scheduler_class={name!r} is not a diffusers scheduler class (e.g. "
                         f"'DPMSolverMultistepScheduler', 'UniPCMultistepScheduler', 'DDIMScheduler')")
    return name


def check_guidance_scale(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"guidance_scale={value!r} must be a number >= 0 (1: no guidance)")
    return float(value)


__all__ = ["LatentLMConfig", "LatentLMDiffusionHeadConfig"]
