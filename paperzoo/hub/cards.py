"""Model cards: `paperzoo/hub_cards/<stem>.md` rendered through `huggingface_hub.ModelCard` (DESIGN §5).

A template is a Markdown/Jinja file shipped as package data. It opens with its own front matter, which describes the
paper and is read here (it is not copied into the card):

    ---
    arxiv: "2307.08621"               # required: becomes the tag arxiv:<id>; a list for several papers (first = main)
    title: Retentive Network: ...     # paper title, shown by the template
    extra_tags: [retention]           # optional, added to the card's tags
    ---

The rest is the Jinja body; the card's YAML header (`card_data`) is put on top of it. Variables the body can use:
`config` (the model's config object), `model_class`, `auto_class` (the Auto class that loads this head),
`pipeline_tag`, `repo_id`, `num_parameters`, `dtype`, `has_tokenizer`, `has_processor`, `auto_map`, `arxiv` (the
main id), `arxiv_ids` (all), `title`, `stem`, `paperzoo_version`, `transformers_version`, plus what the
architecture's context builder (`CONTEXT_BUILDERS[stem]`) adds, e.g. for RRL the rule table.
"""

from __future__ import annotations

import importlib.resources

import yaml
from huggingface_hub import ModelCard, ModelCardData

# The pipeline tag of a head follows from the Auto class it is registered with (first match wins: heads first).
PIPELINE_TAGS = {
    "AutoModelForCausalLM": "text-generation",
    "AutoModelForSequenceClassification": "text-classification",
    "AutoModelForTokenClassification": "token-classification",
    "AutoModelForQuestionAnswering": "question-answering",
    "AutoModelForMaskedLM": "fill-mask",
    "AutoModelForSeq2SeqLM": "text2text-generation",
    "AutoModelForImageClassification": "image-classification",
    "AutoModelForTextToWaveform": "text-to-audio",
    "AutoModel": "feature-extraction",
}
LICENSE = "apache-2.0"
LIBRARY_NAME = "transformers"
_PREFIX = "paperzoo_"


def card_stem(config) -> str:
    """`paperzoo_retnet` -> `retnet`: the architecture's stem (DESIGN §2), which names its card template."""
    model_type = getattr(config, "model_type", "") or ""
    if not model_type.startswith(_PREFIX):
        raise ValueError(f"model_type={model_type!r} is not a paperzoo model type ({_PREFIX}<stem>)")
    return model_type[len(_PREFIX):]


def load_template(stem: str) -> tuple[dict, str]:
    """(front matter, Jinja body) of hub_cards/<stem>.md, read as package data."""
    folder = importlib.resources.files("paperzoo").joinpath("hub_cards")
    resource = folder.joinpath(f"{stem}.md")
    if not resource.is_file():
        known = sorted(p.name for p in folder.iterdir() if p.name.endswith(".md")) if folder.is_dir() else []
        raise FileNotFoundError(f"no model card template paperzoo/hub_cards/{stem}.md (templates: {known})")
    text = resource.read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        raise ValueError(f"hub_cards/{stem}.md must open with a front matter block (---) giving at least `arxiv`")
    head, sep, body = text[4:].partition("\n---\n")
    if not sep:
        raise ValueError(f"hub_cards/{stem}.md: the front matter block is not closed by a line '---'")
    meta = yaml.safe_load(head) or {}
    if not isinstance(meta, dict) or not _arxiv_ids(meta):
        raise ValueError(f"hub_cards/{stem}.md: the front matter must give the paper's arXiv id as `arxiv`")
    return meta, body.lstrip("\n")


def _arxiv_ids(meta: dict) -> list[str]:
    value = meta.get("arxiv", "")
    ids = value if isinstance(value, (list, tuple)) else [value]
    ids = [str(i).strip() for i in ids if i is not None]
    return ids if ids and all(ids) else []


def head_auto_class(model) -> str:
    """The Auto class registered for `type(model)` (the most specific one when several are)."""
    from .export import registered_auto_classes

    registered = registered_auto_classes(type(model.config))
    names = [name for name, cls in registered.items() if cls is type(model)]
    if not names:
        raise ValueError(f"{type(model).__name__} is not registered with any Auto class")
    for name in PIPELINE_TAGS:  # heads before the bare AutoModel
        if name in names:
            return name
    return sorted(names)[0]


def render_card(model, *, tokenizer=None, processor=None, repo_id: str | None = None, auto_map: dict | None = None,
                pipeline_tag: str | None = None) -> ModelCard:
    """The model card of `model` as a `huggingface_hub.ModelCard` (`.save(path)` writes README.md).

    `pipeline_tag`: the pipeline task exported with the model (paperzoo.hub.export passes its custom pipeline task);
    default: the task of the Auto class the head is registered with."""
    import transformers

    config = model.config
    stem = card_stem(config)
    meta, body = load_template(stem)
    auto_class = head_auto_class(model)
    pipeline_tag = pipeline_tag or PIPELINE_TAGS.get(auto_class)
    arxiv_ids = _arxiv_ids(meta)
    tags = list(dict.fromkeys(["paperzoo", stem, "custom_code", *(f"arxiv:{i}" for i in arxiv_ids),
                               *meta.get("extra_tags", [])]))
    data = ModelCardData(library_name=LIBRARY_NAME, license=LICENSE, pipeline_tag=pipeline_tag, tags=tags)
    builder = CONTEXT_BUILDERS.get(stem)
    extra = builder(model, processor) if builder is not None else {}
    try:
        from .. import __version__ as paperzoo_version
    except ImportError:  # pragma: no cover - paperzoo always defines it
        paperzoo_version = "unknown"
    dtype = next((p.dtype for p in model.parameters()), None)
    return ModelCard.from_template(
        data,
        template_str="---\n{{ card_data }}\n---\n\n" + body,
        config=config,
        model_class=type(model).__name__,
        auto_class=auto_class,
        repo_id=repo_id or f"your-namespace/paperzoo-{stem}",
        num_parameters=model.num_parameters(),
        dtype=str(dtype).replace("torch.", "") if dtype is not None else "unknown",
        has_tokenizer=tokenizer is not None,
        has_processor=processor is not None,
        pipeline_tag=pipeline_tag,
        auto_map=auto_map or {},
        arxiv=arxiv_ids[0],
        arxiv_ids=arxiv_ids,
        title=meta.get("title", ""),
        stem=stem,
        paperzoo_version=paperzoo_version,
        transformers_version=transformers.__version__,
        **extra,
    )


# ----------------------------------------------------------------------------------------------------------------------
# Architecture-specific card variables


def rule_table(rule_set, max_rules: int | None = None) -> str:
    """The model card's rule table: `RuleSet.to_markdown`, cut after `max_rules` rules."""
    return rule_set.to_markdown(max_rules)


def _rrl_context(model, processor) -> dict:
    """Variables of hub_cards/rrl.md: the schema, an example row and the rule table of the discrete model."""
    schema = processor.schema() if processor is not None else None
    rules = model.extract_rules(schema)
    max_rules = 200
    example = {}
    columns = {"discrete": [], "continuous": []}
    if processor is not None:
        for name in processor.columns:
            if name in processor.discrete_columns:
                cats = processor.categories[name]
                columns["discrete"].append((name, cats))
                example[name] = cats[0] if cats else ""
            else:
                j = processor.continuous_columns.index(name)
                mean, std = processor.means[j], processor.stds[j]
                columns["continuous"].append((name, mean, std))
                example[name] = float(f"{mean:.4g}")
    return {
        "labels": list(rules.labels),
        "rule_table": rule_table(rules, max_rules),
        "num_rules": len(rules.rules),
        "max_rules": max_rules,
        "num_edges": model.edge_count() if hasattr(model, "edge_count") else None,
        "columns": columns,
        "example_row": repr(example),
        "bias": dict(rules.bias),
    }


# stem -> function(model, processor) -> extra template variables
CONTEXT_BUILDERS = {"rrl": _rrl_context}


__all__ = ["CONTEXT_BUILDERS", "LICENSE", "LIBRARY_NAME", "PIPELINE_TAGS", "card_stem", "head_auto_class",
           "load_template", "render_card", "rule_table"]
