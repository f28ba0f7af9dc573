"""Sequential recommenders on ml-100k with the losses the CE/SCE papers compare (CPU, transformers' Trainer).

    .venv/bin/python benchmarks/seqrec.py --part losses [--models sasrec,gru4rec] [--losses ce,sce,nce,bpr,bce]
                                          [--seeds 0,1,2] [--epochs sasrec=20,gru4rec=10]
    .venv/bin/python benchmarks/seqrec.py --part speed     # seconds per epoch: CE naive vs fused, SCE vs CE

Protocol (Xu et al., arXiv 2402.06216 / 2408.14238; official MTandHJ/CE-SCE-LLMRec on freerec): recbole's ml-100k
(943 users, 1,682 items, 100,000 ratings with timestamps, from the installed recbole wheel), each user's items in
time order; chronological leave-one-out (last item test, second-last validation, every earlier next item a training
target, windows of 50); full ranking over all items with the user's history removed and ties counted against the
target; validation every 5 epochs, the checkpoint with the best validation NDCG@10 tested. Hyper-parameters: the
official SASRec / GRU4Rec architectures (d = 64; SASRec 2 blocks, 1 head; GRU4Rec 1 layer), Adam(W, weight decay
0) at lr 1e-3, batch 512; SCE α = 100 and NCE c = 10 with K = 100 uniform negatives (the official Yelp K), BCE / BPR
one unseen negative. Changed for ml-100k and a CPU: dropout 0.2 for both (official 0.5-0.7 on the sparser
Beauty/Yelp), 20 epochs for SASRec and 10 for GRU4Rec (`--epochs`) instead of 200-300 (CPU time).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_description  # noqa: E402

import paperzoo  # noqa: E402
from paperzoo.data.interactions import load_interactions  # noqa: E402
from paperzoo.modeling.seqrec_training import RankingMetrics, evaluation_rows, ranking_training_arguments  # noqa: E402
from paperzoo.processors.seqrec import SequentialRecommendationProcessor  # noqa: E402

MODELS = {"sasrec": (paperzoo.SASRecConfig, paperzoo.SASRecForSequentialRecommendation),
          "gru4rec": (paperzoo.GRU4RecConfig, paperzoo.GRU4RecForSequentialRecommendation)}


def data(max_length: int = 50):
    frame = load_interactions("ml-100k")
    processor = SequentialRecommendationProcessor(max_length=max_length).fit(frame)
    train, valid, test = processor.split(frame)
    return processor, train, valid, test


def run(name: str, loss: str, seed: int, epochs: int, processor, train, valid, test, batch: int = 512,
        lr: float = 1e-3, eval_every: int = 5, **config) -> dict:
    """Train one model with Trainer and return its test metrics (best validation NDCG@10 checkpoint), timings and
    the model (that checkpoint's weights: benchmarks/llm_recommendation.py retrieves with it)."""
    from datasets import Dataset
    from transformers import Trainer

    config_class, model_class = MODELS[name]
    torch.manual_seed(seed)
    model = model_class(config_class(num_items=processor.num_items, max_length=processor.max_length,
                                     hidden_size=64, hidden_dropout_prob=0.2, loss_type=loss, **config))
    steps = math.ceil(len(train) / batch)
    with tempfile.TemporaryDirectory() as out:
        args = ranking_training_arguments(out, epochs, steps, eval_every, per_device_train_batch_size=batch,
                                          per_device_eval_batch_size=1024, learning_rate=lr, weight_decay=0.0,
                                          lr_scheduler_type="constant", use_cpu=True, seed=seed, data_seed=seed,
                                          logging_steps=steps * eval_every, disable_tqdm=True)
        trainer = Trainer(model, args=args, train_dataset=Dataset.from_list(train),
                          eval_dataset=Dataset.from_list(evaluation_rows(processor, valid)),
                          compute_metrics=RankingMetrics(valid))
        start = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - start
        best = trainer.state.best_metric
        best_step = trainer.state.best_global_step
        prediction = trainer.predict(Dataset.from_list(evaluation_rows(processor, test)))
    metrics = RankingMetrics(test)(prediction)
    return {"metrics": metrics, "valid_ndcg10": best, "best_epoch": (best_step or 0) / steps,
            "seconds_per_epoch": seconds / epochs, "train_loss": result.training_loss, "model": model.eval()}


def losses_part(models, losses, seeds, epochs) -> None:
    """Every (model, loss) for one seed, then the next seed (so that a cut-short run has every cell once), one line
    per run as it ends, then the table of means ± standard deviations over the seeds."""
    processor, train, valid, test = data()
    print(f"\nml-100k: {processor.num_items} items, {len(valid.targets)} users, {len(train)} training windows "
          f"({sum(sum(1 for x in r['labels'] if x > 0) for r in train):,} next-item targets).\n")
    done: dict[tuple[str, str], list[dict]] = {}
    for seed in seeds:
        for name in models:
            for loss in losses:
                result = run(name, loss, seed, epochs[name], processor, train, valid, test)
                done.setdefault((name, loss), []).append(result)
                m = result["metrics"]
                print(f"run {name} {loss} seed {seed}: NDCG@10 {m['ndcg@10']:.4f} HR@10 {m['hr@10']:.4f} MRR@10 "
                      f"{m['mrr@10']:.4f} NDCG@5 {m['ndcg@5']:.4f} HR@1 {m['hr@1']:.4f} best epoch "
                      f"{result['best_epoch']:.0f} s/epoch {result['seconds_per_epoch']:.1f}", flush=True)
    print("\n| model | loss | seeds | NDCG@10 | HR@10 | MRR@10 | NDCG@5 | HR@1 | best epoch | s / epoch |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (name, loss), runs in done.items():
        def cell(key):
            values = [r["metrics"][key] for r in runs]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            return f"{statistics.mean(values):.4f} ± {spread:.4f}"

        print(f"| {name} | {loss} | {len(runs)} | {cell('ndcg@10')} | {cell('hr@10')} | {cell('mrr@10')} | "
              f"{cell('ndcg@5')} | {cell('hr@1')} | {statistics.mean(r['best_epoch'] for r in runs):.0f} | "
              f"{statistics.mean(r['seconds_per_epoch'] for r in runs):.1f} |")


def speed_part(epochs: int = 2) -> None:
    """Seconds per training epoch of SASRec with CE through the naive logits, through the fused op, and with SCE."""
    processor, train, valid, test = data()
    print("\n| SASRec training | s / epoch (2 epochs, evaluation included) |\n|---|---|")
    for label, loss, config in (("CE, naive logits", "ce", {"fused_cross_entropy": False}),
                                ("CE, fused linear cross-entropy (chunked reference on CPU)", "ce",
                                 {"fused_cross_entropy": True}),
                                ("SCE (K = 100)", "sce", {})):
        result = run("sasrec", loss, 0, epochs, processor, train, valid, test, eval_every=epochs, **config)
        print(f"| {label} | {result['seconds_per_epoch']:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=("losses", "speed"), default="losses")
    parser.add_argument("--models", default="sasrec,gru4rec")
    parser.add_argument("--losses", default="ce,sce,nce,bpr,bce")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", default="sasrec=20,gru4rec=10", help="epochs per model, name=epochs,...")
    args = parser.parse_args()
    import transformers

    print(machine_description(" ".join(["python", *sys.argv]), f"torch {torch.__version__}, transformers "
                              f"{transformers.__version__}"))
    if args.part == "losses":
        epochs = {k: int(v) for k, v in (item.split("=") for item in args.epochs.split(","))}
        losses_part(args.models.split(","), args.losses.split(","), [int(s) for s in args.seeds.split(",")], epochs)
    else:
        speed_part()


if __name__ == "__main__":
    main()
