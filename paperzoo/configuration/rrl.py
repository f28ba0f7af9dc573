"""RRL configuration (Wang et al., "Scalable Rule-Based Representation Learning for Interpretable Classification",
NeurIPS 2021, arXiv 2109.15103; TPAMI 2024, arXiv 2310.14336; official code github.com/12wang3/rrl)."""

from __future__ import annotations

from transformers import PreTrainedConfig


class RRLConfig(PreTrainedConfig):
    r"""Configuration of a Rule-based Representation Learner.

    The network is binarization → logical layers (each: `w` conjunction and `w` disjunction nodes) → linear layer.

    Args:
        num_discrete_features (`int`): width of the one-hot block of the input (the processor's discrete columns).
        num_continuous_features (`int`): number of standardised continuous columns after it. The defaults (0 and 1)
            describe the smallest valid input, one continuous column, so that `RRLConfig()` builds a model as every
            transformers config must; a real model takes both widths from its fitted `RRLProcessor`.
        num_thresholds (`int`): candidate bounds per continuous feature (official `-s n@...`); each gives a `x > c`
            and a `x <= c` literal.
        layer_widths (`list[int]`): `w` of each logical layer (official `-s n@w1@w2...`).
        use_not (`bool`): add ¬x for the one-hot discrete columns at the binarization layer (official
            `--use_not`). Logical layers after the first always see their inputs and their negations, as in the
            official code.
        use_skip (`bool`): from the third layer after binarization on (the output layer included), also feed the
            output of the layer two steps back (official `--skip`).
        activation (`str`): "nlaf" (TPAMI novel logical activation, with `alpha`, `beta`, `gamma`) or "laf"
            (NeurIPS log-product projection).
        alpha, beta, gamma (`float`): NLAF parameters α, β, γ.
        estimated_grad (`bool`): for "laf", the official estimated gradient of the product instead of the exact one.
        grafting (`str`): "hierarchical" (TPAMI, per logical layer) or "single" (NeurIPS, at the output).
        temperature (`float`): initial softmax temperature T; log T is learned (official `--temp`).
        weight_decay (`float`): λ of the L2 term λ·Σ‖W‖² over logical and linear weights (official `-wd`).
        kernel_backend (`str`): "auto", "reference" or "triton" for the logical-layer kernels.
    """

    model_type = "paperzoo_rrl"

    num_discrete_features: int = 0
    num_continuous_features: int = 1
    num_thresholds: int = 10
    layer_widths: list[int] | tuple[int, ...] = (64,)
    use_not: bool = False
    use_skip: bool = False
    activation: str = "nlaf"
    alpha: float = 0.999
    beta: float = 8.0
    gamma: float = 1.0
    estimated_grad: bool = False
    grafting: str = "hierarchical"
    temperature: float = 1.0
    weight_decay: float = 0.0
    kernel_backend: str = "auto"

    def __post_init__(self, **kwargs):
        self.layer_widths = list(self.layer_widths)
        super().__post_init__(**kwargs)
        self.validate()

    def validate(self):
        """Raise ValueError naming the first field whose value cannot build a model."""
        super_validate = getattr(super(), "validate", None)
        if super_validate is not None:
            super_validate()
        for name in ("num_discrete_features", "num_continuous_features"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}={value!r} must be a non-negative integer")
        if self.num_discrete_features + self.num_continuous_features == 0:
            raise ValueError(f"num_discrete_features={self.num_discrete_features!r} and num_continuous_features="
                             f"{self.num_continuous_features!r}: their sum must be > 0 (the model needs inputs)")
        if isinstance(self.num_thresholds, bool) or not isinstance(self.num_thresholds, int) or self.num_thresholds < 1:
            raise ValueError(f"num_thresholds={self.num_thresholds!r} must be a positive integer")
        if not self.layer_widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1
                                        for w in self.layer_widths):
            raise ValueError(f"layer_widths={self.layer_widths!r} must be a non-empty list of positive integers")
        if self.activation not in ("nlaf", "laf"):
            raise ValueError(f"activation={self.activation!r} is not one of ('nlaf', 'laf')")
        if self.grafting not in ("hierarchical", "single"):
            raise ValueError(f"grafting={self.grafting!r} is not one of ('hierarchical', 'single')")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha={self.alpha!r} must lie in (0, 1)")
        if not self.beta >= 1:
            raise ValueError(f"beta={self.beta!r} must be >= 1")
        if not self.gamma > 0:
            raise ValueError(f"gamma={self.gamma!r} must be > 0")
        if not self.temperature > 0:
            raise ValueError(f"temperature={self.temperature!r} must be > 0")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay={self.weight_decay!r} must be >= 0")
        if self.kernel_backend not in ("auto", "reference", "triton"):
            raise ValueError(f"kernel_backend={self.kernel_backend!r} is not one of ('auto', 'reference', 'triton')")
        if self.num_labels < 2:
            raise ValueError(f"num_labels={self.num_labels!r} must be >= 2 (a classifier needs two classes)")


__all__ = ["RRLConfig"]
