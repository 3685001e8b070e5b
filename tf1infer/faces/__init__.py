"""The surfaces legacy code calls on a Predictor, mixed into :class:`tf1infer.Predictor`.

- :mod:`.keras`: the Keras 2 model surface (``layers``, ``summary``, ``function``, ``save``...);
- :mod:`.session`: the TF1 session surface, ``run(fetches, feed_dict)``.
"""
