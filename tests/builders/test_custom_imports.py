"""custom_imports: a config names the modules that register its architectures."""

from __future__ import annotations

import sys
import textwrap

import pytest

from builders import config_util
from builders.config_errors import ConfigError
from models.registry import ARCHITECTURES

CONFIG = """
custom_imports: "{module}"
model {{
  architecture {{
    name: "{name}"
    num_classes: 3
    filter_scale: 1.0
    feature_extractor {{ type: "dilated_mobilenet" }}
  }}
}}
"""


def _write(tmp_path, module: str, name: str):
    path = tmp_path / "c.config"
    path.write_text(CONFIG.format(module=module, name=name))
    return str(path)


@pytest.fixture()
def plugin(tmp_path, monkeypatch):
    """A module in the working directory that registers an architecture on import."""
    (tmp_path / "my_plugin_arch.py").write_text(
        textwrap.dedent(
            """
            from models.registry import ARCHITECTURES
            from tests.models.toy_net import ToyNet

            ARCHITECTURES.register("plugin_toy", ToyNet)
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    yield "my_plugin_arch"
    ARCHITECTURES.unregister("plugin_toy")
    sys.modules.pop("my_plugin_arch", None)


def test_the_module_is_imported_before_validation(plugin, tmp_path):
    assert "plugin_toy" not in ARCHITECTURES
    config = config_util.load_pipeline_config(_write(tmp_path, plugin, "plugin_toy"))
    assert "plugin_toy" in ARCHITECTURES
    assert list(config.custom_imports) == [plugin]


def test_without_the_import_the_name_is_unknown_and_the_known_ones_are_listed(tmp_path):
    path = tmp_path / "c.config"
    path.write_text(CONFIG.format(module="json", name="plugin_toy_missing"))
    with pytest.raises(ConfigError) as info:
        config_util.load_pipeline_config(str(path))
    message = str(info.value)
    assert "plugin_toy_missing" in message and "icnet" in message and "pspnet" in message


@pytest.mark.parametrize(
    "module, expected",
    [
        ("no_such_module_xyz", "custom_imports[0]: cannot import 'no_such_module_xyz'"),
        ("plugins/my_model.py", "is not a Python module name"),
    ],
)
def test_bad_entries_are_one_clear_error(tmp_path, module, expected):
    with pytest.raises(ConfigError, match=None) as info:
        config_util.load_pipeline_config(_write(tmp_path, module, "icnet"))
    assert expected in str(info.value)
    assert str(tmp_path / "c.config") in str(info.value)


def test_a_module_whose_code_fails_is_named(tmp_path, monkeypatch):
    (tmp_path / "broken_plugin_mod.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.chdir(tmp_path)
    try:
        with pytest.raises(ConfigError) as info:
            config_util.load_pipeline_config(_write(tmp_path, "broken_plugin_mod", "icnet"))
    finally:
        sys.modules.pop("broken_plugin_mod", None)
    assert "importing 'broken_plugin_mod' failed: RuntimeError: boom" in str(info.value)
