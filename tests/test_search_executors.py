"""Search executors: inline / local worker processes / Ray run trials in item order, call on_done in this
process as each finishes, raise a trial's exception here, and give a seeded trial (and a whole seeded
search) the same result on every engine.

Fast (~12 s: two spawned workers import TensorFlow): inline and local executors with `work` (below),
`make_executor`'s errors. Slow (`-m slow`, ~110 s on one core): a local worker that dies; on a local Ray
(Ray's own order / on_done / errors / assets-once checks), a seeded `run_trial` on local processes and
on Ray, a whole seeded search on both; a 2-node Ray cluster. The Ray tests (`-k ray`) skip when Ray is not
installed and bind it to 127.0.0.1; each starts and stops only the Ray it needs (never `ray stop`).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tfcompress.errors import TfcompressError
from tfcompress.search.executors import (
    MAX_WORKERS,
    InlineExecutor,
    LocalExecutor,
    make_executor,
    usable_cpus,
)

# -- what workers run ----------------------------------------------------------------------------------
# Module-level, so picklable: spawned local workers import this module by name (they get the parent's
# sys.path, which has tests/); Ray workers do not have tests/ on their path, so the Ray tests pickle this
# module's functions by value (`_by_value`).

WAIT_S = 120.0


def work(item, assets):
    """`item` = (op, arg); `assets` is a folder (str) the ops that touch / wait use."""
    op, arg = item
    if op == "square":
        return arg * arg
    if op == "assets":
        return assets
    if op == "pid":
        return os.getpid()
    if op == "touch":  # make the file `arg` that a "wait" waits for
        Path(assets, arg).touch()
        return op
    if op == "wait":  # finish well after the "touch" of `arg` did: a finishing order that does not race
        t0 = time.monotonic()
        while not Path(assets, arg).exists():
            if time.monotonic() - t0 > WAIT_S:
                raise TimeoutError(f"{arg} was never touched")
            time.sleep(0.01)
        time.sleep(0.5)  # Ray's wait reports refs that are ready together in list order: keep them apart
        return op
    if op == "fail":
        raise ValueError(f"trial failed on purpose: {arg}")
    if op == "refuse":
        raise TfcompressError(f"refused on purpose: {arg}", "a hint")
    if op == "die":
        os._exit(3)
    if op == "pid_then_wait":  # say who runs this trial, then stay busy (until killed, or WAIT_S)
        Path(assets, arg).write_text(str(os.getpid()))
        time.sleep(WAIT_S)
        return op
    if op == "node":  # Ray only: where this task ran and what it holds, `arg` seconds long
        import ray

        t0 = time.time()
        time.sleep(arg)
        ctx = ray.get_runtime_context()
        return ctx.get_node_id(), dict(ctx.get_assigned_resources()), os.getpid(), t0, time.time()
    raise AssertionError(f"unknown op {op!r}")


class Recorder:
    """An on_done that records (index, result, thread) in call order."""

    def __init__(self):
        self.calls = []

    def __call__(self, i, result):
        self.calls.append((i, result, threading.get_ident(), os.getpid()))

    @property
    def order(self):
        return [c[0] for c in self.calls]

    def all_here(self):
        return all(c[2] == threading.get_ident() and c[3] == os.getpid() for c in self.calls)


def check_order_and_on_done(ex, folder):
    """The shared contract: results in item order, on_done in this thread as each finishes (index 1 first)."""
    rec = Recorder()
    items = [("wait", "go"), ("touch", "go"), ("square", 7)]
    assert ex.run(work, items, folder, rec) == ["wait", "touch", 49]
    assert sorted(rec.order) == [0, 1, 2]
    assert rec.order.index(1) < rec.order.index(0)  # item 0 could only finish after item 1 did
    assert {i: r for i, r, _, _ in rec.calls} == {0: "wait", 1: "touch", 2: 49}
    assert rec.all_here()


# -- inline --------------------------------------------------------------------------------------------


def test_inline_runs_in_order_and_calls_on_done(tmp_path):
    rec = Recorder()
    items = [("square", n) for n in range(5)] + [("assets", None)]
    assert InlineExecutor().run(work, items, str(tmp_path), rec) == [0, 1, 4, 9, 16, str(tmp_path)]
    assert rec.order == list(range(6)) and rec.all_here()
    assert InlineExecutor().run(work, [], str(tmp_path), rec) == []


def test_inline_raises_the_trials_exception(tmp_path):
    rec = Recorder()
    with pytest.raises(ValueError, match="on purpose: two") as info:
        InlineExecutor().run(work, [("square", 1), ("fail", "two"), ("square", 3)], str(tmp_path), rec)
    assert rec.order == [0]  # stops at the failing trial
    if sys.version_info >= (3, 11):
        assert "in task 2 of 3 on the inline executor" in "\n".join(info.value.__notes__)
    with pytest.raises(TfcompressError, match="refused on purpose: x") as info:
        InlineExecutor().run(work, [("refuse", "x")], str(tmp_path), rec)
    assert info.value.hint == "a hint"


# -- local ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return str(tmp_path_factory.mktemp("local-assets"))


@pytest.fixture(scope="module")
def local(folder):
    """One 2-worker LocalExecutor for the fast local tests (spawned workers import TensorFlow once)."""
    ex = LocalExecutor(2)
    yield ex
    ex.close()


def test_local_runs_in_order_and_calls_on_done_here(local, folder):
    check_order_and_on_done(local, folder)
    rec = Recorder()
    assert local.run(work, [("square", n) for n in range(10)], folder, rec) == [n * n for n in range(10)]
    assert sorted(rec.order) == list(range(10)) and rec.all_here()
    assert local.run(work, [], folder, rec) == []


def test_local_keeps_its_workers_while_the_assets_stay(local, folder):
    local.run(work, [("square", 2)], folder, Recorder())
    pool = local._pool
    pids = set(local.run(work, [("pid", None)] * 6, folder, Recorder()))
    assert local._pool is pool and os.getpid() not in pids and 1 <= len(pids) <= 2
    assert set(local.run(work, [("pid", None)] * 6, folder, Recorder())) <= set(pool._processes)
    assert local.run(work, [("assets", None)], folder, Recorder()) == [folder]  # given once, by the initializer


def test_local_raises_the_trials_exception_with_its_traceback(local, folder):
    pool = local._pool
    rec = Recorder()
    with pytest.raises(ValueError, match="on purpose: boom") as info:
        local.run(work, [("square", 1), ("fail", "boom"), ("square", 3)], folder, rec)
    assert "raise ValueError" in str(info.value.__cause__)  # the worker's traceback (concurrent.futures)
    if sys.version_info >= (3, 11):
        assert "in task 2 of 3 on the local executor" in "\n".join(info.value.__notes__)
    assert 1 not in rec.order
    with pytest.raises(TfcompressError, match="refused on purpose: no") as info:  # message and hint come back
        local.run(work, [("refuse", "no")], folder, Recorder())
    assert type(info.value) is TfcompressError and info.value.hint == "a hint"
    assert local.run(work, [("square", 4)], folder, Recorder()) == [16]  # still usable, same workers
    assert local._pool is pool


@pytest.mark.slow
def test_local_worker_death_other_assets_and_close(folder, tmp_path):
    """A worker that dies is a TfcompressError and its pool is dropped; other assets start new workers."""
    ex = LocalExecutor(1)
    try:
        with pytest.raises(TfcompressError, match="worker process died"):
            ex.run(work, [("die", None)], folder, Recorder())
        assert ex._pool is None
        assert ex.run(work, [("square", 6)], folder, Recorder()) == [36]
        pool = ex._pool
        assert ex.run(work, [("assets", None)], str(tmp_path), Recorder()) == [str(tmp_path)]
        assert ex._pool is not pool
    finally:
        ex.close()
    assert ex._pool is None


def _alive(pid):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie nobody reaped has ended too


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_local_workers_end_with_a_parent_killed_mid_trial(tmp_path):
    """A search killed by a signal runs no cleanup: its workers must not train on for minutes (seen before)."""
    import signal
    import subprocess

    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from test_search_executors import work\n"
        "from tfcompress.search.executors import LocalExecutor\n"
        "LocalExecutor(1).run(work, [('pid_then_wait', 'worker.pid')], sys.argv[2], lambda i, r: None)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script, str(Path(__file__).parent), str(tmp_path)])
    pid_file = tmp_path / "worker.pid"
    try:
        t0 = time.monotonic()
        while not pid_file.exists() or not pid_file.read_text():
            assert parent.poll() is None, "the parent ended before its worker started"
            assert time.monotonic() - t0 < 90, "the worker never started its trial"
            time.sleep(0.1)
        worker = int(pid_file.read_text())
        assert _alive(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        t0 = time.monotonic()
        while _alive(worker) and time.monotonic() - t0 < 15:
            time.sleep(0.1)
        assert not _alive(worker), "the worker outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        if pid_file.exists() and pid_file.read_text() and _alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_local_worker_count():
    assert LocalExecutor().workers == usable_cpus()
    assert LocalExecutor(3).workers == 3
    assert LocalExecutor(10_000).workers == MAX_WORKERS
    assert LocalExecutor(3)._pool is None  # no process until the first run


# -- make_executor -------------------------------------------------------------------------------------


def test_make_executor_by_name_and_its_errors(monkeypatch):
    assert isinstance(make_executor("inline"), InlineExecutor)
    ex = make_executor("local", workers=3)
    assert isinstance(ex, LocalExecutor) and ex.workers == 3
    with pytest.raises(TfcompressError, match="unknown executor 'dask'") as info:
        make_executor("dask")
    assert "local, inline, ray" in info.value.hint
    for name in ("local", "inline"):
        with pytest.raises(TfcompressError, match="--address is for --executor ray"):
            make_executor(name, address="127.0.0.1:6379")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(TfcompressError, match="needs Ray, which is not installed") as info:
        make_executor("ray")
    assert "tfcompress[distributed]" in info.value.hint


def test_ray_address_where_nothing_answers_is_a_quick_tfcompress_error():
    pytest.importorskip("ray")
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(TfcompressError, match=f"no Ray cluster answers at 127.0.0.1:{port}"):
        make_executor("ray", address=f"127.0.0.1:{port}")
    assert time.monotonic() - t0 < 30  # not Ray's minutes of retries


# -- a tiny model, its data, its search space ----------------------------------------------------------


def quadrant_data(n=512, seed=0):
    """8x8 noise with one bright quadrant; the label is the quadrant (a task a small CNN learns quickly)."""
    rng = np.random.default_rng(seed)
    x = 0.5 * rng.random((n, 8, 8, 1), dtype=np.float32)
    y = rng.integers(0, 4, n)
    for i, c in enumerate(y):
        x[i, (c // 2) * 4:(c // 2) * 4 + 4, (c % 2) * 4:(c % 2) * 4 + 4] += 0.5
    return x, y.astype(np.int64)


@pytest.fixture(scope="module")
def tiny_cnn():
    """Conv 32 -> Conv 32 -> GAP -> Dense 4 (tf_keras), trained 3 epochs: knobs keep c1, keep c2, swap c2."""
    from tfcompress.keras_compat import tf_keras

    L = tf_keras.layers
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([L.Input((8, 8, 1)), L.Conv2D(32, 3, padding="same", activation="relu", name="c1"),
                                 L.Conv2D(32, 3, padding="same", activation="relu", name="c2"),
                                 L.GlobalAveragePooling2D(), L.Dense(4, name="out")])
    model.compile(tf_keras.optimizers.Adam(1e-2), tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = quadrant_data()
    model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    return model


def trial_specs_and_assets(model):
    from tfcompress.search.space import Genome, read_space
    from tfcompress.search.trial import TrialSpec, make_assets

    x, y = quadrant_data()
    space = read_space(model, keep_levels=(1.0, 0.5), rank_levels=(1.0,))
    assert {("keep", "c1"), ("keep", "c2"), ("swap", "c2")} <= {(k.kind, k.layer) for k in space.knobs}
    assets = make_assets(model, x[:256], y[:256], x[448:], y[448:], space)
    genomes = [Genome(), Genome(keep={"c1": 0.5}), Genome(swap=("c2",)), Genome(keep={"c1": 0.5, "c2": 0.5})]
    specs = [TrialSpec(genome=g, steps=6, batch_size=32, seed=3) for g in genomes]
    return specs, assets


def timed(label, fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    print(f"{label}: {time.perf_counter() - t0:.1f} s")
    return out


# -- Ray -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray():
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("Ray is already initialised in this process")
    return ray


@pytest.fixture(scope="module")
def _by_value(ray):
    """Ray workers cannot import this test module (tests/ is not on their path): pickle `work` by value."""
    import ray.cloudpickle as cloudpickle

    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    yield
    cloudpickle.unregister_pickle_by_value(module)


@pytest.mark.slow
class TestRayLocal:
    """A local Ray the executor starts (2 CPUs, 127.0.0.1); `close` shuts it down at the end of the class."""

    @pytest.fixture(scope="class")
    def ray_local(self, ray, _by_value):
        from tfcompress.search.executors import RayExecutor

        ex = timed("start a local Ray", RayExecutor, workers=2)
        assert ray.is_initialized() and ex._started and ex.workers == 2
        assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")  # loopback only, not the routable IP
        assert [n["NodeManagerAddress"] for n in ray.nodes()] == ["127.0.0.1"]
        yield ex
        timed("close", ex.close)
        assert not ray.is_initialized()  # it started this Ray, so it shut it down

    def test_order_on_done_errors_and_assets_once(self, ray, ray_local, tmp_path, monkeypatch):
        put = []
        real_put = ray.put
        monkeypatch.setattr(ray, "put", lambda value, **kw: put.append(value) or real_put(value, **kw))
        folder = str(tmp_path)
        check_order_and_on_done(ray_local, folder)
        got = ray_local.run(work, [("node", 0.0)] * 4 + [("assets", None)], folder, Recorder())
        assert got[-1] == folder
        assert all(resources == {"CPU": 1.0} for _, resources, *_ in got[:-1])  # one CPU per task
        assert put == [folder]  # the assets went to the object store once for all these runs
        with pytest.raises(ValueError, match="on purpose: boom") as info:
            ray_local.run(work, [("square", 1), ("fail", "boom")], folder, Recorder())
        assert "raise ValueError" in str(info.value.__cause__)  # the RayTaskError, with the worker's traceback
        if sys.version_info >= (3, 11):
            assert "in task 2 of 2 on the ray executor" in "\n".join(info.value.__notes__)
        with pytest.raises(TfcompressError, match="refused on purpose: no") as info:  # as the CLI prints it
            ray_local.run(work, [("refuse", "no")], folder, Recorder())
        assert type(info.value) is TfcompressError and info.value.hint == "a hint"
        assert ray_local.run(work, [("square", 3)], folder, Recorder()) == [9]  # still usable
        other = str(tmp_path / "other")
        assert ray_local.run(work, [("assets", None)], other, Recorder()) == [other]
        assert put == [folder, other]
        with pytest.raises(TfcompressError, match=r"Ray could not finish task 1 of 1 .*WorkerCrashedError"):
            ray_local.run(work, [("die", None)], other, Recorder())  # a worker that dies: no retry, an error
        assert ray_local.run(work, [("square", 5)], other, Recorder()) == [25]

    def test_a_seeded_trial_gives_the_same_accuracy_on_local_and_ray(self, ray_local, tiny_cnn):
        from tfcompress.search.trial import run_trial

        specs, assets = trial_specs_and_assets(tiny_cnn)
        local = LocalExecutor(2)
        try:
            on_local = timed("4 trials on local(2)", local.run, run_trial, specs, assets, Recorder())
        finally:
            local.close()
        rec = Recorder()
        on_ray = timed("4 trials on ray(2)", ray_local.run, run_trial, specs, assets, rec)
        assert sorted(rec.order) == [0, 1, 2, 3] and rec.all_here()
        assert [r.genome for r in on_ray] == [s.genome for s in specs]
        assert [r.accuracy for r in on_ray] == [r.accuracy for r in on_local]
        assert [r.params for r in on_ray] == [r.params for r in on_local]
        assert len({r.accuracy for r in on_ray}) > 1  # the genomes differ, so should their accuracies
        print("accuracies", [r.accuracy for r in on_ray])

    def test_a_whole_seeded_search_ends_the_same_on_local_and_ray(self, ray, ray_local, tiny_cnn):
        """search(executor="ray") finds this process's Ray already up (ray_local's) and uses it, leaving it up."""
        from tfcompress.hardware.profile import resolve_profile
        from tfcompress.search import SearchSettings, search
        from tfcompress.search.cost import Predictor
        from tfcompress.search.space import Genome, read_space

        small = {"keep_levels": (1.0, 0.5), "rank_levels": (1.0,)}  # a small space: 2 to 3 rounds of 1 to 2 trials
        if "resolution_levels" in SearchSettings.model_fields:
            small["resolution_levels"] = (1.0,)
        settings = SearchSettings(latency_ms=1.0, trial_steps=6, batch_size=32, trial_samples=256, val_samples=64,
                                  final_epochs=0, seed=0, **small)
        space = read_space(tiny_cnn, **small)
        original_ms = Predictor(tiny_cnn, space, resolve_profile("host")).cost(Genome()).predicted_ms
        budget = 0.8 * original_ms

        def run(executor):
            return timed(f"search on {executor}", search, tiny_cnn, quadrant_data(), device="host", output=None,
                         settings=settings, latency_ms=budget, executor=executor, workers=2, measure="none")

        on_local, on_ray = run("local"), run("ray")
        assert ray.is_initialized()  # not this search's Ray to stop
        assert on_ray.genome == on_local.genome != Genome()
        assert on_ray.chosen.predicted_ms <= budget
        assert on_ray.trials_run == on_local.trials_run >= 2
        assert [(p.genome, p.accuracy) for p in on_ray.points] == [(p.genome, p.accuracy) for p in on_local.points]
        print("chosen", on_ray.genome.describe(), [(p.genome, p.accuracy) for p in on_ray.points])


@pytest.mark.slow
def test_ray_cluster_of_two_nodes_runs_trials_on_both_and_stays_up(ray, _by_value, tmp_path):
    from ray.cluster_utils import Cluster

    from tfcompress.search.executors import RayExecutor

    t0 = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1"})
    try:
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes()
        print(f"start a 2-node cluster: {time.perf_counter() - t0:.1f} s")
        ex = make_executor("ray", address=cluster.address)
        assert isinstance(ex, RayExecutor) and ex._started and ex.workers == 2
        rec = Recorder()
        got = timed("4 tasks on the cluster", ex.run, work, [("node", 1.0)] * 4, str(tmp_path), rec)
        assert sorted(rec.order) == [0, 1, 2, 3] and rec.all_here()
        alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        nodes = [node for node, *_ in got]
        assert set(nodes) == alive and len(alive) == 2  # the trials ran on both nodes
        assert all(resources == {"CPU": 1.0} for _, resources, *_ in got)
        for node in alive:  # one CPU per node and one per task: never two at once on a node
            spans = sorted((t0, t1) for n, _, _, t0, t1 in got if n == node)
            assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans
        ex.close()
        assert not ray.is_initialized()  # disconnected ...
        assert cluster.remaining_processes_alive()  # ... and the cluster is still up
        again = RayExecutor(address=cluster.address)  # and takes a new driver, with both nodes
        try:
            assert again.workers == 2 and sorted(n["Alive"] for n in ray.nodes()) == [True, True]
        finally:
            again.close()
    finally:
        cluster.shutdown()
    print(f"cluster test: {time.perf_counter() - t0:.1f} s")
