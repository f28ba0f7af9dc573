"""RRL's official training step with its backward written out: no autograd graph, no per-step binarization.

A step of the official loop (`rrl/models.py` `train_model`) on a batch of literals h⁰ (the binarization layer's
output: its bounds are fixed buffers, so `RRLClassifier` computes the literals of the training rows once) is

    hˡ = layer_l(h^{l−1} [‖ h^{l−2}])      grafted: discrete value, continuous-surrogate gradient (fused layer)
    z = (W hᴸ + b) / e^τ                   the linear layer and the learned temperature, official `net(x) / exp(t)`
    L = CE(z, t) + λ (‖W‖² + Σ_l ‖W_l‖²)   the official loss (`l2_penalty`: bias and τ excluded)

with, for g = (softmax(z) − onehot(t)) / B:

    ∂L/∂τ = −Σ g ⊙ z,   ∂L/∂b = Σ_b g / e^τ,   ∂L/∂W = (g / e^τ)ᵀ hᴸ + 2λW,   ∂L/∂hᴸ = (g / e^τ) W
    ∂L/∂W_l = (the fused layer's backward) + 2λW_l, layer by layer from the last, skip inputs summed

then Adam and the clip of every W_l to [0, 1], as the official step. On CPU at batch 32 the autograd engine and
the per-step binarization cost more than the arithmetic: this step runs the same arithmetic without them
(`RRLForTabularClassification.forward` with autograd stays the path for `Trainer`, single grafting and Triton).
tests/modeling/test_rrl_training.py checks it against autograd through the model in float64.
"""

from __future__ import annotations

import torch

from ..kernels._registry import resolve
from ..kernels.logical import _unsupported
from ..kernels.logical.grafted import grafted_backward, grafted_forward, is_binary


def closed_form_unsupported(model, features: torch.Tensor) -> str | None:
    """Why `ClosedFormStep` cannot train `model` on these input features (None: it can)."""
    config = model.config
    if config.grafting != "hierarchical":
        return f"grafting={config.grafting!r} (the closed form is the hierarchical one)"
    weight = model.classifier.weight
    if resolve("logical", config.kernel_backend, _unsupported(weight, weight)) != "reference":
        return "the logical layers run on Triton"
    # the bounds' literals are 0/1 whatever the values; the one-hot block passes through as given
    if config.activation == "laf" and not is_binary(features[:, : config.num_discrete_features]):
        return "activation='laf' with fractional one-hot inputs (the product's matmul form needs binary literals)"
    return None


class ClosedFormStep:
    """`step(literals, targets)`: one official training step of `model` (module docstring) with `optimizer`;
    returns the loss (detached, on the device) when `with_loss`, else None (it costs a few ops more)."""

    def __init__(self, model, optimizer: torch.optim.Optimizer):
        self.model, self.optimizer = model, optimizer
        config = model.config
        self.activation = (config.activation, config.alpha, config.beta, config.gamma, config.estimated_grad)
        self.weight_decay = config.weight_decay

    def _with_skip_grad(self, grads: list, outputs: list, position: int, grad: torch.Tensor) -> None:
        """Route ∂L/∂(input of `position`) to the outputs it was made of (`model._with_skip`)."""
        if position >= 3 and self.model.config.use_skip:
            width = outputs[position - 1].shape[1]
            self._accumulate(grads, position - 1, grad[:, :width])
            self._accumulate(grads, position - 2, grad[:, width:])
        else:
            self._accumulate(grads, position - 1, grad)

    @staticmethod
    def _accumulate(grads: list, index: int, grad: torch.Tensor) -> None:
        grads[index] = grad if grads[index] is None else grads[index] + grad

    @torch.no_grad()
    def __call__(self, literals: torch.Tensor, targets: torch.Tensor, with_loss: bool = True):
        model, lam = self.model, self.weight_decay
        # forward: discrete values, with what each fused layer needs for its backward
        outputs, states = [literals], []  # outputs[l]: hˡ [B, 2w_l]
        for i, layer in enumerate(model.layers):
            x = layer._inputs(model._with_skip(outputs, i + 1))  # [B, n_in] (NOT literals appended after layer 1)
            y, state = grafted_forward(x, layer.conjunction_weight, layer.disjunction_weight, *self.activation,
                                       need_x=i > 0)
            outputs.append(y)
            states.append(state)
        h = model._with_skip(outputs, len(outputs))  # [B, D]
        weight, bias, tau = model.classifier.weight, model.classifier.bias, model.log_temperature
        temperature = tau.exp()
        logits = torch.addmm(bias, h, weight.t()).div_(temperature)  # [B, C]
        g = torch.softmax(logits, dim=1)
        rows = torch.arange(len(targets), device=g.device)
        loss = None
        if with_loss:
            loss = -g[rows, targets].log().mean()
            if lam:
                squares = [weight] + [w for layer in model.layers for w in layer.weights().values()]
                loss = loss + lam * torch.stack([w.pow(2).sum() for w in squares]).sum()
        # backward: g = ∂CE/∂z
        g[rows, targets] -= 1.0
        g.div_(len(targets))
        tau.grad = -(g * logits).sum()
        g.div_(temperature)  # ∂L/∂(W h + b)
        weight.grad = torch.addmm(weight, g.t(), h, beta=2.0 * lam) if lam else g.t() @ h
        bias.grad = g.sum(0)
        grads = [None] * len(outputs)  # grads[l]: ∂L/∂hˡ
        self._with_skip_grad(grads, outputs, len(outputs), g @ weight)
        for i in reversed(range(len(model.layers))):
            layer = model.layers[i]
            dx, dw_conj, dw_disj = grafted_backward(states[i], grads[i + 1])
            for w, dw in ((layer.conjunction_weight, dw_conj), (layer.disjunction_weight, dw_disj)):
                w.grad = dw.add_(w, alpha=2.0 * lam) if lam else dw
            if i > 0:  # the layer's input came from layers below (layer 0's from the literals: no gradient)
                if layer.use_not:  # it read [x ‖ 1 − x]: ∂L/∂x = ∂L/∂[x] − ∂L/∂[1 − x]
                    dx = dx[:, : dx.shape[1] // 2] - dx[:, dx.shape[1] // 2 :]
                self._with_skip_grad(grads, outputs, i + 1, dx)
        self.optimizer.step()
        model.clip_weights()
        return loss
