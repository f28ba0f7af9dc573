"""What the sequential recommenders of the CE/SCE papers share (Xu et al., arXiv 2402.06216 / 2408.14238; official code
MTandHJ/CE-SCE-LLMRec `*/main.py`, `CoachForX.train_per_epoch`): an encoder of the item window gives h_t at every
position; the score of item j is s_j = ⟨h_t, e_j⟩ with the item table E (tied to the input embeddings); the next item
is the target at every position. The loss is the configured one of paperzoo.losses.recommendation, summed over the
valid positions and divided by their number (or by Trainer's num_items_in_batch: exact gradient accumulation); full
CE runs through the fused linear cross-entropy (no [positions, N] logits) where `fused_cross_entropy` asks for it.

Inputs are item ids [B, T], left-padded with 0 (the most recent item last); `labels` [B, T] the next item id at each
position, -100 (or 0) where there is none. The output `logits` are the scores of the last position over the whole
item table [B, N + 1] (column 0, the padding, is −inf): what ranking reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel
from transformers.utils import ModelOutput, can_return_tuple

from ..configuration.seqrec import SequentialRecommenderConfig
from ..kernels.linear_cross_entropy import linear_cross_entropy
from ..losses import recommendation as losses
from .hub_mixin import PaperzooHubMixin
from .inputs import reject_unused_kwargs


_LOGITS_BYTES = 256 * 2**20  # fused_cross_entropy=None: the fused op above this size of fp32 [positions, N] logits


@dataclass
class SequentialRecommenderOutput(ModelOutput):
    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None  # [B, N + 1] scores of the next item after each row's last position
    last_hidden_state: torch.FloatTensor | None = None  # [B, T, d]


class SequentialRecommenderPreTrainedModel(PaperzooHubMixin, PreTrainedModel):
    config_class = SequentialRecommenderConfig
    base_model_prefix = "recommender"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    train_last_position_only = False  # True where a position's output reads later items (FMLP-Rec's global filter)

    def _init_weights(self, module):
        from torch import nn
        from transformers import initialization as init

        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)

    # ------------------------------------------------------------------------------------------------------------------
    # What each model defines

    def get_input_embeddings(self):
        return self.item_embeddings

    def encode(self, input_ids: torch.LongTensor, mask: torch.Tensor) -> torch.Tensor:
        """h [B, T, d]: the state after each position, from the items at and before it."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------------------------------

    def check_items(self, input_ids: torch.Tensor, name: str = "input_ids") -> None:
        N = self.config.num_items
        if input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise ValueError(f"{name} must be [B, T] item ids with T ≥ 1; got shape {tuple(input_ids.shape)}")
        if not torch.compiler.is_compiling():
            bad = (input_ids < 0) | (input_ids > N)
            if bad.any():
                raise ValueError(f"{name} holds item id {input_ids[bad][0].item()}, outside 0..{N} (0 = padding)")

    @can_return_tuple
    def forward(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None,
                labels: torch.LongTensor | None = None, num_items_in_batch=None, **kwargs):
        reject_unused_kwargs(self, kwargs)
        self.check_items(input_ids)
        mask = (input_ids != 0) if attention_mask is None else attention_mask.bool()
        hidden = self.encode(input_ids, mask)  # [B, T, d]
        table = self.item_embeddings.weight  # [N + 1, d]
        last = hidden[:, -1]  # left padding: the most recent item is last
        logits = last @ table.T  # [B, N + 1]
        logits = torch.cat([torch.full_like(logits[:, :1], float("-inf")), logits[:, 1:]], 1)
        loss = None
        if labels is not None:
            loss = self.recommendation_loss(hidden, input_ids, labels, num_items_in_batch)
        return SequentialRecommenderOutput(loss=loss, logits=logits, last_hidden_state=hidden)

    def recommendation_loss(self, hidden, input_ids, labels, num_items_in_batch=None) -> torch.Tensor:
        """Σ over positions with a next item of the configured loss, / their number (or num_items_in_batch)."""
        c = self.config
        if labels.shape != input_ids.shape:
            raise ValueError(f"labels must be [B, T]={tuple(input_ids.shape)}; got {tuple(labels.shape)}")
        valid = (labels > 0)  # [B, T]: -100 and 0 have no next item
        if self.train_last_position_only and not torch.compiler.is_compiling() and valid[:, :-1].any():
            raise ValueError(f"{type(self).__name__} is trained on the last position of each window only (its "
                             f"positions read the items after them): labels must be -100 except in the last column "
                             f"(SequentialRecommendationProcessor.split(..., every_prefix=True))")
        if not torch.compiler.is_compiling() and (labels > c.num_items).any():
            raise ValueError(f"labels hold item id {labels[labels > c.num_items][0].item()}, outside 1..{c.num_items}")
        h, targets = hidden[valid], labels[valid]  # [M, d], [M]
        count = num_items_in_batch if num_items_in_batch is not None else valid.sum().clamp(min=1)
        table = self.item_embeddings.weight
        if c.loss_type == "ce":  # full softmax over items 1..N (the padding row is not a candidate)
            fused = c.fused_cross_entropy
            if fused is None:  # auto: where the logits would be large, or Triton can run
                fused = h.is_cuda or h.shape[0] * c.num_items * 4 > _LOGITS_BYTES
            if fused:
                total = linear_cross_entropy(h, table[1:], targets - 1, backend=c.kernel_backend, reduction="sum")
            else:
                acc = torch.promote_types(h.dtype, torch.float32)  # fp32 at least, float64 stays float64
                total = losses.full_cross_entropy(h.to(acc) @ table[1:].to(acc).T, targets - 1, reduction="sum")
            return total / count
        seen = None
        if c.negative_pool == "unseen":
            row = torch.arange(labels.shape[0], device=labels.device)[:, None].expand_as(labels)[valid]
            seen = torch.zeros(labels.shape[0], c.num_items + 1, dtype=torch.bool, device=labels.device)
            seen[torch.arange(labels.shape[0], device=labels.device)[:, None], input_ids] = True
            seen[torch.arange(labels.shape[0], device=labels.device)[:, None], labels.clamp(min=0)] = True
            seen = seen[row]  # [M, N + 1]
        negatives = losses.sample_negatives((h.shape[0], c.num_negatives), c.num_items, pool=c.negative_pool,
                                            seen=seen, device=h.device)  # [M, K]
        pos = (h * table[targets]).sum(-1, keepdim=True).float()  # [M, 1]
        neg = torch.einsum("md,mkd->mk", h, table[negatives]).float()  # [M, K]
        if c.loss_type == "sce":
            total = losses.scaled_cross_entropy(pos, neg, c.sce_alpha, reduction="sum")
        elif c.loss_type == "ssm":
            total = losses.sampled_softmax(pos, neg, reduction="sum")
        elif c.loss_type == "nce":
            total = losses.noise_contrastive_estimation(pos, neg, c.num_items, c.nce_c, reduction="sum")
        elif c.loss_type == "neg":
            total = losses.negative_sampling(pos, neg, reduction="sum")
        elif c.loss_type == "bce":
            total = losses.binary_cross_entropy(pos, neg, reduction="sum")
        else:
            total = losses.bpr(pos, neg, reduction="sum")
        return total / count

    @torch.no_grad()
    def recommend(self, input_ids: torch.LongTensor, k: int = 10, exclude_seen: bool = True):
        """(scores [B, k], item ids [B, k]) of the top-k next items after each history (seen items left out)."""
        logits = self(input_ids).logits
        if exclude_seen:
            logits = logits.scatter(1, input_ids, float("-inf"))
        return logits.topk(k, dim=1)


__all__ = ["SequentialRecommenderOutput", "SequentialRecommenderPreTrainedModel"]
