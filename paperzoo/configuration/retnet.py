"""RetNet configuration (Sun et al., "Retentive Network", arXiv 2307.08621; official code: torchscale 0.3.0)."""

from __future__ import annotations

from transformers import PreTrainedConfig


class RetNetConfig(PreTrainedConfig):
    r"""Configuration of a RetNet decoder. The five standard sizes are enough; the rest default to torchscale's.

    Args:
        vocab_size, hidden_size (d), num_hidden_layers, num_attention_heads (h), intermediate_size: as in any
            transformers LM. The key dimension per head is d / h (torchscale: 256 in every preset).
        value_size (`int`, *optional*): total value width d_v of multi-scale retention (W_V, W_G: d → d_v,
            W_O: d_v → d). None means `intermediate_size`, as in every torchscale preset. Must divide by h.
        hidden_act (`str`): the GLU activation applied to `gate_proj` (torchscale's `fc1`); "swish" in the presets.
        rms_norm_eps (`float`): eps of every RMSNorm, the per-head group norm included (torchscale `layernorm_eps`).
        rope_theta (`float`): base of the xPos-style rotation, θ_i = rope_theta^(-linspace(0, 1, K/2)).
        scale_embedding (`bool`): multiply token embeddings by √d (torchscale `no_scale_embedding=False`).
        chunk_size (`int`): C, the chunk of the chunkwise form used for inputs longer than C (power of two).
        kernel_backend (`str`): "auto", "reference" or "triton" (see paperzoo.kernels._registry).
        fused_linear_cross_entropy (`bool`): when True, `RetNetForCausalLM` computes the training loss (whenever
            labels are given) from the final hidden states and `lm_head.weight` through
            `paperzoo.kernels.linear_cross_entropy`, without the [B, T, vocab] logits; the loss and its gradients equal
            the plain path's (shifted labels, -100 ignored, Trainer's num_items_in_batch honoured), except that a
            batch whose labels are all ignored gives 0 instead of NaN. `logits` is then None unless `logits_to_keep`
            asks for positions. Default False.
        initializer_range (`float`): std of the output projection and classification heads at init.

    The per-head decay is the official γ_h = 1 − 2^(−5−h), h = 0..H−1.
    """

    model_type = "paperzoo_retnet"
    keys_to_ignore_at_inference = ["cache"]

    vocab_size: int = 32000
    hidden_size: int = 1024
    num_hidden_layers: int = 16
    num_attention_heads: int = 4
    intermediate_size: int = 1728
    value_size: int | None = None
    hidden_act: str = "swish"
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    scale_embedding: bool = False
    chunk_size: int = 64
    kernel_backend: str = "auto"
    fused_linear_cross_entropy: bool = False
    initializer_range: float = 0.02
    use_cache: bool = True
    tie_word_embeddings: bool = False
    pad_token_id: int | None = None
    bos_token_id: int | None = 0
    eos_token_id: int | list[int] | None = 0

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.validate()

    def validate(self):
        """Raise ValueError naming the first field whose value cannot build a model."""
        super_validate = getattr(super(), "validate", None)
        if super_validate is not None:
            super_validate()
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "chunk_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        if self.value_size is not None and (not isinstance(self.value_size, int) or self.value_size <= 0):
            raise ValueError(f"value_size={self.value_size!r} must be a positive integer or None")
        h = self.num_attention_heads
        if self.hidden_size % h:
            raise ValueError(f"num_attention_heads={h} does not divide hidden_size={self.hidden_size}")
        if (self.hidden_size // h) % 2:
            raise ValueError(f"hidden_size / num_attention_heads = {self.hidden_size // h} must be even (rotation pairs)")
        if self.value_dim % h:
            raise ValueError(f"num_attention_heads={h} does not divide value_size={self.value_dim}")
        if self.chunk_size & (self.chunk_size - 1):
            raise ValueError(f"chunk_size={self.chunk_size} must be a power of two")
        if self.kernel_backend not in ("auto", "reference", "triton"):
            raise ValueError(f"kernel_backend={self.kernel_backend!r} is not one of ('auto', 'reference', 'triton')")
        if not isinstance(self.fused_linear_cross_entropy, bool):
            raise ValueError(f"fused_linear_cross_entropy={self.fused_linear_cross_entropy!r} must be a bool")
        if not self.rms_norm_eps >= 0:
            raise ValueError(f"rms_norm_eps={self.rms_norm_eps!r} must be >= 0")
        if not self.rope_theta > 0:
            raise ValueError(f"rope_theta={self.rope_theta!r} must be > 0")
        from transformers.activations import ACT2FN

        if self.hidden_act not in ACT2FN:
            raise ValueError(f"hidden_act={self.hidden_act!r} is not a transformers activation")

    @property
    def value_dim(self) -> int:
        """d_v: `value_size`, or `intermediate_size` when it is None (torchscale's presets tie the two)."""
        return self.value_size if self.value_size is not None else self.intermediate_size

    @property
    def layer_types(self) -> list[str]:
        """Every layer keeps a recurrent state: transformers' DynamicCache gives each a LinearAttentionLayer."""
        return ["linear_attention"] * self.num_hidden_layers

    @property
    def number_of_conv_states(self) -> int:
        """State slots per cache layer: 0 holds the retention state, 1 the next position of each row."""
        return 2


__all__ = ["RetNetConfig"]
