"""Streaming memory is set by the batch size, not the data size.

20,000 samples of 64x64x1 float32 (328 MB of input, generated one at a time) stream through
a small CNN into .h5; the process's peak RSS may rise by less than 200 MB during the run.
Measured in a fresh process, since a test process's own memory history would blur it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("stream_memory_worker.py")


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's resettable peak RSS")
def test_streaming_20000_samples_keeps_memory_flat(tmp_path):
    count = 20_000
    result = subprocess.run(
        [sys.executable, str(WORKER), str(tmp_path), str(count)],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["rows"] == count
    assert report["max_error"] <= 1e-6  # Rows land where they belong.
    input_bytes = count * 64 * 64 * 4
    assert report["rise"] < 200 * 2**20, (
        f"peak RSS rose by {report['rise'] / 2**20:.0f} MiB for {input_bytes / 2**20:.0f} MiB of input"
    )
