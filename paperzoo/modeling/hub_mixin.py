"""`save_pretrained` and `push_to_hub` of every paperzoo model write the self-contained Hub folder of
`paperzoo.hub.export` (auto_map for every registered Auto class, flat remote code, model card, safetensors), so that a
folder saved or a repo pushed the usual transformers way loads with `trust_remote_code=True` where paperzoo is not
installed.

The model classes inherit from `PaperzooHubMixin` (placed before `PreTrainedModel`), so this module is part of every
remote-code bundle. It therefore never imports the exporter: the exporter (paperzoo.hub: export, cards, push) imports
packages a bundle may not, and exists only in the installed package. It is looked up by name when a method is called,
and only where this module is the installed `paperzoo.modeling.hub_mixin` and the model's class is defined in paperzoo.
Elsewhere both methods are transformers' own: in a bundle (this module is then
`transformers_modules.<folder or repo>.<hash>.modeling_hub_mixin`) `save_pretrained` copies the bundle's files through
transformers' custom_object_save, as for any remote-code model; a user's subclass defined outside paperzoo saves the
plain transformers way too (the exporter bundles only package classes registered with an Auto class).
"""

from __future__ import annotations

import importlib

_PACKAGE = "paperzoo"
_EXPORTER = "paperzoo.hub.export"
_INSTALLED = __name__ == "paperzoo.modeling.hub_mixin"


def _exporter(model):
    """The installed `paperzoo.hub.export` module when it should save `model`; None to save the transformers way."""
    if not _INSTALLED or not type(model).__module__.startswith(_PACKAGE + "."):
        return None
    return importlib.import_module(_EXPORTER)


class PaperzooHubMixin:
    """Base of paperzoo's `PreTrainedModel`s: `class XPreTrainedModel(PaperzooHubMixin, PreTrainedModel)`."""

    def save_pretrained(self, save_directory, *args, **kwargs):
        """transformers' `save_pretrained` (every argument, e.g. Trainer's `state_dict=`), plus what makes the folder
        self-contained: config.json `auto_map`, the flat remote-code files and, when the folder has none, the model
        card README.md. Files are written under temporary names and renamed into place; files already in the folder
        that this save does not produce (a Trainer's optimizer state, say) are left alone."""
        exporter = _exporter(self)
        if exporter is None:
            return super().save_pretrained(save_directory, *args, **kwargs)
        return exporter.save_pretrained(self, save_directory, *args, **kwargs)

    def push_to_hub(self, repo_id, *args, **kwargs):
        """transformers' `push_to_hub` (same arguments), uploading the self-contained folder with paperzoo's model
        card (transformers' own would replace README.md by the remote card or a generic one)."""
        exporter = _exporter(self)
        if exporter is None:
            return super().push_to_hub(repo_id, *args, **kwargs)
        return exporter.push_to_hub(self, repo_id, *args, **kwargs)

    def _transformers_save_pretrained(self, *args, **kwargs):
        """transformers' own `save_pretrained` (config, generation config, weights): what the exporter builds on."""
        return super().save_pretrained(*args, **kwargs)
