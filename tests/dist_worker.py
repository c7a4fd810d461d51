"""A tiny worker for the launcher's tests (tests/test_distributed.py): not a test module.

    python tests/dist_worker.py sum     # push rank + 1, pull the sum, print it, exit 0
    python tests/dist_worker.py loop    # push/pull forever (until the job is stopped)
    python tests/dist_worker.py kill    # rank 1 kills itself with SIGKILL after two rounds

(the tests use ``kill``; ``sum`` and ``loop`` are for trying the launcher by hand)

Every mode prints ``ready rank R of W`` once the dist_sync store is up.
"""
import os
import signal
import sys
import time

import cnn_base  # noqa: F401  (first: on Python 3.12+ it puts back numpy.bool, which mxnet reads)
import mxnet as mx


def main(mode):
    kv = mx.kv.create("dist_sync")
    kv.init(7, mx.nd.zeros((2,)))
    print(f"ready rank {kv.rank} of {kv.num_workers}", flush=True)
    print(f"rank {kv.rank} says hello on stderr", file=sys.stderr, flush=True)
    step = 0
    while True:
        if mode == "kill" and kv.rank == 1 and step == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        kv.push(7, mx.nd.ones((2,)) * (kv.rank + 1))
        total = mx.nd.zeros((2,))
        kv.pull(7, out=total)
        if mode == "sum":
            print(f"rank {kv.rank} of {kv.num_workers}: sum {total.asnumpy().tolist()}", flush=True)
            break
        step += 1
        time.sleep(0.05)


if __name__ == "__main__":   # pytest imports this file too (doctest collection): run only as a script
    main(sys.argv[1])
