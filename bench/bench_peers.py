"""pixseek against its peers (rclip, clip-retrieval) indexing the same JPEGs on the same CPU (issue 17).

Every tool runs as a user runs it, in a process of its own from its own CLI entry point, so start-up
(imports, model load, warm-up) counts for each alike, and each on the same random-weight CLIP
ViT-B/32 (bench/common.py's checkpoint; cost does not depend on the weights):

* ``pixseek``: ``.venv/bin/pixseek index FOLDER --json`` with ``PIXSEEK_DATA_DIR`` a fresh temp dir,
  ``PIXSEEK_MODEL`` the checkpoint and ``PIXSEEK_PRECISION=auto`` (bf16 on CPUs with native bf16,
  else fp32); everything else pixseek's defaults, so the image tower runs in OpenVINO, compiled
  once into ``PIXSEEK_CACHE_DIR`` (``bench/.work/pixseek-cache``, kept between runs as rclip's
  ONNX files are). That first run, which exports the tower, is timed on its own ("first use");
* ``pixseek-torch``: the same with ``PIXSEEK_IMAGE_RUNTIME=torch`` (the PyTorch tower, pixseek
  before issue 17's runtime), measured in the same rounds as the baseline of that change;
* ``rclip`` 3.3.0: its own ``rclip.main.main`` (index the current folder, then answer one text
  query), run by bench/peers/run_rclip.py with the rclip venv's python, on ONNX exports of the same
  checkpoint (bench/peers/export_rclip_onnx.py) at input size 224; ``RCLIP_DATADIR`` a fresh dir;
* ``clip-retrieval`` 2.45.0: ``clip_inference`` with ``hf_clip:CHECKPOINT`` (all_clip loads it with
  transformers, torch fp32 on the CPU), run by bench/peers/run_clip_retrieval.py with its venv's
  python, into a fresh output folder.

What each launcher patches is stated in its docstring. Nothing is installed at run time: each peer
lives in its own venv under ``bench/.work/peers/<name>/`` (its dependencies conflict with pixseek's;
bench/README.md gives the commands) and a peer whose venv is missing is skipped with a note.

Method. Two generated image sets (bench_indexing.ensure_photos: 4000x3000 camera-like JPEGs and
640x480 ones), each as a full folder of N images and a subset folder of its first n images (the
generator is deterministic per index, so they are the same files). Per round, every tool indexes
every folder in a fresh data directory, the order of tools rotating from round to round so drift on
a shared VM hits every tool alike. From the medians over rounds:

* wall s: the whole process, ``Popen`` to exit, on the N folder; wall images/s = N / wall;
* steady images/s: (N - n) / (wall(N) - wall(n)), per round, then the median: the marginal rate
  once the tool is running, the same differencing for every tool (no tool's own progress output is
  trusted or needed);
* start-up s: wall(n) - n / steady, the intercept: imports, model load, warm-up, tear-down;
* peak RSS: ``ru_maxrss`` of the process and its children (``os.wait4`` in a ~10 MB wrapper
  interpreter, see ``_RSS_WRAPPER``), i.e. the largest single process; tree RSS: the largest sum
  of VmRSS over the process tree, sampled from /proc every 0.25 s (counts pages shared between
  forked workers more than once);
* ratios pixseek / peer of wall images/s and of steady images/s (> 1: pixseek faster).

Each run's output is checked: pixseek's JSON report, rclip's SQLite rows and clip-retrieval's
embedding file must hold N (or n) vectors. One untimed warm-up run per tool on the small subset
first, so no tool pays for a cold page cache of its model files.

Run: ``python bench/bench_peers.py`` (200 + 200 images, subsets of 20, 3 rounds) or ``--quick``
(40 + 40, subsets of 10, 1 round). Progress goes to stderr; stdout is a markdown report whose last
line is one JSON object.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import datetime
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from bench_indexing import ensure_photos, photo_paths, warm_page_cache
from pixseek_stages import parity, profile_set

from common import DEFAULT_WORK_DIR, PIXSEEK_CACHE, ensure_checkpoint, log, machine_info, uptime
from pixseek.embedding.runtime import resolve_precision

REPO = Path(__file__).resolve().parent.parent
PEERS_SRC = Path(__file__).resolve().parent / "peers"
TOOLS = ("pixseek", "pixseek-torch", "rclip", "clip-retrieval")
LARGE, SMALL = (4000, 3000), (640, 480)
QUALITY = 90
RUN_TIMEOUT_S = 3600
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


# ---- running one child process ---------------------------------------------------------------------


def _tree_rss_mb(root: int) -> float:
    """Sum of VmRSS over ``root`` and its descendants, in MB (one pass over /proc per call)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    total_pages, pending = 0, [root]
    while pending:
        pid = pending.pop()
        try:
            total_pages += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        pending.extend(children.get(pid, ()))
    return total_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@dataclass
class Run:
    wall_s: float
    peak_rss_mb: float
    tree_rss_mb: float


# ``ru_maxrss`` survives exec: a child forked from this process (torch imported, ~1 GB) would report
# this process's high-water mark. So each command is started by a tiny interpreter (``python -I -S``,
# ~10 MB), which waits for it and writes its ``ru_maxrss`` (the largest of it and its reaped children).
_RSS_WRAPPER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_process(command: Sequence[str], env: dict[str, str], cwd: Path, log_path: Path) -> Run:
    """Run ``command`` to its end: wall time, the largest single-process RSS, the largest tree RSS."""
    rss_path = log_path.with_suffix(".maxrss")
    wrapped = [sys.executable, "-I", "-S", "-c", _RSS_WRAPPER, str(rss_path), *command]
    with log_path.open("wb") as output:
        started = time.perf_counter()
        process = subprocess.Popen(wrapped, env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT)
        tree_peak = 0.0
        done = threading.Event()

        def sample() -> None:
            nonlocal tree_peak
            while not done.wait(0.25):
                tree_peak = max(tree_peak, _tree_rss_mb(process.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            returncode = process.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            returncode = process.wait()
        wall = time.perf_counter() - started
        done.set()
        sampler.join()
    if returncode != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{command[0]} exited with {returncode}:\n{tail}")
    return Run(wall, int(rss_path.read_text()) / 1024, tree_peak)


def child_env(**extra: str) -> dict[str, str]:
    """This environment without this venv's traces, offline, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="disabled")
    env.update(extra)
    return env


# ---- the tools -------------------------------------------------------------------------------------


@dataclass
class Tool:
    name: str
    version: str
    runtime: str
    # (folder, scratch dir, log file) -> Run, after checking the vectors it wrote
    index: Callable[[Path, Path, Path, int], Run]


def _peer_python(work_dir: Path, name: str) -> Path | None:
    python = work_dir / "peers" / name / "bin" / "python"
    return python if python.exists() else None


def _versions(python: Path, packages: Sequence[str]) -> str:
    code = (
        "import importlib.metadata as m, sys\n"
        "out = []\n"
        "for p in sys.argv[1:]:\n"
        "    try: out.append(p + ' ' + m.version(p))\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(', '.join(out))"
    )
    result = subprocess.run(
        [str(python), "-c", code, *packages], capture_output=True, text=True, env=child_env()
    )
    return result.stdout.strip() or "unknown"


def pixseek_tool(checkpoint: Path, precision: str, cache_dir: Path, runtime: str = "auto") -> Tool:
    executable = REPO / ".venv" / "bin" / "pixseek"
    if not executable.exists():
        executable = Path(sys.executable).parent / "pixseek"

    def index(folder: Path, scratch: Path, log_path: Path, expected: int) -> Run:
        env = child_env(
            PIXSEEK_DATA_DIR=str(scratch / "data"),
            PIXSEEK_MODEL=str(checkpoint),
            PIXSEEK_PRECISION="auto",
            PIXSEEK_CACHE_DIR=str(cache_dir),
            PIXSEEK_IMAGE_RUNTIME=runtime,
        )
        run = run_process([str(executable), "index", str(folder), "--json"], env, folder, log_path)
        text = log_path.read_text(errors="replace")
        report = json.loads(text[text.index("{") :])
        if report["embedded"] != expected or report["failed"]:
            raise RuntimeError(f"pixseek embedded {report['embedded']}/{expected}: {report['failed'][:3]}")
        return run

    if runtime == "torch":
        versions = _versions(Path(sys.executable), ["pixseek", "torch"])
        return Tool("pixseek-torch", versions, f"PyTorch {precision}", index)
    versions = _versions(Path(sys.executable), ["pixseek", "openvino"])
    return Tool("pixseek", versions, f"OpenVINO {precision} images (PyTorch texts)", index)


def rclip_tool(work_dir: Path, checkpoint: Path, notes: list[str]) -> Tool | None:
    python = _peer_python(work_dir, "rclip")
    if python is None:
        notes.append(
            f"rclip skipped: no venv at {work_dir / 'peers' / 'rclip'} (bench/README.md installs it)"
        )
        return None
    models = work_dir / "peers" / "rclip-models"
    if not (models / "manifest.json").exists():
        exporter = work_dir / "peers" / "onnx-export"
        if not (exporter / "onnx").exists():
            notes.append(f"rclip skipped: no ONNX export in {models} and no onnx package in {exporter}")
            return None
        log(f"exporting the checkpoint to ONNX for rclip in {models}")
        subprocess.run(
            [sys.executable, str(PEERS_SRC / "export_rclip_onnx.py"), str(checkpoint), str(models)],
            check=True,
            env={**child_env(), "PYTHONPATH": str(exporter)},
        )

    def index(folder: Path, scratch: Path, log_path: Path, expected: int) -> Run:
        env = child_env(RCLIP_DATADIR=str(scratch / "rclip"))
        command = [str(python), str(PEERS_SRC / "run_rclip.py"), str(models), "-f", "-t", "1", "a photo"]
        run = run_process(command, env, folder, log_path)
        with sqlite3.connect(scratch / "rclip" / "db.sqlite3") as db:
            (count,) = db.execute("SELECT COUNT(*) FROM images WHERE vector IS NOT NULL").fetchone()
        if count != expected:
            raise RuntimeError(f"rclip stored {count}/{expected} vectors")
        return run

    return Tool("rclip", _versions(python, ["rclip", "onnxruntime", "pillow"]), "ONNX Runtime fp32", index)


def clip_retrieval_tool(work_dir: Path, checkpoint: Path, batch_size: int, notes: list[str]) -> Tool | None:
    python = _peer_python(work_dir, "clip-retrieval")
    if python is None:
        notes.append(
            f"clip-retrieval skipped: no venv at {work_dir / 'peers' / 'clip-retrieval'} "
            "(bench/README.md installs it)"
        )
        return None
    workers = os.cpu_count() or 1

    def index(folder: Path, scratch: Path, log_path: Path, expected: int) -> Run:
        out = scratch / "clip-retrieval"
        command = [
            str(python),
            str(PEERS_SRC / "run_clip_retrieval.py"),
            str(checkpoint),
            str(folder),
            str(out),
            str(batch_size),
            str(workers),
        ]
        run = run_process(command, child_env(), folder, log_path)
        count = int((out / "count.txt").read_text())
        if count != expected:
            raise RuntimeError(f"clip-retrieval wrote {count}/{expected} embeddings")
        return run

    versions = _versions(python, ["clip-retrieval", "all_clip", "torch", "transformers", "pillow"])
    return Tool(
        "clip-retrieval", versions, f"torch fp32, {workers} reader workers, batch {batch_size}", index
    )


# ---- measuring -------------------------------------------------------------------------------------


@dataclass
class Cell:
    """One tool on one image set: every round's runs of the N folder and the n folder."""

    tool: str
    set: str
    n_full: int
    n_subset: int
    full: list[Run] = field(default_factory=list)
    subset: list[Run] = field(default_factory=list)

    def steady_rates(self) -> list[float]:
        rates = []
        for full, subset in zip(self.full, self.subset, strict=True):
            delta = full.wall_s - subset.wall_s
            rates.append((self.n_full - self.n_subset) / delta if delta > 0 else float("nan"))
        return rates

    def summary(self) -> dict[str, Any]:
        steady = self.steady_rates()
        startups = [
            subset.wall_s - self.n_subset / rate for subset, rate in zip(self.subset, steady, strict=True)
        ]
        walls = [run.wall_s for run in self.full]
        wall = statistics.median(walls)
        return {
            "tool": self.tool,
            "set": self.set,
            "images": self.n_full,
            "subset_images": self.n_subset,
            "wall_s": wall,
            "wall_s_all": walls,
            "subset_wall_s_all": [run.wall_s for run in self.subset],
            "wall_images_per_s": self.n_full / wall,
            "steady_images_per_s": statistics.median(steady),
            "steady_images_per_s_all": steady,
            "startup_s": statistics.median(startups),
            "peak_rss_mb": max(run.peak_rss_mb for run in self.full + self.subset),
            "tree_rss_mb": max(run.tree_rss_mb for run in self.full + self.subset),
        }


def cpu_flags() -> dict[str, bool]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []
    )
    return {flag: flag in flags for flag in CPU_FLAGS}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--large", type=int, default=200, help="4000x3000 JPEGs in the large set (default 200)"
    )
    parser.add_argument("--small", type=int, default=200, help="640x480 JPEGs in the small set (default 200)")
    parser.add_argument("--subset", type=int, default=20, help="images in each set's subset run (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument(
        "--tools", default=",".join(TOOLS), help=f"comma-separated, from {', '.join(TOOLS)} (default all)"
    )
    parser.add_argument(
        "--clip-retrieval-batch",
        type=int,
        default=32,
        help="clip-retrieval's batch_size (default 32, as pixseek)",
    )
    parser.add_argument(
        "--work-dir", type=Path, default=DEFAULT_WORK_DIR, help="cache: model, photos, peer venvs"
    )
    parser.add_argument(
        "--no-profile", action="store_true", help="skip pixseek's per-stage profile and parity check"
    )
    parser.add_argument("--quick", action="store_true", help="40 + 40 images, subsets of 10, 1 round")
    if "--quick" in (sys.argv[1:] if argv is None else argv):
        parser.set_defaults(large=40, small=40, subset=10, rounds=1)
    args = parser.parse_args(argv)
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = set(args.tools) - set(TOOLS)
    if unknown:
        parser.error(f"unknown tools: {', '.join(sorted(unknown))}")
    if "pixseek" not in args.tools:
        parser.error("--tools must include pixseek (the ratios are against it)")
    if min(args.large, args.small) <= args.subset or args.subset < 1 or args.rounds < 1:
        parser.error("need --large and --small > --subset >= 1 and --rounds >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    work_dir: Path = args.work_dir.resolve()
    checkpoint = ensure_checkpoint(work_dir)
    precision = resolve_precision("auto", torch.device("cpu"))
    notes: list[str] = []
    cache_dir = work_dir / PIXSEEK_CACHE
    tools: list[Tool | None] = [pixseek_tool(checkpoint, precision, cache_dir)]
    if "pixseek-torch" in args.tools:
        tools.append(pixseek_tool(checkpoint, precision, cache_dir, runtime="torch"))
    if "rclip" in args.tools:
        tools.append(rclip_tool(work_dir, checkpoint, notes))
    if "clip-retrieval" in args.tools:
        tools.append(clip_retrieval_tool(work_dir, checkpoint, args.clip_retrieval_batch, notes))
    present = [tool for tool in tools if tool is not None]
    for note in notes:
        log(note)

    sets = {
        f"large {LARGE[0]}x{LARGE[1]}": (LARGE, args.large),
        f"small {SMALL[0]}x{SMALL[1]}": (SMALL, args.small),
    }
    folders: dict[str, tuple[Path, Path]] = {}
    for label, (size, count) in sets.items():
        full = ensure_photos(work_dir, count, size, QUALITY)
        subset = ensure_photos(work_dir, args.subset, size, QUALITY)
        folders[label] = (full, subset)
    sizes = {
        label: sum(p.stat().st_size for p in photo_paths(full)) / 1e6 / len(photo_paths(full))
        for label, (full, _) in folders.items()
    }

    load_before = uptime()
    machine = {**machine_info(), "cpu_flags": cpu_flags(), "load_before": load_before}
    log(f"machine: {machine}")
    runs_dir = work_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    logs_dir = work_dir / "peers" / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)

    def once(tool: Tool, folder: Path, expected: int, tag: str) -> Run:
        scratch = Path(tempfile.mkdtemp(prefix=f"peers-{tool.name}-", dir=runs_dir))
        try:
            warm_page_cache(photo_paths(folder))
            run = tool.index(folder, scratch, logs_dir / f"{tool.name}-{tag}.log", expected)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        log(
            f"{tool.name} {tag}: {run.wall_s:.2f} s, {expected / run.wall_s:.2f} images/s, "
            f"peak RSS {run.peak_rss_mb:.0f} MB (tree {run.tree_rss_mb:.0f} MB)"
        )
        return run

    small_subset = folders[f"small {SMALL[0]}x{SMALL[1]}"][1]
    # pixseek's first use of a model exports its image tower: timed once, from an empty cache.
    shutil.rmtree(cache_dir, ignore_errors=True)
    first_use = once(present[0], small_subset, args.subset, "first-use").wall_s
    for tool in present:
        once(tool, small_subset, args.subset, "warm-up")

    cells = {
        (tool.name, label): Cell(tool.name, label, sets[label][1], args.subset)
        for tool in present
        for label in sets
    }
    for round_index in range(args.rounds):
        shift = round_index % len(present)
        order = present[shift:] + present[:shift]
        for label, (full, subset) in folders.items():
            for tool in order:
                cell = cells[(tool.name, label)]
                tag = f"r{round_index + 1}-{label.split()[0]}"
                cell.subset.append(once(tool, subset, args.subset, f"{tag}-n{args.subset}"))
                cell.full.append(once(tool, full, cell.n_full, f"{tag}-n{cell.n_full}"))
    machine["load_after"] = uptime()
    profiles: list[dict[str, Any]] = []
    checks: dict[str, Any] = {}
    if not args.no_profile:
        for label, (full, _) in folders.items():
            profiles.append({"label": label, **profile_set(full, work_dir, checkpoint, precision, cache_dir)})
        checks = parity(checkpoint, folders[f"small {SMALL[0]}x{SMALL[1]}"][0], cache_dir)
        machine["load_after_profile"] = uptime()

    summaries = [cell.summary() for cell in cells.values()]
    by_key = {(s["tool"], s["set"]): s for s in summaries}
    for s in summaries:
        mine = by_key[("pixseek", s["set"])]
        s["ratio_wall"] = mine["wall_images_per_s"] / s["wall_images_per_s"]
        s["ratio_steady"] = mine["steady_images_per_s"] / s["steady_images_per_s"]

    config = {
        "sets": {label: {"size": list(size), "images": n} for label, (size, n) in sets.items()},
        "subset_images": args.subset,
        "rounds": args.rounds,
        "jpeg_quality": QUALITY,
        "mean_file_mb": sizes,
        "pixseek_precision": precision,
        "model": "CLIP ViT-B/32 architecture, random weights, input 224 px (bench/common.py)",
        "tools": {tool.name: {"version": tool.version, "runtime": tool.runtime} for tool in present},
        "skipped": notes,
        "pixseek_first_use_s": first_use,
    }
    for profile in profiles:
        steady = by_key[("pixseek", profile["label"])]["steady_images_per_s"]
        profile["pixseek_steady_images_per_s"] = steady
        profile["fraction_of_bound"] = steady / profile["bound_images_per_s"]
    print_report(machine, config, summaries, profiles, checks)


def print_report(
    machine: dict[str, Any],
    config: dict[str, Any],
    summaries: list[dict[str, Any]],
    profiles: list[dict[str, Any]],
    checks: dict[str, Any],
) -> None:
    print(f"## Peer benchmark ({datetime.date.today().isoformat()})\n")
    flags = ", ".join(f"{flag} {'yes' if on else 'no'}" for flag, on in machine["cpu_flags"].items())
    print(
        f"Machine: {machine['cpu']} (family/model {machine['cpu_family_model']}), {machine['cores']} cores; "
        f"flags: {flags}. Load before: {machine['load_before']}; after: {machine['load_after']}\n"
    )
    sets = "; ".join(
        f"{label}: {spec['images']} JPEGs q{config['jpeg_quality']}, "
        f"mean {config['mean_file_mb'][label]:.2f} MB"
        for label, spec in config["sets"].items()
    )
    print(
        f"Data: {sets}; subsets of {config['subset_images']}; {config['rounds']} interleaved round(s), "
        f"medians. Model: {config['model']}.\n"
    )
    for name, tool in config["tools"].items():
        print(f"* {name}: {tool['version']}; {tool['runtime']}")
    for note in config["skipped"]:
        print(f"* {note}")
    print(
        "\n| tool | set | wall s | wall images/s | steady images/s | start-up s | peak RSS MB (tree) "
        "| pixseek/peer wall | pixseek/peer steady |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for s in summaries:
        walls = s["wall_s_all"]
        spread = f" ({min(walls):.1f}-{max(walls):.1f})" if len(walls) > 1 else ""
        print(
            f"| {s['tool']} | {s['set']} | {s['wall_s']:.1f}{spread} | {s['wall_images_per_s']:.2f} "
            f"| {s['steady_images_per_s']:.2f} | {s['startup_s']:.1f} | {s['peak_rss_mb']:.0f} "
            f"({s['tree_rss_mb']:.0f}) | {s['ratio_wall']:.2f}x | {s['ratio_steady']:.2f}x |"
        )
    print(
        f"\npixseek's first use of the model (empty cache: loads torch and transformers, exports the "
        f"image tower, then indexes the {config['subset_images']}-image small subset): "
        f"{config['pixseek_first_use_s']:.1f} s."
    )
    for profile in profiles:
        print(f"\n### Where pixseek's time goes: {profile['label']} ({profile['images']} images)\n")
        print("| stage | ms per image | note |\n|---|---:|---|")
        for stage in profile["stages"]:
            print(f"| {stage['stage']} | {stage['ms_per_image']:.2f} | {stage['note']} |")
        print(
            f"\nCompute bound on {profile['cores']} cores (decode worker + model CPU time per image, "
            f"over the cores): {profile['bound_images_per_s']:.1f} images/s "
            f"({profile['bound_with_write_images_per_s']:.1f} with the SQL + FAISS write); model alone "
            f"{profile['model_alone_images_per_s']:.1f} images/s. pixseek steady state: "
            f"{profile['pixseek_steady_images_per_s']:.1f} images/s = "
            f"{100 * profile['fraction_of_bound']:.0f}% of the bound."
        )
    if checks:
        print(
            f"\nParity with transformers fp32 on 32 of the small set's images: fp32 max |diff| "
            f"{checks['fp32_max_abs_diff']:.2e} ({checks['fp32_runtime']}), bf16 min cosine "
            f"{checks['bf16_min_cosine']:.5f} ({checks['bf16_runtime']})."
        )
    payload = {
        "benchmark": "peers",
        "date": datetime.date.today().isoformat(),
        "machine": machine,
        "config": config,
        "results": summaries,
        "profiles": profiles,
        "parity": checks,
    }
    print()
    print(json.dumps(payload))


if __name__ == "__main__":
    main()
