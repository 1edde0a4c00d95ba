#!/usr/bin/env bash
# Interoperability of mvault's signed versions with the OpenSSF model-signing tool, the real
# package from PyPI (model-signing 1.1.1, with pyopenssl beside it), installed into a fresh
# virtualenv under .tools/sign-venv. Run by scripts/test.sh (so `.ci/run` runs it); alone:
#   bash scripts/signing-interop.sh            # uses target/release/mvault, building it if needed
#   MVAULT_BIN=target/debug/mvault bash scripts/signing-interop.sh
#
# Checks, each one failing the script:
#  1. mvault keygen, push --sign-key (a local vault), pull --to DIR --trusted-key;
#  2. `model_signing verify key DIR --signature DIR/.mvault/<model>.sig --public_key key.pub
#     --ignore-paths .mvault` succeeds, and so does the bundle `mvault signature` exports;
#  3. after any one file in DIR is changed, the same command fails;
#  4. the other way: a key made by `mvault keygen` is accepted by the tool (it signs DIR with
#     it and verifies that signature).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

MODEL_SIGNING_VERSION=1.1.1
VENV=.tools/sign-venv
PYTHON=${PYTHON:-python3}
MVAULT=${MVAULT_BIN:-target/release/mvault}
if [ "$MVAULT" = target/release/mvault ] && [ ! -x "$MVAULT" ]; then
    CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1} cargo build --release --locked --bin mvault
fi
MVAULT=$(cd "$(dirname "$MVAULT")" && pwd)/$(basename "$MVAULT")

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "model-signing==$MODEL_SIGNING_VERSION" pyopenssl
TOOL=$ROOT/$VENV/bin/model_signing

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
export MVAULT_CACHE_DIR=$WORK/cache MVAULT_REMOTE=file://$WORK/vault
unset MVAULT_TRUSTED_KEYS MVAULT_CONFIG

step() { printf 'signing-interop: %s\n' "$*"; }
fail() { printf 'signing-interop: FAILED: %s\n' "$*" >&2; exit 1; }

step "mvault keygen, signed push, trusted pull"
"$MVAULT" keygen --out release.key
mkdir -p src/weights src/tokenizer
printf '{"hidden_size": 768}\n' > src/config.json
head -c 3000000 /dev/urandom > src/weights/model.bin
printf 'a\nb\n' > src/tokenizer/vocab.txt
: > src/empty.txt
"$MVAULT" push src --name bert --version 1.0.0 --sign-key release.key
"$MVAULT" pull bert@1.0.0 --to pulled --trusted-key release.key.pub
[ -f pulled/.mvault/bert.sig ] || fail "pull --to did not write pulled/.mvault/bert.sig"
"$MVAULT" signature bert@1.0.0 --out exported.sig --trusted-key release.key.pub
cmp -s exported.sig pulled/.mvault/bert.sig || fail "exported bundle differs from the pulled one"

verify() { # DIR SIG
    "$TOOL" verify key "$1" --signature "$2" --public_key release.key.pub --ignore-paths .mvault
}

step "model_signing verify key on the fresh pull (must succeed)"
verify pulled pulled/.mvault/bert.sig || fail "the tool refused a fresh pull"
verify pulled exported.sig || fail "the tool refused the exported bundle"
(cd pulled && "$TOOL" verify key . --signature .mvault/bert.sig --public_key ../release.key.pub \
    --ignore-paths .mvault) || fail "the tool refused a fresh pull (run inside it)"

step "one file changed: verify must fail"
# Pulled files are hard links to read-only cache blobs: replace the file, do not edit it.
for f in config.json weights/model.bin tokenizer/vocab.txt empty.txt; do
    cp -r pulled "changed-${f//\//_}"
    d="changed-${f//\//_}"
    { cat "$d/$f"; printf 'x'; } > "$d/$f.new" && mv -f "$d/$f.new" "$d/$f"
    if verify "$d" "$d/.mvault/bert.sig" 2>/dev/null; then
        fail "the tool accepted $f changed"
    fi
done
cp -r pulled extra && printf 'new\n' > extra/added.txt
if verify extra extra/.mvault/bert.sig 2>/dev/null; then fail "the tool accepted an added file"; fi
cp -r pulled missing && rm -f missing/tokenizer/vocab.txt
if verify missing missing/.mvault/bert.sig 2>/dev/null; then fail "the tool accepted a missing file"; fi

step "a key made by mvault keygen signs and verifies with the tool"
"$TOOL" sign key pulled --private_key release.key --signature tool.sig --ignore-paths pulled/.mvault
"$TOOL" verify key pulled --signature tool.sig --public_key release.key.pub \
    --ignore-paths pulled/.mvault || fail "the tool refused its own signature with an mvault key"

step "ok"
