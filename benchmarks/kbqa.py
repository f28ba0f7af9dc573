"""FlexKBQA on pykeen's UMLS and Nations (CPU): the paper's comparison at small scale, and the store's speed.

    .venv/bin/python benchmarks/kbqa.py --part quality --kb umls [--llm ID_OR_FOLDER] [--results runs.jsonl]
    .venv/bin/python benchmarks/kbqa.py --part table --results runs.jsonl
    .venv/bin/python benchmarks/kbqa.py --part speed     # grounding on pyoxigraph vs rdflib; embedded vs endpoint

Data (benchmarks/data/kbqa/README.md): the packaged few-shot seeds (25 per KB, paperzoo/kbqa/seeds/), the unlabelled
pool (questions only; its gold programs only measure pseudo-label precision) and the hand-written test set (118 UMLS,
122 Nations questions) whose gold answers come from executing the gold SPARQL. Nothing is tuned on the test set.

Rows, each scored with paperzoo.metrics "kbqa" (answer-set exact match, F1, Hits@1, executable rate):
- llm-icl: the LLM writes the SPARQL itself from the 25 seeds (in-context learning, no parser).
- llm-ir: inherent reasoning only (the LLM answers directly from its knowledge, 25 seed QA examples).
- parser-synthetic: FlexKBQA's parser trained on the synthetic pairs (Stages 1-3) and the seeds, no self-training.
- +self-training [filters]: EGST rounds on the unlabelled pool, with the paper's three filters (error, semantic, LLM
  agreement) and without the LLM one, both from the same teacher.
- +fallback: + inherent reasoning where no beam executes to an answer (with the paper's filters: its full system).
- supervised reference: the same parser trained on the pool's real questions and gold programs (outside the
  few-shot setting, as the paper's supervised rows; never the test set).
The LLM is the offline SmolLM2-135M-Instruct unless --llm names another causal LM (the same code path).

One torch thread per process (`--threads`): run the two KBs as two processes side by side on two cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
DATA = HERE / "data" / "kbqa"


def _load_rows(path: Path, key: str = "sparql"):
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(r["question"], r[key]) for r in rows]


def score(predictions, gold, executable=None) -> dict:
    from paperzoo import metrics

    scores = metrics.load("kbqa").compute(predictions=predictions, references=gold, executable=executable)
    return {k: round(100 * v, 1) for k, v in scores.items()}


def quality(args) -> list[dict]:
    import torch

    from paperzoo.kbqa import (CachedGenerator, FlexKBQA, FlexKBQAConfig, InContextParser, QueryError,
                               open_backend, read_pairs, seeds_path)

    torch.set_num_threads(args.threads)
    backend = open_backend(args.kb)
    seeds = read_pairs(seeds_path(args.kb), backend)
    test = _load_rows(DATA / args.kb / "test.jsonl")
    pool = _load_rows(DATA / args.kb / "unlabelled.jsonl", key="gold_sparql")
    questions = [q for q, _ in test]
    gold = [backend.answers(p) for _, p in test]
    generator = CachedGenerator(args.llm, batch_size=args.llm_batch)
    llm_name = generator.name if args.llm else "SmolLM2-135M-Instruct (offline)"
    config = FlexKBQAConfig(per_template=args.per_template, rounds=args.rounds, epochs=args.epochs,
                            student_epochs=args.student_epochs, steps=args.steps, student_steps=args.student_steps,
                            student_init=args.student_init, seed=args.seed)
    system = FlexKBQA(backend, seeds, llm=generator, config=config)
    results = []

    def add(method, predictions, executable=None, **extra):
        row = {"kb": args.kb, "llm": llm_name, "seed": args.seed, "method": method,
               **score(predictions, gold, executable), **extra}
        print(json.dumps(row), flush=True)
        results.append(row)

    if "supervised" in args.methods:
        supervised(args, system, backend, pool, seeds, questions, add)
    direct = None  # the LLM's own answers: the fallback of the +fallback rows
    if "llm" in args.methods:
        # LLM in context: the LLM writes SPARQL
        start = time.perf_counter()
        programs = InContextParser(generator, system.format, seeds)(questions)
        icl, icl_exec = [], []
        for program in programs:
            try:
                icl.append(backend.answers(program) if program else [])
                icl_exec.append(program is not None)
            except QueryError:  # a refused form, a syntax error, a failed query: not executable
                icl.append([])
                icl_exec.append(False)
        add("llm-icl", icl, icl_exec, seconds_per_question=round((time.perf_counter() - start) / len(questions), 3))
        # inherent reasoning only
        start = time.perf_counter()
        direct = system.reasoner()(questions)
        add("llm-ir", direct, seconds_per_question=round((time.perf_counter() - start) / len(questions), 3))
    if "flexkbqa" in args.methods:
        flexkbqa(args, system, backend, pool, questions, config, add, direct)
    return results


def supervised(args, system, backend, pool, seeds, questions, add) -> None:
    """A reference outside the few-shot setting (as the paper's supervised rows): the same parser trained on the
    pool's real questions with their gold programs (plus the seeds), no synthetic data. It shows what the parser
    can learn from real questions of this distribution; the test set stays untouched."""
    c = system.config
    pairs = [(q, system.format.to_surface(p)) for q, p in pool + seeds]
    parser = system.new_parser([t for pair in pairs for t in pair])
    parser.fit(pairs, progress=False, **system.fit_kwargs())
    parses = parser.answer(questions, backend, system.format, c.num_beams)
    add("supervised reference (pool gold + seeds)", [p.answers for p in parses], [p.executable for p in parses],
        training_pairs=len(pairs), steps=parser.trained_steps)


def flexkbqa(args, system, backend, pool, questions, config, add, direct) -> None:
    """FlexKBQA: synthetic data, parser, self-training (each filter set from one teacher), fallback."""
    start = time.perf_counter()
    synthetic = system.synthesize()
    stats = {"programs": system.report.programs, "synthetic_pairs": len(synthetic),
             "synthesis_s": round(time.perf_counter() - start)}
    gold_pool = [p for _, p in pool]
    teacher = None
    for filters in args.filter_sets:
        system.config.filters = filters
        start = time.perf_counter()
        parser = system.train([q for q, _ in pool], synthetic=synthetic, gold=gold_pool, teacher=teacher)
        stats[f"training_s[{','.join(filters)}]"] = round(time.perf_counter() - start)
        if teacher is None:
            teacher = system.teacher
            parses = teacher.answer(questions, backend, system.format, config.num_beams)
            add("parser-synthetic", [p.answers for p in parses], [p.executable for p in parses], **stats)
        if not args.rounds:
            continue
        start = time.perf_counter()
        parses = parser.answer(questions, backend, system.format, config.num_beams)
        per_question = round((time.perf_counter() - start) / len(questions), 3)
        name = f"+self-training [{', '.join(filters)}]"
        add(name, [p.answers for p in parses], [p.executable for p in parses], rounds=system.report.rounds,
            seconds_per_question=per_question)
        if direct is not None:
            fallback = [p.answers if p.program else d for p, d in zip(parses, direct)]
            add(name + " +fallback", fallback, [p.executable for p in parses],
                fell_back=sum(p.program is None for p in parses))


def table(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["kb"], r["llm"], r["method"]), []).append(r)
    print("| KB | LLM | method | seeds | EM | F1 | Hits@1 | executable |")
    print("|---|---|---|---|---|---|---|---|")
    for (kb, llm, method), rs in groups.items():
        cells = []
        for key in ("exact_match", "f1", "hits@1", "executable_rate"):
            values = [r[key] for r in rs if key in r]
            if not values:
                cells.append("–")
            elif len(values) == 1:
                cells.append(f"{values[0]:.1f}")
            else:
                cells.append(f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}")
        print(f"| {kb} | {llm} | {method} | {len(rs)} | " + " | ".join(cells) + " |")


def speed(args) -> None:
    """Stage 1 on each store: the same step-wise grounding (same templates, same random draws: candidates are sorted
    before the draw) on pyoxigraph in its worker process, rdflib in process, and the Oxigraph server over loopback
    HTTP."""
    import rdflib

    from paperzoo.kbqa import OxigraphBackend, ProgramSampler, load_kb, read_pairs, seeds_path
    from paperzoo.kbqa.backends import KBBackend, QueryError, Result
    from paperzoo.kbqa.endpoint import SparqlEndpointBackend, oxigraph_server

    class RDFLibBackend(KBBackend):  # the pure-Python store the notes measured against
        def __init__(self, kb):
            super().__init__(kb.prefixes)
            self.graph = rdflib.Graph()
            self.graph.parse(data=kb.to_ntriples(), format="nt")

        def _run(self, query, timeout, row_limit):
            try:
                result = self.graph.query(query, initNs=self.prefixes)
            except Exception as err:
                raise QueryError(str(err)) from None
            if result.type == "ASK":
                return Result(boolean=bool(result.askAnswer))
            return Result([str(v) for v in result.vars],
                          [tuple(None if t is None else str(t) for t in row) for row in result])

    for name in ("nations", "umls"):
        kb = load_kb(name)
        seeds = [p for _, p in read_pairs(seeds_path(name))]
        with oxigraph_server(kb) as url:
            backends = {"pyoxigraph (embedded worker)": OxigraphBackend.from_kb(kb),
                        "oxigraph server (loopback HTTP)": SparqlEndpointBackend(url, prefixes=kb.prefixes),
                        "rdflib 7.6 (in process)": RDFLibBackend(kb)}
            for label, backend in backends.items():
                calls = [0]
                run = backend._run

                def counted(*a, _run=run, _calls=calls):
                    _calls[0] += 1
                    return _run(*a)
                backend._run = counted
                start = time.perf_counter()
                programs = ProgramSampler(backend, seeds, per_template=args.speed_programs, seed=0).sample(
                    progress=False)
                seconds = time.perf_counter() - start
                print(json.dumps({"kb": name, "store": label, "programs": len(programs), "queries": calls[0],
                                  "seconds": round(seconds, 3),
                                  "ms_per_query": round(1000 * seconds / max(calls[0], 1), 3)}), flush=True)
                backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("quality", "table", "speed"), default="quality")
    parser.add_argument("--kb", choices=("umls", "nations"), default="umls")
    parser.add_argument("--llm", default=None, help="a causal LM id or folder (default: offline SmolLM2-135M)")
    parser.add_argument("--llm-batch", type=int, default=8)
    parser.add_argument("--per-template", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=float, default=25)
    parser.add_argument("--student-epochs", type=float, default=10)
    parser.add_argument("--steps", type=int, default=None, help="teacher optimizer steps (instead of --epochs)")
    parser.add_argument("--student-steps", type=int, default=None, help="student optimizer steps")
    parser.add_argument("--student-init", choices=("scratch", "teacher"), default="teacher")
    parser.add_argument("--filter-sets", default="error,semantic,llm_agreement;error,semantic",
                        type=lambda text: [tuple(f.split(",")) for f in text.split(";")],
                        help="self-training filter sets, ';'-separated, each run from the same teacher")
    parser.add_argument("--methods", default="llm,flexkbqa,supervised",
                        type=lambda text: set(text.split(",")), help="which rows: llm, flexkbqa, supervised")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--speed-programs", type=int, default=10)
    parser.add_argument("--results", type=Path, default=None, help="append each row as a JSON line")
    args = parser.parse_args()
    if args.part == "table":
        table(args.results)
        return
    if args.part == "speed":
        speed(args)
        return
    rows = quality(args)
    if args.results:
        with args.results.open("a") as handle:
            handle.write("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
