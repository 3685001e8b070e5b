"""The benchmark's outputs: the stdout table, Markdown, the PNG chart and BENCHMARKS.md."""

from __future__ import annotations

import datetime
import os
import platform
from collections import defaultdict
from collections.abc import Sequence

METHOD = """\
## Method

`make bench-tf1` (`python -m tf1infer.bench`) runs every way of running a legacy
model below, each in a Python process of its own (eager, graph-mode and
`disable_eager_execution` state cannot leak between them), on the same random
float32 inputs (seeded by model and batch size), at batch sizes 1, 32 and 256.

- **Time**: microseconds per sample. Each call is warmed up (two calls at least,
  and a tenth of the budget), then timed in rounds of back-to-back calls
  (5 rounds of about 0.2 s; `QUICK=1`: 3 rounds of 0.1 s); the median round is
  divided by the batch size. Runners that share a process alternate round by
  round. A full run starts every peer's process twice, in alternating order,
  and keeps each runner's faster pass: on this small shared machine a whole
  process can land in a slow spell (the same TF Lite call took 208 us in one
  process and 351 us in the next, and every runner in the slow process was slow
  alike). Both passes are in the JSON (`pass_us_per_sample`).
- **Same-process checks**: where the margin between tf1infer and a peer is
  smaller than that spread (tf1infer's TF Lite backend against the bare
  interpreter; its session against `tf.function` and against the hand-written
  `sess.run`), the two are also loaded into one process and timed with their
  rounds alternating, once per full run (`--checks`; none with `QUICK=1`).
- **x fastest**: that time over the fastest runner's at the same model and
  batch size.
- **% of limit**: the physical limit over that time. The limit is the model's
  float operations per sample, counted by TensorFlow's profiler on the frozen
  inference graph at batch 1, over the best float32 matrix-multiply rate measured
  on the same machine (2048x2048, TensorFlow and numpy). Recurrent graphs have no
  figure: the profiler does not count inside their loops.
- **load s**: from nothing to ready to predict, in that process (keras:
  `load_model`; converting runners: tf1infer's load, freezing and the
  conversion; the SavedModel: `tf.saved_model.load` of an export made before).
- **RSS/10k calls**: resident memory after the timed calls minus before them,
  per 10,000 calls at batch 1. Slow runners make few calls, so theirs is
  extrapolated from fewer (the JSON has `timed_calls`).
- The converting peers (ONNX Runtime through tf2onnx, the TF Lite interpreter)
  start from tf1infer's frozen inference graph, so they compare runtimes, not
  graph builders. ONNX Runtime uses its default CPU settings; the TF Lite
  interpreter uses every core.

Each record is in `bench-results/latest.json`; `bench-results/latest.md` and
`bench-results/latest.png` hold the table and the chart of the last run.
"""


def machine() -> dict:
    from tf1infer.runtime import kernels

    family = kernels.kernel_family()  # The workers inherit this process's environment, so its kernels.
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "cpu": family["cpu"],
        "kernels": family,
    }
    try:
        with open("/proc/meminfo") as handle:
            info["memory_gib"] = round(int(handle.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    for package in ("tensorflow", "tf_keras", "onnxruntime", "tf2onnx", "numpy"):
        try:
            from importlib.metadata import version

            info[package] = version(package.replace("_", "-"))
        except Exception:
            info[package] = None
    return info


def machine_line(info: dict) -> str:
    versions = ", ".join(f"{name} {info[name]}" for name in ("tensorflow", "onnxruntime", "numpy") if info.get(name))
    from tf1infer.runtime.kernels import describe

    # Results saved before the kernel family was recorded have none.
    family = f"; TensorFlow kernels: {describe(info['kernels'])}" if info.get("kernels") else ""
    return (
        f"{info.get('cpu', platform.machine())}, {info['cores']} cores, {info.get('memory_gib', '?')} GiB; "
        f"{info['platform']}; Python {info['python']}; {versions}; {info['date']}{family}"
    )


def tables(records: list[dict], batch_sizes: list[int], limits: dict) -> dict[str, list[list[str]]]:
    """Per model, the rows of its table (header first), with the fastest runner's ratio and % of the limit."""
    by_model: dict[str, dict[str, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for record in records:
        if "runner" in record:
            by_model[record["model"]][record["runner"]][record["batch_size"]] = record
    result = {}
    peak = limits.get("peak_gflops")
    for model, runners in by_model.items():
        fastest = {
            size: min((r[size]["us_per_sample"] for r in runners.values() if size in r), default=None)
            for size in batch_sizes
        }
        flops = (limits.get("flops", {}).get(model) or {}).get("flops_per_sample")
        limit_us = flops / (peak * 1e3) if flops and peak else None
        header = ["runner"]
        for size in batch_sizes:
            header += [f"b{size} us/sample", "x fastest"] + (["% of limit"] if limit_us else [])
        header += ["load s", "RSS MiB/10k calls"]
        rows = [header]
        for runner, sizes in runners.items():
            row = [runner]
            for size in batch_sizes:
                cell = sizes.get(size)
                if cell is None:
                    row += ["-", "-"] + (["-"] if limit_us else [])
                    continue
                us = cell["us_per_sample"]
                row += [_us(us), f"{us / fastest[size]:.2f}x"]
                if limit_us:
                    row.append(f"{100 * limit_us / us:.1f}%")
            first = sizes[min(sizes)]
            few = "*" if first["timed_calls"] < FEW_CALLS else ""
            row += [f"{first['load_seconds']:.2f}", f"{first['rss_growth_mib_per_10k_calls']:+.1f}{few}"]
            rows.append(row)
        result[model] = rows
    return result


FEW_CALLS = 1000  # Below this many timed calls, RSS growth per 10k calls is marked as extrapolated.
FEW_CALLS_NOTE = f"RSS figures marked * are extrapolated from fewer than {FEW_CALLS:,} timed calls"


def _us(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def limit_line(model: str, limits: dict) -> str:
    entry = limits.get("flops", {}).get(model) or {}
    peak = limits.get("peak_gflops")
    if entry.get("flops_per_sample") and peak:
        flops = entry["flops_per_sample"]
        return (
            f"{flops / 1e6:.3f} MFLOPs/sample over a {peak:.0f} GFLOP/s matmul peak: "
            f"physical limit {flops / (peak * 1e3):.3g} us/sample"
        )
    return f"physical limit: not computed ({entry.get('why') or entry.get('error') or 'no FLOP count'})"


def print_tables(model_tables: dict, models: dict, limits: dict, errors: list[dict]) -> None:
    for model, rows in model_tables.items():
        print(f"\n{model} ({os.path.relpath(models[model])}); {limit_line(model, limits)}")
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print(
                "  "
                + "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            )
        for error in errors:
            if error.get("model") == model:
                print(f"  {error['peer']}: could not run: {error['error']}")
        if any(row[-1].endswith("*") for row in rows[1:]):
            print(f"  {FEW_CALLS_NOTE}")


def markdown(model_tables: dict, models: dict, limits: dict, errors: list[dict], notes: list[str]) -> str:
    lines = []
    for model, rows in model_tables.items():
        lines += [f"### {model}", "", f"`{os.path.relpath(models[model])}`; {limit_line(model, limits)}.", ""]
        lines.append("| " + " | ".join(rows[0]) + " |")
        lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(rows[0]))) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
        lines += [f"- {e['peer']} could not run it: {e['error']}" for e in errors if e.get("model") == model]
        lines += [f"- {note}" for note in notes if note.startswith(f"{model}:")]
        if any(row[-1].endswith("*") for row in rows[1:]):
            lines.append(f"- {FEW_CALLS_NOTE}.")
        lines.append("")
    return "\n".join(lines)


def chart(records: list[dict], batch_sizes: list[int], path: str) -> str | None:
    """A bar chart per model (us/sample, log scale), or the reason there is none."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed: pip install -e '.[bench]' (make bench-tf1 does)"
    models = list(dict.fromkeys(r["model"] for r in records if "runner" in r))
    if not models:
        return "no measurements to draw"
    runners = list(dict.fromkeys(r["runner"] for r in records if "runner" in r))
    figure, axes = plt.subplots(len(models), 1, figsize=(12, 3.6 * len(models)), squeeze=False)
    colors = plt.get_cmap("tab20")
    width = 0.8 / max(len(runners), 1)
    for axis, model in zip(axes[:, 0], models):
        for index, runner in enumerate(runners):
            values = {
                r["batch_size"]: r["us_per_sample"]
                for r in records
                if r.get("model") == model and r.get("runner") == runner
            }
            xs = [position + index * width for position, size in enumerate(batch_sizes) if size in values]
            ys = [values[size] for size in batch_sizes if size in values]
            if ys:
                axis.bar(xs, ys, width, label=runner, color=colors(index % 20))
        axis.set_yscale("log")
        axis.set_title(model)
        axis.set_ylabel("us per sample (log)")
        axis.set_xticks([p + 0.4 - width / 2 for p in range(len(batch_sizes))], [f"batch {s}" for s in batch_sizes])
    axes[0, 0].legend(fontsize=7, ncol=3, loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return None


def streaming_md(streaming: list[dict]) -> str:
    """The streaming records as Markdown (throughput of predict_iter against predict; memory of predict_to)."""
    throughput = [r for r in streaming if r["runner"] == "streaming throughput"]
    memory = [r for r in streaming if r["runner"] == "streaming memory"]
    lines = []
    if throughput:
        lines += [
            "Streaming throughput, batch 32: `predict_iter` fed one sample at a time by a generator (the",
            "generator's own cost left out) against `predict` on the same data in one array.",
            "",
            "| model | samples | `predict` us/sample | `predict_iter` us/sample | throughput ratio |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['model']} | {r['samples']:,} | {r['predict']:.1f} | {r['predict_iter']:.1f} | "
            f"{r['throughput_ratio']:.2f}x |"
            for r in throughput
        ]
        lines.append("")
    if memory:
        lines += [
            "Streaming memory: `predict_to` into `.h5` from a generator of single MLP samples (batch 256),",
            "the rise of peak RSS (VmHWM) during the run.",
            "",
            "| samples | peak RSS rise | seconds |",
            "|---:|---:|---:|",
        ]
        lines += [f"| {r['samples']:,} | {r['peak_rss_rise_mib']:.1f} MiB | {r['seconds']:.1f} |" for r in memory]
        lines.append("")
    return "\n".join(lines)


SESSION_BASELINE = "tf1infer session predict_on_batch"


def check_rows(checks: list[dict], batch_sizes: list[int]) -> list[list[str]]:
    """The same-process checks: per check, model and tf1infer runner, its time against the peer's per batch size.

    Each cell reads ``ours vs theirs us (ratio)``, the ratio being the peer's
    time over tf1infer's: above 1, tf1infer is faster.
    """
    groups: dict[tuple, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for record in checks:
        if "runner" in record:
            groups[(record["peer"], record["model"])][record["runner"]][record["batch_size"]] = record["us_per_sample"]
    rows = [["model", "tf1infer runner", "peer"] + [f"batch {size}" for size in batch_sizes]]
    for (_, model), runners in groups.items():
        # tf1infer's own session is a baseline where a check times it beside its TF Lite backend.
        theirs = [runner for runner in runners if not runner.startswith("tf1infer") or runner == SESSION_BASELINE]
        for peer in theirs:
            for ours in (runner for runner in runners if runner.startswith("tf1infer") and runner not in theirs):
                cells = []
                for size in batch_sizes:
                    a, b = runners[ours].get(size), runners[peer].get(size)
                    cells.append(f"{_us(a)} vs {_us(b)} us ({b / a:.2f}x)" if a and b else "-")
                rows.append([model, ours, peer] + cells)
    return rows


CHECKS_INTRO = """tf1infer and one peer loaded in one process, their timed rounds alternating, so that a
slow spell of the machine falls on both (the table above runs each peer in a
process of its own, and whole processes here differ by more than some of its margins). Each cell:
tf1infer's us/sample vs the peer's, and the peer's time over tf1infer's (above 1.00x tf1infer is faster)."""


def checks_text(checks: list[dict], batch_sizes: list[int], errors: list[dict]) -> list[str]:
    """The checks' table as plain text lines for stdout."""
    rows = check_rows(checks, batch_sizes)
    if len(rows) == 1 and not errors:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["", "same process, interleaved (ratio = peer's time / tf1infer's):"]
    lines += [
        "  " + "  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    ]
    lines += [f"  {e['peer']} check on {e['model']}: could not run: {e['error']}" for e in errors]
    return lines


def checks_md(checks: list[dict], batch_sizes: list[int], errors: list[dict]) -> str:
    rows = check_rows(checks, batch_sizes)
    if len(rows) == 1 and not errors:
        return ""
    lines = [
        CHECKS_INTRO,
        "",
        "| " + " | ".join(rows[0]) + " |",
        "|" + "|".join("---" if i < 3 else "---:" for i in range(len(rows[0]))) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    lines += [f"- the {e['peer']} check could not run {e['model']}: {e['error']}" for e in errors]
    return "\n".join(lines) + "\n"


def benchmarks_md(
    info: dict,
    table_md: str,
    summary: list[str],
    streaming: Sequence[dict] = (),
    checks: str = "",
    concurrency: str = "",
    serving: str = "",
) -> str:
    lines = [
        "# Benchmarks",
        "",
        "What tf1infer costs against every other way of running the same legacy model, side by side on one",
        "machine. Regenerate with `make bench-tf1` (15 to 20 minutes here; this file is rewritten by full runs only).",
        "",
        METHOD,
        "## Latest full run",
        "",
        f"Machine: {machine_line(info)}.",
        "",
    ]
    if summary:
        lines += ["Summary:", ""] + [f"- {line}" for line in summary] + [""]
    lines.append(table_md)
    if checks:
        lines += ["### Same-process checks", "", checks]
    if streaming:
        lines += ["### Streaming", "", streaming_md(list(streaming))]
    if concurrency:
        lines += ["### Concurrent callers (micro-batching)", "", CONCURRENCY_METHOD, "", concurrency]
    if serving:
        lines += ["### Serving", "", serving]
    return "\n".join(lines).rstrip() + "\n"


CONCURRENCY_METHOD = (
    "N threads each send one sample per call for 3 s, starting together, to one Predictor loaded with and without "
    "`micro_batching=True` (defaults: at most 32 rows per batch, 2 ms maximum wait), each in a fresh process. "
    "Samples/s over all threads; p50/p99 of one call's latency as its caller sees it. The p99 bound is the maximum "
    "wait plus two runs of a full batch (measured in the same process): one already running when a request "
    "arrives, then its own."
)


# Runners that are TensorFlow runtimes (what the session path must beat), and tf1infer's session runners.
TENSORFLOW_PEERS = (
    "keras model.predict",
    "keras model(x)",
    "tf.function",
    "hand-written sess.run",
    "exported TF2 SavedModel",
)
SESSION_RUNNERS = ("tf1infer predict_on_batch", "tf1infer predict")


def summary_lines(records: list[dict], batch_sizes: list[int]) -> list[str]:
    """Per model and batch size: tf1infer's best runner against the best other peer, and its session
    against the best TensorFlow runtime."""
    comparisons = [
        ("best tf1infer vs best other", lambda r: r.startswith("tf1infer"), lambda r: not r.startswith("tf1infer")),
        (
            "tf1infer session vs best TensorFlow runtime",
            lambda r: r in SESSION_RUNNERS,
            lambda r: r in TENSORFLOW_PEERS,
        ),
    ]
    models = list(dict.fromkeys(r["model"] for r in records if "runner" in r))
    lines = []
    for model in models:
        for title, ours_test, theirs_test in comparisons:
            parts = []
            for size in batch_sizes:
                here = [r for r in records if r.get("model") == model and r.get("batch_size") == size and "runner" in r]
                ours = min((r for r in here if ours_test(r["runner"])), key=lambda r: r["us_per_sample"], default=None)
                theirs = min(
                    (r for r in here if theirs_test(r["runner"])), key=lambda r: r["us_per_sample"], default=None
                )
                if not ours or not theirs:
                    continue
                ratio = theirs["us_per_sample"] / ours["us_per_sample"]
                verdict = f"{ratio:.2f}x faster than" if ratio >= 1 else f"{1 / ratio:.2f}x slower than"
                parts.append(
                    f"batch {size}: {ours['runner']} {_us(ours['us_per_sample'])} us, {verdict} "
                    f"{theirs['runner']} {_us(theirs['us_per_sample'])} us"
                )
            if parts:
                lines.append(f"{model}, {title}: " + "; ".join(parts))
    return lines
