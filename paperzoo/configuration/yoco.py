"""YOCO configuration (Sun et al., "You Only Cache Once: Decoder-Decoder Architectures for Language Models",
arXiv 2405.05254; official code: microsoft/unilm `YOCO/yoco/models/decoder/yoco.py`, `YOCOArgs`)."""

from __future__ import annotations

from transformers import PreTrainedConfig

SELF_DECODERS = ("gated_retention", "sliding_window")
PAPER_WINDOW = 1024  # the paper's sliding window in its scaling experiments (§4.1)


class YOCOConfig(PreTrainedConfig):
    r"""Configuration of a YOCO decoder-decoder: L/2 self-decoder layers, one shared K/V, L/2 cross-decoder layers.

    Args (official `YOCOArgs` name in brackets):
        vocab_size, hidden_size [dim], num_hidden_layers [n_layers] (L, even), intermediate_size [hidden_dim]: the
            SwiGLU width of every layer.
        self_decoder (`str`): "gated_retention" (gRet, data-dependent decay; the official default) or
            "sliding_window" (sliding-window attention; official `sliding_window` set).
        num_self_heads [n_self_heads]: heads of the self-decoder; its head dim is hidden_size / num_self_heads.
        sliding_window (`int`, *optional*): C, the keys a sliding-window query sees (itself and the C − 1 before it,
            flash-attn's `window_size=(C − 1, 0)`). Only for self_decoder="sliding_window", where None means the
            paper's 1024; must stay None for gated retention.
        num_attention_heads [n_attn_heads], num_key_value_heads [n_attn_kv_heads]: query and K/V heads of the
            cross-decoder (GQA); head dim hidden_size / num_attention_heads. None K/V heads means as many as queries.
        gate_logit_normalizer (`float`): τ in γ = sigmoid(x W_γ)^(1/τ) (official 16).
        rms_norm_eps [norm_eps], rope_theta [rope_theta]: every RMSNorm's eps; the rotary base (the angles are
            rope_theta^(−linspace(0, 1, head_dim/2)), rotated as interleaved pairs, as the official code does).
        chunk_size (`int`): the chunk of the chunkwise gated-retention kernel (power of two).
        prefill_segment_size (`int`): a prompt longer than this runs through the self-decoder in segments of this
            many tokens when no gradient is needed and a cache is kept, which bounds prefill activations (the shared K/V
            still grows with the prompt).
        kernel_backend (`str`): "auto", "reference" or "triton" (see paperzoo.kernels._registry).

    The token embeddings are always multiplied by sqrt(hidden_size), as in the official forward.
    """

    model_type = "paperzoo_yoco"
    keys_to_ignore_at_inference = ["cache"]

    vocab_size: int = 32000
    hidden_size: int = 1024
    num_hidden_layers: int = 24
    intermediate_size: int = 3072
    self_decoder: str = "gated_retention"
    num_self_heads: int = 4
    sliding_window: int | None = None
    num_attention_heads: int = 8
    num_key_value_heads: int | None = None
    gate_logit_normalizer: float = 16.0
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    chunk_size: int = 64
    prefill_segment_size: int = 4096
    kernel_backend: str = "auto"
    use_cache: bool = True
    tie_word_embeddings: bool = False
    pad_token_id: int | None = None
    bos_token_id: int | None = 0
    eos_token_id: int | list[int] | None = 0

    def __post_init__(self, **kwargs):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.self_decoder == "sliding_window" and self.sliding_window is None:
            self.sliding_window = PAPER_WINDOW
        super().__post_init__(**kwargs)
        self.validate()

    def validate(self):
        """Raise ValueError naming the first field whose value cannot build a model (ours first: transformers' own
        checks of `layer_types` would otherwise report an odd layer count in its terms)."""
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size", "num_self_heads",
                     "num_attention_heads", "num_key_value_heads", "chunk_size", "prefill_segment_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        if self.num_hidden_layers % 2:
            raise ValueError(f"num_hidden_layers={self.num_hidden_layers} must be even: L/2 self-decoder layers, "
                             f"then L/2 cross-decoder layers")
        if self.self_decoder not in SELF_DECODERS:
            raise ValueError(f"self_decoder={self.self_decoder!r} is not one of {SELF_DECODERS}")
        if self.self_decoder == "gated_retention" and self.sliding_window is not None:
            raise ValueError(f"sliding_window={self.sliding_window!r} is set, but self_decoder='gated_retention' has "
                             f"no window; use self_decoder='sliding_window' or leave sliding_window None")
        if self.self_decoder == "sliding_window" and (isinstance(self.sliding_window, bool)
                                                     or not isinstance(self.sliding_window, int)
                                                     or self.sliding_window <= 0):
            raise ValueError(f"sliding_window={self.sliding_window!r} must be a positive integer")
        for heads in ("num_self_heads", "num_attention_heads"):
            h = getattr(self, heads)
            if self.hidden_size % h:
                raise ValueError(f"{heads}={h} does not divide hidden_size={self.hidden_size}")
            if (self.hidden_size // h) % 2:
                raise ValueError(f"hidden_size / {heads} = {self.hidden_size // h} must be even (rotation pairs)")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"num_key_value_heads={self.num_key_value_heads} does not divide "
                             f"num_attention_heads={self.num_attention_heads} (grouped-query attention)")
        if self.chunk_size & (self.chunk_size - 1):
            raise ValueError(f"chunk_size={self.chunk_size} must be a power of two")
        if self.kernel_backend not in ("auto", "reference", "triton"):
            raise ValueError(f"kernel_backend={self.kernel_backend!r} is not one of ('auto', 'reference', 'triton')")
        if not self.gate_logit_normalizer > 0:
            raise ValueError(f"gate_logit_normalizer={self.gate_logit_normalizer!r} must be > 0")
        if not self.rms_norm_eps >= 0:
            raise ValueError(f"rms_norm_eps={self.rms_norm_eps!r} must be >= 0")
        if not self.rope_theta > 0:
            raise ValueError(f"rope_theta={self.rope_theta!r} must be > 0")
        super_validate = getattr(super(), "validate", None)
        if super_validate is not None:
            super_validate()

    @property
    def num_self_layers(self) -> int:
        return self.num_hidden_layers // 2

    @property
    def layer_types(self) -> list[str]:
        """The cache layer of each model layer: the self-decoder's (a recurrent state, or a K/V window that never grows
        past it), then attention over the shared K/V for the cross-decoder (see `kv_sharing_modes`)."""
        self_type = "linear_attention" if self.self_decoder == "gated_retention" else "sliding_attention"
        return [self_type] * self.num_self_layers + ["full_attention"] * self.num_self_layers

    @property
    def kv_sharing_modes(self) -> list[str | None]:
        """transformers' KV sharing (as Gemma 4): the first cross-decoder layer stores the ONE shared K/V, the other
        cross-decoder layers "reuse" it and hold a DummyLayer, so cache bytes do not grow with their number."""
        half = self.num_self_layers
        return [None] * half + ["store"] + ["reuse"] * (half - 1)

    @property
    def number_of_conv_states(self) -> int:
        """Recurrent-state slots per gated-retention cache layer: the state S [B, H, K, V]."""
        return 1


__all__ = ["YOCOConfig"]
