"""Networks built from our blocks or Gluon's (``block='custom'`` or ``'builtin'``): the chapter's
LeNet (d2l-zh v1 §5.5) and chapter 5's later networks (§5.6-5.12), one module each."""
from .alexnet import alexnet
from .densenet import densenet
from .googlenet import googlenet
from .lenet import LENET_ACTIVATIONS, LENET_BLOCKS, layer_shapes, lenet
from .lenet_bn import lenet_bn
from .nin import nin
from .resnet import resnet18
from .vgg import vgg11

__all__ = ["LENET_BLOCKS", "LENET_ACTIVATIONS", "lenet", "layer_shapes", "CHAPTER_NETS",
           "alexnet", "vgg11", "nin", "googlenet", "lenet_bn", "resnet18", "densenet"]

# name: (constructor taking block=, the side of the square input the book trains it on)
CHAPTER_NETS = {
    "lenet": (lenet, 28),            # §5.5
    "alexnet": (alexnet, 224),       # §5.6
    "vgg11": (vgg11, 224),           # §5.7, channels / 4
    "nin": (nin, 224),               # §5.8
    "googlenet": (googlenet, 96),    # §5.9
    "lenet_bn": (lenet_bn, 28),      # §5.10
    "resnet18": (resnet18, 96),      # §5.11
    "densenet": (densenet, 96),      # §5.12
}
