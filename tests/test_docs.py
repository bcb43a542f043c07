"""The docs: the generated pages are fresh, every page is in the site's nav, the README's quick
start and recipe are the real ones, and the paths and links the pages name exist."""

from __future__ import annotations

import glob
import importlib.util
import json
import re
import sys

import pytest
import yaml
from helpers import ROOT

DOCS = ROOT / "docs"
#: the Python the committed CLI reference was written with: argparse's help layout differs
#: between versions ("options:" vs "optional arguments:", usage wrapping)
CLI_PAGE_PYTHON = (3, 11)


def _generator():
    spec = importlib.util.spec_from_file_location("docs_reference",
                                                  ROOT / "dev" / "docs_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_pages_are_fresh():
    """The CLI reference, the plugin API reference and the layout, regenerated from the parser
    and the docstrings, equal the committed pages (else: python dev/docs_reference.py)."""
    generator = _generator()
    pages = generator.generated_pages()
    assert set(pages) == {DOCS / "reference" / "cli.md", DOCS / "reference" / "hooks.md",
                          DOCS / "layout.md"}
    for path, text in pages.items():
        if path.name == "cli.md" and sys.version_info[:2] != CLI_PAGE_PYTHON:
            continue  # argparse lays help out differently on other versions
        assert path.read_text(encoding="utf-8") == text, \
            f"{path.relative_to(ROOT)} is stale: python dev/docs_reference.py"


def test_the_check_mode_names_a_stale_page(tmp_path, monkeypatch, capsys):
    generator = _generator()
    monkeypatch.setattr(generator, "DOCS", tmp_path)
    monkeypatch.setattr(generator, "ROOT", tmp_path)
    assert generator.main(["--check"]) == 1
    stale = capsys.readouterr().err
    assert "reference/hooks.md is stale: run python dev/docs_reference.py" in stale
    assert generator.main([]) == 0
    assert generator.main(["--check"]) == 0
    (tmp_path / "layout.md").write_text("# Layout\n")
    assert generator.main(["--check"]) == 1
    assert capsys.readouterr().err.strip().endswith("layout.md is stale: run python "
                                                    "dev/docs_reference.py")


def test_the_generated_pages_render_every_command_hook_and_room():
    from fturun import hookspecs
    from fturun.cli.parser import COMMANDS
    from fturun.plugin.version import API_VERSION

    cli = (DOCS / "reference" / "cli.md").read_text()
    for name in COMMANDS:
        assert f"\n## fturun {name}\n" in cli, name
    assert "`--show-batch N`" in cli and "fturun launch --nproc 2 recipes/lora_cls.json" in cli
    hooks = (DOCS / "reference" / "hooks.md").read_text()
    for name in (n for n in vars(hookspecs) if n.startswith("fturun_register_")):
        assert f"\n### {name}\n" in hooks, name
    assert f"plugin API **{API_VERSION}**" in hooks
    assert "``" not in hooks.replace("```", "")  # reStructuredText code spans all converted
    layout = (DOCS / "layout.md").read_text()
    for unit in ("core", "recipe", "plugin", "schema", "chat", "data", "engine", "tracking",
                 "run", "search", "cli"):
        assert f"[`{unit}/`](#{unit})" in layout, unit
    assert "| 0 | [`core/`](#core) |" in layout and "| 6 | [`cli/`](#cli) |" in layout


def _nav_pages(nav) -> list:
    pages = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_every_page_is_in_the_nav_and_every_nav_entry_is_a_page():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert config["strict"] is True and config["theme"]["name"] == "material"
    nav = _nav_pages(config["nav"])
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(nav) == pages
    assert len(nav) == len(set(nav))


def test_the_readme_is_one_screen_with_the_quick_start_and_its_recipe():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    commands = re.search(r"## Quick start\n.*?```bash\n(.*?)```", readme, re.S).group(1)
    assert commands.splitlines() == [
        "python3 -m venv .venv && .venv/bin/pip install -e '.[examples]' && "
        ".venv/bin/fturun recipes/lora_cls.json",
        "python3 -m venv .venv && .venv/bin/pip install -c constraints.txt -e '.[test]' && "
        ".venv/bin/python -m pytest"]
    recipe = re.search(r"## A recipe\n.*?```json\n(.*?)```", readme, re.S).group(1)
    assert recipe == (ROOT / "recipes" / "lora_cls.json").read_text()
    assert json.loads(recipe)["task"] == "sequence-classification"
    # the quick start's figures, as the docs' getting-started page has them
    figures = "eval accuracy 0.98 on 200 held-out articles"
    assert figures in readme and figures in (DOCS / "index.md").read_text()


#: paths a page names that are made, not committed
MADE_PATHS = {"bench/gpu_carry", "bench/gpu_carry/", "recipes/X.json"}
REPO_PATH = re.compile(r"^((?:fturun|tests|recipes|bench|plugins|dev|schemas|docs)/[\w./*-]*)")


@pytest.mark.parametrize("page", sorted([*(str(p.relative_to(ROOT)) for p in DOCS.rglob("*.md")),
                                         "README.md", "plugins/fturun-example/README.md"]))
def test_the_paths_and_links_a_page_names_exist(page):
    path = ROOT / page
    text = path.read_text()
    missing = []
    for span in re.findall(r"`([^`\n]+)`", text):
        for token in span.split():
            match = REPO_PATH.match(token)
            named = match and match.group(1).split("::")[0].rstrip(".,;:)")
            if named and named not in MADE_PATHS and not glob.glob(str(ROOT / named)):
                missing.append(named)
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if not target.startswith(("http://", "https://")) and \
                not (path.parent / target).resolve().exists():
            missing.append(target)
    assert missing == [], f"{page} names paths that do not exist: {missing}"
