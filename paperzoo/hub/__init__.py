"""The Hub path (DESIGN §5): `export` writes a self-contained Hub folder, `cards` renders its model card, `push`
uploads it.

`paperzoo.hub.export` is the function (the CLI calls `paperzoo.hub.export(model, folder, tokenizer=...)`); the module
of the same name stays reachable as `sys.modules["paperzoo.hub.export"]` or `importlib.import_module(...)`.
"""

from .export import export

__all__ = ["export"]
