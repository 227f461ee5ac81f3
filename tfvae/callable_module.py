"""Modules that can be called: `tfvae.train(...)`, `tfvae.evaluate(...)` and `tfvae.export(...)`.

`tfvae.train`, `tfvae.evaluate` and `tfvae.export` are modules (the library behind each command) and, from
Python, the one function a user calls. Importing a submodule binds its name on the package, so a plain
function of that name would be replaced by the module on the first `import tfvae.evaluate`; a module that is
callable is the same object either way.
"""

from __future__ import annotations

import sys
import types

__all__ = ["make_callable"]


def make_callable(module_name: str, function_name: str) -> None:
    """Let `sys.modules[module_name](...)` call its `function_name`, with that function's docstring on `__call__`."""
    module = sys.modules[module_name]

    class CallableModule(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return getattr(self, function_name)(*args, **kwargs)

    CallableModule.__call__.__doc__ = getattr(module, function_name).__doc__
    CallableModule.__name__ = f"CallableModule[{module_name}.{function_name}]"
    module.__class__ = CallableModule
