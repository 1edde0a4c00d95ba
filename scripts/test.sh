#!/usr/bin/env bash
# The one command that runs mvault's whole test suite: it installs (into .tools/, once) and
# starts the local storage servers (moto for S3, Azurite for Azure Blob, gcp-storage-emulator
# for GCS), and with them up and the MVAULT_TEST_* variables set runs `cargo test`, then
# renders every `mvault serve` page in headless Chromium (scripts/serve-browser-test.sh,
# which installs Debian's chromium when it is missing), builds the Python package's wheel and
# runs its pytest suite in a fresh virtualenv (scripts/python-test.sh) and checks signed
# versions with the OpenSSF model-signing tool (scripts/signing-interop.sh); then stops the
# servers, whatever the outcome. Extra arguments go to `cargo test`, e.g.
#   scripts/test.sh --test e2e -- --nocapture
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Tests that need a server fail (never skip) when it is missing.
export MVAULT_REQUIRE_SERVERS=1
bash scripts/emulators.sh run -- \
    bash -c 'cargo test --release --locked "$@" && bash scripts/serve-browser-test.sh \
        && bash scripts/python-test.sh && bash scripts/signing-interop.sh' test.sh "$@"
