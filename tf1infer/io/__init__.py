"""Data in and out: what callers feed, where batches come from, where results go.

- :mod:`.feeds`: input validation and conversion (:class:`~.feeds.TensorSpec`), in one place;
- :mod:`.batching`: batch splitting, batch sources (generators, Sequences), progress;
- :mod:`.streaming`: ``predict_iter``'s readers, the read-ahead thread, out-of-memory splitting;
- :mod:`.images`: ``tf1infer.images``, image folders decoded by TensorFlow;
- :mod:`.writers`: ``predict_to``'s ``.npy`` and resumable ``.h5`` files.
"""
