# Set-up and entry points. `make demo` and `make test` work on a fresh machine: each creates .venv, installs
# tf1infer with what it needs (the demo: the runtime requirements and Keras 2; the suite: its test extras too), then runs.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
RUNTIME_STAMP := $(VENV)/.runtime-stamp
# TensorFlow's C++ start-up chatter (CUDA probing on a CPU machine) hides the output that matters.
QUIET_TF := TF_CPP_MIN_LOG_LEVEL=2
# Empty: the MLP that comes with the package (tf1infer/cli/demo_data/); DEMO_MODEL=path.h5 for another.
DEMO_MODEL ?=
# The suite runs its test files in parallel, one worker per core up to 4 (pytest-xdist; a file's tests stay in one
# worker and share its fixtures: the Spark session, the exported models). TEST_WORKERS=1 runs them in one process.
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(min(4, len(os.sched_getaffinity(0))))" 2>/dev/null || echo 1)
# The real-world corpus's exports (tests/test_real_world_keras.py, marked real_world) have their own target.
PYTEST = -m pytest tests -p no:cacheprovider -ra -m "not real_world" \
	$(if $(filter-out 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

.PHONY: venv demo test test-flipped test-both test-tf test-real-world lint wheel-check fuzz bench-tf1 deviations zoo clean

venv: $(STAMP)

# Each reinstalls whenever setup.py changes (new dependencies or ranges). keras2: tf-keras, which the Keras loaders
# need (not a requirement of tf1infer itself: see setup.py); jax: the Keras 3 export's second backend; litert:
# ai_edge_litert's TF Lite interpreter (the suite runs TensorFlow's too, and make test-tf runs without it); serve:
# tf1infer serve's server stack.
$(RUNTIME_STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[keras2]"
	touch $(RUNTIME_STAMP)

$(STAMP): setup.py $(RUNTIME_STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test,keras2,jax,litert,serve]"
	touch $(STAMP)

demo: $(RUNTIME_STAMP)
	$(BIN)/tf1infer demo $(DEMO_MODEL)

# ruff (lint and format check), mypy, and import-linter's layering contracts; configuration in pyproject.toml.
LINT_STAMP := $(VENV)/.lint-stamp
$(LINT_STAMP): setup.py $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[lint]"
	touch $(LINT_STAMP)

LINTED := tf1infer tests legacy_models
lint: $(LINT_STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy
	$(BIN)/lint-imports

# The wheel on its own: built, installed with its keras2 extra into a new virtualenv, and run from an empty folder
# (no repository at hand): `tf1infer --version` and `tf1infer demo` on the model the package carries.
WHEEL_VENV ?= .venv-wheel
wheel-check: venv
	rm -rf dist $(WHEEL_VENV)
	$(BIN)/python -m pip wheel --quiet --disable-pip-version-check --no-deps -w dist .
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "$$(ls dist/tf1infer-*.whl)[keras2]"
	scratch=$$(mktemp -d) && cd $$scratch && \
	  $(abspath $(WHEEL_VENV))/bin/tf1infer --version && \
	  $(abspath $(WHEEL_VENV))/bin/tf1infer demo && \
	  cd / && rm -rf $$scratch

test: venv
	$(QUIET_TF) $(BIN)/python $(PYTEST)

# The suite on another TensorFlow of the supported range (2.15 ... 2.21), in its own virtualenv .venv-tf$(TF):
# built as a user's environment with that TensorFlow, then tf1infer installed into it, checking that this changed
# nothing already there (tests/tf_venv.sh).
TF ?= 2.15
test-tf:
	bash tests/tf_venv.sh $(TF) .venv-tf$(TF) $(PYTHON)
	$(QUIET_TF) .venv-tf$(TF)/bin/python $(PYTEST)

# The suite on TensorFlow's other CPU kernel family: TF_ENABLE_ONEDNN_OPTS=0 where oneDNN is on in this
# environment (its default on AVX-512 VNNI/BF16 and AMX CPUs), =1 where it is off (AVX2-only x86 and others).
test-flipped: venv
	@flipped=$$($(BIN)/tf1infer kernels --other) && \
	  echo "test-flipped: TF_ENABLE_ONEDNN_OPTS=$$flipped" && \
	  $(QUIET_TF) TF_ENABLE_ONEDNN_OPTS=$$flipped $(BIN)/python $(PYTEST)

# The real-world Keras corpus (legacy_models/real_world/: files written by Keras 1.2-2.2 in other projects): each
# checked against its reference and exported to SavedModel and Keras 3, verified; and the exports of the shared
# corpus's Lambda files (tests/test_verification.py). About four minutes on two cores.
test-real-world: venv
	$(QUIET_TF) $(BIN)/python -m pytest tests/test_real_world_keras.py tests/test_verification.py -p no:cacheprovider \
	  -ra -m real_world \
	  $(if $(filter-out 1,$(TEST_WORKERS)),-n $(TEST_WORKERS)) $(PYTEST_ARGS)

# Both kernel families, as CI runs them.
test-both: test test-flipped

# The long fuzz campaign: FUZZ variants (default 2000) of damaged model files, each loaded in a child with a time
# limit (make test runs 600); FUZZ_SEED picks another campaign.
FUZZ ?= 2000
fuzz: venv
	$(QUIET_TF) TF1INFER_FUZZ=$(FUZZ) $(if $(FUZZ_SEED),TF1INFER_FUZZ_SEED=$(FUZZ_SEED)) $(BIN)/python -m pytest tests/test_fuzz.py -p no:cacheprovider -ra -s -k every $(PYTEST_ARGS)

# The benchmark's peers (ONNX Runtime via tf2onnx) and chart (matplotlib) come with the bench extra.
BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): setup.py $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	touch $(BENCH_STAMP)

# QUICK=1: short rounds, one pass (about 7 minutes here with every section); BENCH_ARGS for more (--models, --peers, ...).
bench-tf1: $(BENCH_STAMP)
	$(QUIET_TF) $(BIN)/python -m tf1infer.bench $(if $(QUICK),--quick) $(BENCH_ARGS)

# Per model, the float32 session's deviation from float64 and each converted runtime's (TF Lite, SavedModel, Keras 3),
# as verification measures them; ONLY=name for some. Run under both kernel families (TF_ENABLE_ONEDNN_OPTS=0 / 1).
deviations: venv
	$(QUIET_TF) $(BIN)/python -m tf1infer.bench.deviations $(if $(ONLY),--only $(ONLY))

# Regenerates the committed fixture zoo in legacy_models/.
zoo: venv
	$(QUIET_TF) $(BIN)/python legacy_models/make_zoo.py
	$(QUIET_TF) $(BIN)/python legacy_models/make_tf1_fixtures.py
	$(QUIET_TF) $(BIN)/python legacy_models/make_keras1_fixtures.py
	$(QUIET_TF) $(BIN)/python legacy_models/make_keras3_fixtures.py

clean:
	rm -rf $(VENV) $(WHEEL_VENV) build dist *.egg-info
