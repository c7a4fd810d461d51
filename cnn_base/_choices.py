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
