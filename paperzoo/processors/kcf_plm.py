"""KCF-PLM's processor: (user, item) pairs → the model's inputs. It holds the tokenizer and what was learnt from the
training data (`from_data`): user and item keys → ids, their KG nodes, their documents, the items' typed aspects and
each user's training items (whose aspects personalise the pair's aspect list).

- Documents: the user's and the item's texts, tokenized and truncated to `max_document_length` tokens ([CLS] and
  [SEP] included). A user's document lists their training ratings most recent first, so truncation drops the oldest;
  an item's starts with its title, year and genres. A cold-start user or item has an empty document ([CLS] [SEP])
  unless its text is passed (`user_texts=`, `item_texts=`).
- Ids: users 1..num_users, items 1..num_items, KG nodes 1..num_entities − 1; 0 is the unknown user / item / node.
- Aspects of a pair: the item's aspects (KG neighbours), the ones the user met most often in their training items
  first (then the data set's order: genres, directors, actors, others), at most `aspect_max_len`; weight
  1 + (the user's training items with that aspect) / (the user's training items), in [1, 2].
"""

from __future__ import annotations

from collections import Counter

import torch
from transformers import BatchFeature, ProcessorMixin


class KCFPLMProcessor(ProcessorMixin):
    def __init__(self, tokenizer=None, users=None, items=None, entities=None, user_documents=None,
                 item_documents=None, item_aspects=None, user_histories=None, aspect_types=("genre", "director",
                                                                                            "actor", "other"),
                 relations=None, rating_range=(1.0, 5.0), max_document_length: int = 256, aspect_max_len: int = 24,
                 **kwargs):
        for name, value in (("max_document_length", max_document_length), ("aspect_max_len", aspect_max_len)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (3 if name[0] == "m" else 1):
                raise ValueError(f"{name}={value!r} must be an integer ≥ {3 if name[0] == 'm' else 1}")
        low, high = (float(v) for v in rating_range)
        if not low < high:
            raise ValueError(f"rating_range={tuple(rating_range)!r} must be (low, high) with low < high")
        self.users, self.items = list(users or []), list(items or [])
        self.entities = list(entities or ["<unknown>"])
        self.user_documents, self.item_documents = dict(user_documents or {}), dict(item_documents or {})
        self.item_aspects = {k: [tuple(a) for a in v] for k, v in (item_aspects or {}).items()}
        self.user_histories = {k: list(v) for k, v in (user_histories or {}).items()}
        self.aspect_types, self.relations = list(aspect_types), list(relations or [])
        self.rating_range = [low, high]
        self.max_document_length, self.aspect_max_len = max_document_length, aspect_max_len
        self._user_index = {k: i + 1 for i, k in enumerate(self.users)}
        self._item_index = {k: i + 1 for i, k in enumerate(self.items)}
        self._entity_index = {k: i for i, k in enumerate(self.entities)}
        self._tokens: dict[tuple[str, str], list[int]] = {}  # (side, key) → token ids: documents repeat every epoch
        self._affinity: dict[str, tuple[Counter, int]] = {}  # user → (aspect counts, training items)
        self._graph = None  # (edges, weights) from `from_data`; the model saves the graph, not the processor
        super().__init__(tokenizer, **kwargs)

    @classmethod
    def from_data(cls, data, tokenizer=None, max_document_length: int = 256, aspect_max_len: int = 24):
        """Fitted on a `paperzoo.data.kg_ratings.KGRatingData`: everything from its training split and graph.
        tokenizer None: all-MiniLM-L6-v2's (`paperzoo.data.sentence_encoder_folder()`, offline)."""
        if tokenizer is None:
            import importlib

            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(importlib.import_module("paperzoo.data").sentence_encoder_folder())
        train = data.split("train").sort_values("timestamp", kind="stable")
        processor = cls(
            tokenizer, users=list(data.users), items=list(data.items),
            entities=["<unknown>", *data.entities], user_documents=data.user_documents,
            item_documents=data.item_documents, item_aspects=data.item_aspects,
            user_histories=train.groupby("user", sort=False)["item"].agg(list).to_dict(),
            aspect_types=data.aspect_types, relations=data.relations, rating_range=data.rating_range,
            max_document_length=max_document_length, aspect_max_len=aspect_max_len)
        processor._graph = (torch.as_tensor(data.edges, dtype=torch.long) + torch.tensor([1, 1, 0]),
                            torch.as_tensor(data.edge_weights, dtype=torch.float32))
        return processor

    # ------------------------------------------------------------------------------------------------------------------

    def config_kwargs(self) -> dict:
        """The KCFPLMConfig fields this processor fixes."""
        return {"num_users": len(self.users), "num_items": len(self.items), "num_entities": len(self.entities),
                "num_relations": max(len(self.relations), 1), "num_aspect_types": len(self.aspect_types),
                "aspect_max_len": self.aspect_max_len}

    def graph_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(edges [E, 3] with this processor's node ids, weights [E]) for `model.set_knowledge_graph`."""
        if self._graph is None:
            raise ValueError("this processor was not built by from_data (a loaded one has no graph: the model "
                             "it was saved with holds it)")
        return self._graph

    def document_tokens(self, side: str, key: str, texts: dict | None = None) -> list[int]:
        """The token ids of `side`'s ("user" / "item") document for `key`: `texts[key]` when given (ValueError if
        empty), else the known document (empty for an unknown key), truncated to max_document_length; cached."""
        text = None if texts is None else texts.get(key)
        if text is not None and not str(text).strip():
            raise ValueError(f"{side}_texts[{key!r}] is empty; pass None (or leave it out) for no document")
        if text is None and (side, key) in self._tokens:
            return self._tokens[(side, key)]
        known = self.user_documents if side == "user" else self.item_documents
        ids = self.tokenizer(text if text is not None else known.get(key, ""), truncation=True,
                             max_length=self.max_document_length)["input_ids"]
        if text is None:
            self._tokens[(side, key)] = ids
        return ids

    def _aspects(self, user: str, item: str) -> list[tuple[int, int, float]]:
        """(node id, type id, weight) of the pair's aspects, most relevant to the user first."""
        if user not in self._affinity:
            history = self.user_histories.get(user, [])
            self._affinity[user] = (Counter(e for i in history for e, _ in self.item_aspects.get(i, [])),
                                    max(len(history), 1))
        counts, seen = self._affinity[user]
        aspects = self.item_aspects.get(item, [])
        order = sorted(range(len(aspects)), key=lambda j: -counts[aspects[j][0]])[: self.aspect_max_len]
        return [(self._entity_index.get(aspects[j][0], 0), int(aspects[j][1]), 1.0 + counts[aspects[j][0]] / seen)
                for j in order]

    def __call__(self, users, items, ratings=None, user_texts: dict | None = None, item_texts: dict | None = None,
                 return_tensors: str = "pt", return_documents: bool = True, **kwargs) -> BatchFeature:
        """users, items: equal-length lists of keys (anything `str()` turns into the data's keys); ratings: the
        targets (ValueError outside rating_range); user_texts / item_texts: documents of users or items the processor
        does not know (or to override); return_documents=False leaves the documents' tokens out (for a caller that
        passes their encodings, e.g. CachedDocumentCollator). Returns the model's inputs as padded tensors."""
        if kwargs:
            raise TypeError(f"KCFPLMProcessor got argument(s) it does not use: {sorted(kwargs)}")
        if return_tensors != "pt":
            raise ValueError(f"return_tensors={return_tensors!r}: only 'pt' is supported")
        users, items = [str(u) for u in users], [str(i) for i in items]
        if len(users) != len(items) or not users:
            raise ValueError(f"users and items must be non-empty and of equal length; got {len(users)} and "
                             f"{len(items)}")
        data = {}
        for side, keys, texts in (("user", users, user_texts), ("item", items, item_texts)):
            if return_documents:
                docs = [self.document_tokens(side, key, texts) for key in keys]
                padded = self.tokenizer.pad({"input_ids": docs}, return_tensors="pt")
                data[f"{side}_input_ids"], data[f"{side}_attention_mask"] = padded["input_ids"], padded["attention_mask"]
        data["user_ids"] = torch.tensor([self._user_index.get(u, 0) for u in users])
        data["item_ids"] = torch.tensor([self._item_index.get(i, 0) for i in items])
        data["user_entity_ids"] = torch.tensor([self._entity_index.get(f"user:{u}", 0) for u in users])
        data["item_entity_ids"] = torch.tensor([self._entity_index.get(f"item:{i}", 0) for i in items])
        aspects = [self._aspects(u, i) for u, i in zip(users, items)]
        A = max(1, max(len(a) for a in aspects))
        ids, types = torch.zeros(len(users), A, dtype=torch.long), torch.zeros(len(users), A, dtype=torch.long)
        weights, mask = torch.zeros(len(users), A), torch.zeros(len(users), A, dtype=torch.long)
        for row, pair in enumerate(aspects):
            for col, (node, kind, weight) in enumerate(pair):
                ids[row, col], types[row, col], weights[row, col], mask[row, col] = node, kind, weight, 1
        data.update(aspect_entity_ids=ids, aspect_type_ids=types, aspect_weights=weights, aspect_mask=mask)
        if ratings is not None:
            labels = torch.as_tensor([float(r) for r in ratings], dtype=torch.float32)
            if labels.shape != (len(users),):
                raise ValueError(f"ratings must hold one value per pair ({len(users)}); got {tuple(labels.shape)}")
            low, high = self.rating_range
            bad = ~((labels >= low) & (labels <= high))
            if bad.any():
                row = int(bad.nonzero()[0])
                raise ValueError(f"ratings[{row}]={labels[row].item()!r} is outside rating_range=[{low}, {high}]")
            data["labels"] = labels
        return BatchFeature(data, tensor_type="pt")

    def collate(self, rows: list[dict]) -> BatchFeature:
        """A Trainer `data_collator` for rows {"user", "item"[, "rating"]} (datasets.Dataset rows)."""
        ratings = [r["rating"] for r in rows] if "rating" in rows[0] else None
        return self([r["user"] for r in rows], [r["item"] for r in rows], ratings)

    @property
    def model_input_names(self):
        return ["user_input_ids", "user_attention_mask", "item_input_ids", "item_attention_mask", "user_ids",
                "item_ids", "user_entity_ids", "item_entity_ids", "aspect_entity_ids", "aspect_type_ids",
                "aspect_weights", "aspect_mask"]


__all__ = ["KCFPLMProcessor"]
