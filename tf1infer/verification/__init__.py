"""What every check feeds and how close is close enough (the TF Lite backend at load, both exports).

- :mod:`.synthetic`: valid made-up inputs read from the graph (embedding ids, mask values,
  ``tf.Example`` features) and the verification batches;
- :mod:`.reference`: the float64 twin of a frozen graph, and :class:`~.reference.Tolerance`,
  every check's rule, from the model's own float32 error.
"""
