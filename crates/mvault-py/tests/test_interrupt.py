"""Ctrl-C (SIGINT) interrupts long calls: the call raises KeyboardInterrupt promptly, a pull
leaves no partial file in its target and a push publishes no version."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import mvault
from conftest import files_of, model_files

SIZE = 48 * 1024 * 1024
RATE = "4M"  # so the transfer takes ~12 s and the signal lands in the middle


def rate_limited_config(tmp_path):
    cfg = tmp_path / "slow.yaml"
    cfg.write_text(f"cloud_storage:\n  transfer: {{ rate_limit: {RATE} }}\n")
    return cfg


def big_model(tmp_path):
    d = tmp_path / "big"
    d.mkdir()
    (d / "a.bin").write_bytes(os.urandom(SIZE // 2))
    (d / "b.bin").write_bytes(os.urandom(SIZE // 2))
    return d


def run_and_interrupt(code: str, tmp_path):
    """Runs `code` in a child Python, sends SIGINT once it printed `started`, and returns
    (exit code, output, seconds from the signal to the exit)."""
    p = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    line = p.stdout.readline()
    assert line.strip() == "started", line + p.stdout.read()
    time.sleep(1.5)
    assert p.poll() is None, "finished before the signal: " + p.stdout.read()
    sent = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=30)
    return p.returncode, out, time.monotonic() - sent


def test_ctrl_c_during_a_pull(tmp_path):
    root, cache = tmp_path / "vault", tmp_path / "cache"
    src = big_model(tmp_path)
    mvault.Vault(str(root), cache_dir=tmp_path / "push-cache").push([src], "big", "1.0.0")
    target = tmp_path / "target"
    code, out, secs = run_and_interrupt(
        f"""
        import sys, mvault
        v = mvault.Vault({str(root)!r}, config={str(rate_limited_config(tmp_path))!r},
                         cache_dir={str(cache)!r})
        print("started", flush=True)
        try:
            v.pull("big@1.0.0", {str(target)!r})
        except KeyboardInterrupt:
            print("KeyboardInterrupt", flush=True)
            sys.exit(130)
        print("finished", flush=True)
        """,
        tmp_path,
    )
    assert code == 130, out
    assert "KeyboardInterrupt" in out
    assert secs < 5, f"took {secs:.1f}s to stop"
    # No partial file: whatever is in the target is complete (here: nothing was placed yet),
    # and no temporary file is left.
    leftovers = [p for p in target.rglob("*") if p.is_file()] if target.exists() else []
    assert not [p for p in leftovers if p.name.endswith(".tmp")], leftovers
    want = files_of(src)
    for p in model_files(target) if target.exists() else []:
        assert p.read_bytes() == want[p.relative_to(target).as_posix()], p
    # The cache is still sound: the same pull, now unthrottled, completes and verifies.
    v = mvault.Vault(str(root), cache_dir=cache)
    assert files_of(v.pull("big@1.0.0", target, verify=True)) == want


def test_ctrl_c_during_a_push(tmp_path):
    root = tmp_path / "vault"
    src = big_model(tmp_path)
    code, out, secs = run_and_interrupt(
        f"""
        import sys, mvault
        v = mvault.Vault({str(root)!r}, config={str(rate_limited_config(tmp_path))!r},
                         cache_dir={str(tmp_path / "cache")!r})
        print("started", flush=True)
        try:
            v.push([{str(src)!r}], "big", "1.0.0")
        except KeyboardInterrupt:
            print("KeyboardInterrupt", flush=True)
            sys.exit(130)
        print("finished", flush=True)
        """,
        tmp_path,
    )
    if "finished" in out:
        pytest.fail("the push was not throttled enough to be interrupted: " + out)
    assert code == 130 and "KeyboardInterrupt" in out, out
    assert secs < 5, f"took {secs:.1f}s to stop"
    v = mvault.Vault(str(root), cache_dir=tmp_path / "cache")
    with pytest.raises(mvault.NotFound):
        v.versions("big")  # nothing half-published
    v.push([src], "big", "1.0.0")  # and the version can still be pushed
    assert v.verify().ok


def test_progress_is_throttled(tmp_path):
    # A 1.5 s push: the callback sees intermediate figures, about ten a second, not one per
    # chunk (24 chunks here).
    src = tmp_path / "m"
    src.mkdir()
    (src / "w.bin").write_bytes(os.urandom(12 * 1024 * 1024))
    cfg = tmp_path / "rate.yaml"
    cfg.write_text("cloud_storage:\n  transfer: { rate_limit: 8M }\n")
    v = mvault.Vault(str(tmp_path / "vault"), config=cfg, cache_dir=tmp_path / "cache")
    calls = []
    started = time.monotonic()
    v.push([src], "m", "1.0.0", progress=lambda d, t: calls.append((time.monotonic(), d, t)))
    secs = time.monotonic() - started
    assert secs > 1.0
    assert 3 <= len(calls) <= secs / 0.1 + 3, (len(calls), secs)
    assert calls[-1][1:] == (12 * 1024 * 1024, 12 * 1024 * 1024)
    assert any(0 < d < t for _, d, t in calls)
