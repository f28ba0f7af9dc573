"""FlexKBQA end to end: seeds + a KB + unlabelled questions → a trained parser folder the `kbqa` pipeline reads.

    from paperzoo.kbqa import FlexKBQA, open_backend, read_pairs, read_questions
    kb = open_backend("umls")
    system = FlexKBQA(kb, read_pairs("seeds.jsonl"))          # any causal LM: llm="HuggingFaceTB/SmolLM2-1.7B-Instruct"
    parser = system.train(read_questions("pool.jsonl"), output_dir="umls-parser")

Stages: ProgramSampler (1) → ProgramTranslator (2) → SemanticParser (3) trained by ExecutionGuidedSelfTraining (4)
with the error, semantic and LLM-agreement filters → the pipeline, with InherentReasoner (5) as fallback. Each stage
is a class of its own and can be replaced (pass `sampler=`, `translator=`, ... or call the stages directly).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .backends import KBBackend, OxigraphBackend, QueryError
from .kb import PYKEEN_KBS, kb_from_tsv, load_kb
from .programs import ProgramFormat, normalize

FILTERS = ("error", "semantic", "llm_agreement")


@dataclass
class FlexKBQAConfig:
    per_template: int = 40  # synthetic programs per template (Stage 1)
    zero_shot: bool = False  # structural templates instead of the seeds' (the paper's N = 0)
    rounds: int = 2  # self-training rounds (0: the parser on synthetic data only)
    filters: tuple[str, ...] = FILTERS  # pseudo-label filters, in order
    semantic_threshold: float = 0.2
    student_init: str = "scratch"  # "teacher": fine-tune the teacher instead (cheaper)
    epochs: float = 30
    student_epochs: float | None = None  # default: epochs
    steps: int | None = None  # optimizer steps of the teacher, instead of epochs (a few hundred pairs need many)
    student_steps: int | None = None  # of each student (default: steps)
    batch_size: int = 32
    learning_rate: float = 1e-3
    num_beams: int = 4
    d_model: int = 256
    layers: int = 3
    vocab_size: int = 2000
    seed: int = 0

    def __post_init__(self):
        unknown = [f for f in self.filters if f not in FILTERS]
        if unknown:
            raise ValueError(f"filters={list(self.filters)!r}: unknown {unknown}; known: {list(FILTERS)}")
        self.filters = tuple(self.filters)


def open_backend(spec: str, **kwargs) -> KBBackend:
    """A backend from a short spec: "umls" / "nations" (pykeen's), an http(s) endpoint URL, a triple TSV (.tsv,
    .txt), or RDF files (.nt, .ttl, .rdf, ...; several joined with ',')."""
    from .endpoint import SparqlEndpointBackend

    if spec in PYKEEN_KBS:
        return OxigraphBackend.from_kb(load_kb(spec), **kwargs)
    if spec.startswith(("http://", "https://")):
        return SparqlEndpointBackend(spec, **kwargs)
    paths = [Path(p) for p in spec.split(",")]
    if len(paths) == 1 and paths[0].suffix.lower() in (".tsv", ".txt"):
        kb = kb_from_tsv(paths[0].stem.replace(" ", "_") or "kb", paths[0])
        return OxigraphBackend.from_kb(kb, **kwargs)
    return OxigraphBackend.from_files(paths, **kwargs)


def _jsonl(path: str | Path):
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not a JSON line ({err.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            yield number, record


def read_pairs(path: str | Path, backend: KBBackend | None = None) -> list[tuple[str, str]]:
    """(question, sparql) pairs from a JSON-lines file with "question" and "sparql" keys. With `backend`, each
    program must parse and execute there: ValueError naming the file, line and the store's message otherwise."""
    pairs = []
    for number, record in _jsonl(path):
        question, sparql = record.get("question"), record.get("sparql")
        for key, value in (("question", question), ("sparql", sparql)):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{path}:{number}: {key!r} must be a non-empty string, got {value!r}")
        if backend is not None:
            try:
                backend.execute(sparql)
            except QueryError as err:
                raise ValueError(f"{path}:{number}: the seed program does not run: {err}") from None
        pairs.append((question.strip(), normalize(sparql)))
    return pairs


def read_questions(path: str | Path) -> list[str]:
    """Questions from a JSON-lines file ("question" key; other keys are ignored) or a text file (one per line)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        questions = []
        for number, record in _jsonl(path):
            q = record.get("question")
            if not isinstance(q, str) or not q.strip():
                raise ValueError(f"{path}:{number}: 'question' must be a non-empty string, got {q!r}")
            questions.append(q.strip())
        return questions
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass
class TrainingReport:
    programs: int = 0  # sampled programs (Stage 1)
    synthetic: int = 0  # programs the LLM turned into usable questions (Stage 2)
    teacher_steps: int | None = None  # optimizer steps of the teacher
    rounds: list[dict] = field(default_factory=list)  # Stage 4 statistics per round


class FlexKBQA:
    """The whole system on one KB. `seeds`: the few-shot (question, sparql) pairs (the paper's D_f). `llm`: None (the
    offline SmolLM2-135M-Instruct), a model id or folder, or a CachedGenerator."""

    def __init__(self, backend: KBBackend, seeds: list[tuple[str, str]], llm=None,
                 config: FlexKBQAConfig | None = None, sentence_encoder=None, progress: bool = True):
        from .llm import CachedGenerator

        self.backend, self.config, self.progress = backend, config or FlexKBQAConfig(), progress
        for i, (question, program) in enumerate(seeds):
            try:
                backend.execute(program)
            except QueryError as err:
                raise ValueError(f"seed {i} ({question!r}): the program does not run: {err}") from None
        self.seeds = list(seeds)
        self.format = ProgramFormat(backend)
        self.generator = llm if isinstance(llm, CachedGenerator) else CachedGenerator(llm, progress=progress)
        self._encoder = sentence_encoder
        self.report = TrainingReport()

    # --- the stages --------------------------------------------------------------------------------------------------
    def reasoner(self):
        from .llm_stages import InherentReasoner

        return InherentReasoner(self.generator, self.backend, self.seeds)

    def synthesize(self) -> list[tuple[str, str]]:
        """Stages 1-2: (question, surface program) pairs from sampled programs and the LLM's questions."""
        from .llm_stages import ProgramTranslator
        from .sampler import ProgramSampler

        seeds = None if self.config.zero_shot else [p for _, p in self.seeds]
        sampled = ProgramSampler(self.backend, seeds, per_template=self.config.per_template,
                                 seed=self.config.seed).sample(progress=self.progress)
        translator = ProgramTranslator(self.generator, self.format, [] if self.config.zero_shot else self.seeds)
        questions = translator([s.program for s in sampled])
        pairs = [(q, self.format.to_surface(s.program)) for q, s in zip(questions, sampled) if q]
        self.report.programs, self.report.synthetic = len(sampled), len(pairs)
        return pairs

    def make_filters(self) -> list:
        from .self_training import AgreementFilter, ErrorFilter, SemanticFilter, SentenceEncoder

        made = []
        for name in self.config.filters:
            if name == "error":
                made.append(ErrorFilter())
            elif name == "semantic":
                self._encoder = self._encoder or SentenceEncoder()
                made.append(SemanticFilter(self.backend, self._encoder, self.config.semantic_threshold))
            else:
                made.append(AgreementFilter(self.reasoner()))
        return made

    def new_parser(self, texts: list[str]):
        """A fresh SemanticParser of the configured size, its tokenizer trained on `texts` and the KB's labels."""
        from .parser import SemanticParser

        c = self.config
        labels = [self.backend.label(iri) for iri in self.backend.labels()]
        return SemanticParser.build(list(texts) + labels, vocab_size=c.vocab_size, d_model=c.d_model,
                                    layers=c.layers, seed=c.seed)

    def fit_kwargs(self, student: bool = False) -> dict:
        """SemanticParser.fit arguments of the teacher (or a student): epochs, or steps when configured."""
        c = self.config
        fit = {"epochs": (c.student_epochs or c.epochs) if student else c.epochs, "batch_size": c.batch_size,
               "learning_rate": c.learning_rate, "seed": c.seed}
        steps = (c.student_steps or c.steps) if student else c.steps
        if steps:  # Seq2SeqTrainingArguments.max_steps overrides the epochs
            fit["max_steps"] = steps
        return fit

    def train(self, unlabelled: list[str], output_dir: str | Path | None = None,
              synthetic: list[tuple[str, str]] | None = None, gold: list[str | None] | None = None,
              metadata: dict | None = None, teacher=None):
        """Stages 1-4; returns the SemanticParser (saved to `output_dir` with `flexkbqa.json`: the config, the
        report, the seeds and `metadata`, when given). `synthetic`: reuse pairs from an earlier `synthesize()`.
        `gold`: the pool's programs, only to measure. `teacher`: a parser already trained on the same synthetic and
        seed pairs (its self-training is then the only work)."""
        from .self_training import ExecutionGuidedSelfTraining

        c = self.config
        synthetic = self.synthesize() if synthetic is None else synthetic
        labelled = synthetic + [(q, self.format.to_surface(p)) for q, p in self.seeds]
        texts = [t for pair in labelled for t in pair] + list(unlabelled)  # never a test question
        loop = ExecutionGuidedSelfTraining(
            lambda: self.new_parser(texts), self.backend, self.format, self.make_filters(), rounds=c.rounds,
            num_beams=c.num_beams, student_init=c.student_init, fit_kwargs=self.fit_kwargs(),
            student_fit_kwargs=self.fit_kwargs(student=True), progress=self.progress)
        parser = loop.run(labelled, list(unlabelled), gold, teacher=teacher)
        self.teacher = loop.teacher
        self.report.teacher_steps = getattr(loop.teacher, "trained_steps", None)
        self.report.rounds = [asdict(r) for r in loop.history]
        if output_dir is not None:
            record = {"config": asdict(self.config), "report": asdict(self.report), "seeds": self.seeds,
                      **(metadata or {})}
            parser.save_pretrained(output_dir, extra_files={"flexkbqa.json": json.dumps(record, indent=1)})
        return parser


__all__ = ["FILTERS", "FlexKBQA", "FlexKBQAConfig", "TrainingReport", "open_backend", "read_pairs",
           "read_questions"]
