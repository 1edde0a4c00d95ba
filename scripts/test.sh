#!/usr/bin/env bash
# The one command that runs mvault's whole test suite: it installs (into .tools/, once) and
# starts the local storage servers (moto for S3, Azurite for Azure Blob, gcp-storage-emulator
# for GCS), runs `cargo test` against them with the MVAULT_TEST_* variables set, and stops
# them again, whatever the outcome; then builds the Python package's wheel and runs its
# pytest suite in a fresh virtualenv (scripts/python-test.sh). Extra arguments go to
# `cargo test`, e.g.
#   scripts/test.sh --test e2e -- --nocapture
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Tests that need a server fail (never skip) when it is missing.
export MVAULT_REQUIRE_SERVERS=1
bash scripts/emulators.sh run -- cargo test --release --locked "$@"
bash scripts/python-test.sh
