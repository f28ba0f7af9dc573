"""The LLM side of "Can LLMs like GPT-4 outperform traditional AI tools in dementia diagnosis?" (Wang et al., arXiv
2306.01499): a patient record becomes a multiple-choice question (zero-shot, or k-shot with solved examples from the
training rows), and the LLM's answer is read back to a class, with the record features it cites.

    diagnoser = LLMDiagnoser(DiagnosisTask.builtin("ad_data"), shots=4).fit(train_frame)   # training fold only
    diagnoser.diagnose(test_frame)   # [{"label", "probabilities", "option_scores", "cited_features", ...}, ...]

What is fitted on the training rows (`fit`), never on the rows diagnosed:
- `max_features`: records list the m features with the highest mutual information with the class in the training
  rows (a record of ad_data has 130 features, ~2,000 tokens; 8 examples of them would not fit a small model's
  context). None lists every feature. The selection is stated in the result (`shown_features`).
- each number is shown with the training rows' interquartile range of its feature (`show_ranges`): ad_data's values
  are on a transformed scale that no clinician (or LLM) can read without one.
- the k examples: drawn from the training rows, balanced over the classes (seeded), their indices kept in
  `example_index_`.
- imputation values (`missing="impute"`: the training median, or the most frequent category), stated in the prompt.

Answers are read two ways (paper: "multiple-choice"): `scoring="likelihood"` (default) scores each option letter by
its log-likelihood after "Answer:" (probabilities = their softmax); `scoring="generate"` lets the model write a line,
parsed by `parse_answer` (a line naming no option, or two, is invalid: counted as wrong, never a crash). Cited
features are the task's features named in the generated line (in likelihood mode, in a one-line explanation generated
after the chosen letter, when `explain=True`). Prompt texts are data (`templates.json`); a model without a chat
template reads them as a plain prompt (`prompt_format: "plain"` in every result, and a warning once).
"""

from __future__ import annotations

import json
import math
import re
import string
from pathlib import Path

import numpy as np

from .task import DiagnosisTask

TEMPLATES = json.loads(Path(__file__).with_name("templates.json").read_text(encoding="utf-8"))
SCORINGS = ("likelihood", "generate")
MISSING = ("error", "impute", "omit")


# ------------------------------------------------------------------------------------------------ reading answers

def parse_answer(text: str, classes: list[str]) -> str | None:
    """The class a free-text answer names first, or None when it names none (invalid: counted as wrong). An option
    is named by its class name (any casing, extra words around) or by its letter standing as an option label: "B",
    "(b)", "B.", "b)", "Answer: B", "the answer is b", "option B" — never a word's letter, nor the article in "A
    patient ...". "B. Impaired" names one class. Negations ("not impaired") are not understood."""
    letters = string.ascii_uppercase[: len(classes)]
    mentions = []  # (position, class index)
    for i, label in enumerate(classes):
        for match in re.finditer(rf"(?<![A-Za-z0-9]){re.escape(label)}(?![A-Za-z0-9])", text, re.IGNORECASE):
            mentions.append((match.start(), i))
    marked = (rf"(?:^\s*|answer\s*(?:is)?\s*[:\-]?\s*|option\s*)\(?([{letters}])\)?(?=\s*$|\s*[.):,\n]|\s+-)"
              rf"|(?:answer\s*(?:is)?\s*[:\-]?\s*|option\s*|\()([{letters}])(?![A-Za-z0-9])"
              rf"|(?<![A-Za-z0-9])([{letters}])\s*[.):](?![A-Za-z0-9])")
    for match in re.finditer(marked, text, re.IGNORECASE):
        letter = next(g for g in match.groups() if g)
        mentions.append((match.start(), letters.index(letter.upper())))
    return classes[min(mentions)[1]] if mentions else None


def _aliases(name: str, description: str) -> list[str]:
    parts = [p for p in re.split(r"[_\s]+", name) if p]
    out = {name, " ".join(parts), "-".join(parts), "".join(parts), description}
    return [a for a in out if len(a) >= 2]


def cited_features(text: str, features: dict, shown_values: dict | None = None) -> list[str]:
    """The features (names of `features`, a {name: Feature} map) that `text` cites, in order of first mention: by
    name (any casing, "_" read as space, hyphen or nothing) or description, longer names winning overlaps ("p-tau"
    cites p_tau, not tau); and, given `shown_values` ({name: the number strings the prompt showed for it: its value
    and its range}), by quoting a number shown for exactly one feature (small models quote values, not names)."""
    spans = []
    for name, feature in features.items():
        for alias in _aliases(name, feature.description):
            for match in re.finditer(rf"(?<![A-Za-z0-9]){re.escape(alias)}(?![A-Za-z0-9])", text, re.IGNORECASE):
                spans.append((match.start(), match.end(), name))
    owners: dict[str, set] = {}
    for name, numbers in (shown_values or {}).items():
        for number in numbers:
            owners.setdefault(number, set()).add(name)
    for match in re.finditer(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w]|\.\d)", text):
        names = owners.get(match.group())
        if names and len(names) == 1:
            spans.append((match.start(), match.end(), next(iter(names))))
    taken, first = [], {}
    for start, end, name in sorted(spans, key=lambda s: (s[0] - s[1], s[0])):  # longest first
        if all(end <= a or start >= b for a, b in taken):
            taken.append((start, end))
            first[name] = min(first.get(name, start), start)
    return sorted(first, key=first.get)


# ------------------------------------------------------------------------------------------------ the prompter

def _format_number(value: float) -> str:
    return f"{value:.4g}"


class LLMDiagnoser:
    """A causal LM as a multiple-choice diagnostician over the records of a `DiagnosisTask` (see the module docstring).

    llm: None (offline SmolLM2-135M-Instruct), a Hub id or folder, or a model object with `tokenizer`.
    shots: solved examples per prompt (0: zero-shot). max_features: features per record (None: all).
    scoring: "likelihood" | "generate". explain: in likelihood mode, generate a one-line explanation of the chosen
    answer (the cited features come from it). missing: a record without a feature value raises ("error"), gets the
    training median / most frequent category written as "(imputed)" ("impute"), or the line says "not recorded"
    ("omit"). chat_template: "auto" | "always" | "never" (paperzoo.llm.render_prompt).
    """

    def __init__(self, task: DiagnosisTask, llm=None, tokenizer=None, shots: int = 0, max_features: int | None = 10,
                 scoring: str = "likelihood", explain: bool = True, missing: str = "error", show_ranges: bool = True,
                 chat_template: str = "auto", batch_size: int = 4, max_new_tokens: int = 32, seed: int = 0,
                 templates: dict | None = None, progress: bool = False, generation_cache=True):
        if not isinstance(task, DiagnosisTask):
            raise ValueError(f"task must be a DiagnosisTask, got {type(task).__name__}")
        if isinstance(shots, bool) or not isinstance(shots, int) or shots < 0:
            raise ValueError(f"shots={shots!r} must be a non-negative integer")
        if max_features is not None and (isinstance(max_features, bool) or not isinstance(max_features, int)
                                         or max_features <= 0):
            raise ValueError(f"max_features={max_features!r} must be a positive integer or None")
        if scoring not in SCORINGS:
            raise ValueError(f"scoring={scoring!r} is not one of {SCORINGS}")
        if missing not in MISSING:
            raise ValueError(f"missing={missing!r} is not one of {MISSING}")
        unknown = sorted(set(templates or {}) - set(TEMPLATES))
        if unknown:
            raise ValueError(f"templates name unknown part(s) {unknown}; parts: {sorted(TEMPLATES)}")
        self.task, self.shots, self.max_features, self.scoring = task, shots, max_features, scoring
        self.explain, self.missing, self.show_ranges, self.chat_template = explain, missing, show_ranges, chat_template
        self.batch_size, self.max_new_tokens, self.seed, self.progress = batch_size, max_new_tokens, seed, progress
        self.templates = {**TEMPLATES, **(templates or {})}
        self.letters = string.ascii_uppercase[: len(task.classes)]
        self._llm, self._tokenizer, self._generation_cache = llm, tokenizer, generation_cache
        self._model = self._generator = None

    # -------------------------------------------------------------------------------------------------- fit

    def fit(self, frame=None, y=None) -> LLMDiagnoser:
        """Fit on the training rows: a DataFrame with the task's features and target (or features + `y`). None (no
        rows): zero-shot over every feature, without ranges or imputation."""
        import pandas as pd

        if frame is None:
            if self.shots or self.missing == "impute":
                raise ValueError(f"shots={self.shots} / missing={self.missing!r} need training rows: pass them to fit")
            self.shown_features_, self.ranges_, self.fill_ = list(self.task.features), {}, {}
            self.example_index_, self._examples, self.show_ranges = [], [], False
            return self
        if y is not None:
            frame = frame.assign(**{self.task.target: np.asarray(y)})
        self.task.check_frame(frame)
        if frame[self.task.target].nunique() < 2:
            raise ValueError(f"target {self.task.target!r} has a single class in the training rows "
                             f"({frame[self.task.target].iloc[0]!r}); a diagnosis needs two")
        columns = list(self.task.features)
        self.shown_features_ = self._select(frame, columns)
        numbers = [c for c in columns if self.task.features[c].kind == "number"]
        values = frame[numbers].apply(pd.to_numeric, errors="coerce")
        self.ranges_ = {c: (values[c].quantile(0.25), values[c].quantile(0.75)) for c in numbers}
        self.fill_ = {c: (values[c].median() if c in numbers else frame[c].mode(dropna=True).iloc[0])
                      for c in columns}
        positions = self._draw_examples(frame)
        self.example_index_ = frame.index[positions].tolist()  # the rows' labels, for the record
        self._examples = [(frame.iloc[p], str(frame[self.task.target].iloc[p])) for p in positions]
        return self

    def _select(self, frame, columns: list[str]) -> list[str]:
        """The max_features features with the highest mutual information with the class on these rows (task order)."""
        if self.max_features is None or self.max_features >= len(columns):
            return columns
        from sklearn.feature_selection import mutual_info_classif

        encoded, discrete = [], []
        for c in columns:
            if self.task.features[c].kind == "number":
                col = frame[c].astype(float)
                encoded.append(col.fillna(col.median()).to_numpy())
                discrete.append(False)
            else:
                encoded.append(frame[c].astype(str).astype("category").cat.codes.to_numpy().astype(float))
                discrete.append(True)
        scores = mutual_info_classif(np.stack(encoded, 1), frame[self.task.target].astype(str).to_numpy(),
                                     discrete_features=np.array(discrete), random_state=self.seed)
        keep = set(np.argsort(-scores, kind="stable")[: self.max_features].tolist())
        return [c for i, c in enumerate(columns) if i in keep]

    def _draw_examples(self, frame) -> list[int]:
        """Positions of `shots` training rows, as equal a number per class as the class sizes allow, in a seeded
        shuffled order."""
        if not self.shots:
            return []
        rng = np.random.RandomState(self.seed)
        target = frame[self.task.target].astype(str).to_numpy()
        pools = {c: list(rng.permutation(np.flatnonzero(target == c))) for c in self.task.classes}
        picked = []
        while len(picked) < min(self.shots, len(frame)):
            for c in self.task.classes:
                if pools[c] and len(picked) < self.shots:
                    picked.append(pools[c].pop())
        return [picked[i] for i in rng.permutation(len(picked))]

    # ---------------------------------------------------------------------------------------------- prompts

    def _record_text(self, record, where: str) -> tuple[str, dict]:
        """(the record's lines, {feature: the number strings shown for it})."""
        t, lines, shown = self.templates, [], {}
        for name in self.shown_features_:
            feature = self.task.features[name]
            value = record.get(name, None) if hasattr(record, "get") else None
            missing = value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))
            if missing and self.missing == "error":
                raise ValueError(f"{where} has no value for feature {name!r} ({feature.description}); pass "
                                 f"missing='impute' (training median / most frequent value, stated in the prompt) "
                                 f"or missing='omit' ('not recorded')")
            if missing and self.missing == "omit":
                lines.append(t["not_recorded"].format(description=feature.description))
                continue
            imputed = missing
            value = self.fill_[name] if missing else value
            unit = t["unit"].format(unit=feature.unit) if feature.unit else ""
            if feature.kind == "number":
                try:
                    number = float(value)
                except (TypeError, ValueError):
                    raise ValueError(f"{where}: feature {name!r} holds {value!r}, not a number") from None
                low, high = self.ranges_[name]
                text, low, high = _format_number(number), _format_number(low), _format_number(high)
                span = t["range"].format(low=low, high=high) if self.show_ranges else ""
                shown[name] = [text, low, high] if self.show_ranges else [text]
            else:
                span, text = "", str(value)
            line = t["feature"].format(description=feature.description, value=text, unit=unit, range=span)
            lines.append(line + (" (imputed)" if imputed else ""))
        return t["record"].format(lines="\n".join(lines)), shown

    def _question(self) -> str:
        options = "\n".join(self.templates["option"].format(letter=letter, label=label)
                            for letter, label in zip(self.letters, self.task.classes))
        return self.templates["question"].format(question=self.task.question, options=options)

    def prompt(self, record, where: str = "the record") -> str:
        """The prompt for one record (a dict or a pandas row), before the chat template."""
        return self._prompt(record, where)[0]

    def _prompt(self, record, where: str) -> tuple[str, dict]:
        t = self.templates
        instruction = t["instruction_generate" if self.scoring == "generate" else "instruction"]
        parts = [instruction.format(context=self.task.context).strip()]
        if self._examples:
            parts.append(t["examples_header"])
            for i, (row, label) in enumerate(self._examples):
                letter = self.letters[self.task.classes.index(label)]
                parts.append(t["example"].format(record=self._record_text(row, f"example {i}")[0],
                                                 question=self._question(), letter=letter))
            parts.append(t["case_header"])
        text, shown = self._record_text(record, where)
        parts.append(text + "\n" + self._question())
        return "\n\n".join(parts), shown

    # ------------------------------------------------------------------------------------------------ the LLM

    def _load(self):
        if self._model is None:
            from ..llm import load_causal_lm

            self._model, self._tokenizer = load_causal_lm(self._llm, self._tokenizer)
        return self._model, self._tokenizer

    def _generate(self, texts: list[str]) -> list[str]:
        from ..llm.generation import CachedGenerator

        if self._generator is None:
            model, tokenizer = self._load()
            self._generator = CachedGenerator(model, tokenizer, batch_size=self.batch_size,
                                              cache=self._generation_cache, progress=self.progress)
        return self._generator(texts, max_new_tokens=self.max_new_tokens, desc="explaining")

    def diagnose(self, records) -> list[dict]:
        """One result per record (a DataFrame, a list of dicts or rows, or one dict): label (None when a generated
        answer names no single option), probabilities, option_scores (log-likelihoods; likelihood mode), answer_text,
        explanation, cited_features, shown_features, prompt_format."""
        from ..llm import option_log_likelihoods, render_prompt

        if not hasattr(self, "shown_features_"):
            raise ValueError("the diagnoser is not fitted: call fit(training_rows) first (the examples, the shown "
                             "features and the ranges come from the training rows)")
        rows = records_of(records)
        model, tokenizer = self._load()
        t = self.templates
        texts, shown, formats = [], [], set()
        for i, row in enumerate(rows):
            prompt, values = self._prompt(row, f"record {i}")
            text, form = render_prompt(tokenizer, prompt, t["answer_prefix"], self.chat_template)
            texts.append(text)
            shown.append(values)
            formats.add(form)
        if "plain" in formats and self.chat_template == "auto":
            _warn_plain(tokenizer)
        form = formats.pop() if formats else "plain"
        results = []
        if self.scoring == "likelihood":
            options = [t["answer"].format(letter=letter) for letter in self.letters]
            scores = option_log_likelihoods(model, tokenizer, texts, options, self.batch_size, self.progress,
                                            "diagnosing")
            explanations = [None] * len(rows)
            if self.explain:
                chosen = [self.letters[int(np.argmax(s))] for s in scores]
                explanations = self._generate([text + t["explanation_prefix"].format(letter=letter)
                                               for text, letter in zip(texts, chosen)])
            for s, explanation, values in zip(scores, explanations, shown):
                p = np.exp(np.asarray(s) - max(s))
                p /= p.sum()
                results.append({"label": self.task.classes[int(np.argmax(s))],
                                "probabilities": dict(zip(self.task.classes, p.tolist())),
                                "option_scores": dict(zip(self.task.classes, map(float, s))),
                                "answer_text": None, "explanation": explanation,
                                "cited_features": cited_features(explanation or "", self.task.features, values)})
        else:
            for answer, values in zip(self._generate(texts), shown):
                label = parse_answer(answer, self.task.classes)
                results.append({"label": label,
                                "probabilities": None if label is None else
                                {c: float(c == label) for c in self.task.classes},
                                "option_scores": None, "answer_text": answer, "explanation": answer,
                                "cited_features": cited_features(answer, self.task.features, values)})
        for result in results:
            result.update(valid=result["label"] is not None, shown_features=list(self.shown_features_),
                          prompt_format=form)
        return results

    def predict(self, X) -> np.ndarray:
        """The labels (None where the answer was invalid)."""
        return np.array([r["label"] for r in self.diagnose(X)], dtype=object)


def records_of(records) -> list:
    """A DataFrame, a pandas row, one dict, or a list of dicts / rows → a list of rows with `.get`; ValueError for
    anything else or no rows."""
    if hasattr(records, "iterrows"):
        return [row for _, row in records.iterrows()]
    if hasattr(records, "get"):
        return [records]
    if not isinstance(records, (list, tuple)):
        raise ValueError(f"expected a record (dict or pandas row), a DataFrame or a list of records; got "
                         f"{type(records).__name__}")
    rows = list(records)
    bad = next((i for i, r in enumerate(rows) if not hasattr(r, "get")), None)
    if bad is not None:
        raise ValueError(f"record {bad} is a {type(rows[bad]).__name__}, not a dict or a pandas row")
    if not rows:
        raise ValueError("no records to diagnose")
    return rows


_WARNED: set[int] = set()


def _warn_plain(tokenizer) -> None:
    from transformers.utils import logging

    if id(tokenizer) not in _WARNED:
        _WARNED.add(id(tokenizer))
        logging.get_logger(__name__).warning(
            f"{type(tokenizer).__name__} has no chat template: the diagnosis prompts are read as plain text "
            "(prompt_format='plain' in each result)")


__all__ = ["LLMDiagnoser", "MISSING", "SCORINGS", "TEMPLATES", "cited_features", "parse_answer"]
