"""SASRec (Kang & McAuley, ICDM 2018) as trained by the CE/SCE papers (MTandHJ/CE-SCE-LLMRec `SASRec/`, freerec):

    x_t = √d · E[item_t] + P[t]           (left-padded window of max_length items; padding rows zeroed)
    L × pre-LN blocks:  x = x + Attn(LN(x))  (causal, padding keys masked)
                        x = x + FFN(LN(x))   (point-wise Linear-ReLU-Linear, dropout)
    h = LN(x);  s_j = ⟨h_t, E[j]⟩         (scores tied to the item table)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..configuration.sasrec import SASRecConfig
from .seqrec import SequentialRecommenderPreTrainedModel


class SASRecAttention(nn.Module):
    def __init__(self, config: SASRecConfig):
        super().__init__()
        self.heads, self.dropout = config.num_attention_heads, config.attention_dropout
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:  # x [B, T, d], visible [B, 1, T, T]
        B, T, d = x.shape
        q, k, v = (proj(x).view(B, T, self.heads, -1).transpose(1, 2) for proj in (self.q_proj, self.k_proj,
                                                                                  self.v_proj))
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=visible,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.o_proj(o.transpose(1, 2).reshape(B, T, d))


class SASRecBlock(nn.Module):
    def __init__(self, config: SASRecConfig):
        super().__init__()
        d, p = config.hidden_size, config.hidden_dropout_prob
        self.attention_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.attention = SASRecAttention(config)
        self.ffn_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.ffn = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Dropout(p), nn.Linear(d, d), nn.Dropout(p))
        self.dropout = nn.Dropout(p)

    def forward(self, x: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.attention_norm(x), visible))
        return x + self.ffn(self.ffn_norm(x))


class SASRecForSequentialRecommendation(SequentialRecommenderPreTrainedModel):
    config_class = SASRecConfig
    _no_split_modules = ["SASRecBlock"]

    def __init__(self, config: SASRecConfig):
        super().__init__(config)
        d = config.hidden_size
        self.item_embeddings = nn.Embedding(config.num_items + 1, d, padding_idx=0)
        self.position_embeddings = nn.Embedding(config.max_length, d)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layers = nn.ModuleList(SASRecBlock(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.post_init()

    def encode(self, input_ids: torch.LongTensor, mask: torch.Tensor) -> torch.Tensor:
        B, T = input_ids.shape
        if T > self.config.max_length:
            raise ValueError(f"input_ids has {T} positions; max_length={self.config.max_length} (keep the last items)")
        positions = torch.arange(self.config.max_length - T, self.config.max_length, device=input_ids.device)
        x = self.item_embeddings(input_ids) * self.config.hidden_size**0.5 + self.position_embeddings(positions)
        x = self.dropout(x) * mask[..., None]  # [B, T, d]
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        # a padded query still sees itself (no empty softmax row); padded rows are never scored
        visible = (causal[None] & mask[:, None, :]) | torch.eye(T, dtype=torch.bool, device=x.device)[None]
        for layer in self.layers:
            x = layer(x, visible[:, None]) * mask[..., None]
        return self.norm(x)


__all__ = ["SASRecForSequentialRecommendation"]
