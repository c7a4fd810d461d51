"""Networks built from our blocks or Gluon's (``block='custom'`` or ``'builtin'``): the chapter's
LeNet (d2l-zh v1 §5.5) and chapter 5's later networks (§5.6-5.12), one module each."""
from .._choices import BOOK_SETTINGS
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

# name: (constructor taking block=, the side of the square input the book trains it on,
# from the book's settings of each run in _choices.BOOK_SETTINGS)
CHAPTER_NETS = {name: (make, BOOK_SETTINGS[name][2]) for name, make in (
    ("lenet", lenet),            # §5.5
    ("alexnet", alexnet),        # §5.6
    ("vgg11", vgg11),            # §5.7, channels / 4
    ("nin", nin),                # §5.8
    ("googlenet", googlenet),    # §5.9
    ("lenet_bn", lenet_bn),      # §5.10
    ("resnet18", resnet18),      # §5.11
    ("densenet", densenet),      # §5.12
)}
