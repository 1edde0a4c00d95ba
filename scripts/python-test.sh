#!/usr/bin/env bash
# Builds the Python package (crates/mvault-py) as a wheel with maturin, installs it into a
# fresh virtualenv under .tools/py-venv, and runs its pytest suite. Extra arguments go to
# pytest, e.g.  scripts/python-test.sh -k integrity -x
#
# The S3 / GCS / Azure tests use the servers of `scripts/emulators.sh` (the MVAULT_TEST_*
# variables); `scripts/test.sh` runs this inside `emulators.sh run` with
# MVAULT_REQUIRE_SERVERS=1, so a missing server fails. Run alone, those tests skip:
#   MVAULT_REQUIRE_SERVERS=1 bash scripts/emulators.sh run -- bash scripts/python-test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MATURIN_VERSION=1.9.6
PYTEST_VERSION=9.2.0
TQDM_VERSION=4.67.1
NUMPY_VERSION=2.4.6 # metadata from numpy scalars and arrays (test_vault.py)
VENV=.tools/py-venv
PYTHON=${PYTHON:-python3}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "maturin==$MATURIN_VERSION" "pytest==$PYTEST_VERSION" "tqdm==$TQDM_VERSION" \
    "numpy==$NUMPY_VERSION"

# The CLI too: tests use `mvault keygen` (a no-op after `scripts/test.sh`'s cargo tests).
cargo build --release --locked --bin mvault
rm -f "${CARGO_TARGET_DIR:-target}"/wheels/mvault-*.whl
"$VENV/bin/maturin" build --release --locked -m crates/mvault-py/Cargo.toml
wheels=("${CARGO_TARGET_DIR:-target}"/wheels/mvault-*.whl)
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-index "${wheels[@]}"

# From outside the source tree, so `import mvault` is the installed wheel.
cd crates/mvault-py/tests
export AWS_EC2_METADATA_DISABLED=true
exec "../../../$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@" .
