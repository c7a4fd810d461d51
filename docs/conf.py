"""Sphinx configuration of cnn_base's documentation site (make docs).

The API pages document every name through its stable public path (``cnn_base.corr2d``,
``cnn_base.Conv2D``, ...), so moving the modules inside the package does not change them.
The notebooks (``notebooks/``, linked here as ``docs/notebooks``) are executed at every
build; the animations are drawn by ``cnn_base.animations.write_animations`` before the
pages are read; the interactive page (``_extra/window/``) is copied as it is.
"""
import pathlib

import matplotlib

matplotlib.use("Agg")

import cnn_base  # noqa: E402  (after the backend: no display needed)

project = "cnn_base"
author = "cnn_base contributors"
copyright = "Apache-2.0, cnn_base contributors"
release = version = cnn_base.__version__

extensions = [
    "myst_nb",                    # Markdown pages and the executed notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",     # one page per public name
    "numpydoc",                   # the docstrings' numpydoc sections
]

exclude_patterns = ["_build", "_extra", "_generated", "jupyter_execute",
                    "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

# The API: stub pages generated from the autosummary tables of api/*.rst.
autosummary_generate = True
autosummary_imported_members = True
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": True}
numpydoc_show_class_members = False       # the blocks' Gluon members are Gluon's to document
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# The notebooks run at every build (a few seconds each); an error fails the build.
nb_execution_mode = "force"
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

myst_heading_anchors = 3

html_theme = "furo"
html_title = f"cnn_base {release}"
html_extra_path = ["_extra"]              # _extra/window/ -> window/ in the site


def _write_animations(app):
    """The chapter's window, moving: the GIFs the animations page shows, drawn by the library."""
    from cnn_base.animations import write_animations

    out = pathlib.Path(app.srcdir) / "_generated" / "animations"
    out.mkdir(parents=True, exist_ok=True)
    write_animations(out, dpi=80)


def _no_type_docstring(app, what, name, obj, options, lines):
    """A constant (``cnn_base.POOL_MODES``, a tuple) has no docstring of its own: autodoc would
    show its type's ("Built-in immutable sequence..."); show only its value."""
    type_doc = getattr(type(obj), "__doc__", None)
    if what in ("data", "attribute") and lines and isinstance(type_doc, str) and \
            "\n".join(lines).strip() == type_doc.strip():
        lines.clear()


def setup(app):
    app.connect("builder-inited", _write_animations)
    app.connect("autodoc-process-docstring", _no_type_docstring)
