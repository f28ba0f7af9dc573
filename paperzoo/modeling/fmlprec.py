"""FMLP-Rec (Zhou et al., WWW 2022) as trained by the CE/SCE papers (MTandHJ/CE-SCE-LLMRec `FMLP-Rec/`):

    x = Dropout(LN(E[items] + P[positions]))
    N × blocks:  y = LN(x + Dropout(irfft(rfft(x, over the window) ⊙ W)))     W: learnable complex [T/2 + 1, d]
                 x = LN(y + Dropout(W₂ GELU(W₁ y)))
    s_j = ⟨h_T, E[j]⟩

The filter is global over the window (the official design): a position's output reads the items after it, so only the
last position of a window is trained and scored (`train_last_position_only`): earlier positions would see their own
target.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..configuration.fmlprec import FMLPRecConfig
from .seqrec import SequentialRecommenderPreTrainedModel


class FMLPRecBlock(nn.Module):
    def __init__(self, config: FMLPRecConfig):
        super().__init__()
        d, T, p = config.hidden_size, config.max_length, config.hidden_dropout_prob
        self.filter_weight = nn.Parameter(torch.randn(T // 2 + 1, d, 2) * 0.02)  # complex weights as (real, imag)
        self.filter_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.ffn = nn.Sequential(nn.Linear(d, config.intermediate_size), nn.GELU(),
                                 nn.Linear(config.intermediate_size, d))
        self.ffn_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, d]
        T = x.shape[1]
        spectrum = torch.fft.rfft(x.float(), dim=1, norm="ortho")  # [B, T/2 + 1, d]
        filtered = torch.fft.irfft(spectrum * torch.view_as_complex(self.filter_weight.float()), n=T, dim=1,
                                   norm="ortho").to(x.dtype)
        y = self.filter_norm(x + self.dropout(filtered))
        return self.ffn_norm(y + self.dropout(self.ffn(y)))


class FMLPRecForSequentialRecommendation(SequentialRecommenderPreTrainedModel):
    config_class = FMLPRecConfig
    _no_split_modules = ["FMLPRecBlock"]
    train_last_position_only = True

    def __init__(self, config: FMLPRecConfig):
        super().__init__(config)
        d = config.hidden_size
        self.item_embeddings = nn.Embedding(config.num_items + 1, d, padding_idx=0)
        self.position_embeddings = nn.Embedding(config.max_length, d)
        self.norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layers = nn.ModuleList(FMLPRecBlock(config) for _ in range(config.num_hidden_layers))
        self.post_init()

    def encode(self, input_ids: torch.LongTensor, mask: torch.Tensor) -> torch.Tensor:
        B, T = input_ids.shape
        L = self.config.max_length
        if T > L:
            raise ValueError(f"input_ids has {T} positions; max_length={L} (keep the last items)")
        ids = F.pad(input_ids * mask, (L - T, 0))  # the filter is sized for the full window
        x = self.item_embeddings(ids) + self.position_embeddings(torch.arange(L, device=ids.device))
        x = self.dropout(self.norm(x))
        for layer in self.layers:
            x = layer(x)
        return x[:, L - T:]
