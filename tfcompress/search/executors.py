"""Where trials run: one interface, three engines.

    inline   this process, one trial after another (debugging, tests of the search logic)
    local    worker processes on this machine (default; `workers` of them, each single-threaded)
    ray      a Ray cluster (`tfcompress[distributed]`): a local one started here, or `address`

`Executor.run(fn, items, assets, on_done)` calls `fn(item, assets)` for every item and returns the
results in item order; `on_done(index, result)` is called in this process as each one finishes (the
search saves its state there). The assets go to each worker once (a process pool initializer, or one
Ray object), not with every trial; an executor keeps its workers (and the assets they hold) between
calls while the assets stay equal. A trial that raises raises the same exception here, chained to
the worker's traceback and noted with the trial it came from.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import socket
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterator, Protocol, Sequence

from tfcompress.errors import TfcompressError

__all__ = ["EXECUTORS", "Executor", "InlineExecutor", "LocalExecutor", "RayExecutor", "make_executor"]

EXECUTORS = ("local", "inline", "ray")
MAX_WORKERS = 64
OnDone = Callable[[int, Any], None]


class Executor(Protocol):
    name: str
    workers: int

    def run(self, fn: Callable[[Any, Any], Any], items: Sequence[Any], assets: Any, on_done: OnDone) -> list[Any]: ...

    def close(self) -> None: ...


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else all of them)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _what(item: Any) -> str:
    """Short text for an item: a genome's (or a trial spec's genome's) description, else its repr."""
    describe = getattr(item, "describe", None) or getattr(getattr(item, "genome", None), "describe", None)
    try:
        text = str(describe()) if callable(describe) else repr(item)
    except Exception:  # noqa: BLE001 - only for a message
        text = object.__repr__(item)
    return text if len(text) <= 200 else text[:197] + "..."


def _note(exc: BaseException, where: str, index: int, n: int, item: Any) -> BaseException:
    """`exc` with a note naming the item it came from (Python >= 3.11; shown under its traceback)."""
    if hasattr(exc, "add_note"):
        exc.add_note(f"in task {index + 1} of {n} on the {where} executor: {_what(item)}")
    return exc


def _same(a: Any, b: Any) -> bool:
    """Whether two assets are the same (equal content: the model, the data and the search space)."""
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - assets without a usable ==: treat as different
        return False


class InlineExecutor:
    """Trials in this process, in order."""

    name = "inline"
    workers = 1

    def run(self, fn: Callable[[Any, Any], Any], items: Sequence[Any], assets: Any, on_done: OnDone) -> list[Any]:
        out = []
        for i, item in enumerate(items):
            try:
                out.append(fn(item, assets))
            except Exception as exc:
                _note(exc, self.name, i, len(items), item)
                raise
            on_done(i, out[-1])
        return out

    def close(self) -> None:
        pass


_WORKER_ASSETS: Any = None


PARENT_POLL_S = 1.0


def _exit_with_parent(parent: int, poll_s: float = PARENT_POLL_S) -> None:
    """End this worker within `poll_s` of its parent's death. A parent killed by a signal runs no cleanup, and a
    worker in the middle of a trial would otherwise train on for minutes, holding a core and ~750 MB (seen)."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="tfcompress-parent-watch", daemon=True).start()


def _init_worker(assets: Any, parent: int | None = None) -> None:
    global _WORKER_ASSETS
    from tfcompress.search.trial import configure_worker

    if parent is not None:
        _exit_with_parent(parent)
    configure_worker()
    _WORKER_ASSETS = assets


@contextlib.contextmanager
def _main_not_reimported() -> Iterator[None]:
    """Start spawned workers without re-running the caller's script in them.

    A spawned process imports the parent's `__main__` file first (multiprocessing's "safe importing
    of main module"); a script that calls `search()` at top level, without an `if __name__ ==
    "__main__":` guard, would then start the search again in every worker and hang. The workers run
    only tfcompress functions, so they do not need the script: hide its path while they start.
    """
    import sys

    main = sys.modules.get("__main__")
    saved = {k: getattr(main, k) for k in ("__file__", "__spec__") if main is not None and hasattr(main, k)}
    try:
        for k in saved:
            if k == "__file__":
                delattr(main, k)
            else:
                setattr(main, k, None)
        yield
    finally:
        for k, v in saved.items():
            setattr(main, k, v)


def _call(fn: Callable[[Any, Any], Any], item: Any) -> Any:
    return fn(item, _WORKER_ASSETS)


def _collect(futures: dict[Any, int], on_done: OnDone, items: Sequence[Any]) -> list[Any]:
    out: list[Any] = [None] * len(items)
    pending = set(futures)
    try:
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in sorted(done, key=lambda f: futures[f]):
                i = futures[f]
                try:
                    out[i] = f.result()
                except BrokenProcessPool:
                    raise
                except Exception as exc:
                    _note(exc, "local", i, len(items), items[i])
                    raise
                on_done(i, out[i])
    except BaseException:
        for f in pending:
            f.cancel()
        raise
    return out


class LocalExecutor:
    """Trials in `workers` spawned processes on this machine (kept between calls while the assets stay the same)."""

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, min(workers or usable_cpus(), MAX_WORKERS))
        self._pool: ProcessPoolExecutor | None = None
        self._assets: Any = None

    def run(self, fn: Callable[[Any, Any], Any], items: Sequence[Any], assets: Any, on_done: OnDone) -> list[Any]:
        if not items:
            return []
        if self._pool is None or not _same(self._assets, assets):
            self.close()
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker, initargs=(assets, os.getpid()))
            self._assets = assets
        try:
            with _main_not_reimported():  # workers start on the first submits
                futures = {self._pool.submit(_call, fn, item): i for i, item in enumerate(items)}
            return _collect(futures, on_done, items)
        except BrokenProcessPool as exc:
            # a worker died (killed for memory, a crash in native code, a failed start): this pool is
            # unusable, so drop it; the next run starts a fresh one
            pool, self._pool, self._assets = self._pool, None, None
            pool.shutdown(wait=False, cancel_futures=True)
            raise TfcompressError(
                f"a local trial worker process died ({exc})",
                "it was probably killed for memory: use fewer --workers, a smaller --trial-samples / batch "
                "size, or --executor inline to see the error in this process") from exc

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._assets = None


def _ray_call(fn: Callable[[Any, Any], Any], item: Any, assets: Any) -> Any:
    from tfcompress.search.trial import configure_worker

    configure_worker()
    return fn(item, assets)


_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@contextlib.contextmanager
def _ray_keeps_loopback() -> Iterator[None]:
    """While Ray starts or connects here, keep a loopback node address as it is.

    On Linux, Ray replaces a loopback address (`_node_ip_address="127.0.0.1"`, an address
    "127.0.0.1:PORT") by this machine's routable one, and a node on a routable address listens on all
    interfaces. Its single-machine mode (the default on macOS / Windows: `ENABLE_RAY_CLUSTER` off)
    keeps 127.0.0.1, and then every Ray server listens on loopback only. A private switch of Ray's:
    when a Ray version lacks it, this does nothing (Ray then picks the address as it would).
    """
    try:
        from ray._private import ray_constants
    except ImportError:  # pragma: no cover - a Ray without the module
        ray_constants = None
    if ray_constants is None or not hasattr(ray_constants, "ENABLE_RAY_CLUSTER"):
        yield
        return
    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


def _routable_ip() -> str | None:
    """This machine's address on its default route (what Ray uses for a node; no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("8.8.8.8", 53))
            return str(s.getsockname()[0])
    except OSError:
        return None


def _loopback_only(address: str) -> bool:
    """Whether `address` is a loopback HOST:PORT whose Ray head listens on loopback only (e.g. a head
    started with --node-ip-address 127.0.0.1): then Ray's own rewrite of 127.0.0.1 to the routable
    address would miss it, and the connection must keep 127.0.0.1."""
    host, _, port = address.rpartition(":")
    if host.strip("[]").lower() not in _LOOPBACK_HOSTS or not port.isdigit():
        return False
    routable = _routable_ip()
    if routable is None or routable.startswith("127."):
        return False  # Ray keeps the loopback address anyway
    try:
        socket.create_connection((routable, int(port)), timeout=2.0).close()
    except OSError:
        return True  # nothing there: the head answers on loopback only
    return False


def _unreachable(address: str) -> str | None:
    """Why nothing answers at HOST:PORT (None: something does, or not a HOST:PORT, e.g. ray://, auto).

    Ray retries an address where nothing listens for minutes before it gives up; this asks once.
    """
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return None
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5.0).close()
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__
    return None


class RayExecutor:
    """Trials as Ray tasks (one CPU each) on a local Ray started here, or on the cluster at `address`.

    Without `address` (and no Ray already initialised in this process) a new local Ray is started
    (`address="local"`: never a cluster found through RAY_ADDRESS or `ray start`) with `workers` CPUs
    (default: the CPUs this process may use), listening on 127.0.0.1 only, without a dashboard;
    `close` shuts it down. With `address` (HOST:PORT of the head), this process connects to that
    cluster as a driver (a loopback address of a head that listens on loopback only works too) and
    `close` only disconnects: the cluster keeps running. When Ray is already initialised in this process
    (the caller connected it), that connection is used as is and `close` leaves it alone.
    After `close`, `run` connects again the same way.
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        try:
            import ray
        except ImportError as exc:
            raise TfcompressError("--executor ray needs Ray, which is not installed",
                                  "pip install 'tfcompress[distributed]' (or: pip install 'ray[tune]')") from exc
        self._ray = ray
        self._address = address
        self._num_cpus = max(1, min(workers or usable_cpus(), 1024))
        self._started = False
        self._assets: tuple[Any, Any] | None = None  # (assets, their ObjectRef)
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_ray_call)
        self.workers = 1
        self._connect()

    def _connect(self) -> None:
        ray = self._ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": False}
            if self._address and (why := _unreachable(self._address)) is not None:
                raise TfcompressError(f"no Ray cluster answers at {self._address} ({why})",
                                      "give --address as HOST:PORT of the head node (`ray start --head` prints "
                                      "it; `ray status` there), or drop --address for a local Ray")
            try:
                if self._address:
                    with _ray_keeps_loopback() if _loopback_only(self._address) else contextlib.nullcontext():
                        ray.init(address=self._address, **kwargs)
                else:
                    with _ray_keeps_loopback():
                        ray.init(address="local", num_cpus=self._num_cpus, _node_ip_address="127.0.0.1", **kwargs)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                where = f"the Ray cluster at {self._address}" if self._address else "a local Ray"
                raise TfcompressError(f"could not start or connect to {where}: {exc}",
                                      "check --address (HOST:PORT of the head node, `ray status` there), or "
                                      "drop --address for a local Ray") from exc
            self._started = True
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))

    def run(self, fn: Callable[[Any, Any], Any], items: Sequence[Any], assets: Any, on_done: OnDone) -> list[Any]:
        if not items:
            return []
        from ray.exceptions import RayError, RayTaskError

        ray = self._ray
        if not ray.is_initialized():  # closed, or shut down by someone else: connect again
            self._assets = None
            self._connect()
        if self._assets is None or not _same(self._assets[0], assets):
            self._assets = (assets, ray.put(assets))  # once: every task gets the same object
        refs = {self._remote.remote(fn, item, self._assets[1]): i for i, item in enumerate(items)}
        out: list[Any] = [None] * len(items)
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    i = refs[ref]
                    try:
                        out[i] = ray.get(ref)
                    except RayTaskError as exc:
                        cause = getattr(exc, "cause", None)
                        if isinstance(cause, Exception):  # the trial's own exception, as inline / local raise it
                            raise _note(cause, self.name, i, len(items), items[i]) from exc
                        _note(exc, self.name, i, len(items), items[i])
                        raise
                    except RayError as exc:  # not the trial's error: its worker or node died, its object was lost, ...
                        raise TfcompressError(
                            f"Ray could not finish task {i + 1} of {len(items)} ({_what(items[i])}): "
                            f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}",
                            "a worker killed for memory is the usual cause: fewer trials at once (--workers / "
                            "fewer CPUs per node), smaller --trial-samples / batch size; `ray status` and the "
                            "Ray logs on the node tell more") from exc
                    on_done(i, out[i])
        except BaseException:
            for ref in pending:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - already finished or gone: nothing to cancel
                    pass
            raise
        return out

    def close(self) -> None:
        """Drop the assets' object; shut down the Ray this executor started (a cluster: disconnect only)."""
        self._assets = None
        if self._started:
            self._started = False
            if self._ray.is_initialized():
                self._ray.shutdown()


def make_executor(name: str, *, workers: int | None = None, address: str | None = None) -> Executor:
    """An executor by name (`EXECUTORS`)."""
    if name == "inline":
        if address:
            raise TfcompressError("--address is for --executor ray", "drop --address, or add --executor ray")
        return InlineExecutor()
    if name == "local":
        if address:
            raise TfcompressError("--address is for --executor ray", "drop --address, or add --executor ray")
        return LocalExecutor(workers)
    if name == "ray":
        return RayExecutor(address, workers)
    raise TfcompressError(f"unknown executor '{name}'", f"use one of: {', '.join(EXECUTORS)}")
