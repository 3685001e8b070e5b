"""What runs a Predictor's calls: a runner, and the :class:`Backend` that hands one over.

A runner is called like ``Session.make_callable``'s callable: one numpy array
per input, in order, and it returns one array per output. The session's own
(:mod:`tf1infer.runtime.session_runner`), a TF Lite interpreter pool or the
``auto`` chooser (:mod:`tf1infer.backends`) all look the same from here, so the
Predictor runs calls without knowing which it holds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

Runner = Callable[..., list[np.ndarray]]


def _nothing_to_close() -> None:
    return None


@dataclasses.dataclass
class Backend:
    """A ready runner, the report of how it was chosen, and how to release what it holds.

    Built by :func:`tf1infer.backends.build` (conversion, verification,
    calibration and measurement done); the Predictor only calls ``runner``,
    shows ``report`` as :attr:`Predictor.backend_report`, and calls ``close``
    once, when it closes.
    """

    runner: Runner
    report: dict[str, Any]
    close: Callable[[], None] = _nothing_to_close

    @property
    def name(self) -> str:
        """``"session"``, ``"tflite"`` or ``"auto"``: what runs the calls."""
        return str(self.report["backend"])
