"""Helpers shared by the benchmarks: progress logging, the full-size checkpoint, machine facts."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch
import transformers
from PIL import Image

from pixseek.embedding.runtime import cpu_has_native_bf16
from pixseek.testing.tiny_models import build_clip

DEFAULT_WORK_DIR = Path(__file__).resolve().parent / ".work"
CHECKPOINT_NAME = "clip-vit-b32-random"
PIXSEEK_CACHE = "pixseek-cache"  # PIXSEEK_CACHE_DIR of the benchmarks' runs: compiled image towers


def log(message: str) -> None:
    """Progress on stderr, so stdout stays the machine-readable report."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ensure_checkpoint(work_dir: Path) -> Path:
    """The full-size random CLIP ViT-B/32, built once."""
    return ensure_built(work_dir, CHECKPOINT_NAME, build_clip)


def ensure_built(work_dir: Path, name: str, build: Callable[..., Path]) -> Path:
    """Build a full-size random checkpoint once; built in a temp dir and renamed, so a crash leaves none."""
    target = work_dir / name
    if (target / "model.safetensors").exists() and (target / "processor_config.json").exists():
        return target
    log(f"building full-size {name} (random weights) in {target}")
    work_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="ckpt-", dir=work_dir))
    build(staging, full_size=True)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def uptime() -> str:
    """The load averages, printed with every result: this machine is often shared."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except OSError:
        return "unknown"


def machine_info() -> dict[str, Any]:
    """What a reader needs to compare numbers across machines."""
    cpu, family, model = "unknown", "?", "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "model name" and cpu == "unknown":
                cpu = value
            elif key == "cpu family" and family == "?":
                family = value
            elif key == "model" and model == "?":
                model = value
    return {
        "cpu": cpu,
        "cpu_family_model": f"{family}/{model}",
        "cores": os.cpu_count(),
        "native_bf16": cpu_has_native_bf16(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "pillow": Image.__version__,
        "python": platform.python_version(),
    }


# ---- synthetic embedding-like vectors ---------------------------------------------------------
# Clustered, because uniform random vectors are a worst case on which every ANN index has near-zero
# recall (project notes): 1,000 Gaussian clusters in a 64-d subspace, projected to 512-d, plus
# noise, normalised. The geometry (centres, projection) is fixed; the seed only picks the samples,
# so queries drawn with another seed come from the same distribution as the collection.
VECTOR_DIM = 512
_CLUSTERS, _SUBSPACE = 1_000, 64


def clustered_vectors(count: int, *, seed: int = 0, chunk: int = 100_000) -> Iterator[np.ndarray]:
    """``count`` vectors in chunks of ``chunk`` (float32, L2-normalised), reproducible per seed."""
    geometry = np.random.default_rng(1234)
    centres = geometry.standard_normal((_CLUSTERS, _SUBSPACE)).astype(np.float32)
    projection = (geometry.standard_normal((_SUBSPACE, VECTOR_DIM)) / np.sqrt(_SUBSPACE)).astype(np.float32)
    rng = np.random.default_rng(seed)
    for start in range(0, count, chunk):
        n = min(chunk, count - start)
        points = centres[rng.integers(0, _CLUSTERS, n)]
        points += 0.35 * rng.standard_normal((n, _SUBSPACE), dtype=np.float32)
        vectors = points @ projection
        vectors += 0.1 * rng.standard_normal((n, VECTOR_DIM), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        yield vectors


def cached_clustered(work_dir: Path, count: int, seed: int = 0) -> np.ndarray:
    """``clustered_vectors(count)`` as a read-only memory map under ``work_dir``, generated once
    (10M vectors are 20 GB: more than this machine's memory, so they never exist in RAM at once)."""
    path = work_dir / f"clustered-{count}-{seed}.f32"
    if not path.exists() or path.stat().st_size != count * VECTOR_DIM * 4:
        log(f"generating {count} clustered {VECTOR_DIM}-d vectors in {path}")
        work_dir.mkdir(parents=True, exist_ok=True)
        staging = path.with_suffix(".tmp")
        matrix = np.memmap(staging, dtype=np.float32, mode="w+", shape=(count, VECTOR_DIM))
        start = 0
        for vectors in clustered_vectors(count, seed=seed):
            matrix[start : start + len(vectors)] = vectors
            start += len(vectors)
        matrix.flush()
        del matrix
        staging.rename(path)
    return np.memmap(path, dtype=np.float32, mode="r", shape=(count, VECTOR_DIM))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    data_dir: Path, photos: Path, checkpoint: Path, workers: int = 1
) -> tuple[subprocess.Popen, str]:
    """``pixseek serve`` over ``photos`` on a free port, returned once each of its ``workers``
    processes answered /health (each loads its own model): (process, base URL)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "pixseek.cli",
        "--data-dir",
        str(data_dir),
        "serve",
        "--root",
        str(photos),
        "--port",
        str(port),
        "--model",
        str(checkpoint),
        "--device",
        "cpu",
        "--workers",
        str(workers),
    ]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    seen: set[str] = set()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # every worker answered (each loads its own model)
        try:
            response = httpx.get(f"{base}/health", timeout=5)
            if response.status_code == 200:
                seen.add(response.headers.get("x-pixseek-worker", "single"))
            if len(seen) >= workers:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        server.kill()
        raise SystemExit(f"server with {workers} workers did not start")
    return server, base


def stop_server(server: subprocess.Popen) -> None:
    """Terminate a server started by :func:`start_server`, killing it if it does not stop."""
    server.terminate()
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
