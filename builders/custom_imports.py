"""Imports the modules a config names in ``custom_imports``, so their registrations exist.

Architectures, backbones, datasets and training hooks register themselves when their module
is imported (see ``core.registry``). A project that extends this one keeps its code in its own
modules and lists them in the config::

    custom_imports: "my_project.deeplab"
    model { architecture { name: "deeplab_v3_plus" ... } }

Every entry script loads its config through ``builders.config_util.load_pipeline_config``,
which imports these modules before validating, so ``train.py``, ``eval.py``, ``export.py``,
``compress.py``, ``sensitivity.py`` and ``inference.py`` all know the new names without any
change to this repository. Importing runs the module's code, as ``import`` always does: list
only modules you trust.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterable

from builders.config_errors import ConfigError

_MODULE_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def import_modules(names: Iterable[str], source: str = "<config>") -> list[str]:
    """Imports each module (once; Python caches them) and returns their names.

    The current directory is searched too, as for ``python -m``, so a module beside the
    command's working directory is found without setting ``PYTHONPATH``.

    Args:
      names: dotted module names, e.g. ``my_project.models.toy``.
      source: the config file, for messages.

    Raises:
      ConfigError: a name is not a module name, or its import fails (the error is named).
    """
    imported = []
    for index, name in enumerate(names):
        where = f"{source}: custom_imports[{index}]"
        if not _MODULE_NAME.match(name or ""):
            raise ConfigError(
                f"{where}: {name!r} is not a Python module name; give a dotted name such as "
                "'my_project.my_model' (not a file path)."
            )
        cwd = os.getcwd()
        if cwd not in sys.path:
            sys.path.append(cwd)
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise ConfigError(
                f"{where}: cannot import {name!r} ({error}); make it importable from the "
                "current directory or PYTHONPATH."
            ) from None
        except Exception as error:  # its own code failed: say whose
            raise ConfigError(
                f"{where}: importing {name!r} failed: {type(error).__name__}: {error}"
            ) from error
        imported.append(name)
    return imported
