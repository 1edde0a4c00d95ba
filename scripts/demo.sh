#!/usr/bin/env bash
# The main job on a fresh machine, no cloud account needed: build mvault, make a small
# model, push it to the default local vault, pull it back verified, show what is stored.
# Uses a throw-away HOME-like directory so it never touches your real vault or cache.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --locked
mv="$PWD/target/release/mvault"
demo="$(mktemp -d)"
trap 'rm -rf "$demo"' EXIT
export XDG_DATA_HOME="$demo/data" XDG_CACHE_HOME="$demo/cache" XDG_CONFIG_HOME="$demo/config"
unset MVAULT_REMOTE MVAULT_CONFIG MVAULT_CACHE_DIR

mkdir -p "$demo/bert/tokenizer"
head -c $((64 << 20)) /dev/urandom > "$demo/bert/model.safetensors"
echo '{"hidden_size": 768, "layers": 12}' > "$demo/bert/config.json"
printf 'hello\nworld\n' > "$demo/bert/tokenizer/vocab.txt"

set -x
"$mv" push "$demo/bert" --name bert --version v1.0.0 \
    --description "demo model" --metric accuracy=0.95 --param epochs=3 --tag team=demo
"$mv" list
"$mv" info bert@1.0.0
"$mv" pull bert@1.0.0 --to "$demo/out"
"$mv" pull bert@1.0.0 --to "$demo/out"      # warm: nothing transferred
diff -r "$demo/bert" "$demo/out" --exclude .mvault
{ set +x; } 2>/dev/null
echo "demo ok: pushed, pulled and verified bert@v1.0.0"
