"""RecBole's own SASRec on the same ml-100k split (chronological leave-one-out, full ranking, history removed), as a
reference cell for benchmarks/seqrec.py. RecBole is not a paperzoo dependency: its data files come with the wheel
`make test` installs (`--no-deps`), and its runtime dependencies go to a separate folder on PYTHONPATH:

    .venv/bin/pip install --no-deps --target /tmp/rbdeps ray colorlog texttable thop tabulate colorama msgpack \
        plotly tensorboard protobuf jsonschema referencing rpds-py jsonschema-specifications absl-py grpcio \
        markdown werkzeug tensorboard-data-server
    PYTHONPATH=/tmp/rbdeps .venv/bin/python benchmarks/seqrec_recbole.py [--seed 0] [--epochs 30]

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
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
    result = run_recbole(model="SASRec", dataset="ml-100k", config_dict=config)
    print("\n| RecBole SASRec (CE) | best valid NDCG@10 | test NDCG@10 | test HR@10 | test MRR@10 | test NDCG@5 |")
    print("|---|---|---|---|---|---|")
    test = result["test_result"]
    print(f"| seed {args.seed}, {args.epochs} epochs | {result['best_valid_score']:.4f} | {test['ndcg@10']:.4f} | "
          f"{test['hit@10']:.4f} | {test['mrr@10']:.4f} | {test['ndcg@5']:.4f} |")


if __name__ == "__main__":
    main()
