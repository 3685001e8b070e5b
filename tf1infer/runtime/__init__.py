"""The runtime: what runs a call once the model is loaded and its backend built.

- :mod:`.predictor`: :class:`~.predictor.BasePredictor`, the Predictor's core
  (feeds checked, the runner called, streaming, micro-batching, lifetime);
- :mod:`.runner`: the runner and :class:`~.runner.Backend` interface the backends hand over;
- :mod:`.session_runner`: the Session's C call on tensors resolved once;
- :mod:`.microbatch`: concurrent calls gathered into shared batches;
- :mod:`.memory`: ``batch_size="auto"`` from measured peak memory;
- :mod:`.kernels`: which CPU kernel family runs (oneDNN on or off).
"""
