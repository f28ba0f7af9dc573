"""LLM recommenders against SASRec trained with BCE, CE and SCE on ml-100k: the comparison of the CE/SCE papers (Xu et
al., arXiv 2402.06216 / 2408.14238, notes §3.5) at CPU scale, with the offline SmolLM2-135M-Instruct as the LLM.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/llm_recommendation.py [--seeds 0,1,2] [--rerank-users 100]
        [--max-history 10] [--e4srec-epochs 3] [--llm ID_OR_FOLDER] [--threads 1]

Per seed, in this order (so that a run cut short has every row of the seeds it finished):
1. SASRec-CE, then SASRec-SCE and SASRec-BCE: benchmarks/seqrec.py's `run` (20 epochs, d = 64, dropout 0.2, lr 1e-3,
   batch 512, validation every 5 epochs, best validation NDCG@10 tested; SCE α = 100, K = 100; BCE one unseen
   negative), test metrics over all 943 users;
2. the LLM reranker (LlamaRec's two stages, zero-shot): SASRec-CE's top-20 unseen items, reranked by the LLM from the
   user's last `--max-history` titles by the log-likelihood of each candidate's index letter; for a fixed sample of
   `--rerank-users` test users (the same for every seed), with SASRec-CE's own metrics on those users, the retrieval
   recall@20 (the ceiling of any reranking) and the expected metrics of a random order of the 20 candidates;
3. E4SRec: SmolLM2 as the sequence encoder over item ids, the item table initialised from that seed's SASRec-CE,
   full-softmax CE, LoRA r = 8 on q_proj / v_proj with the item table and both projections trained in full
   (paperzoo.modeling.e4srec_training), Trainer on one window per user (the last 20 training items, every position
   a target), batch 32, AdamW lr 1e-3 constant, validation every epoch, the best validation NDCG@10 tested on all
   943 users with the same full ranking.

Sizes (chosen from measurements on this 2-core machine, one thread, beside another single-thread benchmark):
SmolLM2 reads a reranking prompt of ~470 tokens (10 titles, 20 candidates) in ~1.5 s at batch 1; batches of 8 were
slower per user when option_log_likelihoods still took the log-softmax over the whole vocabulary at every position
(~0.8 GB of logits; it now asks for the last position's only, and larger batches were not re-measured), so
`--rerank-batch 1`; 100 users × 3 seeds ≈ 8 min (all 943 users, `--rerank-users 0`: ~0.97 s per user, 15 min per
seed). One E4SRec step (32 windows × 20 items, forward + backward through the 135M LLM with LoRA) takes ~3 s:
30 steps per epoch plus ~40 s of validation, ~150 s per epoch; 3 epochs × 3 seeds ≈ 23 min. SASRec: 9 runs × 20
epochs ≈ 15 min. The whole run took 51 min on one core (2026-12-06).
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_description  # noqa: E402
from seqrec import data, run  # noqa: E402

# every module the run needs, imported now: the checkout may change while it runs
from paperzoo.data.interactions import load_item_titles  # noqa: E402
from paperzoo.llm import load_causal_lm  # noqa: E402
from paperzoo.llmrec import LLMReranker, evaluate_reranker  # noqa: E402
from paperzoo.modeling.e4srec import E4SRecForSequentialRecommendation  # noqa: E402
from paperzoo.modeling.e4srec_training import last_window_rows, lora_config  # noqa: E402
from paperzoo.modeling.seqrec_training import RankingMetrics, evaluation_rows, ranking_training_arguments  # noqa: E402
from paperzoo.processors.seqrec import SequentialRecommendationProcessor  # noqa: E402

KEYS = ("ndcg@10", "hr@10", "mrr@10")


def e4srec_run(sasrec, seed: int, epochs: int, processor, valid, test, llm, max_length: int = 20, batch: int = 32,
               lr: float = 1e-3) -> dict:
    """E4SRec over `llm` with the item table of `sasrec`, LoRA-tuned with CE; test metrics of the best validation
    NDCG@10 epoch, and seconds per epoch (validation included)."""
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import Trainer

    torch.manual_seed(seed)
    model = E4SRecForSequentialRecommendation.from_llm(llm, item_embeddings=sasrec.item_embeddings, loss_type="ce",
                                                       max_length=max_length)
    model = get_peft_model(model, lora_config())
    window = SequentialRecommendationProcessor(processor.item_keys, max_length=max_length)
    train = last_window_rows(window, valid.histories)  # valid histories = every user's training items
    steps = math.ceil(len(train) / batch)
    with tempfile.TemporaryDirectory() as out:
        args = ranking_training_arguments(out, epochs, steps, eval_every_epochs=1, per_device_train_batch_size=batch,
                                          per_device_eval_batch_size=128, learning_rate=lr, weight_decay=0.0,
                                          lr_scheduler_type="constant", use_cpu=True, seed=seed, data_seed=seed,
                                          logging_steps=steps, disable_tqdm=True)
        trainer = Trainer(model, args=args, train_dataset=Dataset.from_list(train),
                          eval_dataset=Dataset.from_list(evaluation_rows(window, valid)),
                          compute_metrics=RankingMetrics(valid))
        start = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - start
        best_step = trainer.state.best_global_step
        prediction = trainer.predict(Dataset.from_list(evaluation_rows(window, test)))
    return {"metrics": RankingMetrics(test)(prediction), "best_epoch": (best_step or 0) / steps,
            "seconds_per_epoch": seconds / epochs, "train_loss": result.training_loss,
            "windows": len(train)}


def mean_sd(values) -> str:
    values = list(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {spread:.4f}"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--sasrec-epochs", type=int, default=20)
    parser.add_argument("--e4srec-epochs", type=int, default=3)
    parser.add_argument("--e4srec-max-length", type=int, default=20)
    parser.add_argument("--rerank-users", type=int, default=100, help="test users sampled for the reranker (0: all)")
    parser.add_argument("--rerank-batch", type=int, default=1)
    parser.add_argument("--max-history", type=int, default=10)
    parser.add_argument("--num-candidates", type=int, default=20)
    parser.add_argument("--llm", default=None, help="a causal LM id or folder (default: the offline SmolLM2-135M)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--losses", default="ce,sce,bce", help="SASRec losses (ce first: the reranker and E4SRec "
                        "build on SASRec-CE)")
    parser.add_argument("--no-e4srec", action="store_true", help="skip E4SRec (e.g. a reranker-only run)")
    args = parser.parse_args(argv)
    losses = args.losses.split(",")
    if losses[0] != "ce":
        parser.error(f"--losses={args.losses!r} must start with ce: the reranker and E4SRec use SASRec-CE")
    torch.set_num_threads(args.threads)
    import transformers

    print(machine_description(" ".join(["python", *(sys.argv if argv is None else ["llm_recommendation.py", *argv])]),
                              f"torch {torch.__version__}, transformers {transformers.__version__}, "
                              f"{args.threads} thread(s)"), flush=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    processor, train, valid, test = data()
    titles = load_item_titles("ml-100k")
    users = list(range(len(test.targets)))
    if args.rerank_users:
        users = sorted(random.Random(0).sample(users, min(args.rerank_users, len(users))))
    reranker = LLMReranker(load_causal_lm(args.llm), max_history=args.max_history,
                           num_candidates=args.num_candidates, batch_size=args.rerank_batch)
    print(f"\nml-100k: {processor.num_items} items, {len(test.targets)} users; reranker on {len(users)} users, "
          f"prompt format {reranker.prompt_format}\n", flush=True)
    rows: dict[str, list[dict]] = {}
    for seed in seeds:
        sasrec = {}
        for loss in losses:
            result = run("sasrec", loss, seed, args.sasrec_epochs, processor, train, valid, test)
            sasrec[loss] = result.pop("model")
            rows.setdefault(f"sasrec-{loss}", []).append(result)
            m = result["metrics"]
            print(f"seed {seed} SASRec-{loss.upper()}: NDCG@10 {m['ndcg@10']:.4f} HR@10 {m['hr@10']:.4f} MRR@10 "
                  f"{m['mrr@10']:.4f} ({result['seconds_per_epoch']:.1f} s/epoch)", flush=True)
            if loss != "ce":
                continue
            evaluation = evaluate_reranker(reranker, sasrec["ce"], processor, test, titles, users=users)
            rows.setdefault("rerank", []).append(evaluation)
            print(f"seed {seed} LLM reranker over SASRec-CE top-{evaluation.num_candidates} ({evaluation.users} "
                  f"users): NDCG@10 {evaluation.reranked['ndcg@10']:.4f} HR@10 {evaluation.reranked['hr@10']:.4f}; "
                  f"SASRec-CE on them {evaluation.retriever['ndcg@10']:.4f} / {evaluation.retriever['hr@10']:.4f}; "
                  f"random order {evaluation.random_order['ndcg@10']:.4f} / {evaluation.random_order['hr@10']:.4f}; "
                  f"recall@{evaluation.num_candidates} {evaluation.retrieval_recall:.4f} "
                  f"({evaluation.seconds_per_user:.2f} s/user)", flush=True)
            if args.no_e4srec:
                continue
            e4 = e4srec_run(sasrec["ce"], seed, args.e4srec_epochs, processor, valid, test, args.llm,
                            max_length=args.e4srec_max_length)
            rows.setdefault("e4srec", []).append(e4)
            m = e4["metrics"]
            print(f"seed {seed} E4SRec (LoRA, CE): NDCG@10 {m['ndcg@10']:.4f} HR@10 {m['hr@10']:.4f} MRR@10 "
                  f"{m['mrr@10']:.4f} (best epoch {e4['best_epoch']:.0f}, {e4['seconds_per_epoch']:.0f} s/epoch, "
                  f"{e4['windows']} windows)", flush=True)

    n = len(rows.get("sasrec-ce", []))
    print(f"\nTest metrics, mean ± sd over {n} seed(s) ({', '.join(map(str, seeds[:n]))}):\n")
    print("| model | users | NDCG@10 | HR@10 | MRR@10 | time |\n|---|---|---|---|---|---|")
    for loss in ("bce", "ce", "sce"):
        runs = rows.get(f"sasrec-{loss}", [])
        if runs:
            print(f"| SASRec-{loss.upper()} | {len(test.targets)} | "
                  + " | ".join(mean_sd(r["metrics"][k] for r in runs) for k in KEYS)
                  + f" | {statistics.mean(r['seconds_per_epoch'] for r in runs):.1f} s / epoch |")
    reranks = rows.get("rerank", [])
    if reranks:
        u, k = reranks[0].users, reranks[0].num_candidates
        for label, part in ((f"LLM reranker over SASRec-CE top-{k} (zero-shot)", "reranked"),
                            ("SASRec-CE, same users", "retriever"),
                            (f"random order of the top-{k}, same users (expected)", "random_order")):
            time_cell = f"{statistics.mean(r.seconds_per_user for r in reranks):.2f} s / user" \
                if part == "reranked" else ""
            print(f"| {label} | {u} | " + " | ".join(mean_sd(getattr(r, part)[key] for r in reranks) for key in KEYS)
                  + f" | {time_cell} |")
    e4 = rows.get("e4srec", [])
    if e4:
        print(f"| E4SRec: SmolLM2 + LoRA, CE | {len(test.targets)} | "
              + " | ".join(mean_sd(r["metrics"][k] for r in e4) for k in KEYS)
              + f" | {statistics.mean(r['seconds_per_epoch'] for r in e4):.0f} s / epoch |")
    if reranks:
        print(f"\nRetrieval recall@{reranks[0].num_candidates} of SASRec-CE on the reranked users: "
              f"{mean_sd(r.retrieval_recall for r in reranks)} (no reranking of these candidates can exceed it); "
              f"prompt format: {reranks[0].prompt_format}.")
    return rows


if __name__ == "__main__":
    main()
