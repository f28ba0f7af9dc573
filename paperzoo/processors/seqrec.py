"""The processor of the sequential recommenders: item keys ↔ ids, users' chronological histories, the papers'
leave-one-out splits, and padded model inputs. Saved as JSON with the model (`preprocessor_config.json`).

Protocol (CE/SCE papers, freerec `*_550_Chron`): each user's interactions sorted by time (ties keep file order); the
last item is the test target, the second-last the validation target, the rest is training, where EVERY next item
is a target (`train_rows`: windows of `max_length` positions, left-padded, input = items[:-1], labels = items[1:],
windows stepping back by max_length so that long histories lose no target). Item id 0 is padding; ids 1..N follow
the sorted item keys seen in `fit`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from transformers import BatchFeature, FeatureExtractionMixin


@dataclass
class EvaluationRows:
    """One row per user: the history before the target (ids), the target id, and the items to leave out of the
    ranking (everything the user interacted with before the target)."""

    histories: list[list[int]]
    targets: list[int]


class SequentialRecommendationProcessor(FeatureExtractionMixin):
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, item_keys: list[str] | None = None, max_length: int = 50, **kwargs):
        super().__init__(**kwargs)
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= 0:
            raise ValueError(f"max_length={max_length!r} must be a positive integer")
        self.item_keys = list(item_keys or [])
        self.max_length = max_length
        self._ids = {key: i + 1 for i, key in enumerate(self.item_keys)}

    @property
    def num_items(self) -> int:
        return len(self.item_keys)

    def fit(self, interactions) -> SequentialRecommendationProcessor:
        """Learn the item vocabulary from a DataFrame [user, item, timestamp] (paperzoo.data.load_interactions)."""
        self.item_keys = sorted(set(interactions["item"].astype(str)), key=lambda k: (len(k), k))
        self._ids = {key: i + 1 for i, key in enumerate(self.item_keys)}
        return self

    def item_ids(self, keys) -> list[int]:
        """Raw item keys → ids; ValueError naming the first unknown key."""
        out = []
        for key in keys:
            if str(key) not in self._ids:
                raise ValueError(f"item {key!r} is not in the vocabulary of {self.num_items} items this processor "
                                 f"was fitted on")
            out.append(self._ids[str(key)])
        return out

    def item_keys_of(self, ids) -> list[str]:
        return [self.item_keys[int(i) - 1] for i in ids]

    def histories(self, interactions) -> dict[str, list[int]]:
        """Each user's item ids in time order."""
        frame = interactions.reset_index(drop=True)
        frame = frame.assign(_order=np.arange(len(frame))).sort_values(["user", "timestamp", "_order"], kind="stable")
        ids = self.item_ids(frame["item"].astype(str))
        out: dict[str, list[int]] = {}
        for user, item in zip(frame["user"].astype(str), ids):
            out.setdefault(user, []).append(item)
        return out

    def split(self, interactions, min_length: int = 3, every_prefix: bool = False):
        """(train windows {"input_ids", "labels"} as lists, validation rows, test rows) by chronological
        leave-one-out; users with fewer than `min_length` interactions are left out (the papers' 5-core data have
        none). `every_prefix`: one window per target, labelled at its last position only (models whose positions
        read later items, FMLP-Rec)."""
        train, valid, test = [], EvaluationRows([], []), EvaluationRows([], [])
        for history in self.histories(interactions).values():
            if len(history) < min_length:
                continue
            train += self.prefix_rows(history[:-2]) if every_prefix else self.train_rows(history[:-2])
            valid.histories.append(history[:-2])
            valid.targets.append(history[-2])
            test.histories.append(history[:-1])
            test.targets.append(history[-1])
        return train, valid, test

    def train_rows(self, sequence: list[int]) -> list[dict]:
        """Windows covering every next-item target of `sequence`, left-padded to max_length (labels -100 there)."""
        L, rows = self.max_length, []
        for end in range(len(sequence), 1, -L):
            start = max(end - L - 1, 0)
            items = sequence[start:end]
            inputs, labels = items[:-1], items[1:]
            pad = L - len(inputs)
            rows.append({"input_ids": [0] * pad + inputs, "labels": [-100] * pad + labels})
        return rows

    def prefix_rows(self, sequence: list[int]) -> list[dict]:
        """One window per target: the max_length items before it (left-padded), the target at the last position."""
        rows = []
        for end in range(1, len(sequence)):
            inputs = sequence[max(end - self.max_length, 0):end]
            pad = self.max_length - len(inputs)
            rows.append({"input_ids": [0] * pad + inputs, "labels": [-100] * (self.max_length - 1) + [sequence[end]]})
        return rows

    def __call__(self, histories, return_tensors="pt", from_keys: bool = False, **kwargs) -> BatchFeature:
        """Histories (lists of item ids, or raw keys with from_keys=True) → input_ids [B, max_length] left-padded with
        0 (the last max_length items kept) and attention_mask."""
        if kwargs:
            raise TypeError(f"unknown argument(s) {sorted(kwargs)}")
        if histories and not isinstance(histories[0], (list, tuple, np.ndarray)):
            histories = [histories]
        rows, masks = [], []
        for i, history in enumerate(histories):
            ids = self.item_ids(history) if from_keys else [int(x) for x in history]
            if not ids:
                raise ValueError(f"history {i} is empty: a recommendation needs at least one item")
            if min(ids) < 1 or max(ids) > self.num_items:
                raise ValueError(f"history {i} holds item id {min(ids) if min(ids) < 1 else max(ids)}, outside "
                                 f"1..{self.num_items}")
            ids = ids[-self.max_length:]
            pad = self.max_length - len(ids)
            rows.append([0] * pad + ids)
            masks.append([0] * pad + [1] * len(ids))
        return BatchFeature({"input_ids": rows, "attention_mask": masks}, tensor_type=return_tensors)


__all__ = ["EvaluationRows", "SequentialRecommendationProcessor"]
