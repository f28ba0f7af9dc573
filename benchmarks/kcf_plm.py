"""KCF-PLM on ml-100k with its knowledge graph (CPU): rating prediction against simple baselines, ablations, speed.

    .venv/bin/python benchmarks/kcf_plm.py --part quality [--seeds 0,1,2] [--methods mean,mf,text,kcf,kcf-no-kg,...]
                                           [--results runs.jsonl]   # each run appended as one JSON line
    .venv/bin/python benchmarks/kcf_plm.py --part table --results runs.jsonl   # the table over all seeds run
    .venv/bin/python benchmarks/kcf_plm.py --part speed      # s / step: KG once per batch vs once per example

One thread per process (`--threads`): on this shared 2-core machine two processes of two threads each oversubscribe
the cores, and the R-GCN step then runs 10-20× slower (measured: 0.05 s vs 0.5-1 s forward); seeds run as separate
processes in parallel instead.

Data: recbole's ml-100k (943 users, 1,682 movies, 100,000 ratings 1-5) with its Freebase KG (.kg/.link), built by
paperzoo.data.kg_ratings: a seeded random 80/10/10 split per seed (the paper's protocol), item documents from
title / year / genres / KG relation counts, user documents from their TRAINING ratings only, aspects = the item's
KG neighbours (genres, directors, actors, writers...) personalised by the user's training history. Test MSE / RMSE /
MAE of the checkpoint with the best validation MSE.

Methods:
- mean: the global training mean.
- mf: biased matrix factorization μ + b_u + b_i + p_u·q_i (d = 32, Adam, L2), early-stopped on validation MSE.
- text: a text-only PLM regressor: frozen all-MiniLM-L6-v2 mean-pooled encodings of the user and item documents
  → MLP([u; i; u⊙i]) + μ, early-stopped on validation MSE.
- kcf, kcf-no-kg, kcf-no-aspects: KCF-PLM (paperzoo.KCFPLMForRatingPrediction) with all-MiniLM-L6-v2 towers,
  frozen, `kg_injection="pooled"` and cached document encodings (CachedDocumentCollator): on this 2-core CPU a pass
  of the two encoders per pair costs ~12 s per batch of 64 (the paper's [CLS]-input injection, `--part speed`), so
  the towers' encoders are run once per document instead. Everything after the encoders trains (tower heads, KG,
  R-GCN, aspect transformer, FM), AdamW with per-module lrs: 5e-3 for the KG (node features, R-GCN) and the rating
  part (biases, FM, heads), 1e-3 for the aspect transformer (official: one lr 6e-5 for up to 200 epochs; at 1e-3 the
  bias and node tables, each row updated only in its own pairs, were still far from converged after 2 epochs:
  validation MSE 0.92-0.94), weight decay 2e-4, batch 256 (official 64), `--epochs` epochs (3), early stopping
  (patience 2) on validation MSE; the FM bias starts at μ.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_description  # noqa: E402

import paperzoo  # noqa: E402
from paperzoo.data import sentence_encoder_folder  # noqa: E402
from paperzoo.data.kg_ratings import build_kg_rating_data  # noqa: E402
from paperzoo.modeling.kcf_plm_training import (  # noqa: E402
    CachedDocumentCollator, kcf_plm_optimizer, set_text_encoders_trainable)
from paperzoo.processors.kcf_plm import KCFPLMProcessor  # noqa: E402

METHODS = ("mean", "mf", "text", "kcf", "kcf-no-kg", "kcf-no-aspects")
KCF_VARIANTS = {"kcf": {}, "kcf-no-kg": {"use_knowledge_graph": False}, "kcf-no-aspects": {"use_aspects": False}}


def errors(pred: np.ndarray, true: np.ndarray) -> dict:
    diff = np.asarray(pred, dtype=np.float64) - np.asarray(true, dtype=np.float64)
    return {"mse": float(np.mean(diff**2)), "rmse": float(np.sqrt(np.mean(diff**2))), "mae": float(np.mean(abs(diff)))}


def ids(frame, column: str, keys: list[str]) -> torch.Tensor:
    index = {k: i for i, k in enumerate(keys)}
    return torch.tensor([index[k] for k in frame[column]])


def fit_early_stopped(model, train_step, valid_mse, epochs: int, patience: int = 2) -> int:
    """Train epoch by epoch, keep the weights of the best validation MSE; return its epoch (1-based)."""
    best, best_epoch, best_state = math.inf, 0, None
    for epoch in range(1, epochs + 1):
        train_step()
        mse = valid_mse()
        if mse < best:
            best, best_epoch = mse, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= patience:
            break
    model.load_state_dict(best_state)
    return best_epoch


def biased_mf(data, seed: int, epochs: int = 40, dim: int = 32, weight_decay: float = 0.05) -> dict:
    torch.manual_seed(seed)
    users, items = list(data.users), list(data.items)
    train, valid, test = (data.split(s) for s in ("train", "valid", "test"))
    mu = float(train.rating.mean())
    model = torch.nn.ModuleDict({"P": torch.nn.Embedding(len(users), dim), "Q": torch.nn.Embedding(len(items), dim),
                                 "bu": torch.nn.Embedding(len(users), 1), "bi": torch.nn.Embedding(len(items), 1)})
    for name in ("P", "Q"):
        torch.nn.init.normal_(model[name].weight, std=0.01)
    for name in ("bu", "bi"):
        torch.nn.init.zeros_(model[name].weight)

    def predict(frame):
        u, i = ids(frame, "user", users), ids(frame, "item", items)
        return mu + model["bu"](u)[:, 0] + model["bi"](i)[:, 0] + (model["P"](u) * model["Q"](i)).sum(-1)

    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    u_all, i_all = ids(train, "user", users), ids(train, "item", items)
    r_all = torch.tensor(train.rating.to_numpy(), dtype=torch.float32)

    def train_epoch():
        order = torch.randperm(len(r_all))
        for start in range(0, len(order), 1024):
            b = order[start : start + 1024]
            u, i = u_all[b], i_all[b]
            pred = mu + model["bu"](u)[:, 0] + model["bi"](i)[:, 0] + (model["P"](u) * model["Q"](i)).sum(-1)
            reg = weight_decay * (model["P"](u).square().sum(-1) + model["Q"](i).square().sum(-1)).mean()
            loss = (pred - r_all[b]).square().mean() + reg
            opt.zero_grad()
            loss.backward()
            opt.step()

    def valid_mse():
        with torch.no_grad():
            return errors(predict(valid).numpy(), valid.rating.to_numpy())["mse"]

    best = fit_early_stopped(model, train_epoch, valid_mse, epochs, patience=3)
    with torch.no_grad():
        return {**errors(predict(test).numpy(), test.rating.to_numpy()), "epoch": best}


def document_encodings(processor) -> dict[str, dict[str, torch.Tensor]]:
    """Every user's and item's document through frozen all-MiniLM-L6-v2, mean-pooled ({side: {key: [384]}}),
    computed once per split by KCF-PLM's own CachedDocumentCollator: the text baseline and every KCF-PLM variant read
    the same encodings (same frozen weights, same pooling)."""
    model = kcf_model(processor)
    collator = CachedDocumentCollator(model, processor)
    set_text_encoders_trainable(model, False)
    start = time.perf_counter()
    collator.encodings("user", list(processor.users))
    collator.encodings("item", list(processor.items))
    print(f"  encoded {len(processor.users) + len(processor.items)} documents in {time.perf_counter() - start:.0f} s",
          flush=True)
    return collator.cache


def text_regressor(data, encodings, seed: int, epochs: int = 40) -> dict:
    torch.manual_seed(seed)
    users, items = list(data.users), list(data.items)
    U, I = (torch.stack([encodings[side][k] for k in keys]) for side, keys in (("user", users), ("item", items)))
    train, valid, test = (data.split(s) for s in ("train", "valid", "test"))
    mu = float(train.rating.mean())
    H = U.shape[1]
    mlp = torch.nn.Sequential(torch.nn.Linear(3 * H, 128), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                              torch.nn.Linear(128, 1))

    def predict(frame):
        u, i = U[ids(frame, "user", users)], I[ids(frame, "item", items)]
        return mu + mlp(torch.cat([u, i, u * i], -1))[:, 0]

    opt = torch.optim.AdamW(mlp.parameters(), lr=1e-3, weight_decay=2e-4)
    r_all = torch.tensor(train.rating.to_numpy(), dtype=torch.float32)

    def train_epoch():
        mlp.train()
        order = torch.randperm(len(train))
        for start in range(0, len(order), 256):
            b = order[start : start + 256].numpy()
            loss = (predict(train.iloc[b]) - r_all[b]).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        mlp.eval()

    def valid_mse():
        with torch.no_grad():
            return errors(predict(valid).numpy(), valid.rating.to_numpy())["mse"]

    best = fit_early_stopped(mlp, train_epoch, valid_mse, epochs)
    with torch.no_grad():
        return {**errors(predict(test).numpy(), test.rating.to_numpy()), "epoch": best}


def kcf_model(processor, **overrides):
    settings = {"text_pooling": "mean", "kg_injection": "pooled", **processor.config_kwargs(), **overrides}
    model = paperzoo.KCFPLMForRatingPrediction.from_text_encoder(sentence_encoder_folder(), **settings)
    model.set_knowledge_graph(*processor.graph_tensors())
    return model


def kcf_plm(data, processor, encodings, seed: int, epochs: int, batch: int = 256, **overrides) -> dict:
    """KCF-PLM with frozen, cached encoder outputs, trained with transformers' Trainer."""
    from datasets import Dataset
    from transformers import EarlyStoppingCallback, Trainer, TrainingArguments

    torch.manual_seed(seed)
    model = kcf_model(processor, **overrides)
    set_text_encoders_trainable(model, False)
    train, valid, test = (data.split(s)[["user", "item", "rating"]] for s in ("train", "valid", "test"))
    model.set_rating_mean(float(train.rating.mean()))
    collator = CachedDocumentCollator(model, processor)
    collator.cache = encodings

    def metrics(prediction):
        return errors(prediction.predictions, prediction.label_ids)

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch, per_device_eval_batch_size=512,
                                 num_train_epochs=epochs, eval_strategy="epoch", save_strategy="epoch",
                                 save_total_limit=2, load_best_model_at_end=True, metric_for_best_model="mse",
                                 greater_is_better=False, remove_unused_columns=False, report_to=[], use_cpu=True,
                                 seed=seed, data_seed=seed, lr_scheduler_type="constant", logging_strategy="epoch",
                                 dataloader_num_workers=0, disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_pandas(train, preserve_index=False),
                          eval_dataset=Dataset.from_pandas(valid, preserve_index=False), data_collator=collator,
                          compute_metrics=metrics,
                          optimizers=(kcf_plm_optimizer(model, lr=5e-3, kg_lr=5e-3, aspect_lr=1e-3), None),
                          callbacks=[EarlyStoppingCallback(early_stopping_patience=2)])
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        epochs_run = max(1, round(trainer.state.epoch))
        best = min((h for h in trainer.state.log_history if "eval_mse" in h), key=lambda h: h["eval_mse"])
        result = trainer.predict(Dataset.from_pandas(test, preserve_index=False))
    return {**{k: result.metrics[f"test_{k}"] for k in ("mse", "rmse", "mae")}, "epoch": round(best["epoch"]),
            "s_per_epoch": seconds / epochs_run}


def quality(args) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(sentence_encoder_folder())
    for seed in args.seeds:
        data = build_kg_rating_data("ml-100k", seed=seed)
        processor = KCFPLMProcessor.from_data(data, tokenizer, max_document_length=args.document_length)
        needs_text = any(m not in ("mean", "mf") for m in args.methods)
        encodings = document_encodings(processor) if needs_text else None
        for method in args.methods:
            start = time.perf_counter()
            if method == "mean":
                mu = data.split("train").rating.mean()
                test = data.split("test").rating.to_numpy()
                r = {**errors(np.full(len(test), mu), test), "epoch": 0}
            elif method == "mf":
                r = biased_mf(data, seed)
            elif method == "text":
                r = text_regressor(data, encodings, seed)
            else:
                r = kcf_plm(data, processor, encodings, seed, args.epochs, **KCF_VARIANTS[method])
            r["seconds"] = time.perf_counter() - start
            print(f"seed {seed} {method}: " + ", ".join(f"{k} {v:.4f}" for k, v in r.items()), flush=True)
            if args.results:
                with open(args.results, "a") as f:
                    f.write(json.dumps({"method": method, "seed": seed, **r}) + "\n")


def table(args) -> None:
    """Mean ± standard deviation over the seeds of every method in the results file."""
    runs: dict[str, list[dict]] = {}
    for line in open(args.results):
        run = json.loads(line)
        runs.setdefault(run["method"], []).append(run)
    print("| method | seeds | test MSE | test RMSE | test MAE | best epoch | s / epoch |")
    print("|---|---|---|---|---|---|---|")
    for method in [m for m in METHODS if m in runs]:
        group = sorted(runs[method], key=lambda r: r["seed"])
        cells = []
        for key in ("mse", "rmse", "mae"):
            values = [r[key] for r in group]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.4f} ± {spread:.4f}")
        per_epoch = [r["s_per_epoch"] for r in group if "s_per_epoch" in r]
        speed = f"{statistics.mean(per_epoch):.0f}" if per_epoch else "–"
        print(f"| {method} | {len(group)} | {' | '.join(cells)} | {', '.join(str(r['epoch']) for r in group)} | "
              f"{speed} |")


def speed(args) -> None:
    """Seconds per training step (forward + backward + AdamW) at batch 64 on the real graph: the KG propagated once
    for the batch vs once per example (B separate forwards, each propagating the whole graph: the official per-batch
    full-graph R-GCN repeated per example); and the paper's [CLS]-input injection through both MiniLM towers."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(sentence_encoder_folder())
    data = build_kg_rating_data("ml-100k", seed=0)
    processor = KCFPLMProcessor.from_data(data, tokenizer, max_document_length=args.document_length)
    rows = data.split("train").sample(n=64 * (args.steps + 1), random_state=0)
    batches = [rows.iloc[i * 64 : (i + 1) * 64] for i in range(args.steps + 1)]

    def timed(step) -> float:
        times = []
        for b in batches:  # the first step warms up
            start = time.perf_counter()
            step(b)
            times.append(time.perf_counter() - start)
        return statistics.median(times[1:])

    model = kcf_model(processor).train()
    set_text_encoders_trainable(model, False)
    collator = CachedDocumentCollator(model, processor)
    for b in batches:  # every timed batch's documents encoded before timing: the steps measure training alone
        collator(b.to_dict("records"))
    opt = kcf_plm_optimizer(model, lr=1e-3)

    def once_per_batch(b):
        batch = collator(b.to_dict("records"))
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()

    def once_per_example(b):
        batch = collator(b.to_dict("records"))
        for i in range(len(b)):
            (model(**{k: v[i : i + 1] for k, v in batch.items()}).loss / len(b)).backward()
        opt.step()
        opt.zero_grad()

    per_batch, per_example = timed(once_per_batch), timed(once_per_example)
    paper = kcf_model(processor, kg_injection="cls_input").train()
    set_text_encoders_trainable(paper, False)
    paper_opt = kcf_plm_optimizer(paper, lr=1e-3)

    def paper_step(b):
        batch = processor(b.user.tolist(), b.item.tolist(), b.rating.tolist())
        paper(**batch).loss.backward()
        paper_opt.step()
        paper_opt.zero_grad()

    cls_input = timed(paper_step)
    steps_per_epoch = math.ceil(len(data.split("train")) / 64)
    print("\n| KCF-PLM training step, batch 64 | s / step (median) | s / epoch (×" f"{steps_per_epoch} steps) |")
    print("|---|---|---|")
    for name, t in (("KG once per batch (paperzoo), cached frozen encodings", per_batch),
                    ("KG once per example (64 propagations), cached frozen encodings", per_example),
                    (f"paper's [CLS]-input injection: both MiniLM towers per pair (frozen), {args.document_length} "
                     f"tokens", cls_input)):
        print(f"| {name} | {t:.3f} | {t * steps_per_epoch:.0f} |")
    print(f"\nper example / per batch: {per_example / per_batch:.1f}×")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=("quality", "table", "speed"), default="quality")
    parser.add_argument("--results", help="a JSON-lines file: --part quality appends to it, --part table reads it")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--document-length", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per setting (--part speed)")
    args = parser.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.methods = args.methods.split(",")
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {METHODS}")
    torch.set_num_threads(args.threads)
    if args.part == "table":
        return table(args)
    print(machine_description(" ".join(["python", *sys.argv]), f"KCF-PLM on ml-100k, {args.threads} thread(s)"))
    quality(args) if args.part == "quality" else speed(args)


if __name__ == "__main__":
    main()
