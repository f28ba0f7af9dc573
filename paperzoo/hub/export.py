"""`export(model, folder)`: a self-contained Hub folder that loads where paperzoo is not installed (DESIGN §5).

The folder holds `model.safetensors` (safetensors only), `config.json` whose `auto_map` names every Auto class the
architecture is registered with (`paperzoo._registration.ARCHITECTURES`), `generation_config.json` (models that
generate), the tokenizer / processor files when given, the model card `README.md` (paperzoo.hub.cards) and the remote
code: flat copies of every package module that the registered classes reach through their imports.

Processors: a package processor saved into the folder gets the `auto_map` entry of its Auto class written into its own
JSON (`preprocessor_config.json` for AutoFeatureExtractor), which transformers reads before config.json; its
`feature_extractor_type` names a class transformers does not know where the package is not installed.

Pipelines: a task registered with transformers' PIPELINE_REGISTRY (by `paperzoo._registration`) whose pipeline class
lists the model's `model_type` in its `model_types` attribute is exported too: its module is bundled like the model's
and config.json gets `custom_pipelines` = {task: {"impl": "<flat module>.<Class>", "pt": [Auto class names]}}, so that
`pipeline(model=folder, trust_remote_code=True)` infers the task without the package. The `pt` classes must be Auto
classes exported by transformers under which the model is registered; a pipeline that requires a feature extractor
needs `processor=`. transformers gives a folder's `custom_pipelines` precedence over a registered task of the same
name: with the package imported, `pipeline(task, model=folder)` on an exported folder still asks for
`trust_remote_code=True` (and then runs the folder's pipeline class with the package's model and processor classes).

`model.save_pretrained` and `model.push_to_hub`: paperzoo's models inherit `paperzoo.modeling.hub_mixin.
PaperzooHubMixin`, whose two methods call `save_pretrained` / `push_to_hub` below (found by name: the mixin is bundled,
this module is not). One implementation serves all three: `_build` writes the folder through transformers' own
save_pretrained (never the override, so nothing recurses). `export` replaces a whole folder; `save_pretrained` writes
into the given folder with every transformers argument (Trainer's `state_dict=`, `max_shard_size`, `variant`,
`push_to_hub`, ...), keeping files it does not write (a Trainer's optimizer state) and an existing README.md;
`push_to_hub` uploads the folder with paperzoo's card (transformers' own would replace README.md by the repo's current
card or a generic one). Saved alone, a model whose pipeline needs a processor is saved without the pipeline.

Atomicity: the folder is built in a hidden temporary sibling (`.<name>.tmp-*`) and renamed into place only once it is
complete and validated. An existing folder is moved aside first and deleted after the rename; on any error the old
folder is left as it was and the temporary one is removed. `save_pretrained` builds in a hidden temporary folder inside
the target and renames each file into place (config.json last); a failure leaves the target as it was.

Remote-code bundles are flat: transformers copies only the files named by `from .sibling import X` lines, and its
`check_imports` demands every package imported outside `try:`. The package sources are therefore rewritten.

Flat names: a module's dotted path below the top package, dots replaced by "_" (the module of a package is its
`__init__.py`):
    paperzoo.modeling.retnet              -> modeling_retnet.py
    paperzoo.configuration.retnet         -> configuration_retnet.py
    paperzoo.kernels.retention            -> kernels_retention.py
    paperzoo.kernels.retention.reference  -> kernels_retention_reference.py
    paperzoo.kernels._registry            -> kernels__registry.py
    paperzoo._env                         -> _env.py
Two modules with one flat name (`a.b_c` and `a_b.c`) make the export fail.

Import rewrites (statements located with `ast`; only their text is replaced, the rest is copied byte for byte):
    from <paperzoo module> import names     -> from .<flat> import names
    from <paperzoo package> import module   -> from .<flat> import __name__ as _paperzoo_flat_<flat>
                                               from . import <flat> as module
        (`from . import x` alone binds the module but transformers would not copy the file: the first line makes
        it copy and load it, the second binds it under the old name)
    import paperzoo.x.y as name             -> the same two lines
    an import inside `try:` of a paperzoo module that has no source file
                                            -> raise ImportError(...)   (the `try` falls back as it would)
"<paperzoo module>" covers relative imports at any depth and absolute `paperzoo.` ones.
Modules reached only through imports inside `try:` (the Triton kernels) are copied too, and the imports stay inside
their `try`. In those optional modules, an import of a package outside torch / transformers / safetensors / numpy /
the standard library that is not already inside `try` is wrapped in `try: ... except ImportError: raise`: the
behaviour is unchanged and check_imports (which skips `try` blocks) does not demand triton where it cannot run.

What package modules must keep doing (the export fails with the file and line otherwise):
    * every import of a paperzoo module starts its own line (transformers' copy rule is a line regex);
    * no bare `import paperzoo.x` (use `from ... import` or `as`), nothing imported from the top-level
      `paperzoo/__init__.py` (it installs the registration hooks: import from the defining module);
    * modules reached outside `try` import only torch, transformers, safetensors, numpy and the standard library;
    * intermediate package `__init__` files are not run in the bundle: only modules actually imported are copied;
    * no line of a docstring may start with `from .name import` (transformers' regex would look for that file).
The result is checked with transformers' own `get_relative_import_files` and `get_imports` before the rename.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
import logging
import os
import re
import shutil
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

# Packages the generated files may import outside `try` (besides the standard library). diffusers: LatentLM's noise
# schedules and samplers are diffusers schedulers (its card says to install it).
ALLOWED_PACKAGES = frozenset({"torch", "transformers", "safetensors", "numpy", "diffusers"})
_STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}
_TRY_NODES = tuple(t for t in (getattr(ast, "Try", None), getattr(ast, "TryStar", None)) if t is not None)
_WEIGHT_PICKLES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")

# Auto classes for preprocessing, beside the AutoModel* classes found in modeling_auto.
_PROCESSOR_MAPPINGS = (
    ("AutoTokenizer", "transformers.models.auto.tokenization_auto", "TOKENIZER_MAPPING"),
    ("AutoFeatureExtractor", "transformers.models.auto.feature_extraction_auto", "FEATURE_EXTRACTOR_MAPPING"),
    ("AutoImageProcessor", "transformers.models.auto.image_processing_auto", "IMAGE_PROCESSOR_MAPPING"),
    ("AutoVideoProcessor", "transformers.models.auto.video_processing_auto", "VIDEO_PROCESSOR_MAPPING"),
    ("AutoProcessor", "transformers.models.auto.processing_auto", "PROCESSOR_MAPPING"),
)


class ExportError(ValueError):
    """The model or the package sources cannot make a self-contained Hub folder (the message says why)."""


# ----------------------------------------------------------------------------------------------------------------------
# Auto registration


def registered_auto_classes(config_class: type) -> dict[str, object]:
    """{Auto class name: registered class} for every transformers Auto mapping holding `config_class` in this process.

    Model mappings give a class; AutoTokenizer gives a (slow, fast) pair. Only in-process registrations
    (`AutoX.register`, i.e. `import paperzoo`) are looked at, never transformers' own models.
    """
    from transformers.models.auto import auto_factory, configuration_auto, modeling_auto

    found: dict[str, object] = {}
    if configuration_auto.CONFIG_MAPPING._extra_content.get(getattr(config_class, "model_type", None)) is config_class:
        found["AutoConfig"] = config_class
    for name, auto in sorted(vars(modeling_auto).items()):
        if not (name.startswith("Auto") and isinstance(auto, type)
                and issubclass(auto, auto_factory._BaseAutoModelClass)
                and getattr(auto, "_model_mapping", None) is not None):
            continue
        target = auto._model_mapping._extra_content.get(config_class)
        if target is not None:
            found[name] = target
    for name, module_name, mapping_name in _PROCESSOR_MAPPINGS:
        try:
            mapping = getattr(importlib.import_module(module_name), mapping_name)
        except (ImportError, AttributeError):
            continue
        target = getattr(mapping, "_extra_content", {}).get(config_class)
        if target is not None:
            found[name] = target
    return found


# ----------------------------------------------------------------------------------------------------------------------
# Flat remote code


def flat_name(module: str, top: str = "paperzoo") -> str:
    """`paperzoo.kernels.retention.reference` -> `kernels_retention_reference` (see the module docstring)."""
    if module == top or not module.startswith(top + "."):
        raise ExportError(f"{module!r} is not a module below the package {top!r}")
    flat = module[len(top) + 1:].replace(".", "_")
    if not flat.isidentifier():
        raise ExportError(f"{module!r} gives the flat module name {flat!r}, which is not a Python identifier")
    return flat


@dataclass
class _Site:
    node: ast.Import | ast.ImportFrom
    optional: bool  # in the body of a `try` (or of an `if is_xxx_available():`): a failure there is handled
    exempt: bool  # anywhere inside such a statement: transformers' check_imports does not look at it


@dataclass
class _Module:
    name: str
    path: Path
    is_package: bool
    source: bytes
    tree: ast.Module
    sites: list[_Site]
    # (start byte, end byte, replacement) for every paperzoo import, and the modules they reach (name, optional)
    rewrites: list[tuple[int, int, bytes]] = field(default_factory=list)
    targets: list[tuple[str, bool]] = field(default_factory=list)
    required: bool = False

    @property
    def line_starts(self) -> list[int]:
        """Byte offset of the start of each line (ast columns are UTF-8 byte offsets)."""
        if not hasattr(self, "_line_starts"):
            starts = [0]
            for line in self.source.splitlines(keepends=True):
                starts.append(starts[-1] + len(line))
            self._line_starts = starts
        return self._line_starts


def _is_availability_check(test: ast.AST) -> bool:
    """transformers' own rule (dynamic_module_utils.get_imports): `if is_xxx_available():` with is_xxx from
    transformers.utils.import_utils, or is_flash_attn*available."""
    import transformers.utils.import_utils as import_utils

    for node in ast.walk(test):
        if isinstance(node, ast.Call):
            fn = getattr(node.func, "id", "")
            if (fn.startswith("is_flash_attn") and fn.endswith("available")) or (fn and hasattr(import_utils, fn)):
                return True
    return False


def _import_sites(tree: ast.Module) -> list[_Site]:
    sites: list[_Site] = []

    def visit(node: ast.AST, optional: bool, exempt: bool) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            sites.append(_Site(node, optional, exempt))
            return
        if isinstance(node, _TRY_NODES):
            for child in node.body:
                visit(child, True, True)
            for part in (node.handlers, node.orelse, node.finalbody):
                for child in part:
                    visit(child, optional, True)
            return
        if isinstance(node, ast.If) and _is_availability_check(node.test):
            for child in node.body:
                visit(child, True, True)
            for child in node.orelse:
                visit(child, optional, True)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, optional, exempt)

    visit(tree, False, False)
    return sites


class _Flattener:
    def __init__(self, top: str):
        self.top = top
        spec = importlib.util.find_spec(top)
        if spec is None or not spec.submodule_search_locations:
            raise ExportError(f"{top!r} is not an importable package")
        self.top_dir = Path(next(iter(spec.submodule_search_locations)))
        self.modules: dict[str, _Module] = {}

    # -- locating and reading modules --------------------------------------------------------------------------------

    def locate(self, module: str) -> tuple[Path, bool] | None:
        """(source file, is_package) of a module below the top package, from the file system (nothing is imported)."""
        if module == self.top:
            return self.top_dir / "__init__.py", True
        if not module.startswith(self.top + "."):
            return None
        parts = module.split(".")[1:]
        base = self.top_dir.joinpath(*parts)
        if (base / "__init__.py").is_file():
            return base / "__init__.py", True
        if base.with_name(parts[-1] + ".py").is_file():
            return base.with_name(parts[-1] + ".py"), False
        return None

    def own(self, module: str | None) -> bool:
        return bool(module) and (module == self.top or module.startswith(self.top + "."))

    def load(self, name: str) -> _Module:
        found = self.locate(name)
        if found is None:
            raise ExportError(f"no source file for module {name!r} under {self.top_dir}")
        path, is_package = found
        source = path.read_bytes()
        tree = ast.parse(source, filename=str(path))
        mod = _Module(name, path, is_package, source, tree, _import_sites(tree))
        self._plan(mod)
        return mod

    # -- rewriting ---------------------------------------------------------------------------------------------------

    def _where(self, mod: _Module, node: ast.AST) -> str:
        return f"{mod.path}:{node.lineno}"

    def _span(self, mod: _Module, node: ast.stmt) -> tuple[int, int, bytes]:
        """Byte offsets of the statement and the indentation of its line; the statement must start its line."""
        starts = mod.line_starts
        start = starts[node.lineno - 1] + node.col_offset
        end = starts[node.end_lineno - 1] + node.end_col_offset
        indent = mod.source[starts[node.lineno - 1]:start]
        if indent.strip():
            raise ExportError(
                f"{self._where(mod, node)}: this import must start its own line (not after ';' or ':'), so that "
                "transformers' line-based rule finds it in the flat file"
            )
        return start, end, indent

    def _plan(self, mod: _Module) -> None:
        package = mod.name if mod.is_package else mod.name.rpartition(".")[0]
        for site in mod.sites:
            node = site.node
            lines: list[str] = []
            targets: list[str] = []
            missing: str | None = None
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    try:
                        base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
                    except ImportError as err:
                        raise ExportError(f"{self._where(mod, node)}: {err}") from None
                elif self.own(node.module):
                    base = node.module
                else:
                    continue
                names: list[str] = []
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    if alias.name != "*" and self._is_submodule(base, alias.name):
                        targets.append(sub)
                        lines += self._module_binding(sub, alias.asname or alias.name)
                        continue
                    names.append(alias.name if alias.asname is None else f"{alias.name} as {alias.asname}")
                if names:
                    if base == self.top:
                        raise ExportError(
                            f"{self._where(mod, node)}: importing {', '.join(names)} from the top-level package "
                            f"{self.top!r} cannot be bundled (its __init__ registers the Auto classes); import from "
                            "the module that defines them"
                        )
                    if self.locate(base) is None:
                        missing = base
                    else:
                        targets.append(base)
                        lines.insert(0, f"from .{flat_name(base, self.top)} import {', '.join(names)}")
            else:
                if not any(self.own(alias.name) for alias in node.names):
                    continue
                for alias in node.names:
                    if not self.own(alias.name):
                        lines.append(f"import {alias.name}" + (f" as {alias.asname}" if alias.asname else ""))
                        continue
                    if alias.asname is None:
                        raise ExportError(
                            f"{self._where(mod, node)}: `import {alias.name}` binds the top-level package; write "
                            f"`from {alias.name.rpartition('.')[0]} import {alias.name.rpartition('.')[2]}` or "
                            f"`import {alias.name} as name`"
                        )
                    if self.locate(alias.name) is None:
                        missing = alias.name
                        break
                    targets.append(alias.name)
                    lines += self._module_binding(alias.name, alias.asname)
            if missing is not None:
                if not site.optional:
                    raise ExportError(f"{self._where(mod, node)}: module {missing!r} has no source file")
                # An optional module that does not exist (yet): the surrounding try handles the ImportError.
                message = f"{missing} is not part of this bundle (no source file)"
                lines, targets = [f"raise ImportError({message!r})"], []
            start, end, indent = self._span(mod, node)
            text = ("\n" + indent.decode()).join(lines)
            mod.rewrites.append((start, end, text.encode()))
            mod.targets += [(t, site.optional) for t in targets]

    def _is_submodule(self, package: str, name: str) -> bool:
        found = self.locate(package)
        return found is not None and found[1] and self.locate(f"{package}.{name}") is not None

    def _module_binding(self, module: str, bind: str) -> list[str]:
        flat = flat_name(module, self.top)
        return [
            f"from .{flat} import __name__ as _paperzoo_flat_{flat}",
            f"from . import {flat}" + ("" if bind == flat else f" as {bind}"),
        ]

    def _wraps(self, mod: _Module) -> list[tuple[int, int, bytes]]:
        """In an optional module: wrap each unguarded import of a package outside the allowed set in try/raise."""
        edits = []
        for site in mod.sites:
            node = site.node
            if site.exempt:
                continue
            if isinstance(node, ast.Import):
                tops = {alias.name.partition(".")[0] for alias in node.names}
            elif node.level == 0 and node.module:
                tops = {node.module.partition(".")[0]}
            else:
                continue
            if not tops - ALLOWED_PACKAGES - _STDLIB - {self.top}:
                continue
            start, end, indent = self._span(mod, node)
            rest = mod.source[end:].split(b"\n", 1)[0].strip()
            if rest and not rest.startswith(b"#"):
                raise ExportError(f"{self._where(mod, node)}: put this import alone on its line")
            ind = indent.decode()
            stmt = mod.source[start:end].decode().replace("\n", "\n    ")
            text = (f"try:\n{ind}    {stmt}\n{ind}except ImportError:  # optional: check_imports must not demand it\n"
                    f"{ind}    raise")
            edits.append((start, end, text.encode()))
        return edits

    def render(self, mod: _Module, header: str) -> str:
        edits = list(mod.rewrites) + ([] if mod.required else self._wraps(mod))
        out = mod.source
        for start, end, text in sorted(edits, reverse=True):
            out = out[:start] + text + out[end:]
        return header + out.decode("utf-8")

    # -- the walk ----------------------------------------------------------------------------------------------------

    def walk(self, roots: Iterable[str]) -> None:
        work = [(root, True) for root in roots]
        while work:
            name, required = work.pop()
            mod = self.modules.get(name)
            if mod is None:
                mod = self.modules[name] = self.load(name)
            elif mod.required or not required:
                continue
            mod.required = required
            work += [(target, required and not optional) for target, optional in mod.targets]


def build_remote_code(roots: Iterable[str]) -> dict[str, str]:
    """{flat file name: source} for the modules `roots` (dotted names in one package) and everything they import from
    that package, rewritten as the module docstring describes."""
    roots = list(dict.fromkeys(roots))
    if not roots:
        raise ExportError("no root modules to bundle")
    top = roots[0].partition(".")[0]
    foreign = [r for r in roots if r.partition(".")[0] != top]
    if foreign:
        raise ExportError(f"modules {foreign} are not in the package {top!r}")
    flattener = _Flattener(top)
    flattener.walk(roots)
    by_flat: dict[str, str] = {}
    for name in sorted(flattener.modules):
        flat = flat_name(name, top)
        if flat in by_flat:
            raise ExportError(f"modules {by_flat[flat]!r} and {name!r} both flatten to {flat}.py; rename one")
        by_flat[flat] = name
    version = getattr(sys.modules.get(top), "__version__", "unknown")
    files = {}
    for flat, name in sorted(by_flat.items()):
        mod = flattener.modules[name]
        rel = mod.path.relative_to(flattener.top_dir.parent).as_posix()
        kind = "Optional module (imported inside try). " if not mod.required else ""
        header = (f"# Generated by paperzoo.hub.export from {rel} ({top} {version}).\n"
                  f"# {kind}Edit the {top} source, not this file.\n")
        files[f"{flat}.py"] = flattener.render(mod, header)
    return files


def validate_remote_code(folder: str | os.PathLike, entry_modules: Iterable[str]) -> None:
    """Check a flat bundle as transformers will load it: every file compiles, the files reachable from the entry
    modules (through `get_relative_import_files`) are exactly the .py files present, and `get_imports` finds nothing
    but the allowed packages and the standard library in any of them."""
    from transformers.dynamic_module_utils import get_imports, get_relative_import_files

    folder = Path(folder)
    present = {p.name for p in folder.glob("*.py")}
    for name in sorted(present):
        compile((folder / name).read_bytes(), str(folder / name), "exec")
    reachable: set[str] = set()
    for entry in entry_modules:
        reachable.add(f"{entry}.py")
        try:
            files = get_relative_import_files(folder / f"{entry}.py")
        except FileNotFoundError as err:  # it opens every file it finds named, missing ones included
            raise ExportError(f"the bundle imports {Path(err.filename).name}, which it does not contain "
                              f"(reached from {entry}.py)") from None
        for file in files:
            if not Path(file).is_file():
                raise ExportError(f"the bundle imports {Path(file).name}, which it does not contain (from {entry}.py)")
            reachable.add(Path(file).name)
    if reachable != present:
        raise ExportError(
            f"bundle files and the files transformers will copy differ: missing {sorted(reachable - present)}, "
            f"unreachable {sorted(present - reachable)}"
        )
    for name in sorted(present):
        bad = [p for p in get_imports(folder / name) if p not in ALLOWED_PACKAGES and p not in _STDLIB]
        if bad:
            raise ExportError(
                f"{name} imports {bad} outside `try`: remote code may import only {sorted(ALLOWED_PACKAGES)} and the "
                "standard library (put optional kernels behind try/except ImportError)"
            )


# ----------------------------------------------------------------------------------------------------------------------
# The folder


def _class_ref(cls: type, top: str) -> str:
    if not cls.__module__.startswith(top + "."):
        raise ExportError(f"{cls.__module__}.{cls.__qualname__} is not defined in the package {top!r}")
    return f"{flat_name(cls.__module__, top)}.{cls.__name__}"


def _auto_map(config_class: type, top: str, extra_objects: Iterable[object]) -> tuple[dict, list[str]]:
    """The config.json `auto_map` and the root modules to bundle."""
    registered = registered_auto_classes(config_class)
    auto_map: dict[str, object] = {}
    roots = [config_class.__module__]
    for auto_name, target in registered.items():
        if isinstance(target, (tuple, list)):
            own = [c for c in target if c is not None and c.__module__.startswith(top + ".")]
            if own:
                auto_map[auto_name] = [None if c is None else
                                       (_class_ref(c, top) if c.__module__.startswith(top + ".") else None)
                                       for c in target]
                roots += [c.__module__ for c in own]
        elif isinstance(target, type):
            if target.__module__.startswith(top + "."):
                auto_map[auto_name] = _class_ref(target, top)
                roots.append(target.__module__)
        else:
            logger.warning("%s: registration %r for %s is not a class; left out of auto_map", auto_name, target,
                           config_class.__name__)
    for obj in extra_objects:
        cls = type(obj)
        if cls.__module__.startswith(top + ".") and cls.__module__ not in roots:
            raise ExportError(f"{cls.__name__} is a {top} class but no Auto class is registered for it with "
                              f"{config_class.__name__}; add it to {top}._registration.ARCHITECTURES")
    if "AutoConfig" not in auto_map:
        raise ExportError(f"{config_class.__name__} is not registered with AutoConfig (import {top} registers it)")
    return auto_map, list(dict.fromkeys(roots))


def custom_pipelines(model, top: str, auto_map: dict, processor=None) -> dict[str, tuple[type, dict]]:
    """The pipeline tasks exported with `model`: every task registered with transformers' PIPELINE_REGISTRY whose
    pipeline class is defined in `top` and lists the model's `model_type` in its `model_types` attribute, as
    {task: (pipeline class, config.json `custom_pipelines` entry {"impl": "<flat module>.<Class>", "pt": [Auto class
    names]})}. With exactly one task, `pipeline(model=folder, trust_remote_code=True)` infers it where `top` is not
    installed. A task whose pipeline needs a feature extractor raises without `processor`."""
    tasks = _pipeline_tasks(model, top, auto_map)
    for task in _needing_processor(tasks, processor):
        raise ExportError(f"pipeline task {task!r} needs the model's feature extractor: export(model, folder, "
                          "processor=...)")
    return tasks


def _needing_processor(tasks: dict[str, tuple[type, dict]], processor) -> list[str]:
    """The tasks whose pipeline requires a feature extractor, when there is no `processor`."""
    if processor is not None:
        return []
    return [task for task, (impl, _) in tasks.items() if getattr(impl, "_load_feature_extractor", None) is True]


def _pipeline_tasks(model, top: str, auto_map: dict) -> dict[str, tuple[type, dict]]:
    import transformers
    from transformers.pipelines import PIPELINE_REGISTRY

    model_type = getattr(model.config, "model_type", None)
    found: dict[str, tuple[type, dict]] = {}
    for task, info in sorted(PIPELINE_REGISTRY.supported_tasks.items()):
        impl = info.get("impl")
        if not (isinstance(impl, type) and impl.__module__.startswith(top + ".")
                and model_type in getattr(impl, "model_types", ())):
            continue
        pt = [c.__name__ for c in info.get("pt", ())]
        # clean_custom_task does getattr(transformers, name): a custom class name there breaks loading
        foreign = [n for n in pt if getattr(transformers, n, None) is None or not n.startswith("Auto")]
        if not pt or foreign:
            raise ExportError(f"pipeline task {task!r} must name transformers Auto classes as pt_model; got {pt}")
        unregistered = [n for n in pt if n not in auto_map]
        if unregistered:
            raise ExportError(f"pipeline task {task!r} loads the model with {unregistered}, which "
                              f"{type(model.config).__name__} is not registered with")
        entry = {"impl": _class_ref(impl, top), "pt": pt}
        if "type" in info:
            entry["type"] = info["type"]
        found[task] = (impl, entry)
    return found


# Auto classes of preprocessing objects -> the file their save_pretrained writes (which must carry the auto_map);
# AutoProcessor first: a processor wraps the others, so a folder that has one is loaded through it
PROCESSOR_FILES = {
    "AutoProcessor": "processor_config.json",
    "AutoFeatureExtractor": "preprocessor_config.json",
    "AutoImageProcessor": "preprocessor_config.json",
    "AutoVideoProcessor": "video_preprocessor_config.json",
}


def _add_processor_auto_map(folder: Path, obj, top: str, auto_map: dict) -> None:
    """Put the Auto class entries of a saved package processor into its own JSON (as `register_for_auto_class` would,
    without copying its source under the wrong name): AutoFeatureExtractor & co. read the `auto_map` there first, and
    a `feature_extractor_type` that names a class unknown to transformers fails without it."""
    if not type(obj).__module__.startswith(top + "."):
        return
    ref = _class_ref(type(obj), top)
    for auto_name, file_name in PROCESSOR_FILES.items():
        path = folder / file_name
        if auto_map.get(auto_name) != ref or not path.is_file():
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        data.setdefault("auto_map", {})[auto_name] = ref
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _transformers_save(model, folder: Path, save_kwargs: dict) -> None:
    """transformers' own `save_pretrained` (config.json, generation_config.json, weights), never paperzoo's override
    (paperzoo.modeling.hub_mixin), which is what calls the exporter: the export does not recurse."""
    save = getattr(model, "_transformers_save_pretrained", None) or model.save_pretrained
    save(folder, **save_kwargs)


def _build(model, folder: Path, tokenizer, processor, repo_id: str, *, save_kwargs: dict | None = None,
           card: bool = True, tags: Iterable[str] = (), strict: bool = True) -> None:
    """Write the self-contained folder into the empty folder `folder`.

    `save_kwargs` go to transformers' save_pretrained. `card`: render README.md. `tags`: added to the card's tags.
    `strict` (export): a pipeline task that needs the processor raises without one; otherwise (save_pretrained, which
    saves the model alone) the task's pipeline is left out of the folder."""
    from . import cards

    model_class, config_class = type(model), type(model.config)
    top = model_class.__module__.partition(".")[0]
    if top != config_class.__module__.partition(".")[0] or model_class.__module__ == top:
        raise ExportError(f"{model_class.__name__} and {config_class.__name__} must be defined in one package's "
                          f"submodules; got {model_class.__module__} and {config_class.__module__}")
    auto_map, roots = _auto_map(config_class, top, [o for o in (tokenizer, processor) if o is not None])
    if not any(v == _class_ref(model_class, top) for v in auto_map.values()):
        raise ExportError(f"{model_class.__name__} is not registered with any Auto class for {config_class.__name__}")
    tasks = custom_pipelines(model, top, auto_map, processor) if strict else _pipeline_tasks(model, top, auto_map)
    left_out = _needing_processor(tasks, processor)
    if left_out:
        logger.info("%s saved without its processor: the pipeline task(s) %s are not part of the folder (save it with "
                    "paperzoo.hub.export(model, folder, processor=...) to have them)", model_class.__name__, left_out)
    pipelines = {task: value for task, value in tasks.items() if task not in left_out}
    roots = list(dict.fromkeys(roots + [impl.__module__ for impl, _ in pipelines.values()]))

    _transformers_save(model, folder, save_kwargs or {})  # config.json, generation_config.json, weights
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["auto_map"] = auto_map
    # Under its own name, transformers would load the bundled pipeline instead of the registered one, and ask for
    # trust_remote_code, even where paperzoo is imported; prefixed, `pipeline(task, model=folder)` uses paperzoo's,
    # and `pipeline(model=folder, trust_remote_code=True)` still finds the bundled one elsewhere. A model loaded from
    # an exported folder carries the entry in its config: it is rewritten (or dropped) here.
    config.pop("custom_pipelines", None)
    if pipelines:
        config["custom_pipelines"] = {f"{top}-{task}": entry for task, (_, entry) in pipelines.items()}
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    names = sorted(p.name for p in folder.iterdir())
    pickles = [n for n in names if n.endswith(_WEIGHT_PICKLES)]
    if pickles or not any(n.endswith(".safetensors") for n in names):
        raise ExportError(f"save_pretrained did not write safetensors only: {names}")

    for name, text in build_remote_code(roots).items():
        (folder / name).write_text(text, encoding="utf-8")
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    if processor is not None:
        processor.save_pretrained(folder)
        _add_processor_auto_map(folder, processor, top, auto_map)
    if card:
        rendered = cards.render_card(model, tokenizer=tokenizer, processor=processor, repo_id=repo_id,
                                     auto_map=auto_map, pipeline_tag=next(iter(tasks), None))
        extra = [t for t in tags if t not in (rendered.data.tags or [])]
        if extra:
            rendered.data.tags = list(rendered.data.tags or []) + extra
        rendered.save(folder / "README.md")

    entries = {str(v).partition(".")[0] for v in auto_map.values() if isinstance(v, str)}
    entries |= {entry["impl"].rpartition(".")[0] for _, entry in pipelines.values()}
    validate_remote_code(folder, sorted(entries))


def export(model, folder: str | os.PathLike, tokenizer=None, processor=None, *, repo_id: str | None = None) -> Path:
    """Write `model` (a registered paperzoo model) as a self-contained Hub folder and return its path.

    Args:
        model: a paperzoo `PreTrainedModel` (any head registered with an Auto class in paperzoo._registration).
        folder: the folder to write; an existing one is replaced, only once the new one is complete.
        tokenizer, processor: saved with their own `save_pretrained` into the folder when given.
        repo_id: the Hub id the card's usage snippet loads (default: the folder's name).

    Raises ExportError (a ValueError) when the package sources cannot be bundled; nothing is written then.
    `model.save_pretrained(folder)` writes the same folder for the model alone, into an existing folder (see
    `save_pretrained` below).
    """
    folder = Path(folder).absolute()
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"{folder} exists and is not a folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = _make_sibling(folder, "tmp")
    try:
        _build(model, tmp, tokenizer, processor, repo_id or folder.name)
        _replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


# ----------------------------------------------------------------------------------------------------------------------
# model.save_pretrained / model.push_to_hub (paperzoo.modeling.hub_mixin calls these for paperzoo models)

_GENERATED = "# Generated by paperzoo.hub.export"


def save_pretrained(model, save_directory, *args, **kwargs):
    """`model.save_pretrained(save_directory, ...)` for a paperzoo model: transformers' save_pretrained with the same
    arguments, made self-contained like `export` (auto_map, flat remote code, the card when the folder has no
    README.md), but written into `save_directory` as it is: files this save does not produce stay (Trainer writes its
    optimizer and state beside the model). Each file is written in a hidden temporary folder inside `save_directory`
    and renamed into place (config.json last); weight files and generated code files of an earlier save that this one
    does not rewrite are removed, as transformers removes stale weight shards.

    `push_to_hub=True` (with `repo_id`, `commit_message`, `create_pr`, `token`, `private`) then uploads the files
    written. PEFT adapters and `distributed_checkpoint=True` are saved by transformers alone: they are not models a Hub
    folder could load on its own."""
    from transformers import PreTrainedModel

    base = model._transformers_save_pretrained
    # transformers' arguments by name, whether passed by position or keyword (TypeError as transformers would give)
    signature = inspect.signature(PreTrainedModel.save_pretrained)
    bound = signature.bind(model, save_directory, *args, **kwargs)
    var_kw = next((p.name for p in signature.parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD), None)
    first = next(iter(signature.parameters))  # self
    options = {k: v for k, v in bound.arguments.items() if k not in (first, "save_directory", var_kw)}
    extra = dict(bound.arguments.get(var_kw, {})) if var_kw else {}

    if getattr(model, "_hf_peft_config_loaded", False) or options.get("distributed_checkpoint"):
        return base(save_directory, *args, **kwargs)
    push_to_hub = options.pop("push_to_hub", False)
    push_options = {key: extra.pop(key) for key in ("repo_id", "commit_message", "create_pr", "private")
                    if key in extra}
    should_save = getattr(model, "should_save_on_this_rank", None)
    is_main = options.get("is_main_process", True)
    if not (should_save(is_main) if should_save is not None else is_main):
        # other ranks only take part in the collectives (gathering a sharded state dict); they write nothing
        return base(save_directory, **options, **extra)

    folder = Path(save_directory)
    repo_id = push_options.get("repo_id", folder.absolute().name)
    written = _save_into(model, folder, {**options, **extra}, repo_id=repo_id)
    if push_to_hub:
        from .push import push

        return push(folder, repo_id, token=options.get("token", extra.get("token")),
                    private=push_options.get("private"), commit_message=push_options.get("commit_message"),
                    create_pr=push_options.get("create_pr", False), allow_patterns=written)
    return None


def push_to_hub(model, repo_id: str, *, commit_message: str | None = None, commit_description: str | None = None,
                private: bool | None = None, token: bool | str | None = None, revision: str | None = None,
                create_pr: bool = False, max_shard_size: int | str | None = "50GB", tags: list[str] | None = None):
    """`model.push_to_hub(repo_id, ...)` for a paperzoo model, with transformers' arguments: the self-contained folder
    (as `save_pretrained` writes it, with paperzoo's model card carrying `tags` and the model's own tags) uploaded in
    one commit by `paperzoo.hub.push`. The card always replaces the repo's README.md: it describes the weights pushed.
    Returns huggingface_hub's CommitInfo."""
    import tempfile

    from .push import push

    if isinstance(tags, str):
        tags = [tags]
    all_tags = list(dict.fromkeys([*(getattr(model, "model_tags", None) or []), *(tags or [])]))
    with tempfile.TemporaryDirectory(prefix="paperzoo-push-") as tmp:
        folder = Path(tmp) / "model"
        _save_into(model, folder, {"max_shard_size": max_shard_size}, repo_id=repo_id, tags=all_tags)
        return push(folder, repo_id, token=token, private=private, commit_message=commit_message,
                    commit_description=commit_description, revision=revision, create_pr=create_pr)


def _save_into(model, folder: Path, save_kwargs: dict, *, repo_id: str, tags: Iterable[str] = ()) -> list[str]:
    """Build the folder for `model` alone in a hidden temporary folder inside `folder`, rename its files into `folder`
    and remove the stale ones; returns the names written."""
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"{folder} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = _make_sibling(folder / "paperzoo-save", "tmp")
    try:
        _build(model, tmp, None, None, repo_id, save_kwargs=save_kwargs, card=not (folder / "README.md").exists(),
               tags=tags, strict=False)
        names = sorted(p.name for p in tmp.iterdir())
        nested = [n for n in names if not (tmp / n).is_file()]
        if nested:
            raise ExportError(f"save_pretrained wrote folders {nested}; only flat files can be renamed into place")
        for name in sorted(names, key=lambda n: n == "config.json"):  # config.json last: the folder is then whole
            os.replace(tmp / name, folder / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _remove_stale(folder, set(names), save_kwargs.get("variant"))
    return names


def _remove_stale(folder: Path, written: set[str], variant: str | None) -> None:
    """Remove what an earlier save left that this one replaces: weight files of the same variant (another sharding;
    transformers would load a stale `model.safetensors` before a new index), and generated remote-code files."""
    stem = "model" if not variant else f"model.{variant}"
    index = "model.safetensors.index.json" if not variant else f"model.safetensors.index.{variant}.json"
    weights = re.compile(rf"{re.escape(stem)}(-\d{{5}}-of-\d{{5}})?\.safetensors")
    for path in folder.iterdir():
        name = path.name
        if name in written or not path.is_file():
            continue
        stale = weights.fullmatch(name) is not None or name == index
        if not stale and name.endswith(".py"):
            with open(path, encoding="utf-8", errors="replace") as handle:
                stale = handle.readline().startswith(_GENERATED)
        if stale:
            path.unlink()


def _replace(new: Path, folder: Path) -> None:
    """Rename `new` to `folder`; an existing `folder` is moved aside first and restored if the rename fails."""
    if not folder.exists():
        os.rename(new, folder)
        return
    old = folder.with_name(f".{folder.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(folder, old)
    try:
        os.rename(new, folder)
    except BaseException:
        os.rename(old, folder)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _make_sibling(folder: Path, kind: str) -> Path:
    """A new empty hidden folder `.<name>.<kind>-<random>` beside `folder` (os.mkdir: the umask applies, unlike
    tempfile.mkdtemp's 0700)."""
    for _ in range(100):
        path = folder.with_name(f".{folder.name}.{kind}-{uuid.uuid4().hex[:12]}")
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"could not create a temporary folder beside {folder}")


__all__ = ["ALLOWED_PACKAGES", "ExportError", "build_remote_code", "custom_pipelines", "export", "flat_name",
           "push_to_hub", "registered_auto_classes", "save_pretrained", "validate_remote_code"]
