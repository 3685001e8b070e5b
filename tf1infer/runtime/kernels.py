"""Which CPU kernels this process's TensorFlow runs: oneDNN's or its plain ones, and what the CPU offers.

TensorFlow's x86-64 Linux and Windows wheels carry two kernel families. oneDNN's
are on by default only on CPUs with AVX-512 VNNI / BF16 or AMX (recent Xeons);
elsewhere (AVX2-only x86 such as most laptops and AMD Zen 2/3 servers, and every
arm64 machine) TensorFlow runs its plain Eigen kernels unless
``TF_ENABLE_ONEDNN_OPTS=1`` is set before it is imported. The two differ in what
they accept (only oneDNN runs bfloat16 natively) and in speed, by batch size:
the benchmark and ``tf1infer inspect`` report which one ran.
"""

from __future__ import annotations

import os
import platform
from typing import Any

# CPU features that decide which kernels are fast; the others /proc/cpuinfo lists are left out of reports.
VECTOR_EXTENSIONS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "asimdhp",
    "asimddp",
    "sve",
    "bf16",
    "i8mm",
)
# Instructions that multiply-accumulate int8 in one step: what makes int8 kernels beat float32 ones.
INT8_DOT_PRODUCTS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def onednn_enabled() -> bool:
    """True when this process's TensorFlow runs oneDNN's kernels (fixed when TensorFlow is imported)."""
    try:
        from tensorflow.python.util import _pywrap_util_port  # The switch TensorFlow itself reads.
    except ImportError:  # pragma: no cover - TensorFlow moved its internals; the variable is the documented switch.
        return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "").strip().lower() in ("1", "true")
    return bool(_pywrap_util_port.IsMklEnabled())


def cpu_vector_extensions(cpuinfo_path: str = "/proc/cpuinfo") -> list[str]:
    """The CPU's vector extensions of :data:`VECTOR_EXTENSIONS`, as Linux names them; empty where unknown."""
    fields = _cpuinfo(cpuinfo_path)
    present = set((fields.get("flags") or fields.get("Features") or "").split())  # x86, arm64
    return [name for name in VECTOR_EXTENSIONS if name in present]


def int8_dot_products(cpuinfo_path: str = "/proc/cpuinfo") -> bool | None:
    """Whether the CPU has int8 dot-product instructions (:data:`INT8_DOT_PRODUCTS`); None where unknown."""
    extensions = cpu_vector_extensions(cpuinfo_path)
    if not extensions:
        return None
    return any(name in extensions for name in INT8_DOT_PRODUCTS)


def cpu_model(cpuinfo_path: str = "/proc/cpuinfo") -> str:
    """The CPU's model name where the system tells it, else the machine type (``x86_64``, ``arm64``)."""
    return _cpuinfo(cpuinfo_path).get("model name") or platform.processor() or platform.machine()


def _cpuinfo(path: str) -> dict[str, str]:
    """The first processor's fields in Linux's ``/proc/cpuinfo``; empty where there is none (macOS, Windows)."""
    fields: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def kernel_family() -> dict[str, Any]:
    """What decides this process's CPU speed: oneDNN on or off, how it was chosen, and the CPU.

    Returns:
        ``{"onednn": bool, "onednn_setting": "TF_ENABLE_ONEDNN_OPTS=1" or
        "TensorFlow's default", "cpu": model name, "machine": "x86_64"...,
        "vector_extensions": [...]}``.
    """
    setting = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    return {
        "onednn": onednn_enabled(),
        "onednn_setting": f"TF_ENABLE_ONEDNN_OPTS={setting}" if setting is not None else "TensorFlow's default",
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "vector_extensions": cpu_vector_extensions(),
    }


def describe(family: dict[str, Any] | None = None) -> str:
    """One line for people: ``oneDNN off (TensorFlow's default); AMD EPYC, x86_64: avx avx2 fma``."""
    family = family or kernel_family()
    extensions = " ".join(family["vector_extensions"]) or "vector extensions unknown"
    state = "on" if family["onednn"] else "off"
    return f"oneDNN {state} ({family['onednn_setting']}); {family['cpu']}, {family['machine']}: {extensions}"
