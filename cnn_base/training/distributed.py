"""Data parallelism past one process: a job of MXNet's parameter server on this machine.

MXNet's distributed key-value store (``mx.kv.create('dist_sync')`` or ``'dist_async'``,
ps-lite underneath) is a job of processes: one *scheduler* that introduces the others,
*servers* that hold the summed values, and *workers* that run the training script.
They find each other through environment variables:

=====================  =====================================================
``DMLC_ROLE``          ``scheduler``, ``server`` or ``worker``
``DMLC_PS_ROOT_URI``   the scheduler's address (here ``127.0.0.1``)
``DMLC_PS_ROOT_PORT``  the scheduler's port (a free one, unless given)
``DMLC_NUM_SERVER``    how many servers the job has
``DMLC_NUM_WORKER``    how many workers the job has
``DMLC_NODE_HOST``     the address this node announces (``127.0.0.1``, so no
                       network interface is needed on one machine)
=====================  =====================================================

:func:`launch` starts such a job on this machine: the scheduler and the servers run
``python -c "import mxnet"`` (after the ``numpy.bool`` alias that mxnet 1.9.1 needs on
Python 3.12+; importing MXNet with ``DMLC_ROLE`` ``scheduler`` or
``server`` runs that node until the workers finish), the workers run the given command.
Every line a process writes comes out prefixed with its role and number
(``[worker 0] ...``, ``[server 0] ...``, ``[scheduler] ...``; stdout to stdout, stderr to
stderr). The number of a worker is its launch slot: ps-lite numbers the workers itself
(``kv.rank``), in the order of the ports they happen to get, so slot 0 is not always
rank 0 -- what decides who writes files is ``kv.rank``.

Faults: the job is stopped as a whole as soon as any process ends with a non-zero
status or a signal (a worker killed, a server crashed), when it runs past ``timeout``,
or when the launcher itself receives SIGINT (Ctrl-C), SIGTERM or SIGHUP. ps-lite has no
recovery: the other processes would wait for the dead one forever. Stopping means
SIGTERM to each process's group (every process is started in a session of its own, so
its children go too), SIGKILL to what is left after ``grace`` seconds, then a sweep of
the process table for anything still carrying the job's marker variable
(``CNN_BASE_DIST_JOB``), and every child is reaped. On Linux the children also get
SIGTERM if the launcher dies without cleaning up (``PR_SET_PDEATHSIG``).

The launcher dying without cleaning up (SIGKILL, out of memory) is covered by a watchdog:
a tiny Python process of its own session, started first, which the launcher tells each
process group it starts through a pipe. When the pipe closes without the launcher's
``done`` (the launcher is gone), the watchdog sends SIGTERM to every group, SIGKILL after
``grace`` seconds, then sweeps the process table for the job's marker, and exits. So a
worker command that is a wrapper (``sh -c "python -m cnn_base train-lenet ..."``), whose
``sh`` the parent-death signal reaches but whose Python child it does not, goes too.

:class:`JobResult`'s ``returncode``, which the ``launch-dist`` command exits with:

- 0 when every worker exited with status 0;
- otherwise the first failed process's exit status, or ``128 + N`` if signal N killed it
  (a worker killed with SIGKILL: 137), as a shell reports it;
- 124 when the job ran past ``timeout`` (as ``timeout(1)``);
- ``128 + N`` when the launcher received signal N (130 for Ctrl-C).

A worker's side
---------------
:class:`Workers` is a worker's place in the job: its ``rank`` (ps-lite's), the number of
workers, its share of each epoch (:func:`shard_order`), :meth:`Workers.allreduce_grads`
(each gradient replaced by its sum over the workers: a push and a pull of one key per
parameter, the servers only adding) and :meth:`Workers.sum`, the sum of a few numbers
over the workers through one more key, so that the reported loss and accuracies are
those of the global batch, not of one worker's shard. Under ``dist_sync`` every worker
then applies the same update to the same weights with its own Trainer. Under
``dist_async`` the servers must run the optimizer on whatever is pushed (MXNet's only
async mode), so numbers cannot travel that way: each worker reports its own shard
(``Workers.sums_over_workers`` is False). :data:`SINGLE_PROCESS` is the one-process case.

Splitting the data
------------------
:func:`shard_order` gives a worker its part of an epoch's order so that the workers
together run exactly the steps of one process with the global batch: global batch ``k``
(samples ``k*B .. k*B + B - 1`` of the order) is cut into ``W`` consecutive pieces, one
per worker rank, and a worker's share of the epoch is its pieces one after the other.
Batching that share by ``B / W`` gives back the pieces, so step ``k`` of every worker
belongs to global batch ``k``; summing the workers' gradients gives the one-process
gradient. Every sample of the epoch lands in exactly one worker's share, none is dropped.
Two rules make that possible (checked by :func:`check_shardable`): ``B`` is a multiple
of ``W``, and the last, short global batch (``N mod B`` samples) has at least one sample
per worker -- it is cut as evenly as possible (piece sizes differ by at most one), and a
worker without a piece would take one step fewer than the others.
"""
from __future__ import annotations

import ctypes
import math
import numbers
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import (TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, TextIO,
                    Union)

import numpy as np

from .._choices import DIST_KVSTORES
from .._mxnet_private import kvstore_barrier

if TYPE_CHECKING:      # MXNet is imported where it is used: the launcher runs without it
    import mxnet as mx
    from mxnet import gluon

__all__ = ["LaunchError", "NodeExit", "JobResult", "JOB_ENV", "LOCALHOST", "TIMEOUT_STATUS",
           "free_port", "check_port", "resolve_command", "node_env", "threads_per_worker",
           "launch", "job_processes", "check_shardable", "shard_order", "DIST_KVSTORES",
           "check_dist_env", "Workers", "SINGLE_PROCESS"]

LOCALHOST = "127.0.0.1"
JOB_ENV = "CNN_BASE_DIST_JOB"    # every process of a job carries JOB_ENV=<job id>
TIMEOUT_STATUS = 124
_SIGNALS_STOPPING_THE_JOB = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PYTHON_NAME = re.compile(r"^python[0-9.]*$")
# After the workers finished, how long the scheduler and the servers get to exit by themselves.
_LINGER_SECONDS = 10.0
_POLL_SECONDS = 0.05


class LaunchError(ValueError):
    """A job that cannot start: no command, a missing script, a port in use, a bad count."""


def _check_int(name, value, minimum):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def _check_seconds(name, value, allow_none):
    if value is None and allow_none:
        return None
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__} "
                        f"{value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number of seconds, got {value!r}")
    return float(value)


# --- ports and commands -------------------------------------------------------------------------

def free_port(host: str = LOCALHOST) -> int:
    """A TCP port on ``host`` that nothing listens on right now (the system's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_port(port: int, host: str = LOCALHOST) -> int:
    """Raise :class:`LaunchError` unless the scheduler could listen on ``host:port``.

    >>> check_port(0)
    Traceback (most recent call last):
    ...
    cnn_base.training.distributed.LaunchError: port must be between 1 and 65535, got 0
    """
    if not isinstance(port, numbers.Integral) or isinstance(port, bool):
        raise TypeError(f"port must be an int, got {type(port).__name__} {port!r}")
    if not 1 <= port <= 65535:
        raise LaunchError(f"port must be between 1 and 65535, got {port}")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # as ZeroMQ binds: SO_REUSEADDR, so only a listening socket makes the port busy
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise LaunchError(f"port {port} on {host} is in use ({e.strerror or e}); "
                              f"choose another --port or leave it out for a free one") from None
    return int(port)


def resolve_command(command: Sequence[str]) -> List[str]:
    """The worker command as it will run, checked: the program exists, and so does a Python script.

    ``python`` or ``python3`` as the program means this interpreter (``sys.executable``),
    so the workers find the same MXNet as the launcher (e.g. the project's venv); a
    command starting with a ``.py`` file runs it with this interpreter.

    >>> resolve_command(["python", "-c", "pass"])[0] == sys.executable
    True
    >>> resolve_command(["python", "no/such/script.py"])
    Traceback (most recent call last):
    ...
    cnn_base.training.distributed.LaunchError: script not found: 'no/such/script.py'
    """
    if isinstance(command, str) or not isinstance(command, (list, tuple)):
        raise TypeError(f"command must be a list of strings, got {type(command).__name__} "
                        f"{command!r}")
    command = [str(part) for part in command]
    if not command:
        raise LaunchError("no command to run: give the workers' command after --, "
                          "e.g. -- python scripts/train_lenet.py --kvstore dist_sync")
    program = command[0]
    if program in ("python", "python3"):
        command = [sys.executable] + command[1:]
    elif program.endswith(".py"):
        command = [sys.executable] + command
    program = command[0]
    if os.sep in program:
        if not os.path.isfile(program):
            raise LaunchError(f"program not found: {program!r}")
        if not os.access(program, os.X_OK):
            raise LaunchError(f"program is not executable: {program!r}")
    elif shutil.which(program) is None:
        raise LaunchError(f"program not found on PATH: {program!r}")
    if _PYTHON_NAME.match(os.path.basename(program)) or program == sys.executable:
        script = _python_script(command[1:])
        if script is not None and not os.path.isfile(script):
            raise LaunchError(f"script not found: {script!r}")
    return command


def _python_script(args):
    """The script a Python command line runs, or None (``-c``, ``-m``, ``-`` or nothing)."""
    takes_value = {"-W", "-X", "--check-hash-based-pycs"}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-c", "-m", "-") or arg.startswith(("-c", "-m")) and not arg.startswith("--"):
            return None
        if arg in takes_value:
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        return arg
    return None


# --- the processes' environment ---------------------------------------------------------------

def threads_per_worker(num_workers: int, cpu_count: Optional[int] = None) -> int:
    """OpenMP threads for each worker: the processor count shared out, at least 1.

    What it buys: MXNet starts one OpenMP thread per processor in every process, so
    ``W`` workers on one machine would each run that many threads on the same cores and
    slow each other down; sharing the cores keeps one thread per core. Used only when the
    environment does not set ``OMP_NUM_THREADS`` itself.

    >>> threads_per_worker(2, cpu_count=2), threads_per_worker(4, cpu_count=2)
    (1, 1)
    >>> threads_per_worker(2, cpu_count=8)
    4
    """
    num_workers = _check_int("num_workers", num_workers, 1)
    cpu_count = cpu_count or os.cpu_count() or 1
    return max(1, cpu_count // num_workers)


def node_env(role: str, port: int, num_workers: int, num_servers: int, host: str = LOCALHOST,
             base: Optional[Mapping[str, str]] = None,
             job_id: Optional[str] = None) -> Dict[str, str]:
    """The environment of one process of the job: ``base`` (default ``os.environ``) plus ``DMLC_*``.

    Any ``DMLC_*`` variable already in ``base`` is replaced (a nested launch must not
    inherit its parent's job). Output is unbuffered, so prefixed lines come out as they
    are written. The scheduler and the servers compute little: one OpenMP thread each.

    >>> env = node_env('worker', 9000, num_workers=2, num_servers=1, base={})
    >>> sorted(k for k in env if k.startswith('DMLC_'))  # doctest: +NORMALIZE_WHITESPACE
    ['DMLC_NODE_HOST', 'DMLC_NUM_SERVER', 'DMLC_NUM_WORKER', 'DMLC_PS_ROOT_PORT',
     'DMLC_PS_ROOT_URI', 'DMLC_ROLE']
    >>> env['DMLC_ROLE'], env['DMLC_PS_ROOT_PORT']
    ('worker', '9000')
    """
    if role not in ("scheduler", "server", "worker"):
        raise ValueError(f"role must be 'scheduler', 'server' or 'worker', got {role!r}")
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if not k.startswith("DMLC_")}
    env.update({"DMLC_ROLE": role, "DMLC_PS_ROOT_URI": host, "DMLC_PS_ROOT_PORT": str(port),
                "DMLC_NUM_SERVER": str(num_servers), "DMLC_NUM_WORKER": str(num_workers),
                "DMLC_NODE_HOST": host, "PYTHONUNBUFFERED": "1"})
    if job_id is not None:
        env[JOB_ENV] = job_id
    if "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(threads_per_worker(num_workers) if role == "worker" else 1)
    return env


# --- the job -------------------------------------------------------------------------------------

def _signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _shell_status(returncode):
    """Popen's returncode (negative: killed by that signal) as a shell's exit status."""
    return 128 - returncode if returncode < 0 else returncode


@dataclass
class NodeExit:
    """How one process of a job ended."""
    name: str                 # 'scheduler', 'server 0', 'worker 1'
    role: str
    pid: int
    returncode: int           # Popen's: negative means killed by that signal
    stopped: bool = False     # ended by the launcher stopping the job

    @property
    def how(self) -> str:
        """``'exited with status 0'``, ``'killed by SIGKILL'``, ... (and who sent it)."""
        if self.returncode < 0:
            how = f"killed by {_signal_name(-self.returncode)}"
        else:
            how = f"exited with status {self.returncode}"
        return how + (" (stopped by the launcher)" if self.stopped else "")


@dataclass
class JobResult:
    """What :func:`launch` returns: the status to exit with and how every process ended."""
    returncode: int
    port: int
    job_id: str
    nodes: List[NodeExit] = field(default_factory=list)    # scheduler first
    failure: Optional[str] = None   # one sentence when the job failed, else None
    notes: List[str] = field(default_factory=list)     # anything else worth saying

    @property
    def workers(self) -> List[NodeExit]:
        return [n for n in self.nodes if n.role == "worker"]


class _Node:
    """One running process of the job and the threads copying its output."""

    def __init__(self, name, role, argv, env, pdeathsig):
        self.name, self.role = name, role
        self.stopped = False
        self.returncode = None
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True, preexec_fn=pdeathsig)
        self.threads = []

    def pump(self, out, err, lock):
        prefix = f"[{self.name}] "
        for stream, target in ((self.proc.stdout, out), (self.proc.stderr, err)):
            thread = threading.Thread(target=_copy_lines, args=(stream, target, prefix, lock),
                                      name=f"{self.name} output", daemon=True)
            thread.start()
            self.threads.append(thread)

    def poll(self):
        if self.returncode is None:
            self.returncode = self.proc.poll()
        return self.returncode

    def signal_group(self, signum):
        """Send ``signum`` to the process's group (it leads its own session) while it runs."""
        if self.poll() is None:
            try:
                os.killpg(self.proc.pid, signum)
            except ProcessLookupError:
                pass

    def exit(self):
        return NodeExit(self.name, self.role, self.proc.pid, self.returncode, self.stopped)


def _copy_lines(stream, target, prefix, lock):
    """Copy ``stream``'s lines to ``target``, each with ``prefix``; keep draining if it breaks."""
    broken = False
    with stream:
        for raw in iter(stream.readline, b""):
            if broken:
                continue
            text = raw.decode("utf-8", "replace").rstrip("\n")
            try:
                with lock:
                    target.write(prefix + text + "\n")
                    target.flush()
            except (OSError, ValueError):   # closed or broken output: drain, do not block
                broken = True


def _pdeathsig_setter():
    """A ``preexec_fn``: Linux sends the child SIGTERM if the launcher dies (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    PR_SET_PDEATHSIG = 1

    def set_pdeathsig():
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    return set_pdeathsig


def job_processes(marker: str, value: str) -> List[int]:
    """PIDs of the processes whose environment holds ``marker=value`` (Linux ``/proc``).

    How a job's leftovers are found, by the launcher's final sweep and by the tests.
    Processes of other users (unreadable environment) are not looked at.
    """
    needle = f"{marker}={value}".encode()
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            continue
        if needle in environ:
            found.append(int(entry))
    return sorted(found)


# What the scheduler and the servers run: importing MXNet with DMLC_ROLE set runs that
# node. On Python 3.12+ (numpy 1.26) mxnet 1.9.1 imports only once numpy.bool exists, so
# the alias is put back first, as cnn_base/__init__.py does, without importing cnn_base.
_SERVER_CODE = """\
import warnings
import numpy
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    if not hasattr(numpy, "bool"):
        numpy.bool = bool
import mxnet
"""


# The watchdog (see the module's docstring): reads process group ids, one a line, on stdin;
# "done" means the launcher cleaned up itself; end of input without it means the launcher
# died, so every group is stopped and the job's marker swept. Plain Python, no imports of
# ours or MXNet's, so it starts in a few milliseconds.
_WATCHDOG_CODE = """\
import os, signal, sys, time
job, grace = sys.argv[1], float(sys.argv[2])
groups = []
for line in sys.stdin:
    line = line.strip()
    if line == "done":
        sys.exit(0)
    if line.isdigit():
        groups.append(int(line))
def signal_all(signum):
    for group in groups:
        try:
            os.killpg(group, signum)
        except OSError:
            pass
signal_all(signal.SIGTERM)
deadline = time.monotonic() + grace
while time.monotonic() < deadline:
    alive = []
    for group in groups:
        try:
            os.killpg(group, 0)
            alive.append(group)
        except OSError:
            pass
    if not alive:
        break
    time.sleep(0.05)
signal_all(signal.SIGKILL)
needle = ("%s=%s" % (sys.argv[3], job)).encode()
for entry in os.listdir("/proc"):
    if entry.isdigit() and int(entry) != os.getpid():
        try:
            with open("/proc/%s/environ" % entry, "rb") as f:
                if needle in f.read().split(b"\\0"):
                    os.kill(int(entry), signal.SIGKILL)
        except OSError:
            pass
"""


class _Watchdog:
    """The job's watchdog process: told every process group; stops them if the launcher dies."""

    def __init__(self, job_id, grace, env):
        env = {k: v for k, v in env.items() if k != JOB_ENV}    # not swept as part of the job
        try:
            self.proc = subprocess.Popen([sys.executable, "-c", _WATCHDOG_CODE, job_id,
                                          str(grace), JOB_ENV], stdin=subprocess.PIPE,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         env=env, start_new_session=True, text=True)
        except OSError:
            self.proc = None       # no watchdog: the parent-death signal still works

    def watch(self, pgid):
        self._send(f"{pgid}\n")

    def _send(self, text):
        if self.proc is not None:
            try:
                self.proc.stdin.write(text)
                self.proc.stdin.flush()
            except (OSError, ValueError):
                pass

    def release(self):
        """The launcher cleaned up itself: the watchdog exits without doing anything; reaped."""
        if self.proc is None:
            return
        self._send("done\n")
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def launch(command: Sequence[str], num_workers: int, num_servers: int = 1,
           port: Optional[int] = None, timeout: Optional[float] = None, grace: float = 3.0,
           host: str = LOCALHOST, env: Optional[Mapping[str, str]] = None,
           out: Optional[TextIO] = None, err: Optional[TextIO] = None,
           log: Optional[Callable[[str], Any]] = None) -> JobResult:
    """Run one job of MXNet's parameter server on this machine; stop all of it on any fault.

    Parameters
    ----------
    command : list of str
        The workers' command, e.g. ``['python', 'scripts/train_lenet.py', '--kvstore',
        'dist_sync']`` (see :func:`resolve_command`).
    num_workers : int
        Workers (each runs ``command``), at least 1.
    num_servers : int, default 1
        Servers, at least 1.
    port : int, optional
        The scheduler's port on ``host``; default a free one.
    timeout : float, optional
        Seconds the whole job may run; past them it is stopped (status 124).
    grace : float, default 3.0
        Seconds between SIGTERM and SIGKILL when stopping.
    host : str, default '127.0.0.1'
    env : dict, optional
        The environment to start from (default ``os.environ``).
    out, err : text streams, optional
        Where the prefixed stdout and stderr lines go (default ``sys.stdout``, ``sys.stderr``).
    log : callable, optional
        Receives the launcher's own messages (default: ``err`` lines starting ``[launcher]``).

    Returns
    -------
    JobResult

    Raises
    ------
    LaunchError
        Before anything starts: no command, a missing program or script, a port in use.
    """
    num_workers = _check_int("num_workers", num_workers, 1)
    num_servers = _check_int("num_servers", num_servers, 1)
    timeout = _check_seconds("timeout", timeout, allow_none=True)
    grace = _check_seconds("grace", grace, allow_none=False)
    command = resolve_command(command)
    port = free_port(host) if port is None else check_port(port, host)
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    lock = threading.Lock()
    log = log or _launcher_log(err, lock)
    job_id = uuid.uuid4().hex
    base = dict(os.environ if env is None else env)
    received = []
    handlers = _record_signals(received)
    nodes = []
    result = JobResult(returncode=0, port=port, job_id=job_id)
    watchdog = _Watchdog(job_id, grace, base)
    try:
        pdeathsig = _pdeathsig_setter()
        for name, role, argv in _plan(command, num_workers, num_servers):
            if received:
                break
            nodes.append(_Node(name, role, argv,
                               node_env(role, port, num_workers, num_servers, host, base, job_id),
                               pdeathsig))
            watchdog.watch(nodes[-1].proc.pid)      # each node leads its own group
        # the output threads start only now: no thread runs while the children are forked
        for node in nodes:
            node.pump(out, err, lock)
        log(f"job {job_id[:8]}: scheduler on {host}:{port}, {num_servers} server(s), "
            f"{num_workers} worker(s) running {' '.join(command)}")
        _watch(nodes, result, received, timeout, log)
    finally:
        # stopped with our handlers still set: a second Ctrl-C during the grace
        # period is only recorded, so it cannot cut the SIGKILL and the sweep short
        _stop(nodes, grace)
        _sweep(job_id, log)
        watchdog.release()
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for node in nodes:
            for thread in node.threads:
                thread.join(timeout=2.0)
    result.nodes = [node.exit() for node in nodes]
    for node in result.nodes:
        if node.stopped:
            log(f"{node.name} (pid {node.pid}): {node.how}")
    return result


def _launcher_log(err, lock):
    """The launcher's own messages: ``[launcher] ...`` lines on ``err``."""
    def log(message):
        with lock:
            err.write(f"[launcher] {message}\n")
            err.flush()
    return log


def _record_signals(received):
    """SIGINT, SIGTERM and SIGHUP recorded in ``received`` (main thread only); the old handlers."""
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        for signum in _SIGNALS_STOPPING_THE_JOB:
            handlers[signum] = signal.signal(signum, lambda n, _frame: received.append(n))
    return handlers


def _plan(command, num_workers, num_servers):
    """The job's processes in start order: (name, role, argv) of the scheduler, servers, workers."""
    server_argv = [sys.executable, "-c", _SERVER_CODE]
    return ([("scheduler", "scheduler", server_argv)]
            + [(f"server {i}", "server", server_argv) for i in range(num_servers)]
            + [(f"worker {i}", "worker", command) for i in range(num_workers)])


def _watch(nodes, result, received, timeout, log):
    """Wait for the job to end by itself or to fail; fill in ``result``'s status and failure."""
    start = time.monotonic()
    workers = [n for n in nodes if n.role == "worker"]
    workers_done_at = None
    while True:
        failed = [n for n in nodes if n.poll() not in (None, 0)]
        if failed:
            first = failed[0]
            result.returncode = _shell_status(first.returncode)
            result.failure = "; ".join(f"{n.name} (pid {n.proc.pid}) {n.exit().how}"
                                       for n in failed)
            log(f"{result.failure}: stopping the job")
            return
        if received:
            name = _signal_name(received[0])
            result.returncode = 128 + received[0]
            result.failure = f"the launcher received {name}"
            log(f"received {name}: stopping the job")
            return
        now = time.monotonic()
        if timeout is not None and now - start > timeout:
            running = [n.name for n in nodes if n.poll() is None]
            result.returncode = TIMEOUT_STATUS
            result.failure = (f"the job ran past its timeout of {timeout:g} s "
                              f"(still running: {', '.join(running)})")
            log(f"{result.failure}: stopping the job")
            return
        if all(n.poll() == 0 for n in workers):
            if all(n.poll() is not None for n in nodes):
                log("every worker finished with status 0")
                return
            if workers_done_at is None:
                workers_done_at = now
            elif now - workers_done_at > _LINGER_SECONDS:
                running = [n.name for n in nodes if n.poll() is None]
                note = (f"the workers finished, but {', '.join(running)} did not exit within "
                        f"{_LINGER_SECONDS:g} s (did the workers create a dist kvstore?); "
                        f"stopping it")
                result.notes.append(note)
                log(note)
                return
        time.sleep(_POLL_SECONDS)


def _stop(nodes, grace):
    """SIGTERM to every running process's group, SIGKILL after ``grace`` s, then reap them all."""
    running = [n for n in nodes if n.poll() is None]
    for node in running:
        node.stopped = True
        node.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(n.poll() is None for n in running) and time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)
    for node in running:
        node.signal_group(signal.SIGKILL)
    for node in nodes:
        try:
            node.returncode = node.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:     # unkillable (uninterruptible sleep): say so
            node.returncode = node.proc.poll()
            if node.returncode is None:
                node.returncode = -signal.SIGKILL


def _sweep(job_id, log):
    """SIGKILL whatever still carries the job's marker (children that left their group)."""
    for pid in job_processes(JOB_ENV, job_id):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue
        log(f"killed leftover process {pid} of the job")


# --- splitting the data between the workers ---------------------------------------------------

def check_shardable(num_samples: int, batch_size: int, num_workers: int) -> None:
    """Raise ``ValueError`` unless :func:`shard_order` can split an epoch between the workers.

    The rules (see the module's docstring): ``batch_size`` is a multiple of
    ``num_workers``, and a last, short batch has at least ``num_workers`` samples.

    >>> check_shardable(1000, 256, 2)       # last batch: 1000 - 3 * 256 = 232 samples
    >>> check_shardable(257, 256, 2)
    Traceback (most recent call last):
    ...
    ValueError: the last batch holds 1 of the 257 training samples (batch size 256), fewer than the 2 workers: every worker needs a piece of every batch; change the batch size or the number of samples
    """
    num_samples = _check_int("num_samples", num_samples, 1)
    _local_batch_size(batch_size, num_workers)
    last = num_samples % batch_size
    if 0 < last < num_workers:
        raise ValueError(f"the last batch holds {last} of the {num_samples} training samples "
                         f"(batch size {batch_size}), fewer than the {num_workers} workers: "
                         f"every worker needs a piece of every batch; change the batch size "
                         f"or the number of samples")


def _local_batch_size(batch_size, num_workers):
    batch_size = _check_int("batch_size", batch_size, 1)
    num_workers = _check_int("num_workers", num_workers, 1)
    if batch_size % num_workers:
        raise ValueError(f"batch_size must be a multiple of the number of workers, got "
                         f"batch size {batch_size} for {num_workers} workers (each worker "
                         f"takes batch_size / workers samples of every batch)")
    return batch_size // num_workers


def shard_order(order: Union[Sequence[int], np.ndarray], batch_size: int, rank: int,
                num_workers: int) -> np.ndarray:
    """Worker ``rank``'s share of an epoch's ``order``: its piece of every global batch, in turn.

    Batched by ``batch_size // num_workers``, the share gives the worker's piece of each
    global batch of ``order`` (batched by ``batch_size``); the pieces of one batch, in
    rank order, are that batch. The shares of ranks ``0 .. num_workers - 1`` together
    hold every index of ``order`` exactly once.

    >>> order = list(range(10))
    >>> shard_order(order, 4, 0, 2).tolist(), shard_order(order, 4, 1, 2).tolist()
    ([0, 1, 4, 5, 8], [2, 3, 6, 7, 9])
    """
    order = np.asarray(order)
    if order.ndim != 1:
        raise ValueError(f"order must be 1-D, got shape {order.shape}")
    rank = _check_int("rank", rank, 0)
    num_workers = _check_int("num_workers", num_workers, 1)
    if rank >= num_workers:
        raise ValueError(f"rank must be below num_workers ({num_workers}), got {rank}")
    check_shardable(len(order), batch_size, num_workers)
    pieces = []
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        pieces.append(np.array_split(batch, num_workers)[rank])
    return np.concatenate(pieces) if pieces else order[:0]


# --- a worker's side: rank, share, sums over the workers ------------------------------------------

_DMLC_NEEDED = ("DMLC_ROLE", "DMLC_PS_ROOT_URI", "DMLC_PS_ROOT_PORT", "DMLC_NUM_SERVER",
                "DMLC_NUM_WORKER")
# Workers.sum of k values uses key SUM_KEY + k; the Trainer's keys are its parameters'
# indices 0, 1, ... ps-lite places a small key on server (key * 9973) % num_servers in a
# C int: keep key * 9973 < 2**31.
SUM_KEY = 9000
_MAX_SUM_VALUES = 999


def check_dist_env(kvstore: str, environ: Optional[Mapping[str, str]] = None) -> None:
    """Raise ``ValueError`` unless this process is a worker of a parameter-server job.

    Without the ``DMLC_*`` variables MXNet's ``kv.create('dist_sync')`` fails deep in
    ps-lite; this says what is missing and how to start a job.

    >>> check_dist_env('dist_sync', environ={})
    Traceback (most recent call last):
    ...
    ValueError: kvstore 'dist_sync' needs a parameter-server job, but DMLC_ROLE, DMLC_PS_ROOT_URI, DMLC_PS_ROOT_PORT, DMLC_NUM_SERVER, DMLC_NUM_WORKER are not set: start the workers with launch_dist.py (cnn-base launch-dist --workers 2 -- python ...), or set the variables by hand as the README shows
    """
    environ = os.environ if environ is None else environ
    missing = [name for name in _DMLC_NEEDED if not environ.get(name)]
    if missing:
        raise ValueError(f"kvstore {kvstore!r} needs a parameter-server job, but "
                         f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: "
                         f"start the workers with launch_dist.py (cnn-base launch-dist "
                         f"--workers 2 -- python ...), or set the variables by hand as the "
                         f"README shows")
    if environ["DMLC_ROLE"] != "worker":
        raise ValueError(f"kvstore {kvstore!r} runs in the workers, but this process has "
                         f"DMLC_ROLE={environ['DMLC_ROLE']!r}")


class Workers:
    """This process's place among the workers of a job: rank, count, share, sums.

    Parameters
    ----------
    kv : mx.kv.KVStore or None
        The job's store (``mx.kv.create('dist_sync')``); ``None`` for one process.
    """

    def __init__(self, kv: Optional[mx.kv.KVStore] = None) -> None:
        self.kv = kv
        self.rank = 0 if kv is None else kv.rank
        self.num_workers = 1 if kv is None else kv.num_workers
        self.distributed = kv is not None and kv.type.startswith("dist")
        self.sums_over_workers = not self.distributed or "async" not in kv.type
        self._sum_keys = set()
        self._grad_keys = False
        self._claimed = False

    @classmethod
    def create(cls, kvstore: str) -> Workers:
        """The job's store ``kvstore`` (a dist type) created, after :func:`check_dist_env`."""
        if kvstore not in DIST_KVSTORES:
            raise ValueError(f"kvstore must be one of {', '.join(DIST_KVSTORES)}, got {kvstore!r}")
        check_dist_env(kvstore)
        import mxnet as mx

        return cls(mx.kv.create(kvstore))

    def claim(self) -> None:
        """Mark the store as taken by a Trainer; a second claim is refused.

        A Trainer's keys in the store are its parameters' indices (0, 1, ...); a second
        Trainer on the same distributed store would reuse them, and the servers would
        mix its initial values into the first one's gradients.
        """
        if self._claimed:
            raise ValueError("this job's store already serves a Trainer: one training run "
                             "per distributed job (e.g. --block custom or builtin, not both)")
        self._claimed = True

    @property
    def writes_files(self) -> bool:
        """Rank 0 writes checkpoints, JSON and plots; the others only compute."""
        return self.rank == 0

    def __repr__(self):
        if not self.distributed:
            return "Workers(one process)"
        return f"Workers(rank {self.rank} of {self.num_workers}, {self.kv.type})"

    def share(self, order: Callable[[int, int, int], Union[Sequence[int], np.ndarray]],
              batch_size: int) -> Callable[[int, int, int], Union[Sequence[int], np.ndarray]]:
        """``order(n, seed, epoch)`` narrowed to this worker's share (:func:`shard_order`)."""
        if not self.distributed:
            return order

        def worker_order(n, seed, epoch):
            return shard_order(order(n, seed, epoch), batch_size, self.rank, self.num_workers)
        return worker_order

    def local_batch_size(self, batch_size: int) -> int:
        """The batch each worker runs: ``batch_size / num_workers`` (which must be whole)."""
        return _local_batch_size(batch_size, self.num_workers)

    def part(self, n: int) -> slice:
        """This worker's slice of ``range(n)`` (e.g. the test set): near-equal parts, in rank order.

        Where the numbers are not summed over workers (``dist_async``), the whole range.
        """
        if not self.distributed or not self.sums_over_workers:
            return slice(0, n)
        bounds = np.linspace(0, n, self.num_workers + 1).round().astype(int)
        return slice(int(bounds[self.rank]), int(bounds[self.rank + 1]))

    def sum(self, values: Sequence[float]) -> np.ndarray:
        """``values`` (a few floats) summed over all workers; every worker gets the sums.

        A push and a pull of one key of the store (the servers add the workers' pushes).
        Every worker must call it, in the same order, with the same number of values
        (at most 999).
        The values travel as float32 (the servers keep float32 whatever is pushed):
        counts up to 2**24 stay exact, a sum of losses keeps 7 significant digits.
        Under ``dist_async`` (``sums_over_workers`` False) this worker's values come back.
        """
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 1 or not 1 <= values.size <= _MAX_SUM_VALUES:
            raise ValueError(f"values must be 1 to {_MAX_SUM_VALUES} numbers in a flat list, "
                             f"got shape {values.shape}")
        if not self.distributed or not self.sums_over_workers:
            return values
        from mxnet import nd

        key = SUM_KEY + values.size
        if key not in self._sum_keys:       # every worker gets here at the same call
            self._init_keys([key], [nd.zeros(values.size)])
            self._sum_keys.add(key)
        self.kv.push(key, nd.array(values))
        total = nd.zeros(values.size)
        self.kv.pull(key, out=total)
        return total.asnumpy().astype(np.float64)


    def _init_keys(self, keys, values):
        """``kv.init`` of ``keys``, finished on the servers before any worker goes on.

        What it buys: in MXNet 1.9.1, ``kv.init`` on a dist store can return on the other
        workers before rank 0's initial values have reached the servers; a worker's first
        push could then arrive first and be taken for the initial value (seen here: one
        run in three of two-worker LeNet went wrong at its first or second step, with
        Gluon's Trainer doing the init). Waiting for rank 0's pushes (``nd.waitall``)
        and a barrier after them makes the order certain.
        """
        from mxnet import nd

        for key, value in zip(keys, values):
            self.kv.init(key, value)
        nd.waitall()
        kvstore_barrier(self.kv)

    def allreduce_grads(self, params: Sequence[gluon.Parameter]) -> None:
        """Replace each parameter's gradient by its sum over the workers (and contexts).

        ``params``: the ``gluon.Parameter`` s in the same order on every worker (e.g.
        sorted by name); parameter ``i`` uses key ``i`` of the store. The servers only
        add (no optimizer on them), so every worker then applies the same update to the
        same weights with its own Trainer: the one update of the global batch.
        One process: nothing to do.
        """
        if not self.distributed:
            return
        params = [p for p in params if p.grad_req != "null"]
        if len(params) >= SUM_KEY:
            raise ValueError(f"at most {SUM_KEY - 1} parameters, got {len(params)}")
        if not self._grad_keys:
            self._init_keys(range(len(params)), [p.list_grad()[0] for p in params])
            self._grad_keys = True
        for i, param in enumerate(params):
            self.kv.pushpull(i, param.list_grad(), priority=-i)


SINGLE_PROCESS = Workers(None)
