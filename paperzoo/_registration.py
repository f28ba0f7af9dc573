"""How paperzoo registers with transformers and PEFT while `import paperzoo` imports neither (DESIGN §5).

`import paperzoo` stays cheap (the CLI answers `--help` without torch), yet transformers' `AutoConfig`, `AutoModel*`,
`AutoFeatureExtractor`, `pipeline(task)` and PEFT's default target modules must know every paperzoo architecture
whether paperzoo or transformers / peft is imported first. Registration therefore runs from post-import hooks:
`install()` (called by `paperzoo/__init__.py`) puts a finder first on `sys.meta_path`. For each module watched (the
registries below, and the modules a registration must not overtake), it wraps the loader found by the other finders;
once the module's code has run, the original loader is put back on the module and every registration now able to run
runs:

    trigger module (a registry)                        registration
    transformers.models.auto.configuration_auto        AutoConfig.register(model_type, config class)
    transformers.models.auto.modeling_auto             AutoModel*.register(config class, model class)
    transformers.models.auto.feature_extraction_auto   AutoFeatureExtractor.register(config class, processor class)
    transformers.pipelines                             PIPELINE_REGISTRY.register_pipeline(task, ...)
    peft.utils.constants                               the default target modules of each PEFT tuner

A registration runs once its trigger has been imported (at once if it already was when `install()` runs) and while
none of the modules it imports is still executing; otherwise it waits for that module to finish. That covers a
paperzoo module that imports its own registry (`paperzoo.pipelines.tabular_classification` imports
transformers.pipelines and is still executing when that completes), and keeps model classes from being imported while
transformers.modeling_utils is executing (it imports configuration_auto; modeling_auto it imports in no version seen).

ARCHITECTURES is the one table: per model type, the config class, each Auto class with the class it loads, the pipeline
tasks, and whose PEFT defaults apply. Classes are dotted names, so the table imports nothing; a class is imported when
its registry is.

What this relies on: the trigger module names above and the public `register` / `register_pipeline` functions in them;
PEFT's `TRANSFORMERS_MODELS_TO_*_MODULES_MAPPING` dicts, which its tuners read through the same objects. A trigger that
transformers or PEFT renames is never imported, so its registration never runs: tests/test_registration.py and
tests/modeling/test_peft.py then fail (a paperzoo class or default no longer resolves); an Auto class renamed inside a
trigger makes that trigger's import fail with AttributeError.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial


@dataclass(frozen=True)
class Architecture:
    config: str  # the PreTrainedConfig subclass; its `model_type` is the table key
    auto: dict[str, str]  # transformers Auto class name -> the class it loads for this config
    pipelines: dict[str, tuple[str, str]] = field(default_factory=dict)  # task -> (Pipeline class, pt_model Auto class)
    peft_like: str | None = None  # the model type whose PEFT default targets apply by module name; None: no defaults
    peft_renames: dict[str, str] = field(default_factory=dict)  # its module names -> ours, where they differ


ARCHITECTURES: dict[str, Architecture] = {
    "paperzoo_retnet": Architecture(
        config="paperzoo.configuration.retnet.RetNetConfig",
        auto={
            "AutoModel": "paperzoo.modeling.retnet.RetNetModel",
            "AutoModelForCausalLM": "paperzoo.modeling.retnet.RetNetForCausalLM",
            "AutoModelForSequenceClassification": "paperzoo.modeling.retnet.RetNetForSequenceClassification",
        },
        # the projections are named as Llama's (q/k/v/o_proj, gate/up/down_proj; g_proj has no Llama counterpart):
        # every tuner gets Llama's default, e.g. LoRA q_proj + v_proj; the pre-norms are named after their sublayer
        peft_like="llama",
        peft_renames={"input_layernorm": "retention_norm", "post_attention_layernorm": "ffn_norm"},
    ),
    "paperzoo_yoco": Architecture(
        config="paperzoo.configuration.yoco.YOCOConfig",
        auto={
            "AutoModel": "paperzoo.modeling.yoco.YOCOModel",
            "AutoModelForCausalLM": "paperzoo.modeling.yoco.YOCOForCausalLM",
        },
        # Llama's projection names (q/k/v/o_proj, gate/up/down_proj): LoRA's default q_proj + v_proj adapts the
        # self-decoder's mixers, the shared K/V's values and the cross-decoder's queries
        peft_like="llama",
        peft_renames={"input_layernorm": "mixer_norm", "post_attention_layernorm": "ffn_norm"},
    ),
    "paperzoo_focusllm": Architecture(
        config="paperzoo.configuration.focusllm.FocusLLMConfig",
        auto={"AutoModelForCausalLM": "paperzoo.modeling.focusllm.FocusLLMForCausalLM"},
        # no PEFT defaults: the candidate projections are FocusLLM's own adapter (trainable copies of the base's)
    ),
    "paperzoo_rrl": Architecture(
        config="paperzoo.configuration.rrl.RRLConfig",
        auto={
            # no backbone/head split: AutoModel (which tabular pipelines load) returns the classifier itself
            "AutoModel": "paperzoo.modeling.rrl.RRLForTabularClassification",
            "AutoFeatureExtractor": "paperzoo.processors.rrl.RRLProcessor",
        },
        pipelines={
            "tabular-classification": ("paperzoo.pipelines.tabular_classification.TabularClassificationPipeline",
                                       "AutoModel"),
        },
        # no PEFT defaults: the logical layers hold bare parameters (not nn.Linear, so LoRA cannot wrap them) and the
        # one Linear, the `classifier` head (rule weights, width x classes), is what SEQ_CLS already trains in full
    ),
    **{f"paperzoo_{stem}": Architecture(
        config=f"paperzoo.configuration.{stem}.{name}Config",
        auto={
            # no backbone/head split: AutoModel returns the recommender itself (its logits are item scores)
            "AutoModel": f"paperzoo.modeling.{stem}.{name}ForSequentialRecommendation",
            "AutoFeatureExtractor": "paperzoo.processors.seqrec.SequentialRecommendationProcessor",
        },
        pipelines={"sequential-recommendation": (
            "paperzoo.pipelines.sequential_recommendation.SequentialRecommendationPipeline", "AutoModel")},
        # no PEFT defaults: small item models trained in full (their item table is most of the parameters)
    ) for stem, name in (("sasrec", "SASRec"), ("gru4rec", "GRU4Rec"), ("caser", "Caser"), ("fmlprec", "FMLPRec"))},
    "paperzoo_e4srec": Architecture(
        config="paperzoo.configuration.e4srec.E4SRecConfig",
        auto={
            # as the other sequential recommenders: AutoModel returns the recommender (its logits are item scores)
            "AutoModel": "paperzoo.modeling.e4srec.E4SRecForSequentialRecommendation",
            "AutoFeatureExtractor": "paperzoo.processors.seqrec.SequentialRecommendationProcessor",
        },
        pipelines={"sequential-recommendation": (
            "paperzoo.pipelines.sequential_recommendation.SequentialRecommendationPipeline", "AutoModel")},
        # the LLM inside is Llama-like (q_proj / v_proj): LoRA's Llama default adapts it; the item table and the
        # two projections train in full through modules_to_save (paperzoo.modeling.e4srec_training.lora_config)
        peft_like="llama",
    ),
    "paperzoo_sigma_vae": Architecture(
        config="paperzoo.configuration.sigma_vae.SigmaVAEConfig",
        auto={
            "AutoModel": "paperzoo.modeling.sigma_vae.SigmaVAEModel",
            "AutoImageProcessor": "paperzoo.processors.sigma_vae.SigmaVAEImageProcessor",
        },
        # no PEFT defaults: a convolutional autoencoder (no q/v projections to adapt)
    ),
    "paperzoo_latentlm": Architecture(
        config="paperzoo.configuration.latentlm.LatentLMConfig",
        auto={
            "AutoModel": "paperzoo.modeling.latentlm.LatentLMModel",
            # one causal sequence of text tokens and latents: text generation, and images after <boi>
            "AutoModelForCausalLM": "paperzoo.modeling.latentlm.LatentLMForConditionalGeneration",
            "AutoProcessor": "paperzoo.processors.latentlm.LatentLMProcessor",
        },
        # the trunk is any AutoModel decoder; Llama's, paperzoo's RetNet and YOCO all name their projections
        # q_proj / v_proj, so LoRA's Llama default adapts the trunk (the diffusion head trains in full if wanted)
        peft_like="llama",
    ),
    "paperzoo_kcf_plm": Architecture(
        config="paperzoo.configuration.kcf_plm.KCFPLMConfig",
        auto={
            # no backbone/head split: AutoModel returns the rating regressor (as RRL's classifier)
            "AutoModel": "paperzoo.modeling.kcf_plm.KCFPLMForRatingPrediction",
            "AutoProcessor": "paperzoo.processors.kcf_plm.KCFPLMProcessor",
        },
        pipelines={"rating-prediction": ("paperzoo.pipelines.rating_prediction.RatingPredictionPipeline",
                                         "AutoModel")},
        # the document towers are BERT-like encoders (query / value projections): LoRA's BERT default adapts them;
        # the KG, aspect and FM modules then train in full through modules_to_save if wanted
        peft_like="bert",
    ),
}

# tasks whose model is a transformers architecture, not a paperzoo one: task -> (Pipeline class, pt_model Auto class)
TASKS: dict[str, tuple[str, str]] = {
    # FlexKBQA: any seq2seq question -> program parser (a T5 from paperzoo.kbqa.SemanticParser by default)
    "kbqa": ("paperzoo.pipelines.kbqa.KBQAPipeline", "AutoModelForSeq2SeqLM"),
    # LLM vs traditional tools: any causal LM as a multiple-choice diagnostician (paperzoo.diagnosis)
    "clinical-diagnosis": ("paperzoo.pipelines.clinical_diagnosis.ClinicalDiagnosisPipeline", "AutoModelForCausalLM"),
    # LlamaRec's two stages: a trained sequential recommender (the model) retrieves, any causal LM (llm=) reranks
    "llm-recommendation": ("paperzoo.pipelines.llm_recommendation.LLMRecommendationPipeline", "AutoModel"),
}

_CONFIG_AUTO = "transformers.models.auto.configuration_auto"
_MODEL_AUTO = "transformers.models.auto.modeling_auto"  # every AutoModel* class
_AUTO_MODULES = {  # any other Auto class
    "AutoFeatureExtractor": "transformers.models.auto.feature_extraction_auto",
    "AutoImageProcessor": "transformers.models.auto.image_processing_auto",
    "AutoProcessor": "transformers.models.auto.processing_auto",
}
_PIPELINES = "transformers.pipelines"
_PEFT = "peft.utils.constants"
_MODELING_UTILS = "transformers.modeling_utils"
_MODELING_LAYERS = "transformers.modeling_layers"  # imports the auto models at its top: a model module importing it
# first would otherwise make the hook import that same model module, half-initialised


def class_paths() -> list[str]:
    """Every class the table names (dotted), in table order."""
    return [*(path for arch in ARCHITECTURES.values()
              for path in (arch.config, *arch.auto.values(), *(impl for impl, _ in arch.pipelines.values()))),
            *(impl for impl, _ in TASKS.values())]


def _auto_module(auto_name: str) -> str:
    if auto_name.startswith("AutoModel"):
        return _MODEL_AUTO
    if auto_name not in _AUTO_MODULES:
        raise ValueError(f"Auto class {auto_name!r} in paperzoo's ARCHITECTURES: add its transformers module to "
                         "_AUTO_MODULES")
    return _AUTO_MODULES[auto_name]


def _load(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


# ----------------------------------------------------------------------------------------------------------------------
# Registrations (each is idempotent: after a failure it runs again on a later import)


def _register_configs() -> None:
    auto_config = sys.modules[_CONFIG_AUTO].AutoConfig
    for model_type, arch in ARCHITECTURES.items():
        config = _load(arch.config)
        if config.model_type != model_type:
            raise ValueError(f"ARCHITECTURES[{model_type!r}]: {arch.config}.model_type is {config.model_type!r}")
        # exist_ok: a type registered again (after a failed import) must not fail; the types are prefixed, so this
        # never replaces another library's class
        auto_config.register(model_type, config, exist_ok=True)


def _register_auto_classes(trigger: str) -> None:
    registry = sys.modules[trigger]
    for arch in ARCHITECTURES.values():
        for auto_name, path in arch.auto.items():
            if _auto_module(auto_name) == trigger:
                getattr(registry, auto_name).register(_load(arch.config), _load(path), exist_ok=True)


def register_pipelines() -> None:
    """Register every task of the table with PIPELINE_REGISTRY; a second call changes nothing and logs nothing."""
    import transformers
    from transformers.pipelines import PIPELINE_REGISTRY

    tasks = [*(item for arch in ARCHITECTURES.values() for item in arch.pipelines.items()), *TASKS.items()]
    for task, (impl, pt_model) in tasks:
        pipeline_class = _load(impl)
        current = PIPELINE_REGISTRY.supported_tasks.get(task)
        if current is not None and current.get("impl") is pipeline_class:
            continue  # register_pipeline would log "Overwriting pipeline"
        PIPELINE_REGISTRY.register_pipeline(task, pipeline_class=pipeline_class,
                                            pt_model=getattr(transformers, pt_model))


def _register_peft() -> None:
    """Give each model type, in every PEFT tuner mapping that has its `peft_like` model type, that model's default
    targets (module-name suffixes, renamed; a str is a regex over full names and is taken as it is). A mapping without
    `peft_like` gets nothing: the tuner then asks for target_modules, as it does for that model."""
    constants = sys.modules[_PEFT]
    for name, mapping in vars(constants).items():
        if not (name.startswith("TRANSFORMERS_MODELS_TO_") and name.endswith("_MODULES_MAPPING")):
            continue
        for model_type, arch in ARCHITECTURES.items():
            targets = mapping.get(arch.peft_like) if arch.peft_like is not None else None
            if targets is None:
                continue
            if not isinstance(targets, str):
                targets = [arch.peft_renames.get(t, t) for t in targets]
            mapping.setdefault(model_type, targets)  # a user's own entry wins


# ----------------------------------------------------------------------------------------------------------------------
# Post-import hooks


@dataclass(frozen=True)
class _Hook:
    trigger: str  # the registry module whose import runs it
    waits_for: frozenset[str]  # modules that must not be executing when it runs
    run: Callable[[], None]


def _modules(paths: Iterable[str]) -> frozenset[str]:
    return frozenset(path.rpartition(".")[0] for path in paths)


def _hooks() -> list[_Hook]:
    archs = ARCHITECTURES.values()
    configs = [arch.config for arch in archs]
    hooks = [_Hook(_CONFIG_AUTO, _modules(configs), _register_configs)]
    for trigger in dict.fromkeys(_auto_module(name) for arch in archs for name in arch.auto):
        classes = [path for arch in archs for name, path in arch.auto.items() if _auto_module(name) == trigger]
        waits = _modules(configs + classes) | ({_MODELING_UTILS, _MODELING_LAYERS} if trigger == _MODEL_AUTO
                                                   else frozenset())
        hooks.append(_Hook(trigger, waits, partial(_register_auto_classes, trigger)))
    pipelines = [impl for arch in archs for impl, _ in arch.pipelines.values()] + [i for i, _ in TASKS.values()]
    hooks.append(_Hook(_PIPELINES, _modules(pipelines), register_pipelines))
    hooks.append(_Hook(_PEFT, frozenset(), _register_peft))
    return hooks


_pending: list[_Hook] = _hooks()
_watched = frozenset(name for hook in _pending for name in (hook.trigger, *hook.waits_for))
_executing: set[str] = set()  # watched modules whose code is running now
_lock = threading.Lock()


def _run_ready() -> None:
    """Run every pending hook whose trigger has been imported and that waits for no module still
    executing. A hook that raises stays pending (a later import retries it) and its error reaches the importer."""
    while True:
        with _lock:
            hook = next((h for h in _pending if h.trigger in sys.modules and h.trigger not in _executing
                         and not h.waits_for & _executing), None)
            if hook is None:
                return
            _pending.remove(hook)  # before running: a nested import must not run it a second time
        try:
            hook.run()
        except BaseException:
            with _lock:
                _pending.append(hook)
            raise


class _Loader:
    """The loader the other finders gave a watched module: it runs the module, then the hooks now ready. The module
    gets the original loader back once its code has run; until then every other attribute is the original's."""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        name = module.__spec__.name
        _executing.add(name)
        try:
            self._loader.exec_module(module)
        finally:
            _executing.discard(name)
            module.__loader__ = module.__spec__.loader = self._loader
        _run_ready()


class _Finder:
    """First on sys.meta_path: for a watched module, the spec the finders after it give, with the loader wrapped."""

    def find_spec(self, name, path=None, target=None):
        if name not in _watched or self not in sys.meta_path:
            return None
        for finder in sys.meta_path[sys.meta_path.index(self) + 1:]:
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(name, path, target) if find_spec is not None else None
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _Loader(spec.loader)
                return spec
        return None


_FINDER = _Finder()


def install() -> None:
    """Hook every registry not imported yet and register with those already imported; a second call does nothing."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    _run_ready()
