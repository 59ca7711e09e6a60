"""docs/integration/ keeps its promises: every relative link leads to a file (and a
heading), every ``[section] key`` it names exists, it covers every example in both
languages, and docs/api.md links to it."""

from __future__ import annotations

import re
from pathlib import Path

from cmsv6 import config
from cmsv6.webhooks import EVENTS
from tests.test_docs import _anchors, links

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "docs" / "integration").glob("*.md"))


def test_links_lead_somewhere() -> None:
    """Every relative link of the integration pages names a file of the repository (and a
    heading of it, when it names one)."""
    seen = 0
    for page in PAGES:
        for target in links(page):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            assert resolved.exists(), f"{page.name}: {target} does not exist"
            if anchor and resolved.suffix == ".md":
                assert anchor in _anchors(resolved), f"{page.name}: no heading for {target}"
            seen += 1
    assert seen > 10


def test_names_only_keys_that_exist() -> None:
    """Every ``[section] key`` the pages name is a configuration key."""
    named = 0
    for page in PAGES:
        for name, key in re.findall(r"`\[(\w+)\] ([a-z_][a-z0-9_]*)", page.read_text(encoding="utf-8")):
            assert name in config.SECTIONS, f"{page.name}: no section [{name}]"
            assert key in {f[0] for f in config.fields(config.SECTIONS[name])}, f"{page.name}: [{name}] {key}"
            named += 1
    assert named


def test_every_example_and_event_is_documented() -> None:
    """examples.md names every example of both languages; webhooks.md every event;
    docs/api.md links to the guide."""
    text = (ROOT / "docs" / "integration" / "examples.md").read_text(encoding="utf-8")
    examples = [p for d in ("python", "node") for p in (ROOT / "examples" / d).iterdir()
                if p.suffix in (".py", ".mjs") and not p.stem.startswith("cmsv6_api")]  # fmt: skip
    assert len(examples) == 14
    assert not [p.name for p in examples if f"`{p.name}" not in text]
    hooks = (ROOT / "docs" / "integration" / "webhooks.md").read_text(encoding="utf-8")
    assert not [e for e in EVENTS if f"`{e}`" not in hooks]
    assert "(integration/README.md)" in (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
