"""Image folders as a prediction source: ``tf1infer.images(folder, ...)``.

Files are listed once, in sorted order, when the source is made. Decoding and
resizing run as TensorFlow ops (``tf.io.decode_image``, ``tf.image.resize``)
in one small graph built once and finalized, with its own session: no op is
added per image, and Pillow is not needed. Every file that is not a dot file
is tried; one that cannot be read or decoded (not an image, truncated, a
format TensorFlow does not decode) is skipped and reported with the reason:
logged as a warning, kept in :attr:`ImageFolder.skipped`, and written to the
``skipped`` dataset of an ``.h5`` output. TensorFlow decodes BMP, GIF (first
frame), JPEG, PNG and WebP.

Example:
    >>> predictor = tf1infer.load("model.h5")
    >>> predictor.predict_to("predictions.h5", tf1infer.images("photos/", rescale=1 / 255))
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow as tf

from tf1infer.errors import InputError
from tf1infer.io.feeds import FeedConverter
from tf1infer.io.streaming import Chunk, Reader

logger = logging.getLogger(__name__)

COLOR_CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic")


def images(
    folder: str | os.PathLike,
    size: Sequence[int] | None = None,
    color: str | None = None,
    rescale: float | None = None,
    interpolation: str = "nearest",
    labels: str | None = None,
) -> ImageFolder:
    """A source of the images in ``folder`` for ``predict_iter`` / ``predict_to``.

    Args:
        folder: the folder to read; files in it and in its subfolders, sorted
            by relative path.
        size: ``(height, width)`` to resize to; default: the model input's.
        color: ``"rgb"``, ``"grayscale"`` or ``"rgba"``; default: from the
            model input's channel count (1, 3 or 4).
        rescale: multiply pixel values (0-255) by this, as Keras's
            ``ImageDataGenerator(rescale=...)``; default none.
        interpolation: resize method, ``"nearest"`` by default as Keras's
            ``load_img`` and ``flow_from_directory``; also ``"bilinear"``,
            ``"bicubic"``, ``"area"``, ``"lanczos3"``...
        labels: ``"inferred"`` to treat each subfolder of ``folder`` as a class,
            as ``flow_from_directory`` does: classes are the sorted subfolder
            names, and each row gets its class index (in ``labels`` of an
            ``.h5`` output). Default ``None``: no labels.

    Returns:
        An :class:`ImageFolder`.

    Raises:
        InputError: the folder does not exist or holds no files, or an option
            is not valid.
    """
    return ImageFolder(folder, size, color, rescale, interpolation, labels)


class ImageFolder:
    """The files of an image folder, read as model input by ``predict_iter`` / ``predict_to``.

    Attributes:
        folder: the folder.
        files: paths relative to ``folder``, in the order they are read.
        class_names: the classes with ``labels="inferred"``, else ``None``.
        skipped: ``(path, reason)`` of each file that could not be read so far.
    """

    def __init__(self, folder, size=None, color=None, rescale=None, interpolation="nearest", labels=None):
        self.folder = os.fspath(folder)
        if not os.path.isdir(self.folder):
            raise InputError(f"{self.folder}: not a folder of images")
        if color is not None and color not in COLOR_CHANNELS:
            raise InputError(f"color must be one of {', '.join(COLOR_CHANNELS)}; got {color!r}")
        if interpolation not in INTERPOLATIONS:
            raise InputError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}; got {interpolation!r}")
        if labels not in (None, "inferred"):
            raise InputError(f"labels must be None or 'inferred'; got {labels!r}")
        if size is not None and (len(size) != 2 or any(not isinstance(d, (int, np.integer)) or d < 1 for d in size)):
            raise InputError(f"size must be (height, width) in pixels; got {size!r}")
        if rescale is not None and not isinstance(rescale, (int, float)):
            raise InputError(f"rescale must be a number; got {rescale!r}")
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.color = color
        self.rescale = rescale
        self.interpolation = interpolation
        self.class_names: list[str] | None = None
        self.files, self.file_labels = self._list(labels)
        if not self.files:
            raise InputError(f"{self.folder}: no files to read")
        self.skipped: list[tuple[str, str]] = []

    def __repr__(self) -> str:
        return f"<ImageFolder {self.folder!r}: {len(self.files)} files>"

    def reader_for(self, converter: FeedConverter) -> ImageReader:
        return ImageReader(self, converter)

    def _list(self, labels: str | None) -> tuple[list[str], list[int] | None]:
        if labels is None:
            return _files_under(self.folder, ""), None
        self.class_names = sorted(
            name
            for name in os.listdir(self.folder)
            if not name.startswith(".") and os.path.isdir(os.path.join(self.folder, name))
        )
        if not self.class_names:
            raise InputError(f"{self.folder}: labels='inferred' needs one subfolder per class; there are none")
        files, file_labels = [], []
        for index, name in enumerate(self.class_names):
            found = _files_under(os.path.join(self.folder, name), name)
            files += found
            file_labels += [index] * len(found)
        return files, file_labels


def _files_under(root: str, prefix: str) -> list[str]:
    found = []
    for directory, subdirectories, names in os.walk(root):
        subdirectories[:] = [name for name in subdirectories if not name.startswith(".")]
        relative = os.path.relpath(directory, root)
        for name in names:
            if not name.startswith("."):
                found.append(os.path.normpath(os.path.join(prefix, relative, name)))
    return sorted(found)


class ImageReader(Reader):
    """Decodes an :class:`ImageFolder` for one model input."""

    has_keys = True

    def __init__(self, images: ImageFolder, converter: FeedConverter):
        if len(converter.specs) != 1:
            raise InputError(f"an image folder feeds a model with one input; this one has {len(converter.specs)}")
        spec, name = converter.specs[0], converter.names[0]
        if spec.shape is None or len(spec.shape) != 4:
            raise InputError(
                f"input '{name}' has shape {spec.shape}; an image folder feeds (batch, height, width, channels) inputs"
            )
        _, height, width, channels = spec.shape
        color = images.color or ({1: "grayscale", 3: "rgb", 4: "rgba"}.get(channels) if channels else None)
        if color is None:
            raise InputError(f"input '{name}' has {channels} channels; pass color= ('rgb', 'grayscale' or 'rgba')")
        if channels is not None and COLOR_CHANNELS[color] != channels:
            raise InputError(
                f"input '{name}' takes {channels} channel(s); color={color!r} gives {COLOR_CHANNELS[color]}"
            )
        size = images.size or (height, width)
        if None in size:
            raise InputError(f"input '{name}' has shape {spec.shape}, with no fixed height and width; pass size=(h, w)")
        self._images = images
        self._converter = converter
        self._size: tuple[int, int] = (int(size[0] or 0), int(size[1] or 0))  # Neither is None: checked above.
        self._channels = COLOR_CHANNELS[color]
        self.has_labels = images.class_names is not None
        self.class_names = images.class_names
        self.size_hint = len(images.files)
        self._session: tf.compat.v1.Session | None = None

    def describe(self) -> str:
        return (
            f"images {os.path.abspath(self._images.folder)} ({len(self._images.files)} files, size {self._size}, "
            f"{self._channels} channels, rescale {self._images.rescale}, {self._images.interpolation})"
        )

    def first_sample(self) -> list[np.ndarray] | None:
        for path in self._images.files:
            image, _ = self._decode(path)
            if image is not None:
                return self._converter.convert([image[np.newaxis]])
        return None

    def chunks(self, batch_size: int, start: int = 0) -> Iterator[Chunk]:
        files, file_labels = self._images.files, self._images.file_labels
        batch, keys, labels, skipped = [], [], [], []
        for index in range(start, len(files)):
            image, reason = self._decode(files[index])
            if image is None:
                skipped.append((files[index], reason))
                self._images.skipped.append((files[index], reason))
            else:
                batch.append(image)
                keys.append(files[index])
                if file_labels is not None:
                    labels.append(file_labels[index])
            if len(batch) == batch_size or (index == len(files) - 1 and (batch or skipped)):
                yield self._chunk(batch, keys, labels, skipped, index + 1)
                batch, keys, labels, skipped = [], [], [], []

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _chunk(self, batch, keys, labels, skipped, position) -> Chunk:
        stacked = np.stack(batch) if batch else np.zeros((0,) + self._size + (self._channels,), np.float32)
        return Chunk(
            self._converter.convert([stacked]),
            position,
            keys=keys,
            labels=np.asarray(labels, dtype=np.int64) if self.has_labels else None,
            skipped=skipped,
        )

    def _decode(self, relative: str) -> tuple[np.ndarray | None, str]:
        try:
            with open(os.path.join(self._images.folder, relative), "rb") as file:
                contents = file.read()
        except OSError as exc:
            return None, f"cannot read: {exc.strerror or exc}"
        if self._session is None:
            self._build()
        assert self._session is not None
        try:
            return self._session.run(self._image, {self._contents: contents}), ""
        except tf.errors.OpError as exc:
            return None, f"not a decodable image: {_decoder_message(exc)}"

    def _build(self) -> None:
        """The decoding graph: built once, finalized, so decoding adds no ops however many images run."""
        graph = tf.Graph()
        with graph.as_default():
            self._contents = tf.compat.v1.placeholder(tf.string, shape=[], name="contents")
            decoded = tf.io.decode_image(self._contents, channels=self._channels, expand_animations=False)
            image = tf.cast(tf.image.resize(decoded, self._size, method=self._images.interpolation), tf.float32)
            if self._images.rescale is not None:
                image = image * tf.constant(self._images.rescale, tf.float32)
            self._image = image
        graph.finalize()
        config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
        self._session = tf.compat.v1.Session(graph=graph, config=config)


def _decoder_message(error: tf.errors.OpError) -> str:
    """The decoder's own words from a TensorFlow error (the message also holds where the op was defined)."""
    lines = [
        line
        for line in (error.message or "").splitlines()
        if line.strip() and not line.startswith(("Graph execution error", "Detected at node", " ", "\t", "Node:"))
    ]
    return lines[-1] if lines else type(error).__name__
