"""FocusLLM (Li et al., "FocusLLM: Precise Understanding of Long Context by Dynamic Condensing", arXiv 2408.11745)
as a wrapper around an unchanged transformers decoder-only LM (Llama, Mistral, Qwen2/3, Gemma...).

The method, per the paper (§2.2-2.3) and the official code, to predict the token after x_1..x_S:
1. the local context is the last `local_window` tokens; the memory (everything before it) is cut into chunks
   C_1..C_k of `chunk_size` tokens (the last may be shorter), aligned from the first token;
2. each chunk gets the dynamic prompt (the last `dynamic_prompt_len` tokens) appended: Ĉ_i = C_i ⊕ [BOS] ⊕ prompt;
   the last token x_S of each Ĉ_i is the candidate token: in every layer it is projected with its own trainable
   copies of the attention projections (W_Q^c, W_K^c, W_V^c, W_O^c), every other token with the frozen ones;
3. the candidates' per-layer keys and values, at positions 0..k−1, are a KV prefix for the frozen model's pass over
   the local context (positions k..), whose last position predicts x_{S+1}.

How it runs here, as batches rather than the official loop over chunks:
- the chunk pass: every chunk's keys and values, chunks as the rows of one left-padded batch (positions per row).
  They depend on the chunk alone, so a cache keeps those of full chunks for the next tokens;
- the prompt pass: [BOS] ⊕ prompt for every chunk row at once, over the chunk keys and values; the candidate keys come
  out rotated at the position each row ends at and are moved to their prefix position by rotary composition
  (R(a)R(b) = R(a + b));
- the local pass: one row per prediction, candidates as a KV prefix, left-padded.
Each prediction builds its candidates from a prompt ending at its own last token, so logits at position t depend on
x_1..x_t only: decoding one token at a time equals recomputing the whole sequence, and a loss can score any position.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers.cache_utils import DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast

from ..configuration.focusllm import FocusLLMConfig, positive_int
from .hub_mixin import PaperzooHubMixin
from .inputs import LOSS_KWARGS, cache_forward, check_lm_inputs, reject_unused_kwargs

# the candidates alone are saved under transformers' own weights name (Trainer resumes from it, loading it
# non-strictly into the wrapped model), marked in the file's metadata so that loading fetches the base first
WEIGHTS_FILE = "model.safetensors"
CANDIDATES_ONLY = {"format": "pt", "paperzoo_focusllm": "candidates"}

# whether the forward running now is a prompt pass, whose last position in every row is a candidate token
_CANDIDATE_LAST = contextvars.ContextVar("paperzoo_focusllm_candidate_last", default=False)


@contextlib.contextmanager
def candidate_pass():
    """Within it, every CandidateLinear projects the last position of each row with its candidate weights."""
    token = _CANDIDATE_LAST.set(True)
    try:
        yield
    finally:
        _CANDIDATE_LAST.reset(token)


class CandidateLinear(nn.Module):
    """A frozen base projection and its trainable candidate copy (initialised from the base): base(x) at every
    position, except the last one of each row during a `candidate_pass()`, which gets candidate(x)."""

    def __init__(self, base: nn.Linear):
        super().__init__()
        self.base = base
        self.candidate = copy.deepcopy(base)
        self.base.requires_grad_(False)
        self.candidate.requires_grad_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [B, T, in]
        if not _CANDIDATE_LAST.get():
            return self.base(x)
        return torch.cat([self.base(x[:, :-1]), self.candidate(x[:, -1:])], dim=1)  # [B, T, out]


def attach_candidates(model: nn.Module, module_names=("q_proj", "k_proj", "v_proj", "o_proj")) -> list[str]:
    """Swap each decoder layer's attention projections named in `module_names` for CandidateLinear (in place) and
    freeze everything else; returns the swapped module paths. The last layer's query and output copies are not
    created: only the candidates' keys and values leave a prompt pass, so they would never receive a gradient."""
    layers = model.get_decoder().layers
    for p in model.parameters():
        p.requires_grad_(False)
    swapped = []
    for i, layer in enumerate(layers):
        attention = getattr(layer, "self_attn", None)
        if attention is None:
            raise ValueError(f"decoder layer {i} ({type(layer).__name__}) has no `self_attn`: FocusLLM needs "
                             f"attention layers with separate projections {list(module_names)}")
        for name in module_names:
            if i == len(layers) - 1 and name in ("q_proj", "o_proj"):
                continue
            base = getattr(attention, name, None)
            if not isinstance(base, nn.Linear):
                raise ValueError(f"candidate_modules names {name!r}, but layer {i}'s attention "
                                 f"({type(attention).__name__}) has no nn.Linear of that name (fused QKV "
                                 f"projections are not supported); it has {[n for n, _ in attention.named_children()]}")
            setattr(attention, name, CandidateLinear(base))
            swapped.append(f"layers.{i}.self_attn.{name}")
    return swapped


def move_keys(model: nn.Module, keys: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotary keys [k, H, 1, D] moved by `shift` [k] positions (R(p + s) = R(s) R(p)), with the model's own rotary
    (rotate-half convention, as Llama-family models apply it)."""
    from transformers.models.llama.modeling_llama import rotate_half

    rotary = model.get_decoder().rotary_emb
    if getattr(rotary, "attention_scaling", 1.0) != 1.0:  # cos and sin are pre-scaled: a second rotation scales twice
        raise ValueError(f"rope_type={getattr(rotary, 'rope_type', None)!r} scales its rotary (attention_scaling="
                         f"{rotary.attention_scaling}); moving cached keys needs an unscaled rotation")
    cos, sin = rotary(keys, shift[:, None].to(keys.device))  # [k, 1, D]
    return keys * cos[:, None] + rotate_half(keys) * sin[:, None]


def detached(kv: KV) -> KV:
    return tuple((k.detach(), v.detach()) for k, v in kv)


def left_pad(rows: list[torch.Tensor], dim: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack tensors of different lengths along `dim`, zero-padded on the left: (batch, mask [R, L] of real entries)."""
    width = max(r.shape[dim] for r in rows)
    pads = [width - r.shape[dim] for r in rows]
    after = [0, 0] * (rows[0].dim() - 1 - dim)
    batch = torch.stack([F.pad(r, [*after, p, 0]) for r, p in zip(rows, pads)])
    mask = torch.stack([torch.arange(width) >= p for p in pads]).long().to(batch.device)
    return batch, mask


def positions(mask: torch.Tensor, start: list[int]) -> torch.Tensor:
    """Position ids [R, L] of left-padded rows whose first real token sits at position `start[r]`."""
    return (mask.cumsum(-1) - 1).clamp(min=0) + torch.tensor(start, device=mask.device)[:, None]


# ----------------------------------------------------------------------------------------------------------------------
# What one call computes: per row, its tokens, its sizes and the predictions asked for


KV = tuple[tuple[torch.Tensor, torch.Tensor], ...]  # per layer (keys, values)


@dataclass
class Growing:
    """decoding="growing" (the official decoding): the memory split fixed at the first prediction with memory, and
    each chunk row's keys/values of C_i ⊕ [BOS] ⊕ the dynamic prompt so far, its last token (the candidate)
    excepted; the next call feeds that token again, as an ordinary one, before the new tokens."""

    memory: int  # tokens before the local window, which grows from there
    seen: int  # tokens of the row when the chunk rows were last extended
    chunk_rows: list[KV]  # per chunk row, per layer ([H, n_i, D], [H, n_i, D])


@dataclass
class Row:
    """One sequence: its real tokens' embeddings and sizes, and what a cache keeps for it."""

    embeds: torch.Tensor  # [T, d]
    chunk_size: int
    local_window: int
    prompt_len: int
    chunk_kv: KV = ()  # per layer ([n, H, c, D], [n, H, c, D]): the full chunks
    growing: Growing | None = None

    @property
    def cached_chunks(self) -> int:
        return self.chunk_kv[0][0].shape[0] if self.chunk_kv else 0


@dataclass
class Query:
    """The prediction after the first `end` tokens of `row`: its memory is split into `full` chunks of chunk_size and
    a partial one of `partial` tokens."""

    row: Row
    end: int

    @property
    def memory(self) -> int:
        return self.end - self.row.local_window

    @property
    def full(self) -> int:
        return self.memory // self.row.chunk_size

    @property
    def partial(self) -> int:
        return self.memory % self.row.chunk_size


class FocusLLMCache:
    """What decoding keeps per row: every token's embedding, and the keys/values of each full memory chunk (they
    depend on the chunk alone). The candidates and the local pass are recomputed for every new token, as the method
    requires: the dynamic prompt, and so every candidate, changes with it. While no row is long enough to have a
    memory, it holds the base model's own KV cache instead, and decoding is the base's.

    generate() reorders it for beam search (`reorder_cache`); `get_seq_length` counts the tokens fed, padding
    included, as transformers' caches do."""

    is_compileable = False

    def __init__(self):
        self.rows: list[Row] = []
        self.seq_length = 0
        self.base_cache: DynamicCache | None = None  # the base's own KV cache, while no row has memory

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seq_length

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.rows = [self.rows[i] for i in beam_idx.tolist()]  # rows are replaced, never changed in place
        if self.base_cache is not None:
            self.base_cache.reorder_cache(beam_idx)

    def batch_repeat_interleave(self, repeats: int) -> None:
        self.rows = [row for row in self.rows for _ in range(repeats)]
        if self.base_cache is not None:
            self.base_cache.batch_repeat_interleave(repeats)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.rows = [self.rows[i] for i in indices.tolist()]
        if self.base_cache is not None:
            self.base_cache.batch_select_indices(indices)


# ----------------------------------------------------------------------------------------------------------------------
# The model


@contextlib.contextmanager
def keeping_attention(base: PreTrainedModel | None):
    """A config that takes the base's config as its sub-config sets the sub-config's attention implementation (to
    its own, None): put the base's back."""
    attention = base.config._attn_implementation if base is not None else None
    yield
    if base is not None:
        base.config._attn_implementation = attention


class FocusLLMPreTrainedModel(PaperzooHubMixin, PreTrainedModel):
    config: FocusLLMConfig
    config_class = FocusLLMConfig
    base_model_prefix = "focus"
    supports_gradient_checkpointing = True
    _is_stateful = True  # the cache is not a KV cache: no assisted decoding, no static cache

    def _init_weights(self, module):
        """Nothing: the base model initialises (or loads) its own weights and the candidates are copies of them."""


class FocusLLMForCausalLM(FocusLLMPreTrainedModel, GenerationMixin):
    """FocusLLM around `base` (any transformers causal LM with separate attention projections): the base is frozen,
    its attention projections named in `config.candidate_modules` get trainable candidate copies.

    Build one from a loaded model with `FocusLLMForCausalLM.from_base(base, chunk_size=..., local_window=...)`; from a
    config alone (`FocusLLMForCausalLM(config)`), the base is built from `config.base_config` (random weights)."""

    def __init__(self, config: FocusLLMConfig, base: PreTrainedModel | None = None):
        with keeping_attention(base):
            if base is not None:
                config.base_config = base.config  # one config object: what the base changes, the wrapper sees
            super().__init__(config)
            self.base = base if base is not None else AutoModelForCausalLM.from_config(config.base_config)
            if not isinstance(self.base, GenerationMixin) or not hasattr(self.base, "get_decoder"):
                raise ValueError(f"base={type(self.base).__name__} is not a decoder-only causal LM")
            attach_candidates(self.base, config.candidate_modules)
            self.gradient_checkpointing = False
            self.post_init()

    @classmethod
    def from_base(cls, base: PreTrainedModel, **focus_args) -> FocusLLMForCausalLM:
        """Wrap a loaded causal LM (in place: its projections are swapped, its weights frozen and shared). The config
        names the base's `name_or_path`, so that `save_pretrained` writes the candidates only."""
        from transformers import MODEL_FOR_CAUSAL_LM_MAPPING

        if not isinstance(base, PreTrainedModel) or type(base) not in MODEL_FOR_CAUSAL_LM_MAPPING.values() \
                and not isinstance(base, GenerationMixin):
            raise ValueError(f"base={type(base).__name__} is not a transformers causal LM (AutoModelForCausalLM)")
        focus_args.setdefault("base_model_name_or_path", base.name_or_path or None)
        with keeping_attention(base):
            config = FocusLLMConfig(base_config=base.config, **focus_args)
        return cls(config, base=base).to(base.dtype)

    def get_input_embeddings(self):
        return self.base.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.base.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.base.get_output_embeddings()

    def set_output_embeddings(self, value):
        self.base.set_output_embeddings(value)

    def _set_gradient_checkpointing(self, enable: bool = True, gradient_checkpointing_func=None, every_n_layers=1):
        """Checkpointing here recomputes whole passes (a group of chunk rows, the local rows) in the backward: the
        base's per-layer checkpointing would drop the KV cache the prompt and local passes read."""
        self.gradient_checkpointing = enable
        self._gradient_checkpointing_func = gradient_checkpointing_func

    def _checkpointed(self, fn, *tensors):
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return self._gradient_checkpointing_func(fn, *tensors)
        return fn(*tensors)

    # ---------------------------------------------------------------------------------------------------------------
    # The three passes

    def _groups(self, items: list) -> list[list]:
        size = self.config.chunk_batch_size or max(len(items), 1)
        return [items[i : i + size] for i in range(0, len(items), size)]

    def _chunk_pass(self, segments: list[torch.Tensor]) -> list[tuple[torch.Tensor, ...]]:
        """Keys/values of each token segment [n, d] from position 0, without candidates: per segment, per layer
        (keys [H, n, D], values [H, n, D]). Only the frozen base reads them, so no gradient unless the base trains."""
        trains_base = torch.is_grad_enabled() and any(
            p.requires_grad for n, p in self.base.named_parameters() if ".candidate." not in n)
        out = []
        with torch.set_grad_enabled(trains_base or any(s.requires_grad for s in segments)):
            for group in self._groups(segments):
                embeds, mask = left_pad(group)  # [R, L, d], [R, L]
                cache = DynamicCache(config=self.base.config)
                self.base.get_decoder()(inputs_embeds=embeds, attention_mask=mask, cache=cache, use_cache=True,
                                        position_ids=positions(mask, [0] * len(group)))
                for r, segment in enumerate(group):
                    n = segment.shape[0]
                    out.append(tuple((layer.keys[r, :, -n:], layer.values[r, :, -n:]) for layer in cache.layers))
        return out

    def _prompt_pass(self, rows: list[tuple[KV, torch.Tensor]], hidden: bool = False, keep: bool = False
                     ) -> list[tuple]:
        """rows: (chunk keys/values per layer ([H, n, D], [H, n, D]), prompt [p, d] = [BOS] ⊕ dynamic prompt).
        Returns per row (its candidate per layer: keys [H, 1, D] rotated at position n + p − 1, values [H, 1, D];
        with `hidden`, the candidate's last hidden state [d], else None; with `keep`, the row's keys/values but the
        candidate's, per layer ([H, n + p − 1, D], ...), else None)."""
        out = []
        for group in self._groups(rows):
            n_layers = len(group[0][0])
            keys = [left_pad([kv[l][0] for kv, _ in group], dim=1) for l in range(n_layers)]  # [R, H, L, D]
            values = [left_pad([kv[l][1] for kv, _ in group], dim=1)[0] for l in range(n_layers)]
            memory_mask = keys[0][1]  # [R, L]
            prompts, prompt_mask = left_pad([p for _, p in group])  # [R, P, d], [R, P]
            start = [kv[0][0].shape[1] for kv, _ in group]
            flat = [t for l in range(n_layers) for t in (keys[l][0], values[l])]

            def run(prompts, *flat):
                cache = DynamicCache(config=self.base.config)
                for l in range(n_layers):
                    cache.update(flat[2 * l], flat[2 * l + 1], l)
                with candidate_pass():
                    last = self.base.get_decoder()(inputs_embeds=prompts, cache=cache, use_cache=True,
                                                   attention_mask=torch.cat([memory_mask, prompt_mask], -1),
                                                   position_ids=positions(prompt_mask, start)).last_hidden_state
                kv = tuple(t for layer in cache.layers for t in (layer.keys[:, :, -1:], layer.values[:, :, -1:]))
                kept = tuple(t for layer in cache.layers for t in (layer.keys[:, :, :-1], layer.values[:, :, :-1]))
                return kv + ((last[:, -1],) if hidden else ()) + (kept if keep else ())

            result = self._checkpointed(run, prompts, *flat)
            real = torch.cat([memory_mask, prompt_mask], -1)[:, :-1].bool()  # [R, L + P − 1]
            for r in range(len(group)):
                candidate = tuple((result[2 * l][r], result[2 * l + 1][r]) for l in range(n_layers))
                kept = None
                if keep:  # the row's real keys/values, its candidate's excepted
                    state = result[2 * n_layers + hidden :]
                    n, first = int(real[r].sum()), int(real[r].long().argmax())
                    # the real entries are one run (padding only before the chunk): a view, not a copy
                    where = slice(first, first + n) if bool(real[r, first : first + n].all()) else real[r]
                    kept = tuple((state[2 * l][r][:, where], state[2 * l + 1][r][:, where]) for l in range(n_layers))
                out.append((candidate, result[2 * n_layers][r] if hidden else None, kept))
        return out

    def _local_pass(self, prefixes: list[tuple | None], locals_: list[torch.Tensor], reads: list[list[int]]):
        """One row per (candidate prefix per layer ([H, k, D], [H, k, D]) or None, tokens [n, d]): the base over the
        tokens at positions k.., after the prefix. Returns per row the logits [len(reads[r]), V] after the tokens at
        the (row-relative) indices reads[r]."""
        tokens, token_mask = left_pad(locals_)  # [R, N, d]
        width = tokens.shape[1]
        starts = [0 if p is None else p[0][0].shape[1] for p in prefixes]
        frame = [[width - len(x) + i for i in idx] for x, idx in zip(locals_, reads)]  # indices in the padded frame
        keep = torch.tensor(sorted({i for idx in frame for i in idx}), device=tokens.device)
        where = {int(i): j for j, i in enumerate(keep.tolist())}
        n_layers = self.base.config.num_hidden_layers
        dummy = tokens.new_zeros(0)
        flat = []
        if max(starts) > 0:
            for l in range(n_layers):
                keys, values = zip(*[(p[l][0], p[l][1]) if p is not None else (dummy, dummy) for p in prefixes])
                shape = next(k for k in keys if k.numel()).shape  # [H, k, D]
                empty = tokens.new_zeros(shape[0], 0, shape[2])
                k_pad, prefix_mask = left_pad([k if k.numel() else empty for k in keys], dim=1)
                flat += [k_pad, left_pad([v if v.numel() else empty for v in values], dim=1)[0]]
        else:
            prefix_mask = token_mask.new_zeros(len(locals_), 0)

        def run(tokens, *flat):
            cache = None
            if flat:
                cache = DynamicCache(config=self.base.config)
                for l in range(n_layers):
                    cache.update(flat[2 * l], flat[2 * l + 1], l)
            return self.base(inputs_embeds=tokens, attention_mask=torch.cat([prefix_mask, token_mask], -1),
                             position_ids=positions(token_mask, starts), cache=cache, use_cache=cache is not None,
                             logits_to_keep=keep).logits  # [R, len(keep), V]

        logits = self._checkpointed(run, tokens, *flat)
        return [logits[r, [where[i] for i in idx]] for r, idx in enumerate(frame)]

    # ---------------------------------------------------------------------------------------------------------------
    # Predictions

    def focuses(self, length: int, local_window: int) -> bool:
        """Whether the prediction after `length` tokens condenses a memory (else the base reads them all)."""
        threshold = self.config.min_len_for_focus
        return length > local_window and (threshold is None or length >= threshold)

    def predict(self, rows: list[Row], ends: list[list[int]], start_growing: bool = False) -> list[torch.Tensor]:
        """Logits [len(ends[r]), V] after the first `e` tokens of rows[r], for each e in ends[r] (1 ≤ e ≤ T). Updates
        each row's `chunk_kv` with the full chunks it encoded; a row that grows (decoding="growing") predicts its
        last token only, and with `start_growing` a row whose last token has memory starts growing from there."""
        limit = getattr(self.base.config, "max_position_embeddings", None)
        growing = [row for row in rows if row.growing is not None]
        for row, row_ends in zip(rows, ends):
            if row.growing is not None and row_ends != [len(row.embeds)]:
                raise ValueError("decoding='growing' predicts after the last token of a call only: pass "
                                 "logits_to_keep=1, or use decoding='sliding' to score other positions")
        queries = [Query(row, e) for row, row_ends in zip(rows, ends) for e in row_ends
                   if row.growing is None and self.focuses(e, row.local_window)]
        for k, window in [(q.full + (q.partial > 0), q.row.local_window) for q in queries] + \
                [(len(r.growing.chunk_rows), len(r.embeds) - r.growing.memory) for r in growing]:
            if limit is not None and k + window > limit:
                raise ValueError(f"{k} candidates (chunk_size={rows[0].chunk_size}) and a local window of {window} "
                                 f"tokens need {k + window} positions, more than the base model's "
                                 f"max_position_embeddings={limit}: raise chunk_size or lower local_window")

        # 1-2. chunk and prompt passes (condense); 3. local pass: one row per query (its candidates at 0..k−1, then
        # the local window), one per growing row, one per row that has predictions without memory (the base alone)
        condensed = self.condense(rows, queries, keep=start_growing)
        prefixes = [prefix for prefix, _, _ in condensed] + (self._grow(growing) if growing else [])
        locals_ = [q.row.embeds[q.memory : q.end] for q in queries] + [r.embeds[r.growing.memory :] for r in growing]
        reads = [[q.row.local_window - 1] for q in queries] + [[len(r.embeds) - r.growing.memory - 1] for r in growing]
        slots = [[(q.row, q.end)] for q in queries] + [[(r, len(r.embeds))] for r in growing]
        for row, row_ends in zip(rows, ends):
            plain = [e for e in row_ends if row.growing is None and not self.focuses(e, row.local_window)]
            if plain:
                prefixes.append(None)
                locals_.append(row.embeds[: max(plain)])
                reads.append([e - 1 for e in plain])
                slots.append([(row, e) for e in plain])
        for q, (_, _, kept) in zip(queries, condensed):
            if start_growing and q.end == len(q.row.embeds):  # the official decoding continues from here
                q.row.growing, q.row.chunk_kv = Growing(q.memory, q.end, kept), ()
        results = {}
        for logits, where in zip(self._local_pass(prefixes, locals_, reads), slots):
            for i, (row, e) in enumerate(where):
                results[(id(row), e)] = logits[i]
        return [torch.stack([results[(id(row), e)] for e in row_ends]) if row_ends else None
                for row, row_ends in zip(rows, ends)]

    def condense(self, rows: list[Row], queries: list[Query], hidden: bool = False, keep: bool = False
                 ) -> list[tuple]:
        """Per query: its KV prefix (per layer, keys [H, k, D] at positions 0..k−1 and values [H, k, D]); with
        `hidden`, its candidates' last hidden states [k, d]; with `keep`, each chunk row's keys/values but the
        candidate's (what decoding="growing" continues from). Updates each row's `chunk_kv`."""
        # 1. chunk pass: the full chunks no cache holds yet, and each query's partial chunk
        segments, owners = [], []
        for row in rows:
            need = max((q.full for q in queries if q.row is row), default=0)
            for j in range(row.cached_chunks, need):
                segments.append(row.embeds[j * row.chunk_size : (j + 1) * row.chunk_size])
                owners.append(("full", row))
        for q in queries:
            if q.partial:
                segments.append(q.row.embeds[q.full * q.row.chunk_size : q.memory])
                owners.append(("partial", q))
        encoded = self._chunk_pass(segments) if segments else []
        partial_kv = {}
        new_full = {}
        for (kind, owner), kv in zip(owners, encoded):
            if kind == "full":
                new_full.setdefault(id(owner), []).append(kv)
            else:
                partial_kv[id(owner)] = kv
        for row in rows:
            if id(row) in new_full:  # [n, H, c, D] per layer, the cached chunks first
                fresh = [tuple(torch.stack(t) for t in zip(*layer)) for layer in zip(*new_full[id(row)])]
                row.chunk_kv = tuple((torch.cat([old[0], k]), torch.cat([old[1], v])) if row.chunk_kv else (k, v)
                                     for old, (k, v) in zip(row.chunk_kv or [None] * len(fresh), fresh))

        # 2. prompt pass: one row per chunk of each query, [BOS] ⊕ its dynamic prompt
        bos = self.config.bos_token_id
        prompt_rows, targets = [], []
        for q in queries:
            row, p = q.row, min(q.row.prompt_len, q.row.local_window)
            prompt = row.embeds[q.end - p : q.end]
            if bos is not None:
                prompt = torch.cat([self.get_input_embeddings().weight[bos][None].to(prompt.dtype), prompt])
            chunks = [tuple((k[j], v[j]) for k, v in row.chunk_kv) for j in range(q.full)]
            chunks += [partial_kv[id(q)]] if q.partial else []
            for j, kv in enumerate(chunks):
                prompt_rows.append((kv, prompt))
                targets.append(j - (kv[0][0].shape[1] + prompt.shape[0] - 1))  # candidate position → j
        candidates = self._prompt_pass(prompt_rows, hidden, keep) if prompt_rows else []

        condensed, cursor = [], 0
        for q in queries:
            k = q.full + (q.partial > 0)
            mine, shift = candidates[cursor : cursor + k], targets[cursor : cursor + k]
            cursor += k
            condensed.append((self._prefix([kv for kv, _, _ in mine], shift),
                              torch.stack([h for _, h, _ in mine]) if hidden else None,
                              [kept for _, _, kept in mine] if keep else None))
        return condensed

    def _prefix(self, candidates: list[KV], shift: list[int]) -> KV:
        """The KV prefix (per layer [H, k, D]) of k candidates (per layer [H, 1, D]), each key moved by its shift
        (to its prefix position 0..k−1)."""
        shift = torch.tensor(shift)
        prefix = []
        for l in range(len(candidates[0])):
            keys = torch.stack([kv[l][0] for kv in candidates])  # [k, H, 1, D]
            values = torch.stack([kv[l][1] for kv in candidates])
            prefix.append((move_keys(self.base, keys, shift)[:, :, 0].transpose(0, 1),  # [H, k, D]
                           values[:, :, 0].transpose(0, 1)))
        return tuple(prefix)

    def _grow(self, rows: list[Row]) -> list[KV]:
        """decoding="growing": each chunk row of each row reads the tokens since its last call (the old candidate
        again, as an ordinary token, then the new ones, the last the candidate); returns each row's KV prefix and
        extends its chunk rows."""
        prompt_rows = [(kv, r.embeds[r.growing.seen - 1 :]) for r in rows for kv in r.growing.chunk_rows]
        out = self._prompt_pass(prompt_rows, keep=True)
        prefixes, cursor = [], 0
        for r in rows:
            k, fed = len(r.growing.chunk_rows), len(r.embeds) - r.growing.seen + 1
            mine = out[cursor : cursor + k]
            shift = [j - (kv[0][0].shape[1] + fed - 1) for j, kv in enumerate(r.growing.chunk_rows)]
            prefixes.append(self._prefix([kv for kv, _, _ in mine], shift))
            r.growing = Growing(r.growing.memory, len(r.embeds), [kept for _, _, kept in mine])
            cursor += k
        return prefixes

    def candidate_logits(self, input_ids=None, attention_mask=None, inputs_embeds=None, chunk_size=None,
                         local_window=None) -> list[torch.Tensor | None]:
        """Per row, [k, V]: the next-token logits each memory chunk's candidate gives on its own (the base's output
        layer on the candidate's last hidden state), for the prediction after the whole input: what each chunk
        answers to the dynamic prompt. A diagnostic of the condensation (where the answer sits, whether a chunk
        reads it); None for a row without memory. Arguments as `forward`."""
        check_lm_inputs(self.config, input_ids, inputs_embeds, attention_mask)
        embeds = inputs_embeds if inputs_embeds is not None else self.get_input_embeddings()(input_ids)  # [B, T, d]
        B, T = embeds.shape[:2]
        mask = attention_mask.bool() if attention_mask is not None else embeds.new_ones(B, T).bool()
        rows = [Row(embeds[b][mask[b]], c, w, self.config.dynamic_prompt_len) for b, (c, w) in enumerate(zip(
            self._sizes("chunk_size", chunk_size, B), self._sizes("local_window", local_window, B)))]
        queries = {b: Query(r, len(r.embeds)) for b, r in enumerate(rows)
                   if self.focuses(len(r.embeds), r.local_window)}
        hidden = iter(h for _, h, _ in self.condense(rows, list(queries.values()), hidden=True))
        return [self.get_output_embeddings()(next(hidden)) if b in queries else None for b in range(B)]

    # ---------------------------------------------------------------------------------------------------------------
    # forward

    def _sizes(self, name: str, value, rows: int) -> list[int]:
        """A per-row size from an int, a list or a tensor [B] (None: the config's)."""
        if value is None:
            value = getattr(self.config, name)
        values = value.tolist() if isinstance(value, torch.Tensor) else value
        values = [values] * rows if isinstance(values, int) else list(values)
        if len(values) != rows:
            raise ValueError(f"{name} has {len(values)} values for a batch of {rows} rows")
        return [positive_int(name, v) for v in values]

    @cache_forward
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: FocusLLMCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor | None = None,
        chunk_size: int | list[int] | torch.Tensor | None = None,
        local_window: int | list[int] | torch.Tensor | None = None,
        dynamic_prompt_len: int | list[int] | torch.Tensor | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        r"""Next-token logits of the new tokens (input_ids [B, T] or inputs_embeds [B, T, d]) after the cache's.

        logits_to_keep: which of the T positions get logits: an int n (the last n; 0 all), or a tensor of indices.
            Each position that has memory before its local window condenses it itself (its own prompt pass and local
            pass), so on a long input ask for the positions you need (generate asks for 1). None: every position,
            or with `labels` the positions whose next label counts (as a loss needs).
        labels [B, T]: the causal LM loss (shifted inside; -100 ignored) over the kept positions; a label that counts
            after a position not kept is a ValueError.
        chunk_size, local_window, dynamic_prompt_len: per-row sizes (an int, or one per row) instead of the
            config's, e.g. a chunk size drawn per training sample. A cache keeps chunks of one size: a different one
            with a cache is an error. With config.decoding="growing", a cache continues the split of its first
            prediction with memory and ignores later sizes (step t equals local_window + t, dynamic_prompt_len + t).
        attention_mask [B, past + T]: 0 marks padding, which is skipped (its logits are 0).
        """
        loss_kwargs = {name: kwargs.pop(name) for name in LOSS_KWARGS if name in kwargs}
        reject_unused_kwargs(self, kwargs)
        check_lm_inputs(self.config, input_ids, inputs_embeds, attention_mask)
        if use_cache is None:
            use_cache = self.config.use_cache and not self.training
        if cache is not None and not use_cache:
            raise ValueError("a cache was passed with use_cache=False: pass one or the other")
        if cache is not None and not isinstance(cache, FocusLLMCache):
            raise ValueError(f"cache={type(cache).__name__}: FocusLLM keeps a FocusLLMCache (its forward creates one "
                             f"with use_cache=True)")
        embeds = inputs_embeds if inputs_embeds is not None else self.get_input_embeddings()(input_ids)  # [B, T, d]
        B, T = embeds.shape[:2]
        past = cache.get_seq_length() if cache is not None else 0
        if attention_mask is not None and attention_mask.shape[1] != past + T:
            raise ValueError(f"attention_mask has {attention_mask.shape[1]} columns; expected past + T = {past} + {T}")
        new_mask = attention_mask[:, -T:].bool() if attention_mask is not None else embeds.new_ones(B, T).bool()
        chunk_sizes = self._sizes("chunk_size", chunk_size, B)
        windows = self._sizes("local_window", local_window, B)
        prompt_lens = self._sizes("dynamic_prompt_len", dynamic_prompt_len, B)

        old = cache.rows if cache is not None and cache.rows else [None] * B
        if len(old) != B:
            raise ValueError(f"the cache holds {len(old)} rows; the inputs have {B}")
        rows = []
        for b in range(B):
            before = old[b]
            if before is not None and before.chunk_size != chunk_sizes[b] and before.chunk_kv:
                raise ValueError(f"chunk_size={chunk_sizes[b]} for row {b}, whose cache holds chunks of "
                                 f"{before.chunk_size} tokens")
            tokens = embeds[b][new_mask[b]]
            if before is None:
                rows.append(Row(tokens, chunk_sizes[b], windows[b], prompt_lens[b]))
            else:
                rows.append(Row(torch.cat([before.embeds, tokens]), chunk_sizes[b], windows[b], prompt_lens[b],
                                before.chunk_kv, before.growing))

        kept = self._kept(logits_to_keep, labels, T, embeds.device)
        # the sequence length after each kept position, per row (padding: no prediction)
        counts = [len(r.embeds) - int(new_mask[b].sum()) + new_mask[b].long().cumsum(0) for b, r in enumerate(rows)]
        ends = [[int(counts[b][i]) for i in kept.tolist() if new_mask[b, i] and counts[b][i] > 0] for b in range(B)]
        if cache is None and use_cache:
            cache = FocusLLMCache()
        plain = not any(self.focuses(max(e), r.local_window) for e, r in zip(ends, rows) if e)
        if plain and (cache is None or past == 0 or cache.base_cache is not None):
            logits, base_cache = self._base_logits(embeds, attention_mask, cache, kept, new_mask)
        else:  # a memory to condense: the base's KV cache no longer applies (every later prediction has memory too)
            start_growing = cache is not None and self.config.decoding == "growing"
            logits = self._focus_logits(rows, ends, kept, new_mask, counts, embeds, start_growing)
            base_cache = None

        loss = None
        if labels is not None:
            loss = self._loss(logits, labels, kept, **loss_kwargs)
            trainable = [p for p in self.parameters() if p.requires_grad]
            if torch.is_grad_enabled() and not loss.requires_grad and trainable:
                # no label of this batch follows a memory: the candidates' gradient is zero, and backward() must say
                # so rather than fail (a Trainer step over short samples)
                loss = loss + sum(0.0 * p.sum() for p in trainable)
        if cache is not None:
            cache.base_cache = base_cache
            cache.rows = [Row(r.embeds.detach(), r.chunk_size, r.local_window, r.prompt_len, detached(r.chunk_kv),
                              r.growing and Growing(r.growing.memory, r.growing.seen,
                                                    [detached(kv) for kv in r.growing.chunk_rows]))
                          for r in rows]
            cache.seq_length = past + T
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=cache)

    def _focus_logits(self, rows, ends, kept, new_mask, counts, embeds, start_growing: bool) -> torch.Tensor:
        """[B, len(kept), V]: `predict` at every kept position that is a token (padding: zeros)."""
        predicted = self.predict(rows, ends, start_growing)
        logits = embeds.new_zeros(len(rows), len(kept), self.get_output_embeddings().weight.shape[0])
        for b, row_ends in enumerate(ends):
            if row_ends:
                index = [j for j, i in enumerate(kept.tolist()) if new_mask[b, i] and counts[b][i] > 0]
                logits = logits.index_put((torch.tensor([b] * len(index)), torch.tensor(index)), predicted[b])
        return logits

    def _base_logits(self, embeds, attention_mask, cache, kept, new_mask):
        """No kept position has memory: the base model itself over the padded batch, with its own KV cache kept
        while every row stays that short (decoding short inputs costs what the base's decoding costs)."""
        B, T = embeds.shape[:2]
        base_cache = None
        if cache is not None:
            base_cache = cache.base_cache if cache.base_cache is not None else DynamicCache(config=self.base.config)
        past = base_cache.get_seq_length() if base_cache is not None else 0
        mask = attention_mask if attention_mask is not None else new_mask.new_ones(B, past + T).long()
        out = self.base(inputs_embeds=embeds, attention_mask=mask, cache=base_cache, use_cache=cache is not None,
                        position_ids=(mask.long().cumsum(-1) - 1).clamp(min=0)[:, -T:], logits_to_keep=kept)
        return torch.where(new_mask[:, kept, None], out.logits, 0.0), base_cache  # padding: zeros, as predict

    @staticmethod
    def _kept(logits_to_keep, labels, T: int, device) -> torch.Tensor:
        """The indices [n] of the positions that get logits."""
        if isinstance(logits_to_keep, torch.Tensor):
            return logits_to_keep.to(device).long().flatten()
        if logits_to_keep is None and labels is not None:
            counted = (labels[:, 1:] != -100).any(0).nonzero().flatten()
            return counted.to(device) if len(counted) else torch.tensor([T - 1], device=device)
        n = T if not logits_to_keep else min(logits_to_keep, T)
        return torch.arange(T - n, T, device=device)

    def _loss(self, logits, labels, kept, num_items_in_batch=None, ignore_index: int = -100, shift_labels=None):
        """transformers' causal LM loss (mean over counted labels, or sum / num_items_in_batch) over kept positions."""
        from transformers.loss.loss_utils import fixed_cross_entropy

        if shift_labels is None:
            shift_labels = F.pad(labels, (0, 1), value=ignore_index)[:, 1:]  # [B, T]: the label after each position
        covered = torch.zeros(shift_labels.shape[1], dtype=torch.bool, device=shift_labels.device)
        covered[kept] = True
        stray = (shift_labels[:, ~covered] != ignore_index).nonzero()
        if len(stray):
            raise ValueError(f"labels count after position {int((~covered).nonzero()[stray[0, 1]])}, which "
                             f"logits_to_keep does not keep: keep it or set its next label to {ignore_index}")
        return fixed_cross_entropy(logits.float().flatten(0, 1), shift_labels[:, kept].flatten().to(logits.device),
                                   num_items_in_batch, ignore_index)

    # ---------------------------------------------------------------------------------------------------------------
    # generate: transformers' own loop, over a FocusLLMCache

    def _prepare_cache_for_generation(self, generation_config, model_kwargs, *args, **kwargs):
        """generate() keeps a FocusLLMCache (never a KV cache: static and quantised caches do not apply)."""
        cache = model_kwargs.get("cache")
        if generation_config.cache_implementation is not None:
            raise ValueError(f"cache_implementation={generation_config.cache_implementation!r}: FocusLLM recomputes "
                             f"its candidates and local window for every token; it keeps a FocusLLMCache only")
        if cache is not None:
            if not isinstance(cache, FocusLLMCache):
                raise ValueError(f"cache={type(cache).__name__}: FocusLLM continues from a FocusLLMCache only")
            cache._is_user_defined = True
        elif generation_config.use_cache:
            model_kwargs["cache"] = FocusLLMCache()

    # ---------------------------------------------------------------------------------------------------------------
    # save / load: the candidates alone when the base is named

    def candidate_state_dict(self, state_dict: dict | None = None) -> dict[str, torch.Tensor]:
        return {n: p for n, p in (state_dict if state_dict is not None else self.state_dict()).items()
                if ".candidate." in n}

    def _transformers_save_pretrained(self, save_directory, *args, include_base: bool | None = None, **kwargs):
        """transformers' save_pretrained, except that with a named base (config.base_model_name_or_path) and
        include_base not True, the weights written (WEIGHTS_FILE, marked CANDIDATES_ONLY) are the candidate
        projections alone, from `state_dict=` when given (Trainer's)."""
        if include_base is None:
            include_base = self.config.base_model_name_or_path is None
        if include_base:
            return super()._transformers_save_pretrained(save_directory, *args, **kwargs)
        from safetensors.torch import save_file

        os.makedirs(save_directory, exist_ok=True)
        self.config.save_pretrained(save_directory)
        if self.can_generate():
            self.generation_config.save_pretrained(save_directory)
        candidates = self.candidate_state_dict(kwargs.get("state_dict"))
        weights = {n: t.detach().contiguous().cpu() for n, t in candidates.items()}
        save_file(weights, os.path.join(save_directory, WEIGHTS_FILE), metadata=CANDIDATES_ONLY)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, base: PreTrainedModel | None = None, **kwargs):
        """A folder or Hub repo with the whole model loads as transformers loads any model; one with the candidates
        only (its WEIGHTS_FILE marked CANDIDATES_ONLY) loads its base from `base` (a loaded model) or from
        config.base_model_name_or_path, with the other keyword arguments (dtype, device_map, ...), then the
        candidates."""
        from safetensors import safe_open
        from transformers.utils import cached_file

        hub = {k: kwargs[k] for k in ("cache_dir", "force_download", "local_files_only", "token", "revision",
                                      "subfolder") if k in kwargs}
        found = cached_file(pretrained_model_name_or_path, WEIGHTS_FILE, _raise_exceptions_for_missing_entries=False,
                            **hub)
        if found is not None:
            with safe_open(found, "pt") as weights:
                candidates_only = weights.metadata() == CANDIDATES_ONLY
        if found is None or not candidates_only:
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        from safetensors.torch import load_file

        config = kwargs.pop("config", None)
        if getattr(config, "model_type", None) != cls.config_class.model_type:
            config = cls.config_class.from_pretrained(pretrained_model_name_or_path, **hub)
        kwargs.pop("trust_remote_code", None)
        kwargs = {k: v for k, v in kwargs.items() if not k.startswith("_")}  # the Auto class's own markers
        if base is None:
            if not config.base_model_name_or_path:
                raise ValueError(f"{pretrained_model_name_or_path} holds FocusLLM candidates without a base: pass "
                                 f"base= (the loaded base model)")
            base = AutoModelForCausalLM.from_pretrained(config.base_model_name_or_path, *args, **kwargs)
        model = cls(config, base=base).to(base.dtype)
        weights = load_file(found)
        expected = model.candidate_state_dict()
        if weights.keys() != expected.keys():
            raise ValueError(f"{found} holds candidates {sorted(weights.keys() ^ expected.keys())[:4]} that do not "
                             f"match the base model's layers")
        model.load_state_dict(weights, strict=False)
        return model.eval()


__all__ = ["FocusLLMCache", "FocusLLMForCausalLM", "FocusLLMPreTrainedModel", "attach_candidates",
           "candidate_pass", "move_keys"]
