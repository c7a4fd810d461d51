"""Networks built from our blocks or Gluon's: the chapter's LeNet (d2l-zh v1 §5.5), and room for the
later chapter-5 nets, one module each."""
from .lenet import LENET_ACTIVATIONS, LENET_BLOCKS, layer_shapes, lenet

__all__ = ["LENET_BLOCKS", "LENET_ACTIVATIONS", "lenet", "layer_shapes"]
