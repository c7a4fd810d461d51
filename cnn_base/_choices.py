"""The choices that the library and the commands share, defined once and without MXNet
(a command's ``--help`` lists them before MXNet is imported)."""

__all__ = []

# our blocks ('custom') or gluon.nn's ('builtin')
BLOCKS = ("custom", "builtin")
# the activations of Gluon's nn.Activation that Conv2D and LeNet take, d2l's first
ACTIVATIONS = ("sigmoid", "relu", "tanh", "softrelu", "softsign")
# how train_ch5 shows its progress
PROGRESS_CHOICES = ("auto", "bar", "plain", "none")
# the Trainer's kvstore: one process, or a worker of a parameter-server job
DIST_KVSTORES = ("dist_sync", "dist_async")
KVSTORE_CHOICES = ("local", "device") + DIST_KVSTORES

# d2l chapter 5's networks (cnn_base.nets.CHAPTER_NETS) and the book's settings of each
# one's run: (learning rate, batch size, input side)
BOOK_SETTINGS = {"lenet": (0.9, 256, 28), "alexnet": (0.01, 128, 224),
                 "vgg11": (0.05, 128, 224), "nin": (0.1, 128, 224),
                 "googlenet": (0.1, 128, 96), "lenet_bn": (1.0, 256, 28),
                 "resnet18": (0.05, 256, 96), "densenet": (0.1, 256, 96)}
CHAPTER_NET_NAMES = tuple(BOOK_SETTINGS)
