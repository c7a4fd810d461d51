"""Redraw the blog's six figures, and the learned edge kernel at work, as PNGs.

The same as ``cnn-base draw-figures``; the code is ``cnn_base.cli.draw_figures``.
``python scripts/draw_figures.py --help`` lists the options.
"""
import sys

from cnn_base.cli.draw_figures import main

if __name__ == "__main__":
    sys.exit(main())
