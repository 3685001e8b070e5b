#!/usr/bin/env bash
# Builds VENV with TensorFlow VERSION (2.15 ... 2.21) the way a user's environment is built, then installs tf1infer
# into it and checks that this changed none of the packages already there (TensorFlow, numpy, Keras, ...): tf1infer
# must install beside the TensorFlow people have. Then adds the matching tf-keras and the test extras, every
# package already there held at its version. Used by `make test-tf TF=VERSION`; CI runs it on a fresh clone.
#
#   tests/tf_venv.sh VERSION VENV [PYTHON]
set -euo pipefail
version="$1"
venv="$2"
python="${3:-python3}"
cd "$(dirname "$0")/.."
stamp="$venv/.installed-stamp"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$version" && "$stamp" -nt setup.py ]]; then
  exit 0
fi
rm -rf "$venv"
"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet --upgrade pip
echo "tf_venv: the user's environment: tensorflow==$version.* and what it pulls in (numpy included)"
"${pip[@]}" install --quiet "tensorflow==$version.*"
"${pip[@]}" freeze --exclude-editable > "$venv/before.txt"
echo "tf_venv: installing tf1infer (its runtime requirements) into it"
"${pip[@]}" install --quiet -e .
"${pip[@]}" freeze --exclude-editable > "$venv/after.txt"
changed=$(comm -23 <(sort "$venv/before.txt") <(sort "$venv/after.txt"))
if [[ -n "$changed" ]]; then
  echo "tf_venv: FAIL: installing tf1infer replaced packages the environment already had:" >&2
  echo "$changed" | sed 's/^/  was /' >&2
  diff "$venv/before.txt" "$venv/after.txt" >&2 || true
  rm -rf "$venv"
  exit 1
fi
echo "tf_venv: ok: tf1infer installed beside $(grep -iE '^(tensorflow|numpy|keras)==' "$venv/before.txt" | tr '\n' ' ')changing none of them"
# The test extras and the matching Keras 2, every package the user had held where it is.
# The serve extra too: tensorflow-serving-api's release for this TensorFlow, the constraints keeping TensorFlow,
# protobuf and grpcio where they are (unconstrained, pip would upgrade TensorFlow to meet the newest release).
"${pip[@]}" install --quiet -c "$venv/before.txt" -e ".[test,serve]" "tf-keras~=$version.0" \
  "tensorflow-serving-api~=$version.0"
"$venv/bin/python" -c "import tensorflow as tf, numpy, tf_keras, tensorflow_serving.apis.predict_pb2; print('tf_venv: tensorflow', tf.__version__, 'tf_keras', tf_keras.__version__, 'numpy', numpy.__version__)"
echo "$version" > "$stamp"
