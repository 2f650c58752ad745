import pytest

from core.registry import Registry, UnknownNameError


def test_register_as_decorator_and_get():
    registry = Registry("widget")

    @registry.register("round")
    class Round:
        pass

    assert registry.get("round") is Round
    assert "round" in registry and "square" not in registry
    assert registry.names() == ("round",)
    assert list(registry) == ["round"] and len(registry) == 1


def test_register_a_value_directly_and_again_is_idempotent():
    registry = Registry("dataset")
    value = object()
    assert registry.register("a", value) is value
    assert registry.register("a", value) is value  # same object again: fine
    with pytest.raises(ValueError, match="'a' is already registered"):
        registry.register("a", object())
    with pytest.raises(ValueError, match="non-empty string"):
        registry.register("", value)


def test_unknown_name_lists_the_known_ones_and_the_closest():
    registry = Registry("architecture")
    registry.register("icnet", 1)
    registry.register("pspnet", 2)
    with pytest.raises(UnknownNameError) as info:
        registry.get("icnte")
    message = str(info.value)
    assert message == (
        "unknown architecture 'icnte'; known architectures: icnet, pspnet. Did you mean 'icnet'?"
    )
    assert isinstance(info.value, KeyError)
    assert "Did you mean" not in registry.unknown_message("zzzzzz")


def test_unregister():
    registry = Registry("hook")
    registry.register("x", 1)
    registry.unregister("x")
    registry.unregister("never-there")
    assert registry.names() == ()
    assert "(none registered)" in registry.unknown_message("x")
