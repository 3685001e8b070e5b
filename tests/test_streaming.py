"""predict_iter and predict_to: every kind of source, order and completeness, the background thread,
early exit, producer errors, out-of-memory splitting, automatic batch size and resumable files.

Reference: ``Predictor.predict`` on the same data in one array (itself tested against
tf_keras eager in test_keras_h5_outputs.py); rows must match exactly (atol 0), since
the same kernels run on the same rows, at every batch split.
"""

from __future__ import annotations

import mmap
import threading
import time

import h5py
import numpy as np
import pytest
import tensorflow as tf
from conftest import assert_same_rows, random_inputs, zoo_path

import tf1infer
from tf1infer.errors import InputError, InvalidOptionError, OutputFileError, PredictionError

ROWS = 203  # Not a multiple of any batch size used: the last batch is short.


@pytest.fixture(scope="module")
def x(mlp):
    return random_inputs(mlp.inputs, ROWS, seed=11)[0]


def _concat(batches) -> np.ndarray:
    return np.concatenate(list(batches))


def _samples(x):
    yield from x


class RowSequence:
    """A keras.utils.Sequence look-alike: batches by index."""

    def __init__(self, x, batch_size):
        self.x, self.batch_size = x, batch_size

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, index):
        return self.x[index * self.batch_size : (index + 1) * self.batch_size], None  # (x, y) as Keras


@pytest.mark.parametrize(
    "make_source",
    [
        pytest.param(lambda x: x, id="array"),
        pytest.param(lambda x: _samples(x), id="generator-of-samples"),
        pytest.param(lambda x: [row.tolist() for row in x], id="list-of-sample-lists"),
        pytest.param(lambda x: (x[i : i + 17] for i in range(0, len(x), 17)), id="generator-of-batches"),
        pytest.param(lambda x: ((x[i : i + 9], None) for i in range(0, len(x), 9)), id="generator-of-xy-tuples"),
        pytest.param(lambda x: RowSequence(x, 25), id="sequence"),
        pytest.param(lambda x: tf.data.Dataset.from_tensor_slices(x), id="dataset-of-samples"),
        pytest.param(lambda x: tf.data.Dataset.from_tensor_slices(x).batch(40), id="dataset-of-batches"),
    ],
)
@pytest.mark.parametrize("batch_size", [1, 32, 500])
def test_every_source_gives_every_row_in_order(mlp, x, make_source, batch_size):
    want = mlp.predict(x)
    have = _concat(mlp.predict_iter(make_source(x), batch_size=batch_size))
    assert_same_rows(have, want)


@pytest.mark.parametrize("make_source", [lambda x: x, _samples], ids=["array", "generator-of-samples"])
def test_the_same_batches_give_identical_rows(mlp, x, make_source):
    np.testing.assert_array_equal(
        _concat(mlp.predict_iter(make_source(x), batch_size=16)), mlp.predict(x, batch_size=16)
    )


def test_single_samples_are_gathered_into_batches(mlp, x):
    sizes = [len(batch) for batch in mlp.predict_iter(_samples(x), batch_size=64)]
    assert sizes == [64, 64, 64, 11]


def test_batches_run_as_they_come(mlp, x):
    sizes = [len(batch) for batch in mlp.predict_iter((x[i : i + 50] for i in range(0, ROWS, 50)), batch_size=8)]
    assert sizes == [50, 50, 50, 50, 3]


def test_batched_forces_reading(mlp, x):
    # Rows of 10 features read as batches of 10 one-feature samples would not fit (None, 10).
    with pytest.raises(InputError, match="expects size 10 on axis 1"):
        list(mlp.predict_iter(_samples(x), batched=True))
    sizes = [len(batch) for batch in mlp.predict_iter((x[i : i + 4] for i in range(0, 12, 4)), batched=True)]
    assert sizes == [4, 4, 4]


def test_hdf5_dataset_is_read_in_slices(mlp, x, tmp_path):
    path = tmp_path / "inputs.h5"
    with h5py.File(path, "w") as file:
        file["features"] = x
    reads = []

    class CountingDataset:
        """Records the slices read from an h5py dataset."""

        def __init__(self, dataset):
            self.dataset, self.shape, self.dtype = dataset, dataset.shape, dataset.dtype

        def __getitem__(self, index):
            reads.append(index)
            return self.dataset[index]

    with h5py.File(path, "r") as file:
        have = _concat(mlp.predict_iter(CountingDataset(file["features"]), batch_size=64))
        np.testing.assert_array_equal(have, mlp.predict(x, batch_size=64))
        np.testing.assert_array_equal(
            _concat(mlp.predict_iter(file["features"], batch_size=64)), mlp.predict(x, batch_size=64)
        )
    assert [(s.start, s.stop) for s in reads] == [(0, 64), (64, 128), (128, 192), (192, 203)]


def test_several_inputs_and_outputs(two_inputs):
    arrays = random_inputs(two_inputs.inputs, 77, seed=4)
    want = two_inputs.predict(arrays, batch_size=16)
    names = two_inputs.input_names
    sources = [
        arrays,
        dict(zip(names, arrays)),
        ({names[0]: a, names[1]: b} for a, b in zip(*arrays)),  # samples as dicts
        ([a, b] for a, b in zip(*arrays)),  # samples as lists
    ]
    for source in sources:
        batches = list(two_inputs.predict_iter(source, batch_size=16))
        for index in range(len(want)):
            np.testing.assert_array_equal(np.concatenate([batch[index] for batch in batches]), want[index])


def test_producer_runs_ahead_on_a_background_thread_with_a_bounded_queue(mlp, x):
    produced, threads = [], {}

    def source():
        for index, row in enumerate(x):
            produced.append(index)
            threads[index] = threading.current_thread().name
            yield row

    iterator = mlp.predict_iter(source(), batch_size=10, prefetch=2)
    next(iterator)
    # One batch consumed, at most `prefetch` waiting, one being gathered: far from all 203 rows read.
    assert len(produced) <= 10 * (1 + 2 + 1) + 1
    # The first item is read by predict_iter itself, to tell samples from batches; the rest ahead of time.
    assert threads[0] == "MainThread"
    assert {threads[index] for index in produced[1:]} == {"tf1infer-prefetch"}
    iterator.close()


def test_break_stops_the_thread_and_closes_the_source(mlp, x):
    closed = threading.Event()
    before = {thread.ident for thread in threading.enumerate()}

    def source():
        try:
            yield from x
        finally:
            closed.set()

    for _ in mlp.predict_iter(source(), batch_size=8):
        break
    assert closed.is_set()
    assert not [t for t in threading.enumerate() if t.name == "tf1infer-prefetch" and t.ident not in before]


def test_producer_exception_reaches_the_caller_with_its_traceback(mlp, x):
    def failing_source():
        yield from x[:50]
        raise ConnectionError("camera unplugged")

    seen = []
    with pytest.raises(ConnectionError, match="camera unplugged") as info:
        for batch in mlp.predict_iter(failing_source(), batch_size=16):
            seen.append(batch)
    assert sum(len(batch) for batch in seen) == 48  # Every complete batch before the failure.
    assert "failing_source" in [entry.name for entry in info.traceback]


def test_bad_sample_names_its_position(mlp, x):
    rows = list(x[:20]) + [np.ones(9, np.float32)]
    with pytest.raises(InputError, match="sample 20 gives input 'input_1' shape \\(9,\\), unlike sample 16"):
        list(mlp.predict_iter(iter(rows), batch_size=8))


def test_invalid_arguments(mlp, x):
    with pytest.raises(InputError, match="batched must be True, False or None"):
        mlp.predict_iter(x, batched="yes")
    with pytest.raises(InputError, match="prefetch must be a positive integer"):
        list(mlp.predict_iter(x, prefetch=0))
    with pytest.raises(InputError, match="memory_limit applies to batch_size='auto'"):
        mlp.predict_iter(x, batch_size=8, memory_limit=2**20)
    with pytest.raises(InputError, match="cannot stream from a int"):
        mlp.predict_iter(5)


def test_out_of_memory_batch_is_split_without_losing_or_repeating_rows(x):
    """TensorFlow's ResourceExhaustedError on large batches: each is split until it fits."""
    with tf1infer.load(zoo_path("mlp")) as predictor:
        want = predictor.predict(x)
        run = predictor._callable
        sizes = []

        def limited(*feeds):
            sizes.append(len(feeds[0]))
            if len(feeds[0]) > 20:
                raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
            return run(*feeds)

        predictor._callable = limited
        have = _concat(predictor.predict_iter(x, batch_size=64))
        assert_same_rows(have, want)  # Split batches: other sizes.
        assert sizes[:4] == [64, 32, 16, 16]  # Split in halves until a piece fits...
        assert max(sizes[4:]) <= 16  # ...and later batches start at the size that worked.

        def always(*feeds):
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")

        predictor._callable = always
        with pytest.raises(PredictionError, match="ResourceExhaustedError"):
            list(predictor.predict_iter(x, batch_size=4))
        predictor._callable = run


def test_auto_batch_size_stays_under_a_small_limit(tmp_path):
    from tf1infer.runtime.memory import measure_peak

    with tf1infer.load(zoo_path("cnn")) as predictor:
        x = random_inputs(predictor.inputs, 20000, seed=2)[0]
        limit = 32 * 2**20
        choice = predictor.auto_batch_size(x, memory_limit=limit)
        # Measured per-row memory varies with what the process ran before (allocator and oneDNN
        # caches); whatever it is here, 32 MiB holds more than one row and fewer than 4096.
        assert 1 < choice.batch_size < 4096
        assert all(used <= limit for size, used in choice.probes if size <= choice.batch_size)
        # Measured again on its own: the chosen batch really runs under the limit.
        sample = x[: choice.batch_size]
        peak, exact = measure_peak(lambda: predictor.predict_on_batch(sample))
        assert exact and 0 < peak <= limit
        summary = predictor.predict_to(tmp_path / "out.npy", x, batch_size="auto", memory_limit=limit)
        assert summary.batch_size_choice is not None and summary.batch_size == summary.batch_size_choice.batch_size
        assert "chosen for a memory limit of 32 MiB" in str(summary)
        np.testing.assert_array_equal(
            np.load(tmp_path / "out.npy"), predictor.predict(x, batch_size=summary.batch_size)
        )
        bigger = predictor.auto_batch_size(x, memory_limit=8 * limit)
        assert bigger.batch_size > choice.batch_size


@pytest.mark.parametrize("suffix", [".npy", ".h5"])
@pytest.mark.parametrize("kind", ["array", "generator"])
def test_predict_to_writes_one_row_per_input_in_order(mlp, x, tmp_path, suffix, kind):
    path = tmp_path / f"out{suffix}"
    source = x if kind == "array" else _samples(x)
    summary = mlp.predict_to(path, source, batch_size=16)
    assert summary.rows == ROWS and summary.batch_size == 16
    assert not (tmp_path / f"out{suffix}.partial").exists()
    if suffix == ".npy":
        written = np.load(path)
    else:
        with h5py.File(path, "r") as file:
            written = file["dense_2"][:]
            assert file.attrs["complete"] and file.attrs["rows"] == ROWS
    np.testing.assert_array_equal(written, mlp.predict(x, batch_size=16))


def test_h5_output_per_output_name(two_inputs, tmp_path):
    arrays = random_inputs(two_inputs.inputs, 50, seed=8)
    two_inputs.predict_to(tmp_path / "two.h5", arrays, batch_size=7)
    with h5py.File(tmp_path / "two.h5", "r") as file:
        for name, want in zip(two_inputs.output_names, two_inputs.predict(arrays, batch_size=7)):
            np.testing.assert_array_equal(file[name][:], want)


def test_output_file_errors(mlp, two_inputs, x, tmp_path):
    with pytest.raises(InvalidOptionError, match="a .npy file holds one array and the model has 2 outputs"):
        two_inputs.predict_to(tmp_path / "two.npy", random_inputs(two_inputs.inputs, 4))
    with pytest.raises(InvalidOptionError, match="resume=True needs an .h5 output"):
        mlp.predict_to(tmp_path / "out.npy", x, resume=True)
    with pytest.raises(InvalidOptionError, match="use a .npy or .h5 file name"):
        mlp.predict_to(tmp_path / "out.csv", x)
    with pytest.raises(OutputFileError, match="does not exist"):
        mlp.predict_to(tmp_path / "missing" / "out.h5", x)


def test_failed_npy_run_leaves_no_file(mlp, x, tmp_path):
    def failing():
        yield from x[:40]
        raise RuntimeError("disk full upstream")

    with pytest.raises(RuntimeError, match="disk full upstream"):
        mlp.predict_to(tmp_path / "out.npy", failing(), batch_size=8)
    assert list(tmp_path.iterdir()) == []


def _h5_contents(path):
    with h5py.File(path, "r") as file:
        data = {name: file[name][:] for name in file}
        attrs = {key: file.attrs[key] for key in file.attrs}
    return data, attrs


def test_interrupted_run_resumes_into_an_identical_file(mlp, x, tmp_path):
    complete = tmp_path / "complete.h5"
    mlp.predict_to(complete, _samples(x), batch_size=16)

    resumed = tmp_path / "resumed.h5"
    consumed = []

    def interrupted():
        for index, row in enumerate(x):
            if index == 100:
                raise KeyboardInterrupt
            consumed.append(index)
            yield row

    with pytest.raises(KeyboardInterrupt):
        mlp.predict_to(resumed, interrupted(), batch_size=16)
    assert not resumed.exists()
    partial = tmp_path / "resumed.h5.partial"
    with h5py.File(partial, "r") as file:
        assert file.attrs["rows"] == 96 and not file.attrs["complete"]  # Six whole batches of 16.

    read_again = []

    def again():
        for index, row in enumerate(x):
            read_again.append(index)
            yield row

    summary = mlp.predict_to(resumed, again(), batch_size=16, resume=True)
    assert summary.resumed_at == 96 and summary.rows == ROWS
    assert not partial.exists()
    have, have_attrs = _h5_contents(resumed)
    want, want_attrs = _h5_contents(complete)
    assert have.keys() == want.keys()
    for name in want:
        np.testing.assert_array_equal(have[name], want[name])
    assert have_attrs == want_attrs


def test_resume_refuses_another_source_or_a_complete_file(mlp, x, tmp_path):
    path = tmp_path / "out.h5"

    def stop_early():
        yield from x[:40]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        mlp.predict_to(path, stop_early(), batch_size=16)
    with pytest.raises(OutputFileError, match="cannot resume: it was written with source"):
        mlp.predict_to(path, x, batch_size=16, resume=True)
    mlp.predict_to(path, x, batch_size=16)
    with pytest.raises(OutputFileError, match="nothing to resume, the file is complete"):
        mlp.predict_to(path, x, resume=True)


def test_resume_of_an_array_source_reads_only_the_rest(mlp, x, tmp_path):
    path = tmp_path / "out.h5"
    with tf1infer.load(zoo_path("mlp")) as predictor:
        run = predictor._callable
        calls = []

        def crash_on_fourth(*feeds):
            calls.append(len(feeds[0]))
            if len(calls) == 4:
                raise KeyboardInterrupt
            return run(*feeds)

        predictor._callable = crash_on_fourth
        with pytest.raises(KeyboardInterrupt):
            predictor.predict_to(path, x, batch_size=50)
        predictor._callable = run
        calls.clear()
        predictor._callable = lambda *feeds: calls.append(len(feeds[0])) or run(*feeds)
        predictor.predict_to(path, x, batch_size=50, resume=True)
        assert calls == [50, 3]  # Rows 150-202 only.
    with h5py.File(path, "r") as file:
        np.testing.assert_array_equal(file["dense_2"][:], mlp.predict(x, batch_size=50))


@pytest.mark.parametrize("unavailable", ["no-proc-no-glibc", "read-only-clear-refs"])
def test_auto_batch_size_without_linux_memory_files(tmp_path, monkeypatch, unavailable):
    """macOS and Windows (no /proc, no glibc) and locked-down containers (clear_refs not writable) still choose."""
    from tf1infer.runtime import memory

    if unavailable == "no-proc-no-glibc":
        for name in ("_PROC_MEMINFO", "_PROC_STATUS", "_PROC_CLEAR_REFS", "_GLIBC"):
            monkeypatch.setattr(memory, name, str(tmp_path / "absent" / name))
        monkeypatch.setattr(memory, "_malloc_trim", None)
    else:
        monkeypatch.setattr(memory, "_PROC_CLEAR_REFS", str(tmp_path))  # A directory: opening it to write fails.
    assert memory.available_memory() > 0 and memory.current_rss() > 0

    # The sampled peak sees memory that is given back before the action returns. Fresh pages from the system
    # (an anonymous map, every page written), so that no memory the C heap kept from earlier tests is reused.
    def hold_40_mib():
        with mmap.mmap(-1, 40 * 2**20) as block:
            block.write(b"\1" * len(block))
            time.sleep(0.05)

    peak, exact = memory.measure_peak(hold_40_mib)
    assert not exact and peak >= 35 * 2**20

    with tf1infer.load(zoo_path("cnn")) as predictor:
        x = random_inputs(predictor.inputs, 5000, seed=2)[0]
        limit = 32 * 2**20
        choice = predictor.auto_batch_size(x, memory_limit=limit)
        assert not choice.exact_peak
        assert 1 < choice.batch_size < 4096
        assert all(used <= limit for size, used in choice.probes if size <= choice.batch_size)
        assert (
            predictor.auto_batch_size(x, memory_limit=0.5).batch_size >= choice.batch_size
        )  # A fraction of MemAvailable.
