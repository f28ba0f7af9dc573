"""The `paperzoo` command: convert, export and push models."""

from __future__ import annotations

import argparse
import sys


def _convert_torchscale_retnet(args) -> None:
    from .convert.torchscale_retnet import convert_torchscale_retnet

    model = convert_torchscale_retnet(args.checkpoint, args.output)
    print(f"converted {args.checkpoint} -> {args.output} ({sum(p.numel() for p in model.parameters()):,} parameters)")


def _export(args) -> None:
    import transformers

    from .hub import export

    auto_class = getattr(transformers, args.auto_class, None) if args.auto_class.startswith("Auto") else None
    if auto_class is None:
        raise ValueError(f"--auto-class={args.auto_class!r} is not a transformers Auto class")
    model = auto_class.from_pretrained(args.model)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(args.model)
    except (OSError, ValueError):  # no tokenizer files next to the model: export the model alone
        tokenizer = None
    export(model, args.output, tokenizer=tokenizer)
    print(f"exported {args.model} -> {args.output}")


def _push(args) -> None:
    from .hub.push import push

    url = push(args.folder, args.repo_id, token=args.token, private=args.private)
    print(f"pushed {args.folder} -> {url}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paperzoo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    convert = sub.add_parser("convert", help="convert an official checkpoint into a paperzoo model folder")
    convert_sub = convert.add_subparsers(dest="source", required=True)
    ts = convert_sub.add_parser("torchscale-retnet", help='torch file {"args": RetNetConfig fields, "model": state_dict}')
    ts.add_argument("--checkpoint", required=True)
    ts.add_argument("--output", required=True)
    ts.set_defaults(func=_convert_torchscale_retnet)

    export = sub.add_parser("export", help="write a self-contained Hub folder (remote code, card, weights)")
    export.add_argument("model", help="a saved paperzoo model folder")
    export.add_argument("output")
    export.add_argument("--auto-class", default="AutoModelForCausalLM",
                        help="transformers Auto class that loads the model (default: AutoModelForCausalLM)")
    export.set_defaults(func=_export)

    push = sub.add_parser("push", help="upload an exported folder to the Hub")
    push.add_argument("folder")
    push.add_argument("repo_id")
    push.add_argument("--token", default=None)
    push.add_argument("--private", action="store_true")
    push.set_defaults(func=_push)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"paperzoo {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
