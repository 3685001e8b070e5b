from setuptools import find_packages, setup

# The TensorFlow releases tested (make test-tf TF=2.15 ... 2.21); the upper bound is the newest tested minor.
TF_RANGE = ">=2.15,<2.22"
# tf-keras X.Y requires tensorflow X.Y exactly, so it is not in install_requires: pip would satisfy it beside an
# older TensorFlow by upgrading TensorFlow and numpy. The Keras loaders check for it and name the matching release
# (tf1infer/loaders/keras_versions.py); this extra installs the newest of both into a new environment.
KERAS2 = [f"tf-keras{TF_RANGE}"]
# PySpark 4.x warns about pandas 3; Arrow carries the batches between the JVM and Python. pyarrow 26 needs numpy 2
# at import without saying so in its requirements (seen: "pyarrow requires NumPy 2.0 or newer, found 1.26.4").
SPARK = ["pyspark>=3.5,<5", "pandas>=2,<3", "pyarrow>=14,<26"]
# tf1infer serve: aiohttp (REST), grpcio (gRPC) and grpcio-health-checking (grpc.health.v1), prometheus-client
# (metrics), orjson (request JSON), and the generated TF Serving protos. tensorflow-serving-api X.Y requires tensorflow >= X.Y: beside an older TensorFlow,
# install it with that TensorFlow held (pip install -c constraints, or 'tensorflow-serving-api~=2.15.0' named), as
# tests/tf_venv.sh does; tf1infer.serving.require_serving names the command.
SERVE = [
    "aiohttp>=3.9,<4",
    "grpcio>=1.59,<2",
    "grpcio-health-checking>=1.59,<2",
    "prometheus-client>=0.17",
    "orjson>=3.9",
    f"tensorflow-serving-api{TF_RANGE}",
]

setup(
    name="tf1infer",
    version="0.1.0",
    description="Run legacy TensorFlow 1.x / Keras models fast from one persistent Session, and migrate them to TF2.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tf1infer", "tf1infer.*"]),
    # `tf1infer demo`'s model and sample inputs: the command works from an installed wheel, without the repository.
    package_data={"tf1infer.cli": ["demo_data/*.h5", "demo_data/samples/*.npz"]},
    python_requires=">=3.10",
    install_requires=[
        f"tensorflow{TF_RANGE}",
        # numpy 1.26 (TensorFlow 2.15's newest) and 2.x.
        "numpy>=1.26,<3",
        "h5py>=3.10",
        "tqdm>=4.66",
        # Resident and available memory for batch_size="auto" where Linux's /proc is missing or hidden.
        "psutil>=5.9",
    ],
    extras_require={
        # The suite runs the Spark tests too (on local[2]; they skip only where Java is missing).
        # scikit-image: its sample photographs are the real images int8 is calibrated and checked on.
        # pytest-xdist: make test runs the test files on every core (up to 4).
        # requests: the REST client of the serving tests (TF Serving's own tests post with urllib); tritonclient: the
        # Open Inference Protocol's clients. 2.51 or newer: older releases pin protobuf below 5 (the newest TensorFlow
        # needs 5 or more), so pip, free to pick, would otherwise trade the health-checking package for one of them.
        # xdis (GPL, so a test tool only, never imported by tf1infer): the independent check of the Lambda bytecode
        # reader's opcode tables and marshal reading (tests/test_lambda_recovery.py).
        "test": [
            "pytest>=8",
            "pytest-xdist>=3.5",
            "scikit-image>=0.22",
            "requests>=2.31",
            "tritonclient[http,grpc]>=2.51",
            "xdis>=6.1",
            *SPARK,
        ],
        "keras2": KERAS2,
        # The Keras 3 export is verified on Keras 3's JAX backend too where jax is installed. make test installs it;
        # make test-tf leaves it out (new jax releases need an ml-dtypes that older TensorFlow releases refuse).
        "jax": ["jax>=0.4.30"],
        # tf1infer.spark and `tf1infer predict --spark`: Spark's Python side; Spark itself needs Java 17 or 21.
        "spark": SPARK,
        # tf1infer serve (see SERVE above).
        "serve": SERVE,
        # TF Lite's interpreter from ai_edge_litert, the package TensorFlow 2.21 deprecates tf.lite.Interpreter for;
        # without it, backend="tflite" runs TensorFlow's own interpreter.
        "litert": ["ai-edge-litert>=1.2"],
        # make lint: the formatter and linter, the type checker, the layering contracts (pyproject.toml).
        "lint": ["ruff==0.17.6", "mypy==2.4.1", "import-linter==2.17"],
        # make bench-tf1's converting peers and its chart.
        # flask: the serving bench's floor, the Flask + tf_keras server legacy apps run.
        "bench": ["tf2onnx>=1.17", "onnx>=1.17", "onnxruntime>=1.20", "matplotlib>=3.8", "scikit-image>=0.22", "flask>=3"],
    },
    entry_points={"console_scripts": ["tf1infer=tf1infer.cli:main"]},
    license="Apache-2.0",
)
