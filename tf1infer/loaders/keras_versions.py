"""Which Keras this environment has: Keras 2 (``tf-keras``) and Keras 3 (``keras``), checked before use.

Keras 2 is what every legacy Keras model is rebuilt with: the ``tf-keras`` package.

tf-keras X.Y runs only on TensorFlow X.Y, and each release requires its own
TensorFlow exactly. Were it a requirement of tf1infer, pip would meet it in an
environment with an older TensorFlow by upgrading TensorFlow (and numpy) to
match the newest tf-keras: installing tf1infer beside TensorFlow 2.15 would
replace it. So tf-keras is not one of tf1infer's requirements; the Keras
loaders check for it here, and say which release matches the TensorFlow
that is installed (``pip install "tf1infer[keras2]"`` installs the newest
of both into a new environment).

The formats that need no Keras (SavedModel, meta graph, frozen graph, and
Keras 3 ``.keras`` files) load without it.

Keras 3 reads ``.keras`` files and is what :func:`tf1infer.export_keras`
writes for. TensorFlow 2.16 and later install it as ``keras``; up to 2.15
``keras`` is TensorFlow's own Keras 2, and Keras 3 cannot be installed beside
it (TensorFlow 2.15 requires ``keras<2.16``).
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from tf1infer.errors import MissingDependencyError


def tensorflow_minor() -> str:
    """``"2.15"`` for TensorFlow 2.15.1: the release tf-keras has to match."""
    import tensorflow as tf

    return ".".join(tf.__version__.split(".")[:2])


def install_command() -> str:
    """The pip command that installs the tf-keras matching this TensorFlow (and leaves TensorFlow as it is)."""
    return f"pip install 'tf-keras~={tensorflow_minor()}.0'"


def require_tf_keras(source: str) -> ModuleType:
    """The ``tf_keras`` module, or :class:`MissingDependencyError` naming ``source`` and what to install."""
    try:
        module = importlib.import_module("tf_keras")
    except ImportError as exc:
        bundled = (
            "whose tf.keras is Keras 3, which cannot build legacy models in a TF1 graph"
            if keras3_version()
            else "whose own Keras 2 tf1infer does not build with"
        )
        raise MissingDependencyError(
            f"{source}: Keras models are rebuilt with Keras 2 (the tf-keras package), which is not installed beside "
            f"TensorFlow {tensorflow_minor()} ({bundled}); install the release matching TensorFlow: "
            f"{install_command()} ({exc})"
        ) from exc
    built_for = ".".join(str(getattr(module, "__version__", "")).split(".")[:2])
    if built_for and built_for != tensorflow_minor():
        raise MissingDependencyError(
            f"{source}: tf-keras {module.__version__} runs on TensorFlow {built_for}, but TensorFlow "
            f"{tensorflow_minor()} is installed; install the matching release: {install_command()}"
        )
    return module


def keras3_version() -> str | None:
    """Keras 3's version where it is installed, else None (up to TensorFlow 2.15, ``keras`` is Keras 2)."""
    if importlib.util.find_spec("keras") is None:
        return None
    import keras

    version = str(getattr(keras, "__version__", "0"))
    return version if version.split(".")[0] == "3" else None


def keras3_missing(source: str, what: str) -> str:
    """Why ``what`` ("a .keras file loads only", say) cannot happen here, for a :class:`MissingDependencyError`."""
    try:
        import keras

        found = f"keras {keras.__version__} is Keras 2"
    except ImportError:
        found = "keras is not installed"
    return (
        f"{source}: {what} with Keras 3, which needs TensorFlow 2.16 or later; this environment has TensorFlow "
        f"{tensorflow_minor()}, whose {found} (TensorFlow 2.15 pins keras<2.16)"
    )


def require_keras3(source: str, what: str) -> None:
    """Raise :class:`MissingDependencyError` (see :func:`keras3_missing`) where Keras 3 is not installed."""
    if keras3_version() is None:
        raise MissingDependencyError(keras3_missing(source, what))
