"""The documentation a user has (README.rst and docs/) says what the code does: every
configuration key with its default, the ports, the demo's devices in the examples, links
that lead somewhere, and nothing that points outside the repository."""

from __future__ import annotations

import argparse
import json
import re
import tomllib
from pathlib import Path
from typing import Any, Iterator

import pytest

from cmsv6 import config, demo
from cmsv6.phone import canonical_phone
from cmsv6.plugins.gateway import tap as gateway_tap
from cmsv6.plugins.login import tap as login_tap
from cmsv6.plugins.media import fanout
from cmsv6.plugins.media import tap as media_tap

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.rst"
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"
ARCHITECTURE = DOCS / "architecture.md"
API = DOCS / "api.md"
#: The pages whose examples are run against ``make demo`` (the README and this issue's docs).
EXAMPLES = [README, *(DOCS / name for name in ("index.md", "architecture.md", "configuration.md",
                                                "operations.md", "api.md", "websocket.md",
                                                "cli.md"))]
#: What a clone of the repository does not have, so no file may send a reader there.
OUTSIDE = ("DESIGN" + ".md", "STYLE" + ".md", "shared/" + "DESIGN", "/work/" + "shared")
#: Where the repository's own text lives (data such as tests/conformance is not text of ours).
TEXT_SUFFIXES = {".py", ".rst", ".md", ".toml", ".sql", ".cfg", ".txt", ".ini"}
SKIPPED_DIRS = {".venv", ".git", "var", "build", "__pycache__", "node_modules"}
SERVERS = {"login": login_tap.Options.sections, "gateway": gateway_tap.Options.sections,
           "media": media_tap.Options.sections}


def pages() -> list[Path]:
    """README.rst and every page under docs/."""
    return [README, *sorted(DOCS.glob("*.md"))]


def toml_literal(value: Any) -> str:
    """``value`` as it is written in a TOML file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    return repr(value)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def documented_keys(text: str) -> dict[str, dict[str, list[list[str]]]]:
    """{section: {key: [row cells, ...]}} from the tables under each ``## ...[section]...``
    heading of configuration.md (a heading may name several sections)."""
    out: dict[str, dict[str, list[list[str]]]] = {}
    sections: list[str] = []
    for line in text.splitlines():
        if line.startswith("## "):
            sections = re.findall(r"\[(\w+)\]", line)
        elif line.startswith("| `") and sections:
            cells = _cells(line)
            key = cells[0].strip("`")
            for name in sections:
                out.setdefault(name, {}).setdefault(key, []).append(cells)
    return out


def test_configuration_doc_has_every_key_with_its_default_and_type() -> None:
    """docs/configuration.md has a row for every key of every section, with the default
    cmsv6.config gives it and a type that says its minimum or choices; no row names a key
    that does not exist."""
    documented = documented_keys(CONFIGURATION.read_text(encoding="utf-8"))
    assert set(documented) == set(config.SECTIONS), "sections documented"
    for name, section in config.SECTIONS.items():
        fields = {key: (default, kind) for key, default, kind, _ in config.fields(section)}
        assert set(documented[name]) == set(fields), name
        for key, (default, kind) in fields.items():
            rows = documented[name][key]
            assert len(rows) == 1, f"[{name}] {key} is documented {len(rows)} times"
            _key, kind_cell, default_cell, meaning = rows[0]
            assert default_cell.strip("`") == toml_literal(default), (name, key)
            assert meaning, (name, key)
            _check_type(kind, kind_cell, f"[{name}] {key}")


def _check_type(kind: config.Kind, cell: str, where: str) -> None:
    if isinstance(kind, config.Number):
        assert f"≥ {kind.minimum:g}" in cell, where
        assert ("integer" in cell) == (kind.type is int), where
    elif isinstance(kind, config.Choice):
        assert all(f'"{v}"' in cell for v in kind.values), where
    elif isinstance(kind, config.Endpoints):
        assert "list of client endpoints" in cell, where
    elif isinstance(kind, config.Endpoint):
        assert ("client endpoint" if kind.client else "server endpoint") in cell, where
        assert ('""' in cell) == kind.optional, where
    elif isinstance(kind, config.Address):
        assert "host:port" in cell, where
    elif isinstance(kind, config.Text):
        assert ("non-empty" in cell) == (not kind.empty), where


def _literal_blocks(text: str) -> Iterator[str]:
    """The literal blocks of an RST text (after a line ending in ``::``)."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].rstrip().endswith("::"):
            block, i = [], i + 1
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
                block.append(lines[i])
                i += 1
            yield "\n".join(line.removeprefix("    ") for line in block)
        else:
            i += 1


def code_blocks(path: Path) -> list[tuple[str, str]]:
    """(language, text) of every code block of a page: fenced (Markdown, with the fence's
    language), indented or literal (language "")."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".rst":
        return [("", block) for block in _literal_blocks(text)]
    fence = r"^```([^\n]*)\n(.*?)^```"
    fenced = [(lang.strip(), block) for lang, block in re.findall(fence, text, flags=re.S | re.M)]
    rest = re.sub(fence, "", text, flags=re.S | re.M)
    indented = re.findall(r"(?:^(?: {4}).*\n?)+", rest, flags=re.M)
    return fenced + [("", re.sub(r"^ {4}", "", b, flags=re.M)) for b in indented]


def is_toml(language: str, block: str) -> bool:
    """A TOML example: so marked, or unmarked and opening with a ``[table]`` line."""
    first = block.strip().splitlines()[0] if block.strip() else ""
    return language == "toml" or (language == "" and re.fullmatch(r"\[[a-z_]+\]", first) is not None)


def _commands(block: str) -> Iterator[str]:
    """The command lines of a code block, continuation lines joined."""
    yield from block.replace("\\\n", " ").splitlines()


def test_docs_name_only_keys_that_exist() -> None:
    """Every ``[section] key`` a page names, every TOML example it shows and every option
    it gives ``twistd login``/``twistd gateway`` is one the configuration has (a TOML
    example is loaded as the servers load a file)."""
    found = {"reference": 0, "toml": 0, "twistd": 0}
    for page in pages():
        text = page.read_text(encoding="utf-8")
        for name, key in re.findall(r"`\[(\w+)\] ([a-z_][a-z0-9_]*)", text):
            if name in config.RESERVED:
                continue
            assert name in config.SECTIONS, f"{page.name}: no section [{name}]"
            keys = {f[0] for f in config.fields(config.SECTIONS[name])}
            assert key in keys, f"{page.name}: [{name}] has no key {key!r}"
            found["reference"] += 1
        for language, block in code_blocks(page):
            if is_toml(language, block):
                try:
                    config.from_tables(tomllib.loads(block), f"{page.name}")
                except config.ConfigError as e:
                    # An ssl: endpoint reads its files: they are on the reader's machine.
                    if "No such file or directory" not in str(e):
                        pytest.fail(f"{page.name}: a TOML example does not load: {e}\n{block}")
                except tomllib.TOMLDecodeError as e:
                    pytest.fail(f"{page.name}: a TOML example does not parse: {e}\n{block}")
                found["toml"] += 1
            for line in _commands(block):
                words = line.split()
                server = next((i for i, w in enumerate(words) if w in SERVERS and i > 0
                               and any(x.endswith("twistd") for x in words[:i])), None)  # fmt: skip
                if server is None:
                    continue
                allowed = {"config", "help"} | {f[0] for s in SERVERS[words[server]]
                                                for f in config.fields(config.SECTIONS[s])}  # fmt: skip
                for word in words[server + 1:]:
                    if word.startswith("--"):
                        option = word[2:].split("=")[0]
                        assert option in allowed, f"{page.name}: twistd {words[server]} has no --{option}"
                found["twistd"] += 1
    assert all(found.values()), found  # the checks above saw something to check


def _anchors(page: Path) -> set[str]:
    """The anchors a Markdown page's headings get (GitHub's rule)."""
    out = set()
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    for heading in re.findall(r"^#+ (.*)$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


def links(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    if page.suffix == ".rst":
        return re.findall(r"`[^`<]*<([^>]+)>`_", text)
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_every_relative_link_leads_to_a_file() -> None:
    """Every relative link in README.rst and docs/ names a file of the repository (and a
    heading of it, when it names one)."""
    seen = 0
    for page in pages():
        for target in links(page):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            assert resolved.exists(), f"{page.relative_to(ROOT)}: {target} does not exist"
            if anchor and resolved.suffix == ".md":
                assert anchor in _anchors(resolved), f"{page.relative_to(ROOT)}: no heading for {target}"
            seen += 1
    assert seen, "no links found"


def _text_files() -> Iterator[Path]:
    for path in ROOT.rglob("*"):
        parts = set(path.relative_to(ROOT).parts)
        if parts & SKIPPED_DIRS or any(p.endswith(".egg-info") for p in parts):
            continue
        if path.is_file() and (path.suffix in TEXT_SUFFIXES or path.name == "Makefile"):
            yield path


def test_no_file_sends_readers_outside_the_repository() -> None:
    """No file of the repository refers to design notes a clone does not have."""
    offenders = []
    for path in _text_files():
        if path == Path(__file__).resolve():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if any(o.lower() in line.lower() for o in OUTSIDE):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def demo_phones() -> set[str]:
    """The canonical phones of the devices ``cmsv6 demo`` adds by default."""
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    count = parser.parse_args([]).devices
    return {canonical_phone(str(demo.FIRST_PHONE + i)) for i in range(count)}


#: Where an example names a device.
_PHONE_CONTEXTS = (
    r"/api/v1/devices/([0-9]+)",
    r"cmsv6 send ([0-9]+)",
    r"cmsv6 device [a-z-]+ ([0-9]+)",
    r"--first-phone[ =]([0-9]+)",
    r"phones\s+``([0-9]+)``\s+to\s+``([0-9]+)``",
)


def test_examples_use_the_demos_devices() -> None:
    """Every device an example of the README (or of the docs of this issue) names is one
    ``make demo`` adds, so the examples work against it as written."""
    phones = demo_phones()
    counts = re.findall(r"(\d+) simulated DVRs", README.read_text(encoding="utf-8"))
    assert counts and {int(n) for n in counts} == {len(phones)}, counts
    named = []
    for page in EXAMPLES:
        text = page.read_text(encoding="utf-8")
        for pattern in _PHONE_CONTEXTS:
            for match in re.findall(pattern, text):
                for phone in (match,) if isinstance(match, str) else match:
                    named.append((page.name, phone))
    assert any(page == README.name for page, _ in named), "the README names no device"
    wrong = [(page, phone) for page, phone in named if canonical_phone(phone) not in phones]
    assert not wrong, f"not among the demo's phones {sorted(phones)}: {wrong}"


def test_readme_demo_user_and_ports_are_the_demos() -> None:
    """The README's demo user and password are the demo's, and every local port it names
    is one the demo listens on."""
    text = README.read_text(encoding="utf-8")
    assert f'"username": "{demo.DEMO_USER}", "password": "{demo.DEMO_PASSWORD}"' in text
    ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)|port=(\d+)|port (\d+)", text)
             for p in p if p]  # fmt: skip
    assert ports
    assert set(ports) <= set(demo.PORTS.values()), sorted(set(ports) - set(demo.PORTS.values()))


def _demo_port(section: str, key: str) -> int:
    demo_config = config.from_tables(tomllib.loads(demo.config_text(Path("var"))))
    value = getattr(getattr(demo_config, section), key)
    if section == "database":
        return int(re.search(r"\bport=(\d+)", value).group(1))  # type: ignore[union-attr]
    return int(value.split(":")[1])


def test_architecture_ports_are_the_configurations() -> None:
    """The ports table of docs/architecture.md has every endpoint a server listens on, with
    its default from cmsv6.config and the port ``make demo`` gives it."""
    rows = {}
    for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\| \w+ \| `\[(\w+)\] (\w+)` \| `(.*)` \| (\d+) \|", line)
        if m:
            rows[(m.group(1), m.group(2))] = (m.group(3), int(m.group(4)))
    listening = {(name, key) for name, section in config.SECTIONS.items()
                 for key, _, kind, _ in config.fields(section)
                 if isinstance(kind, config.Endpoint) and not kind.client}  # fmt: skip
    assert listening | {("database", "dsn")} == set(rows)
    for (name, key), (default, port) in rows.items():
        section = next(f for f in config.fields(config.SECTIONS[name]) if f[0] == key)
        assert default == toml_literal(section[1]), (name, key)
        assert port == _demo_port(name, key), (name, key)


def test_docs_name_only_metrics_that_exist() -> None:
    """Every cmsv6 metric a page names is one cmsv6/metrics.py exposes: a gauge by its
    name, a counter by its name and the ``_total`` the exposition adds."""
    source = (ROOT / "cmsv6" / "metrics.py").read_text(encoding="utf-8")
    named = {(page.name, m) for page in pages() for m in re.findall(
        r"\bcmsv6_(?:gateway|login|web|amp|media)_[a-z_]+", page.read_text(encoding="utf-8"))}  # fmt: skip
    assert named, "no metric named"
    for page, metric in named:
        base = metric.removesuffix("_total")
        kind = "Counter" if metric.endswith("_total") else "(?:Gauge|callback_gauge)"
        family = rf'{kind}\w*\(\s*(?:registry,\s*)?"{re.escape(base)}"'
        assert re.search(family, source), f"{page}: no metric {metric} in cmsv6/metrics.py"


def _close_code_rows() -> dict[int, tuple[int, str]]:
    """{close code: (HTTP status, why)} from the table of api.md's "Watching video"."""
    text = API.read_text(encoding="utf-8").split("## Watching video", 1)[1].split("\n## ", 1)[0]
    return {int(code): (int(status), why)
            for code, status, why in re.findall(r"^\| (\d{4}) \| (\d{3}) \| (.+) \|$", text, flags=re.M)}  # fmt: skip


def test_api_documents_every_viewer_close_code() -> None:
    """api.md's "Watching video" has a row for every WebSocket close code the media server
    gives viewers (cmsv6.plugins.media.fanout's CLOSE_*), none that it does not give, and
    the HTTP status an HTTP-FLV viewer gets instead where the code says it."""
    codes = {value for name, value in vars(fanout).items() if name.startswith("CLOSE_")}
    rows = _close_code_rows()
    assert codes and set(rows) == codes, sorted(set(rows) ^ codes)
    for make in (fanout.unauthorized, fanout.forbidden, fanout.bad_request, fanout.device_error):
        error = make("reason")
        assert rows[error.code][0] == error.status, (make.__name__, rows[error.code])
