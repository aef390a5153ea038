"""Registry: kebab-case names registered once, computed name lists, helpful unknown-name errors."""

from __future__ import annotations

import pytest

from feddp_eval.errors import ConfigError
from feddp_eval.registry import Registry


class Widget:
    def __init__(self, size: int = 1, *, colour: str = "red") -> None:
        self.size, self.colour = size, colour


def _registry() -> Registry[Widget]:
    widgets: Registry[Widget] = Registry("widget")

    @widgets.register("small-widget")
    class Small(Widget):
        pass

    @widgets.register("big2")
    class Big(Widget):
        pass

    return widgets


def test_register_get_create_names() -> None:
    widgets = _registry()
    small = widgets.get("small-widget")
    assert small.__name__ == "Small" and issubclass(small, Widget)
    assert small.name == "small-widget"  # type: ignore[attr-defined]

    made = widgets.create("big2", 3, colour="blue")
    assert type(made) is widgets.get("big2")
    assert (made.size, made.colour) == (3, "blue")

    assert widgets.names() == ["big2", "small-widget"]
    assert list(widgets) == ["big2", "small-widget"]
    assert len(widgets) == 2
    assert "small-widget" in widgets and "medium" not in widgets


def test_register_returns_the_class_unchanged() -> None:
    widgets: Registry[Widget] = Registry("widget")

    class Plain(Widget):
        pass

    assert widgets.register("plain")(Plain) is Plain


def test_duplicate_name_raises_and_keeps_the_first() -> None:
    widgets = _registry()
    first = widgets.get("big2")

    class Other(Widget):
        pass

    with pytest.raises(ValueError, match=r"'big2' is already registered by .*Big"):
        widgets.register("big2")(Other)
    assert widgets.get("big2") is first
    assert len(widgets) == 2


@pytest.mark.parametrize(
    "name", ["Big", "big_widget", "big widget", "-big", "big-", "big--widget", "2big", ""]
)
def test_non_kebab_case_name_raises(name: str) -> None:
    widgets: Registry[Widget] = Registry("widget")
    with pytest.raises(ValueError, match="kebab-case"):
        widgets.register(name)
    assert widgets.names() == []


def test_unknown_name_lists_the_known_ones() -> None:
    widgets = _registry()
    with pytest.raises(ConfigError) as info:
        widgets.get("medium")
    message = str(info.value)
    assert "'medium'" in message
    assert "known widgets: big2, small-widget" in message
    with pytest.raises(ConfigError, match="known widgets: big2, small-widget"):
        widgets.create("medium")


def test_unknown_name_in_empty_registry() -> None:
    with pytest.raises(ConfigError, match=r"known widgets: \(none\)"):
        Registry[Widget]("widget").get("any")


def test_on_register_is_called_with_each_class_once_named() -> None:
    seen: list[tuple[str, str]] = []

    def note(cls: type[Widget]) -> None:
        seen.append((cls.__name__, cls.name))  # type: ignore[attr-defined]

    widgets: Registry[Widget] = Registry("widget", on_register=note)

    @widgets.register("small")
    class Small(Widget):
        pass

    with pytest.raises(ValueError, match="already registered"):
        widgets.register("small")(Widget)
    assert seen == [("Small", "small")]
