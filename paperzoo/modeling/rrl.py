"""RRL: the Rule-based Representation Learner (Wang et al., NeurIPS 2021, arXiv 2109.15103; TPAMI 2024,
arXiv 2310.14336). Faithful to the official code (github.com/12wang3/rrl, `rrl/components.py`, `rrl/models.py`):

    x ─► binarization (x_disc [, ¬x_disc], 1[x_j > c_jk], 1[x_j ≤ c_jk]) ─► logical layers (w AND ‖ w OR nodes)
      ─► linear layer ─► logits / T

Each logical node has weights W ∈ [0, 1] (clipped after every step); the discrete model uses W̄ = 1[W > 0.5]:
AND_j = 1[Σ_i (1 − x_i) W̄_ij = 0], OR_j = 1[Σ_i x_i W̄_ij > 0]. Training follows the discrete model through Gradient
Grafting: the forward value is the discrete one, the gradient that of a continuous surrogate (NLAF or the
log-product LAF), per logical layer ("hierarchical", TPAMI) or at the output ("single", NeurIPS). Evaluation always
runs the discrete model, so the extracted rules (`extract_rules`) explain its logits exactly. Hierarchical training
runs each logical layer as one fused op (`kernels.logical.logical_grafted`: both kinds, hand-written backward);
`rrl_training.ClosedFormStep` runs the whole training step without autograd (what `RRLClassifier` uses).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import can_return_tuple

from ..configuration.rrl import RRLConfig
from ..kernels.logical import GradGraft, logical_binarized, logical_grafted, logical_nlaf, logical_product
from .hub_mixin import PaperzooHubMixin
from .inputs import reject_unused_kwargs

KINDS = ("conjunction", "disjunction")


class _SumOfSquares(torch.autograd.Function):
    """Σ_t Σ t² over several tensors, one autograd node (per-tensor `pow(2).sum()` and `+` make a dozen)."""

    @staticmethod
    def forward(ctx, *tensors):
        ctx.save_for_backward(*tensors)
        return torch.stack([t.pow(2).sum() for t in tensors]).sum()  # per tensor exactly the official `sum(W ** 2)`

    @staticmethod
    def backward(ctx, grad):
        twice = 2.0 * grad
        return tuple(t * twice for t in ctx.saved_tensors)


class RRLBinarization(nn.Module):
    """Literals of the input: the one-hot discrete block (and its negation), then for every continuous feature j and
    candidate bound c_jk both 1[x_j > c_jk] and 1[x_j ≤ c_jk], feature-major (index j·n + k). The bounds are fixed
    buffers (in the official code too); the logical layers select and combine them into intervals."""

    def __init__(self, config: RRLConfig):
        super().__init__()
        self.num_discrete = config.num_discrete_features
        self.use_not = config.use_not
        self.register_buffer("thresholds", torch.randn(config.num_thresholds, config.num_continuous_features))
        self.output_dim = self.num_discrete * (2 if self.use_not else 1) + 2 * self.thresholds.numel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, d_disc + d_cont] → [B, output_dim]
        x_disc, x_cont = x[:, : self.num_discrete], x[:, self.num_discrete :]
        parts = [x_disc, 1 - x_disc] if self.use_not else [x_disc]
        if x_cont.shape[1]:
            bounds = self.thresholds.t()  # [d_cont, n]
            above = (x_cont[:, :, None] > bounds).to(x.dtype).flatten(1)  # [B, d_cont·n]
            parts += [above, 1 - above]
        return torch.cat(parts, dim=1)


class RRLLogicalLayer(nn.Module):
    """`width` conjunction and `width` disjunction nodes over the same inputs (official UnionLayer)."""

    def __init__(self, config: RRLConfig, input_dim: int, width: int, use_not: bool):
        super().__init__()
        self.config = config
        self.use_not = use_not
        self.input_dim = input_dim
        n_in = input_dim * (2 if use_not else 1)
        self.conjunction_weight = nn.Parameter(torch.empty(n_in, width))  # [n_in, w]
        self.disjunction_weight = nn.Parameter(torch.empty(n_in, width))
        self.output_dim = 2 * width

    def _inputs(self, x):
        return torch.cat([x, 1 - x], dim=1) if self.use_not else x

    def weights(self):
        return dict(zip(KINDS, (self.conjunction_weight, self.disjunction_weight)))

    def continuous(self, x: torch.Tensor) -> torch.Tensor:
        """The differentiable surrogate ỹ (NLAF or LAF), [B, 2w]."""
        x, c = self._inputs(x), self.config
        if c.activation == "nlaf":
            outs = [logical_nlaf(x, w, kind, c.alpha, c.beta, c.gamma, backend=c.kernel_backend)
                    for kind, w in self.weights().items()]
        else:
            outs = [logical_product(x, w, kind, c.estimated_grad, backend=c.kernel_backend)
                    for kind, w in self.weights().items()]
        return torch.cat(outs, dim=1)

    @torch.no_grad()
    def binarized(self, x: torch.Tensor) -> torch.Tensor:
        """The discrete nodes ȳ with W̄ = 1[W > 0.5], [B, 2w] in {0, 1}."""
        x = self._inputs(x)
        return torch.cat([logical_binarized(x, w, kind, backend=self.config.kernel_backend)
                          for kind, w in self.weights().items()], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Hierarchical Gradient Grafting: the next layer sees discrete values ȳ, gradients flow through ỹ (both
        kinds in one fused op: the value of `binarized`, the gradient of `continuous`)."""
        c = self.config
        return logical_grafted(self._inputs(x), self.conjunction_weight, self.disjunction_weight, c.activation,
                               c.alpha, c.beta, c.gamma, c.estimated_grad, backend=c.kernel_backend)

    def clip(self):
        with torch.no_grad():
            for w in self.weights().values():
                w.clamp_(0.0, 1.0)


class RRLPreTrainedModel(PaperzooHubMixin, PreTrainedModel):
    config: RRLConfig
    config_class = RRLConfig
    base_model_prefix = "rrl"
    main_input_name = "input_features"
    input_modalities = ("tabular",)
    accepts_loss_kwargs = False  # plain mean cross-entropy: Trainer divides by the accumulation steps itself

    def _init_weights(self, module):
        """Official init: logical weights U(0, 0.5); the linear layer keeps torch's default."""
        from transformers import initialization as init

        if isinstance(module, RRLLogicalLayer):
            for w in module.weights().values():
                init.uniform_(w, 0.0, 0.5)
        elif isinstance(module, nn.Linear):
            module.reset_parameters()
        elif isinstance(module, RRLForTabularClassification):
            init.constant_(module.log_temperature, float(torch.tensor(self.config.temperature).log()))


class RRLForTabularClassification(RRLPreTrainedModel):
    """Logits of the discrete rule model; with `labels`, loss = CE(logits, labels) + λ·Σ‖W‖² (official loss)."""

    def __init__(self, config: RRLConfig):
        super().__init__(config)
        self.binarization = RRLBinarization(config)
        dims = [self.binarization.output_dim]  # output width of binarization, then of each logical layer
        self.layers = nn.ModuleList()
        for i, width in enumerate(config.layer_widths):
            # the first logical layer gets its NOT literals from the binarization layer (with use_not); every later
            # layer negates its own inputs, whatever use_not says, as the official Net does (`i != 2`)
            layer = RRLLogicalLayer(config, dims[-1] + self._skip_dim(dims, i + 1), width, i > 0)
            self.layers.append(layer)
            dims.append(layer.output_dim)
        self.classifier = nn.Linear(dims[-1] + self._skip_dim(dims, len(dims)), config.num_labels)
        self.log_temperature = nn.Parameter(torch.zeros(()))  # log T, learned
        self.post_init()

    def _skip_dim(self, dims: list[int], position: int) -> int:
        """Layer `position` (0 = binarization) also reads layer `position − 2` from the third layer on."""
        return dims[position - 2] if self.config.use_skip and position >= 3 else 0

    def _run(self, x: torch.Tensor, step) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run binarization and the logical layers with `step(layer, inputs)`; returns the classifier input and
        every layer's output (binarization first)."""
        outputs = [self.binarization(x)]
        for i, layer in enumerate(self.layers):
            outputs.append(step(layer, self._with_skip(outputs, i + 1)))
        return self._with_skip(outputs, len(outputs)), outputs

    def _with_skip(self, outputs: list[torch.Tensor], position: int) -> torch.Tensor:
        if position >= 3 and self.config.use_skip:
            return torch.cat([outputs[position - 1], outputs[position - 2]], dim=1)
        return outputs[position - 1]

    def _check_input(self, input_features: torch.Tensor):
        width = self.config.num_discrete_features + self.config.num_continuous_features
        if input_features.dim() != 2 or input_features.shape[1] != width:
            raise ValueError(
                f"input_features must be [batch, {width}] ({self.config.num_discrete_features} one-hot + "
                f"{self.config.num_continuous_features} continuous columns); got {tuple(input_features.shape)}"
            )

    def discrete_features(self, input_features: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The discrete model up to the linear layer: its input and every layer's {0,1} output."""
        self._check_input(input_features)
        with torch.no_grad():
            return self._run(input_features.to(self.classifier.weight.dtype), lambda layer, h: layer.binarized(h))

    @can_return_tuple
    def forward(
        self,
        input_features: torch.Tensor,
        labels: torch.LongTensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        reject_unused_kwargs(self, kwargs)
        self._check_input(input_features)
        x = input_features.to(self.classifier.weight.dtype)
        if not self.training:  # evaluation is the discrete model (official `net.forward` at test time)
            logits = self.classifier(self.discrete_features(x)[0])
        elif self.config.grafting == "hierarchical":
            logits = self.classifier(self._run(x, lambda layer, h: layer(h))[0])
        else:  # single grafting: ∂CE/∂(discrete logits) is injected into the continuous model's logits
            discrete = self.classifier(self._run(x, lambda layer, h: layer.binarized(h))[0])
            continuous = self.classifier(self._run(x, lambda layer, h: layer.continuous(h))[0])
            logits = GradGraft.apply(discrete, continuous)
        logits = logits / torch.exp(self.log_temperature)  # the official `net(x) / exp(t)`
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits, labels.to(device=logits.device, dtype=torch.long))
            weight_decay = self.config.weight_decay
            if weight_decay:
                loss = loss + weight_decay * self.l2_penalty()
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def l2_penalty(self) -> torch.Tensor:
        """Σ‖W‖² over the logical weights and the linear weight (bias excluded), as the official `l2_penalty`."""
        logical = (w for layer in self.layers for w in layer.weights().values())
        return _SumOfSquares.apply(self.classifier.weight, *logical)

    def clip_weights(self):
        """Clamp logical weights to [0, 1]; call after every optimizer step (the official `clip`)."""
        for layer in self.layers:
            layer.clip()

    def edge_count(self) -> int:
        """Edges (W̄ = 1) of the logical nodes the output depends on: the nodes with a nonzero output weight, then,
        layer by layer down, the nodes they read. The official complexity measure counts the edges of the extracted
        rules, which are these; a node that nothing reads (or a pruned one) adds none."""
        widths = [self.binarization.output_dim] + [layer.output_dim for layer in self.layers]
        needed = [torch.zeros(w, dtype=torch.bool) for w in widths]  # per layer output: is it read?

        def mark(read: torch.Tensor, position: int):  # `read` indexes the input of layer `position`
            needed[position - 1] |= read[: widths[position - 1]]
            if self._skip_dim(widths, position):
                needed[position - 2] |= read[widths[position - 1] :]

        mark((self.classifier.weight != 0).any(0).cpu(), len(widths))
        edges = 0
        for position in range(len(self.layers), 0, -1):  # every reader of a layer comes after it
            layer = self.layers[position - 1]
            w_bar = torch.cat([(w > 0.5).cpu() for w in layer.weights().values()], dim=1)  # [n_in, 2w]
            used = w_bar[:, needed[position]]
            edges += int(used.sum())
            read = used.any(1)
            if layer.use_not:  # x and ¬x are both the input node x
                read = read[: layer.input_dim] | read[layer.input_dim :]
            mark(read, position)
        return edges

    @torch.no_grad()
    def prune_by_support(self, input_features: torch.Tensor) -> dict:
        """The official pruning of nodes that never or always fire on `input_features` (the training rows), made exact
        by construction: the model itself becomes the pruned rule set, so its explanations stay exact on any row.

        Layer by layer, an input that is constant on these rows is dropped from every node for which its value is
        neutral (always-on in an AND, never-on in an OR), as the official extraction leaves dead nodes out of the
        rules that read them (where the value absorbs, the reader is constant too and goes at its own layer). At the
        output, a constant node's weights go: into the bias when it is always on (b' = b + w, as the official code
        folds it), to zero when never. On these rows the logits do not change; on a new row the model computes the
        pruned rules, which the official code prints but does not run. Returns the number of edges dropped and of
        output nodes removed."""
        self._check_input(input_features)
        if not len(input_features):
            raise ValueError("prune_by_support needs at least one row of input_features")
        n = len(input_features)
        _, outputs = self.discrete_features(input_features)

        def constant(values: torch.Tensor) -> torch.Tensor:  # [N, P] → [P]: 1 always on, 0 never on, -1 varies
            on = values.sum(0)
            return torch.where(on == n, 1, torch.where(on == 0, 0, -1))

        edges = 0
        for position, layer in enumerate(self.layers, 1):
            state = constant(layer._inputs(self._with_skip(outputs, position)))  # [n_in]
            for kind, w in layer.weights().items():
                neutral = 1 if kind == "conjunction" else 0  # x ∧ 1 = x, x ∨ 0 = x
                drop = (w > 0.5) & (state == neutral)[:, None]  # [n_in, w]
                edges += int(drop.sum())
                w[drop] = 0.0
        state = constant(self._with_skip(outputs, len(outputs)))  # [positions]
        weight = self.classifier.weight  # [C, positions]
        self.classifier.bias += weight[:, state == 1].sum(1)
        removed = int(((state >= 0) & (weight != 0).any(0)).sum())
        weight[:, state >= 0] = 0.0
        return {"edges_dropped": edges, "output_nodes_removed": removed}

    def extract_rules(self, schema: dict | None = None):
        """The discrete model as weighted rules (see `rrl_rules.RuleSet`); `schema` names the columns (from
        `RRLProcessor.schema()`), else generic names and standardised units are used."""
        from .rrl_rules import extract_rules

        return extract_rules(self, schema)


__all__ = ["RRLForTabularClassification", "RRLPreTrainedModel"]
