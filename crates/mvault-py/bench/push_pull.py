"""Push/pull throughput of the Python package against the `mvault` CLI on the same model and
the same kind of vault (a local directory), each with its own vault and cache.

    python crates/mvault-py/bench/push_pull.py --cli target/release/mvault [--mib 500] [--dir D]

Needs the wheel installed in this interpreter. Prints MB/s (10^6 bytes) of each phase: push
into an empty vault, pull into a new directory with an empty cache (everything from the
vault), and a warm re-pull (nothing to do). Page cache is warm for all (files just written).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mvault


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", required=True, type=lambda p: Path(p).resolve())
    ap.add_argument("--mib", type=int, default=500)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="mvault-bench-", dir=a.dir))
    model = base / "model"
    model.mkdir()
    per = a.mib * 1024 * 1024 // a.files
    for i in range(a.files):
        with open(model / f"shard-{i}.bin", "wb") as f:
            left = per
            while left:
                n = min(left, 16 << 20)
                f.write(os.urandom(n))
                left -= n
    total = per * a.files
    # No config file of the user for either side.
    os.environ["XDG_CONFIG_HOME"] = str(base / "xdg")
    os.environ.pop("MVAULT_CONFIG", None)
    os.chdir(base)
    env = dict(os.environ)
    results = {}
    for rnd in range(a.rounds):
        for kind in ("cli", "python"):
            root, cache, out = (base / f"{kind}-{rnd}-{x}" for x in ("vault", "cache", "out"))
            cache2 = base / f"{kind}-{rnd}-cache2"
            if kind == "cli":
                def cli(*args):
                    subprocess.run(
                        [str(a.cli), "-q", "-r", str(root), "--cache-dir", str(cache2 if "pull" in args else cache), *args],
                        check=True,
                        env=env,
                        stdout=subprocess.DEVNULL,
                    )
                push = lambda: cli("push", str(model), "--name", "m", "--version", "1.0.0")
                pull = lambda: cli("pull", "m@1.0.0", "--to", str(out))
            else:
                v = mvault.Vault(str(root), cache_dir=cache)
                v2 = mvault.Vault(str(root), cache_dir=cache2)
                push = lambda: v.push([model], "m", "1.0.0")
                pull = lambda: v2.pull("m@1.0.0", out)
            t_push = timed(push)
            t_pull = timed(pull)
            t_warm = timed(pull)
            for phase, t in (("push", t_push), ("pull", t_pull), ("warm pull", t_warm)):
                results.setdefault((kind, phase), []).append(t)
            for d in (root, cache, cache2, out):
                shutil.rmtree(d, ignore_errors=True)
    print(f"model: {a.files} files, {total / 1e6:.0f} MB random bytes; best of {a.rounds}")
    for phase in ("push", "pull", "warm pull"):
        row = []
        for kind in ("cli", "python"):
            t = min(results[(kind, phase)])
            row.append(f"{kind}: {t:7.3f} s {total / 1e6 / t:8.0f} MB/s")
        print(f"{phase:10}  " + "   ".join(row))
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
