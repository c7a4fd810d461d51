"""Every private name of MXNet that cnn_base uses: one function per need, each with its reason.

MXNet 1.9.1 is the last release of MXNet 1.x, and ``setup.cfg`` pins it, so these names
cannot change under us; still, nothing else in the package touches a name of MXNet that
starts with ``_``. ``tests/test_mxnet_private.py`` pins each one against MXNet 1.9.1: if
a function here breaks, that test names it. MXNet is imported inside the functions, so
that the launcher of :mod:`cnn_base.training.distributed` imports this without MXNet.
"""

__all__ = []


def rebuild_graph(block):
    """Drop ``block``'s cached graph, so that its next hybridized call builds a new one.

    Why private: our blocks choose their path (the C++ kernel or MXNet operators) for
    the input they get, and a hybridized block's cached graph holds the path it was
    built with. Gluon 1.x drops that graph only in ``hybridize()``, which would also
    reset the flags the user hybridized with; ``_clear_cached_op`` drops the graph
    alone. Called only when the choice changes, not on every call.
    """
    block._clear_cached_op()


def shape_seen_by_parent(x):
    """The shape of the Symbol ``x`` in a hybridized parent's running shape inference, or None.

    Why private: Gluon passes a child nothing during its parent's deferred shape
    inference (``HybridBlock._infer_attrs``), so the only place the input shapes are
    is that method's locals ``inputs`` and ``args_without_none`` on the call stack. Used
    for one thing, the message of an error Gluon would otherwise give later and
    unreadably (:class:`cnn_base.Conv2D`'s "too small for the kernel"); a best effort
    that gives None whenever anything differs.
    """
    import sys

    from mxnet.gluon import HybridBlock

    frame = sys._getframe(1)
    while frame is not None and frame.f_code is not HybridBlock._infer_attrs.__code__:
        frame = frame.f_back
    if frame is None:
        return None
    try:
        shapes = {i.name: a.shape for i, a in zip(frame.f_locals["inputs"],
                                                  frame.f_locals["args_without_none"])}
        known = {name: shapes[name] for name in x.list_arguments() if name in shapes}
        _, out_shapes, _ = x.infer_shape_partial(**known)
        return tuple(out_shapes[0])
    except Exception:              # a best effort for the message only
        return None


def trainer_kvstore(trainer):
    """The ``kvstore`` argument a ``gluon.Trainer`` was made with (None: it sums nothing).

    Why private: a Trainer creates its kvstore on its first step, and Gluon 1.x keeps
    the argument until then only in ``_kvstore_params``; train_ch5 must refuse a
    Trainer that would sum the gradients a second time before that step.
    """
    return trainer._kvstore_params.get("kvstore")


def children(block):
    """``block``'s child blocks in the order they were added (none for a non-Block).

    Why private: Gluon 1.x has no public list of a Block's children (only
    ``Sequential``'s indexing); a checkpoint records the layer classes of any net.
    """
    return list(block._children.values()) if hasattr(block, "_children") else []


def kvstore_barrier(kv):
    """Wait until every worker of a parameter-server job reaches this point.

    Why private: ``KVStore._barrier`` is MXNet 1.x's only barrier (no public name);
    :class:`cnn_base.training.distributed.Workers` needs it once, after rank 0's
    initial values have reached the servers.
    """
    kv._barrier()


def hybridize_state(block):
    """``(active, flags)``: whether ``block`` is hybridized, and the keywords it was given.

    Why private: :func:`cnn_base.export` hybridizes a model to trace its portable graph
    and must give it back as it was; Gluon 1.x keeps the two in ``_active`` and ``_flags``
    (a list of ``hybridize`` keyword items) and has no public getter.
    """
    return bool(getattr(block, "_active", False)), dict(getattr(block, "_flags", []) or [])


def is_relu_activation(block):
    """Whether ``block`` is exactly ``gluon.nn.Activation('relu')`` (not a subclass).

    Why private: Gluon 1.x keeps an Activation's type only in ``_act_type``;
    :class:`cnn_base.blocks.HybridSequential` runs such a block inside the operator before it.
    """
    from mxnet.gluon import nn

    return type(block) is nn.Activation and block._act_type == "relu"


def has_hooks(block):
    """Whether ``block`` has forward hooks or forward pre-hooks registered.

    Why private: Gluon 1.x has no public way to list a Block's hooks (``_forward_hooks``,
    ``_forward_pre_hooks``); :class:`cnn_base.blocks.HybridSequential` leaves a block with
    hooks as it is, since running it inside its neighbour would skip or change what they see.
    """
    return bool(getattr(block, "_forward_hooks", None) or
                getattr(block, "_forward_pre_hooks", None))


def is_hybridized(block):
    """Whether ``block`` runs its own cached graph when called with NDArrays.

    Why private: Gluon 1.x has no public flag for it (``_active``); a block that runs its own
    graph built before would not see :class:`cnn_base.blocks.HybridSequential`'s fusion.
    """
    return bool(getattr(block, "_active", False))
