from setuptools import find_packages, setup

# tensorflow and tf-keras must move together: tf-keras X.Y only runs on tensorflow X.Y.
TF_RANGE = ">=2.21,<2.22"
# PySpark 4.x warns about pandas 3; Arrow carries the batches between the JVM and Python.
SPARK = ["pyspark>=3.5,<5", "pandas>=2,<3", "pyarrow>=14"]

setup(
    name="tf1infer",
    version="0.1.0",
    description="Run legacy TensorFlow 1.x / Keras models fast from one persistent Session, and migrate them to TF2.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tf1infer", "tf1infer.*"]),
    python_requires=">=3.10",
    install_requires=[
        f"tensorflow{TF_RANGE}",
        f"tf-keras{TF_RANGE}",
        "numpy>=1.26",
        "h5py>=3.10",
        "tqdm>=4.66",
        # Resident and available memory for batch_size="auto" where Linux's /proc is missing or hidden.
        "psutil>=5.9",
    ],
    extras_require={
        # The suite runs the Spark tests too (on local[2]; they skip only where Java is missing).
        # scikit-image: its sample photographs are the real images int8 is calibrated and checked on.
        # jax: the Keras 3 export is verified on Keras 3's JAX backend too where it is installed.
        "test": ["pytest>=8", "scikit-image>=0.22", "jax>=0.4.30", *SPARK],
        # tf1infer.spark and `tf1infer predict --spark`: Spark's Python side; Spark itself needs Java 17 or 21.
        "spark": SPARK,
        # make bench-tf1's converting peers and its chart.
        "bench": ["tf2onnx>=1.17", "onnx>=1.17", "onnxruntime>=1.20", "matplotlib>=3.8", "scikit-image>=0.22"],
    },
    entry_points={"console_scripts": ["tf1infer=tf1infer.cli:main"]},
    license="Apache-2.0",
)
