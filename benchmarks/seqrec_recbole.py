"""RecBole's own SASRec on the same ml-100k split (chronological leave-one-out, full ranking, history removed), as a
reference cell for benchmarks/seqrec.py. RecBole is not a paperzoo dependency: its data files come with the wheel
`make test` installs (`--no-deps`), and its runtime dependencies go to a separate folder on PYTHONPATH:

    .venv/bin/pip install --no-deps --target /tmp/rbdeps ray colorlog texttable thop tabulate colorama msgpack \
        plotly tensorboard protobuf jsonschema referencing rpds-py jsonschema-specifications absl-py grpcio \
        markdown werkzeug tensorboard-data-server
    PYTHONPATH=/tmp/rbdeps .venv/bin/python benchmarks/seqrec_recbole.py [--seed 0] [--epochs 30]
    PYTHONPATH=/tmp/rbdeps .venv/bin/python benchmarks/seqrec_recbole.py --checkpoint FILE.pth   # test a saved one

RecBole saves the best-validation checkpoint at each evaluation (every 5 epochs here, under /tmp/recbole_saved);
`--checkpoint` tests such a file, e.g. of a run stopped for time, and prints the epoch it was saved at.

RecBole 1.2.1 predates NumPy 2: the three aliases it reads (np.float_, np.complex_, np.unicode_) are set first.
Configured like paperzoo's run: SASRec 2 blocks, 1 head, d = 64, FFN 64 (ReLU), dropout 0.2, max length 50, CE over
all items, Adam lr 1e-3, batch 512, validation every 5 epochs with selection by NDCG@10. Prints the test metrics.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_description  # noqa: E402


def evaluate_checkpoint(path: str):
    """(epoch, best validation NDCG@10, test metrics) of a checkpoint RecBole saved: its own config rebuilds the
    same split, the weights are loaded, and its trainer evaluates the test users."""
    import torch
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    checkpoint = torch.load(path, weights_only=False)  # RecBole pickles its Config object into the file
    config = checkpoint["config"]
    config.compatibility_settings()  # the NumPy aliases Config.__init__ sets (an unpickled Config skips it)
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, test_data = data_preparation(config, create_dataset(config))
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    return checkpoint["epoch"], checkpoint["best_valid_score"], trainer.evaluate(test_data, load_best_model=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--checkpoint", help="test this saved RecBole checkpoint instead of training")
    args = parser.parse_args()
    import numpy as np

    # RecBole 1.2.1 predates NumPy 2: it assigns the removed aliases at import (`np.float = np.float_`)
    for alias, value in (("float_", np.float64), ("complex_", np.complex128), ("unicode_", np.str_)):
        if not hasattr(np, alias):
            setattr(np, alias, value)
    from recbole.quick_start import run_recbole

    from paperzoo.data.interactions import recbole_dataset_folder

    print(machine_description(" ".join(["python", *sys.argv]), "recbole 1.2.1"))
    config = {
        "data_path": str(recbole_dataset_folder("ml-100k").parent), "load_col": {"inter": ["user_id", "item_id",
                                                                                          "timestamp"]},
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        "metrics": ["NDCG", "Hit", "MRR"], "topk": [5, 10], "valid_metric": "NDCG@10",
        "n_layers": 2, "n_heads": 1, "hidden_size": 64, "inner_size": 64, "hidden_act": "relu",
        "hidden_dropout_prob": 0.2, "attn_dropout_prob": 0.2, "MAX_ITEM_LIST_LENGTH": 50, "loss_type": "CE",
        "train_neg_sample_args": None, "learning_rate": 1e-3, "train_batch_size": 512, "epochs": args.epochs,
        "eval_step": 5, "stopping_step": 1000, "seed": args.seed, "reproducibility": True, "device": "cpu",
        "use_gpu": False, "show_progress": False, "checkpoint_dir": "/tmp/recbole_saved", "log_wandb": False,
    }
    if args.checkpoint:
        epoch, best_valid, test = evaluate_checkpoint(args.checkpoint)
        label = f"checkpoint of epoch {epoch}"
    else:
        result = run_recbole(model="SASRec", dataset="ml-100k", config_dict=config)
        best_valid, test, label = result["best_valid_score"], result["test_result"], f"{args.epochs} epochs"
    print("\n| RecBole SASRec (CE) | best valid NDCG@10 | test NDCG@10 | test HR@10 | test MRR@10 | test NDCG@5 |")
    print("|---|---|---|---|---|---|")
    print(f"| seed {args.seed}, {label} | {best_valid:.4f} | {test['ndcg@10']:.4f} | "
          f"{test['hit@10']:.4f} | {test['mrr@10']:.4f} | {test['ndcg@5']:.4f} |")


if __name__ == "__main__":
    main()
