"""Child process of the fuzz test: loads one variant per request and says how it ended.

Reads one JSON request per line on stdin (``{"path", "options", "cli"}``) and
answers each with one line ``FUZZ-RESULT {json}`` on stdout:
``outcome`` is ``works`` (loaded, predicted on valid synthetic inputs), ``typed``
(a ``tf1infer.errors.Tf1InferError``) or ``untyped`` (anything else, with its
traceback), plus the peak resident memory the request added. With ``cli`` the
request goes through ``tf1infer inspect`` instead, which must exit 0, or 2 with
one ``tf1infer: error:`` line and no traceback. The parent kills this process when
a request takes too long (a hang) and counts a death by signal as a crash.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "legacy_models"))

import numpy as np  # noqa: E402

import tf1infer  # noqa: E402
from tf1infer.cli import commands as cli  # noqa: E402
from tf1infer.errors import Tf1InferError  # noqa: E402
from tf1infer.runtime import memory  # noqa: E402
from tf1infer.verification.synthetic import synthetic_inputs  # noqa: E402


def _options(raw: dict) -> dict:
    options = dict(raw)
    if options.get("custom_objects") == "zoo":
        from zoo_layers import Scale

        options["custom_objects"] = {"Scale": Scale}
    return options


def _load_and_predict(path: str, options: dict) -> None:
    with tf1infer.load(path, **_options(options)) as predictor:
        feeds = synthetic_inputs(predictor.inputs, 3, np.random.default_rng(0))
        outputs = predictor.predict(feeds if len(feeds) > 1 else feeds[0], batch_size=2)
        outputs = outputs if isinstance(outputs, list) else [outputs]
        for spec, output in zip(predictor.outputs, outputs):
            if len(output) != 3:
                raise AssertionError(f"output {spec.name} has {len(output)} rows for 3 inputs")


def _cli_arguments(path: str, options: dict) -> list[str]:
    arguments = ["inspect", path]
    for name in ("inputs", "outputs"):
        if name in options:
            arguments += [f"--{name}", ",".join(options[name])]
    if "weights" in options:
        arguments += ["--weights", options["weights"]]
    return arguments


def _run_cli(path: str, options: dict) -> dict:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            status = cli.main(_cli_arguments(path, options))
        except SystemExit as exc:  # argparse
            status = exc.code
        except BaseException:  # noqa: BLE001 - what escapes the CLI untyped is what this looks for.
            traceback.print_exc()
            status = "traceback"
    text = stderr.getvalue()
    lines = [line for line in text.splitlines() if line.strip()]
    if status == 0:
        return {"outcome": "works"}
    errors = [line for line in lines if line.startswith("tf1infer: error: ")]
    # Exactly one error line and no traceback; a library's own warnings (Keras's, printed by the warnings module)
    # may stand beside it.
    if status == 2 and len(errors) == 1 and "Traceback" not in text:
        return {"outcome": "typed", "type": "cli", "message": errors[0][:2000]}
    return {"outcome": "untyped", "type": f"cli exit {status}", "message": text[-4000:]}


def handle(request: dict) -> dict:
    path, options = request["path"], request.get("options", {})
    result: dict = {}

    def attempt() -> None:
        nonlocal result
        if request.get("cli"):
            result = _run_cli(path, options)
            return
        try:
            _load_and_predict(path, options)
            result = {"outcome": "works"}
        except Tf1InferError as exc:
            result = {"outcome": "typed", "type": type(exc).__name__, "message": str(exc)[:2000]}
        except BaseException as exc:  # noqa: BLE001 - the point is to catch what escapes untyped.
            result = {
                "outcome": "untyped",
                "type": f"{type(exc).__module__}.{type(exc).__name__}",
                "message": str(exc)[:2000],
                "traceback": traceback.format_exc()[-6000:],
            }

    peak, _ = memory.measure_peak(attempt)
    result["peak_mb"] = round(peak / 2**20, 1)
    return result


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        answer = handle(json.loads(line))
        sys.stdout.write("FUZZ-RESULT " + json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
