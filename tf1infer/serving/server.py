"""One process serving legacy models over TensorFlow Serving's REST and gRPC APIs and the Open Inference Protocol.

:class:`Server` loads every model first (a line per version as it loads; the
first that fails stops start-up with its reason), then listens: REST on
aiohttp, gRPC on grpcio's asyncio server, both on one event loop, with one
micro-batcher per signature between them and the sessions. The Open Inference
Protocol (KServe V2) shares both ports: ``/v2`` routes on the REST port,
``inference.GRPCInferenceService`` and ``grpc.health.v1`` on the gRPC port.
It binds 127.0.0.1 unless told otherwise.

Stopping (SIGTERM or SIGINT from :meth:`Server.run`, or :meth:`Server.stop`):
both listeners close at once, every request already accepted is answered
(the batchers keep running until the last one), then the batchers and the
sessions close. Requests that come meanwhile are refused by the closed port.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import grpc
from aiohttp import web

from tf1infer.errors import InvalidOptionError, Tf1InferError
from tf1infer.serving import grpc_api, metrics, open_inference_grpc
from tf1infer.serving.models import Batching, ModelConfig, ModelRegistry, load_servable, version_paths
from tf1infer.serving.rest import RestApi

DEFAULT_REST_PORT = 8501
DEFAULT_GRPC_PORT = 8500
# What the gRPC port serves, by the names grpc.health.v1 reports them under.
GRPC_SERVICES = [
    "tensorflow.serving.PredictionService",
    "tensorflow.serving.ModelService",
    "inference.GRPCInferenceService",
]


@dataclass(frozen=True)
class Limits:
    """What one request may cost.

    Args:
        max_request_bytes: the largest REST body (413 beyond) and gRPC message
            (RESOURCE_EXHAUSTED beyond); also the most a gRPC tensor's declared
            shape may take to build.
        timeout: seconds a REST request waits for its answer (504 beyond;
            TF Serving's default is 30 s); a gRPC call has its own deadline.
        shutdown_grace: seconds a stopping server waits for the requests it accepted.
    """

    max_request_bytes: int = 64 * 2**20
    timeout: float = 30.0
    shutdown_grace: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_request_bytes, int) or self.max_request_bytes < 1024:
            raise InvalidOptionError(
                f"max_request_bytes must be an integer of at least 1024, got {self.max_request_bytes!r}"
            )
        if not self.timeout > 0 or not self.shutdown_grace >= 0:
            raise InvalidOptionError(f"timeout must be positive and shutdown_grace not negative, got {self}")


@dataclass
class Server:
    """Serve models over TensorFlow Serving's REST and gRPC APIs, and the Open Inference Protocol on the same ports.

    Args:
        models: :class:`ModelConfig` objects, or ``"NAME=PATH"`` / ``"PATH"`` strings.
        host: the address both APIs bind (default ``127.0.0.1``: this machine only).
        rest_port: REST's port (TF Serving's 8501); 0 picks a free one; None: no REST.
        grpc_port: gRPC's port (TF Serving's 8500); 0 picks a free one; None: no gRPC.
        batching: how concurrent requests are gathered (on by default).
        limits: request size, REST deadline, shutdown grace.
        out: where start-up and shutdown lines go.

    Example:
        >>> server = Server(["default=tfserving_saved_model_half_plus_two_cpu"], rest_port=0, grpc_port=0)
        >>> with server.start_in_thread():
        ...     print(server.rest_port, server.grpc_port)
    """

    models: Sequence[ModelConfig | str]
    host: str = "127.0.0.1"
    rest_port: int | None = DEFAULT_REST_PORT
    grpc_port: int | None = DEFAULT_GRPC_PORT
    batching: Batching = field(default_factory=Batching)
    limits: Limits = field(default_factory=Limits)
    out: IO[str] = field(default_factory=lambda: sys.stdout)

    def __post_init__(self) -> None:
        self.configs = [ModelConfig.parse(item) if isinstance(item, str) else item for item in self.models]
        if not self.configs:
            raise InvalidOptionError("serve needs at least one model")
        names = [config.name for config in self.configs]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise InvalidOptionError(f"model name {duplicated[0]!r} is given twice; name each model: NAME=PATH")
        if self.rest_port is None and self.grpc_port is None:
            raise InvalidOptionError("serve needs a REST port, a gRPC port or both")
        self.batching.settings()  # Checks the batching numbers now, before any model loads.
        self.registry = ModelRegistry()
        self.metrics = metrics.ServerMetrics()
        self._runner: web.AppRunner | None = None
        self._grpc: grpc.aio.Server | None = None
        self._health: open_inference_grpc.HealthService | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._loaded = False

    # -- start-up -------------------------------------------------------------

    def load(self) -> None:
        """Load every model version, a line each; the first failure raises (nothing is served then)."""
        if self._loaded:
            return
        try:
            for config in self.configs:
                for version, path in version_paths(config).items():
                    self._say(f"loading {config.name} version {version} from {path} ...")
                    servable = load_servable(config, version, path, self.batching, self.metrics.batch_observer)
                    self.registry.add(servable, config.labels)
                    for key, signature in servable.signatures.items():
                        self.metrics.watch_queue(config.name, version, key, signature.queue_depth)
                    described = ", ".join(
                        f"{key} ({', '.join(sig.input_aliases)} -> {', '.join(sig.output_aliases)})"
                        for key, sig in servable.signatures.items()
                    )
                    self._say(
                        f"  {config.name} version {version}: {servable.format}, ready in {servable.loaded_in:.1f} s; "
                        f"signatures: {described}"
                    )
                    for key, reason in servable.skipped.items():
                        self._say(f"  {config.name} version {version}: signature {key} not served: {reason}")
                for key, version in config.labels.items():
                    if version not in self.registry.versions(config.name):
                        raise InvalidOptionError(
                            f"model {config.name}: label {key!r} names version {version}, not loaded"
                        )
        except Tf1InferError as exc:
            self.registry.close()
            raise type(exc)(f"cannot serve {config.name}: {' '.join(str(exc).split())}") from exc
        self._loaded = True

    async def start(self) -> None:
        """Load (if not yet), bind both ports and start answering."""
        self.load()
        # The loaded models leave hundreds of thousands of Python objects (TensorFlow's graphs, Keras layers) that
        # never die; each full collection the requests trigger walked them all. A JSON image request creates
        # thousands of lists: parsing one took 6.9 ms with them tracked, 1.6 ms frozen out of collection (mini-Xception).
        gc.collect()
        gc.freeze()
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        if self.grpc_port is not None:
            self._grpc = grpc.aio.server(
                options=[
                    ("grpc.max_receive_message_length", self.limits.max_request_bytes),
                    ("grpc.so_reuseport", 0),
                ]
            )
            calls = grpc_api.Calls(self.registry, self.metrics, self.limits.max_request_bytes)
            grpc_api.add_services(self._grpc, calls)
            self._health = open_inference_grpc.add_services(self._grpc, calls, GRPC_SERVICES)
            address = f"[{self.host}]:{self.grpc_port}" if ":" in self.host else f"{self.host}:{self.grpc_port}"
            try:
                self.grpc_port = self._grpc.add_insecure_port(address)
            except RuntimeError as exc:
                raise InvalidOptionError(f"cannot listen for gRPC on {address}: {exc}") from exc
            await self._grpc.start()
        if self.rest_port is not None:
            api = RestApi(self.registry, self.metrics, self.limits.max_request_bytes, self.limits.timeout)
            self._runner = web.AppRunner(
                api.application(), handle_signals=False, access_log=None, shutdown_timeout=self.limits.shutdown_grace
            )
            await self._runner.setup()
            sock = _listening_socket(self.host, self.rest_port)
            self.rest_port = sock.getsockname()[1]
            await web.SockSite(self._runner, sock).start()
        where = []
        if self.rest_port is not None:
            host = f"[{self.host}]" if ":" in self.host else self.host
            where.append(f"REST at http://{host}:{self.rest_port}/v1/models/NAME (V2: /v2/models/NAME)")
        if self.grpc_port is not None:
            where.append(f"gRPC at {self.host}:{self.grpc_port}")
        self._say(f"serving {', '.join(self.registry.names)}: {'; '.join(where)}")

    # -- running and stopping ---------------------------------------------------

    def run(self) -> int:
        """Load, serve until SIGTERM or SIGINT, answer what was accepted, and return 0."""
        self.load()
        return asyncio.run(self._run_until_signalled())

    async def _run_until_signalled(self) -> int:
        await self.start()
        assert self._stopped is not None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stopped.set)
        await self._stopped.wait()
        await self._shutdown()
        return 0

    async def _shutdown(self) -> None:
        in_flight = self.metrics.in_flight_now
        self._say(f"stopping: no new requests; answering the {in_flight} in flight")
        started = time.perf_counter()
        waits = []
        if self._runner is not None:
            waits.append(self._runner.cleanup())
        if self._grpc is not None:
            if self._health is not None:
                await self._health.stopping()  # NOT_SERVING to every health check and watcher from now on.
            waits.append(self._grpc.stop(self.limits.shutdown_grace))
        await asyncio.gather(*waits)
        # Every handler has answered; the batchers have nothing left but are closed in a thread all the same.
        await asyncio.get_running_loop().run_in_executor(None, self.registry.close)
        self._say(f"stopped in {time.perf_counter() - started:.1f} s")

    def start_in_thread(self, timeout: float = 600.0) -> Server:
        """Serve from a thread of its own (tests, notebooks); :meth:`stop` or ``with`` ends it."""
        self.load()
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            async def main() -> None:
                try:
                    await self.start()
                except BaseException as exc:
                    failure.append(exc)
                    ready.set()
                    return
                ready.set()
                assert self._stopped is not None
                await self._stopped.wait()
                await self._shutdown()

            asyncio.run(main())

        self._thread = threading.Thread(target=serve, name="tf1infer-serve", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise Tf1InferError(f"the server did not start within {timeout} s")
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop a server started with :meth:`start_in_thread`: accepted requests are answered first."""
        if self._loop is not None and self._stopped is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def _say(self, line: str) -> None:
        print(f"tf1infer serve: {line}", file=self.out, flush=True)


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InvalidOptionError(f"cannot listen for REST on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(1024)
    sock.setblocking(False)
    return sock


__all__ = ["DEFAULT_GRPC_PORT", "DEFAULT_REST_PORT", "Limits", "Server"]
