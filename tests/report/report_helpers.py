"""Reading a report back: its elements with their ancestors, and running scenarios for it."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

from freshtoken.scenarios import ScenarioResult, load_scenario, run_scenario_sync

VOID = {"meta", "br", "img", "input", "link", "hr", "source", "area", "base", "col", "wbr"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    parent: Element | None
    children: list[Element] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def ancestors(self) -> Iterator[Element]:
        node = self.parent
        while node is not None:
            yield node
            node = node.parent

    def walk(self) -> Iterator[Element]:
        for child in self.children:
            yield child
            yield from child.walk()

    def find(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Element]:
        return [
            e
            for e in self.walk()
            if (tag is None or e.tag == tag)
            and (cls is None or cls in e.classes)
            and all(e.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def all_text(self) -> str:
        return "".join(self.text) + "".join(c.all_text() for c in self.children)


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {}, None)
        self.node = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs}, self.node)
        self.node.children.append(element)
        if tag not in VOID:
            self.node = element

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.node.children.append(Element(tag, {k: v or "" for k, v in attrs}, self.node))

    def handle_endtag(self, tag: str) -> None:
        node: Element | None = self.node
        while node is not None and node.tag != tag:
            node = node.parent
        assert node is not None, f"unbalanced </{tag}>"
        self.node = node.parent or self.root

    def handle_data(self, data: str) -> None:
        self.node.text.append(data)


def parse(html: str) -> Element:
    builder = _Builder()
    builder.feed(html)
    builder.close()
    assert builder.node is builder.root, "some element was never closed"
    return builder.root


def sections(document: Element) -> list[Element]:
    return document.find("section", cls="item")


CATALOGUE = Path(__file__).parent / "scenarios"


def run(name: str, subject: str) -> ScenarioResult:
    from freshtoken.scenarios import load_catalogue

    by_name = {s.name: s for s in load_catalogue()}
    scenario = by_name[name] if name in by_name else load_scenario(CATALOGUE / f"{name}.toml")
    return run_scenario_sync(scenario, subject)


@dataclass
class Harvest:
    """Every random secret the fakes and the proxy made while it was active."""

    values: list[str] = field(default_factory=list)


def harvest_secrets(monkeypatch: pytest.MonkeyPatch) -> Harvest:
    """Record what ``secrets`` hands out: access and refresh tokens, client secrets, session ids,
    the proxy's capability path. Short values (client ids, family ids) are public labels."""
    harvest = Harvest()

    def wrap(real: Callable[..., str]) -> Callable[..., str]:
        def recorded(nbytes: int | None = None) -> str:
            value = real(nbytes)
            if nbytes is None or nbytes >= 16:
                harvest.values.append(value)
            return value

        return recorded

    monkeypatch.setattr(secrets, "token_urlsafe", wrap(secrets.token_urlsafe))
    monkeypatch.setattr(secrets, "token_hex", wrap(secrets.token_hex))
    return harvest
