"""Migration: a loaded model written as a TF2 SavedModel or a Keras 3 ``.keras`` file, verified before it is published.

- :mod:`.saved_model`: ``export_saved_model`` and ``ExportReport``; :mod:`.saved_model_worker`
  runs each export in a process that imports only numpy and TensorFlow;
- :mod:`.keras3`: ``export_keras`` and ``KerasExportReport``: write, verify, publish;
  :mod:`.keras3_translate` (legacy configs and weights as Keras 3's, one rule per change),
  :mod:`.portable_lambdas` (Lambda functions written to carry the globals they read),
  :mod:`.keras3_worker` (loads the file in a Keras 3-only process per backend).
"""
