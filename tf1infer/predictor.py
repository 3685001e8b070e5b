"""``tf1infer.Predictor``: the runtime's Predictor with the faces legacy code calls on it.

:class:`~tf1infer.runtime.predictor.BasePredictor` runs the calls; the Keras 2
model surface (:mod:`tf1infer.faces.keras`) and the TF1 session surface
(:mod:`tf1infer.faces.session`) are mixed in here, so that one object answers
``predict``, ``model.layers`` and ``run(fetches, feed_dict)`` alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tf1infer import backend
from tf1infer.backends.precision import precision_report
from tf1infer.faces.keras import KerasModelFace
from tf1infer.faces.session import SessionFace
from tf1infer.runtime.predictor import BasePredictor, _closed


class Predictor(BasePredictor, KerasModelFace, SessionFace):
    """Runs a legacy model from a persistent TF1 Session with Keras's predict API.

    Create one with :func:`tf1infer.load` (or :meth:`from_session` for a graph
    and session you built yourself); use it like a Keras model.

    Example:
        >>> import numpy as np, tf1infer
        >>> with tf1infer.load("legacy_models/mlp.h5") as model:
        ...     probabilities = model.predict(np.random.rand(100, 10))
        ...     probabilities.shape
        (100, 3)
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        backend.register(self)  # Its tensors work with tf1infer.backend (K.function, K.get_value...).

    def precision_report(
        self, x: Any = None, precisions: Sequence[str] | None = None, samples: int = 32
    ) -> dict[str, Any]:
        """How far reduced-precision outputs deviate from float32 on a batch of inputs.

        Runs a frozen copy of this model's graph at float32 and at
        ``bfloat16`` / ``float16``, on ``x`` or on ``samples`` random rows
        (never zeros); on a Predictor loaded with ``precision="int8"``, its
        own int8 TF Lite model against float32 on ``x``, held-out samples
        that must be given (not the calibration samples). Works at any
        precision the Predictor was loaded with.

        Args:
            x: inputs (real data gives the most telling numbers; required for int8).
            precisions: which to measure; default ``("int8",)`` on an int8
                Predictor, else ``("bfloat16", "float16")``.
            samples: random rows when ``x`` is not given.

        Returns:
            ``{"calibration_samples": n, "precisions": {name: {"max_abs",
            "mean_abs", "max_rel", "ms_per_batch", "outputs": {...}}}}``;
            ``max_rel`` is relative to the largest float32 magnitude of each
            output; classifier outputs (two or more scores per row) also get
            ``top1_agreement``, the fraction of rows whose top class is float32's.

        Example:
            >>> report = tf1infer.load("legacy_models/cnn.h5").precision_report()
            >>> report["precisions"]["bfloat16"]["max_abs"] < 0.05
            True
        """
        if self.closed:
            _closed()
        return precision_report(self, x, precisions, samples)
