"""The documentation site's sources: every public name of cnn_base has an API entry.

Read from docs/api/*.rst (the autosummary tables Sphinx turns into one page per name),
without building the site (``make docs`` builds it, with warnings as errors).
"""
import pathlib
import re

import pytest

import cnn_base
from cnn_base import animations

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"


def _autosummary_entries():
    """{documented name: page} from every autosummary table under docs/api, with its module."""
    entries = {}
    for page in sorted((DOCS / "api").glob("*.rst")):
        module = None
        in_table = False
        for line in page.read_text(encoding="utf-8").splitlines():
            current = re.match(r"\.\. currentmodule:: (\S+)", line)
            if current:
                module = current.group(1)
            if line.startswith(".. autosummary::"):
                in_table = True
                continue
            if in_table:
                if line.strip().startswith(":") or not line.strip():
                    continue
                if not line.startswith("   "):
                    in_table = False
                    continue
                name = line.strip()
                entries[f"{module}.{name}" if module else name] = page.name
    return entries


def test_the_api_pages_have_autosummary_tables():
    entries = _autosummary_entries()
    assert entries, "no autosummary table found under docs/api"
    assert all(name.startswith("cnn_base.") for name in entries), sorted(entries)[:5]


@pytest.mark.parametrize("name", sorted(cnn_base.__all__))
def test_every_public_name_has_an_api_entry(name):
    assert f"cnn_base.{name}" in _autosummary_entries(), \
        f"cnn_base.{name} has no entry in docs/api/*.rst: add it to an autosummary table"


def test_every_animation_name_has_an_api_entry():
    missing = [name for name in animations.__all__
               if f"cnn_base.animations.{name}" not in _autosummary_entries()]
    assert missing == []


def test_no_api_entry_names_something_that_is_not_public():
    public = {f"cnn_base.{name}" for name in cnn_base.__all__} | \
        {f"cnn_base.animations.{name}" for name in animations.__all__}
    assert sorted(set(_autosummary_entries()) - public) == []


def test_the_site_holds_the_notebooks_animations_and_the_interactive_page():
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    notebooks = sorted(p.stem for p in (DOCS.parent / "notebooks").glob("*.ipynb"))
    assert notebooks
    for stem in notebooks:
        assert f"notebooks/{stem}\n" in index, f"notebook {stem} is not in the site's toctree"
    assert "\nanimations\n" in index and "\ninteractive\n" in index
    for gif in animations.blog_animations():
        assert f"_generated/animations/{gif}.gif" in (DOCS / "animations.md").read_text("utf-8")
    assert (DOCS / "_extra" / "window" / "index.html").is_file()
    assert "window/index.html" in (DOCS / "interactive.md").read_text(encoding="utf-8")
