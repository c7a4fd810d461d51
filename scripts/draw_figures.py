"""Redraw the blog's seven figures, and the learned edge kernel on a photograph: eight PNGs.

The same as ``cnn-base draw-figures``; the code is ``cnn_base.cli.draw_figures``.
``python scripts/draw_figures.py --help`` lists the options.
"""
import sys

from cnn_base.cli.draw_figures import main
from cnn_base.cli._args import interruptible

if __name__ == "__main__":
    sys.exit(interruptible(main)())   # Ctrl-C: one line, exit 130
