"""Run every worked example of the blog "深度学习之(五)卷积神经网络", in the blog's order.

The same as ``cnn-base reproduce-blog``; the code is ``cnn_base.cli.reproduce_blog``.
``python scripts/reproduce_blog.py --help`` lists the options.
"""
import sys

from cnn_base.cli.reproduce_blog import main
from cnn_base.cli._args import interruptible

if __name__ == "__main__":
    sys.exit(interruptible(main)())   # Ctrl-C: one line, exit 130
