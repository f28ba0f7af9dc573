"""Training KCF-PLM with transformers' Trainer: per-module learning rates and the frozen-then-unfrozen text encoders.

    optimizer = kcf_plm_optimizer(model, lr=6e-5, text_lr=2e-5, kg_lr=1e-3, weight_decay=2e-4)
    trainer = Trainer(model, args, train_dataset=..., data_collator=processor.collate,
                      optimizers=(optimizer, None), callbacks=[TextEncoderFreezeCallback(unfreeze_after_epochs=2)])

The official code configures `rating_lr`, `aspect_lr` and `ent_lr` but builds one AdamW over every parameter with a
single lr; here each group's lr is the one its parameters get. The freezing schedule is the official one (the PLMs
frozen for a first phase, then trained) as a callback: a frozen encoder's parameters stay in the optimizer with no
gradient (AdamW skips them, moments included), so unfreezing needs no new optimizer.
"""

from __future__ import annotations

import logging

import torch
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

def parameter_group(name: str) -> str:
    """Which group a KCF-PLM parameter belongs to: "text" (the document encoders, not their heads), "kg" (node
    features, R-GCN, the KG → text map, the entity-type classifier), "aspect" (the aspect encoder) or "rating"
    (tower heads, the rating encoder, the FM)."""
    if ".encoder." in f".{name}" and name.split(".")[0] in ("user_tower", "item_tower"):
        return "text"
    if name.startswith(("knowledge_graph.", "kg_to_text.", "entity_classifier.")):
        return "kg"
    if name.startswith("aspects."):
        return "aspect"
    return "rating"


def kcf_plm_optimizer(model, lr: float = 6e-5, text_lr: float | None = None, kg_lr: float | None = None,
                      aspect_lr: float | None = None, weight_decay: float = 2e-4, **adamw_kwargs):
    """AdamW (official lr 6e-5, weight decay 2e-4) with one parameter group per module group, each at its own lr
    (None: `lr`). Every parameter is included, frozen ones too, so that `TextEncoderFreezeCallback` can unfreeze.
    Biases and LayerNorm weights get no weight decay, as transformers' Trainer does."""
    rates = {"text": text_lr, "kg": kg_lr, "aspect": aspect_lr, "rating": None}
    for name, value in (("lr", lr), *((f"{g}_lr", v) for g, v in rates.items() if v is not None)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"{name}={value!r} must be a number ≥ 0")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay={weight_decay!r} must be ≥ 0")
    groups: dict[tuple[str, bool], list] = {}
    for name, param in model.named_parameters():
        decay = param.dim() >= 2 and "LayerNorm" not in name and "layer_norm" not in name
        groups.setdefault((parameter_group(name), decay), []).append(param)
    param_groups = [{"params": params, "lr": rates[group] if rates[group] is not None else lr,
                     "weight_decay": weight_decay if decay else 0.0, "name": f"{group}{'' if decay else '_no_decay'}"}
                    for (group, decay), params in sorted(groups.items())]
    return torch.optim.AdamW(param_groups, lr=lr, **adamw_kwargs)


def set_text_encoders_trainable(model, trainable: bool) -> None:
    """requires_grad of the document encoders (not their heads)."""
    for tower in model.text_towers():
        tower.encoder.requires_grad_(trainable)


class TextEncoderFreezeCallback(TrainerCallback):
    """The official schedule: the text encoders frozen from the start of training, then unfrozen after
    `unfreeze_after_epochs` epochs, or once `metric` (e.g. "eval_loss", lower is better) has not improved for
    `patience` evaluations (the official frozen loop stops on validation with patience 3), whichever comes first.
    At least one of the two must be given."""

    def __init__(self, unfreeze_after_epochs: int | None = None, patience: int | None = None,
                 metric: str = "eval_loss"):
        for name, value in (("unfreeze_after_epochs", unfreeze_after_epochs), ("patience", patience)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{name}={value!r} must be an integer ≥ 0 or None")
        if unfreeze_after_epochs is None and patience is None:
            raise ValueError("give unfreeze_after_epochs, patience, or both: otherwise the encoders never unfreeze")
        self.unfreeze_after_epochs, self.patience, self.metric = unfreeze_after_epochs, patience, metric
        self.frozen = False
        self._best, self._stale = None, 0

    def _set(self, model, frozen: bool, why: str) -> None:
        set_text_encoders_trainable(model, not frozen)
        self.frozen = frozen
        logger.info("KCF-PLM text encoders %s (%s)", "frozen" if frozen else "unfrozen", why)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.unfreeze_after_epochs != 0:
            self._set(model, True, "start of training")

    def on_epoch_begin(self, args, state, control, model=None, **kwargs):
        after = self.unfreeze_after_epochs
        if self.frozen and after is not None and state.epoch is not None and round(state.epoch) >= after:
            self._set(model, False, f"epoch {round(state.epoch)}")

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        if not self.frozen or self.patience is None or not metrics:
            return
        if self.metric not in metrics:
            raise ValueError(f"TextEncoderFreezeCallback(metric={self.metric!r}): the evaluation reported only "
                             f"{sorted(metrics)}")
        value = metrics[self.metric]
        if self._best is None or value < self._best:
            self._best, self._stale = value, 0
        else:
            self._stale += 1
        if self._stale >= self.patience:
            self._set(model, False, f"{self.metric} did not improve for {self._stale} evaluations")


class CachedDocumentCollator:
    """A Trainer `data_collator` for rows {"user", "item"[, "rating"]} that gives the model each document's encoding
    instead of its tokens: with `kg_injection` "pooled" or "none" and the text encoders frozen, a document's
    encoding is the same in every pair, so it is computed once (eval mode: no dropout inside the frozen encoder) and
    reused every epoch; the towers' heads and everything after them still train. It raises rather than serve stale
    encodings once an encoder is trainable (e.g. after TextEncoderFreezeCallback unfreezes it)."""

    def __init__(self, model, processor, batch_size: int = 64):
        if model.config.kg_injection == "cls_input":
            raise ValueError("CachedDocumentCollator needs kg_injection 'pooled' or 'none': with 'cls_input' a "
                             "document's encoding depends on the pair")
        self.model, self.processor, self.batch_size = model, processor, batch_size
        self.cache: dict[str, dict[str, torch.Tensor]] = {"user": {}, "item": {}}

    def encodings(self, side: str, keys: list[str]) -> torch.Tensor:
        """[len(keys), H] encodings of `side`'s documents, each computed once."""
        trainable = [t for t in self.model.text_towers() if any(p.requires_grad for p in t.encoder.parameters())]
        if trainable:
            raise ValueError("CachedDocumentCollator: a text encoder is trainable, so cached encodings would be "
                             "stale; freeze the encoders (set_text_encoders_trainable(model, False)) or use "
                             "processor.collate")
        missing = list(dict.fromkeys(k for k in keys if k not in self.cache[side]))
        device = next(self.model.parameters()).device
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            docs = [self.processor.document_tokens(side, key) for key in chunk]
            padded = self.processor.tokenizer.pad({"input_ids": docs}, return_tensors="pt").to(device)
            modes = [t.encoder.training for t in self.model.text_towers()]
            for tower in self.model.text_towers():
                tower.encoder.eval()
            with torch.no_grad():
                encoded = self.model.encode_documents(side, padded["input_ids"], padded["attention_mask"]).cpu()
            for tower, mode in zip(self.model.text_towers(), modes):
                tower.encoder.train(mode)
            self.cache[side].update(zip(chunk, encoded))
        return torch.stack([self.cache[side][k] for k in keys])

    def __call__(self, rows: list[dict]):
        users, items = [str(r["user"]) for r in rows], [str(r["item"]) for r in rows]
        ratings = [r["rating"] for r in rows] if "rating" in rows[0] else None
        batch = self.processor(users, items, ratings, return_documents=False)
        batch["user_document_embeddings"] = self.encodings("user", users)
        batch["item_document_embeddings"] = self.encodings("item", items)
        return batch


__all__ = ["CachedDocumentCollator", "TextEncoderFreezeCallback", "kcf_plm_optimizer", "parameter_group",
           "set_text_encoders_trainable"]
