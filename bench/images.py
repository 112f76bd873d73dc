"""Step image sizes (and, optionally, container start-up time) from the local Docker engine.

    uv run python bench/images.py                  # size table of genai-pipeline/*:$(images/tag.sh)
    uv run python bench/images.py --startup 5      # plus median start-to-exit of a hardened container
    uv run python bench/images.py --json           # the same rows as JSON

Sizes are ``docker image inspect`` ``.Size``: the uncompressed bytes of all layers, base included, in
MB (10^6 bytes, as ``docker images`` prints them). "over base" is what the image adds to the base
image. Start-up runs ``python -c 'import genai_pipeline.steps.ingest'`` the way a step pod does (read-only
root, tmpfs /tmp, uid 10001, no network) and takes the median wall time of N runs: the fixed cost every
step pod pays before its work starts, on top of the pod scheduling overhead.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The project's one image list (images/images.tsv).
IMAGES = tuple(
    subprocess.run(
        ["bash", str(REPO / "images" / "list.sh"), "names"], capture_output=True, text=True, check=True
    ).stdout.split()
)
BASE_IMAGE = "genai-pipeline/base:bookworm"
STARTUP_COMMAND = ("python", "-c", "import genai_pipeline.steps.ingest")
HARDENED = ("--rm", "--read-only", "--tmpfs", "/tmp", "--user", "10001:10001", "--network", "none")


def inspect(ref: str) -> dict | None:
    """``docker image inspect`` of one image, or None when it is not built."""
    result = subprocess.run(["docker", "image", "inspect", ref], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return None
    return json.loads(result.stdout)[0]


def has_module(ref: str, module: str) -> bool:
    """Whether ``import module`` works inside the image."""
    command = ["docker", "run", *HARDENED, ref, "python", "-c", f"import {module}"]
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


def startup_seconds(ref: str, runs: int) -> float:
    """Median wall time of a hardened container that imports the step code and exits (one warm-up first)."""
    command = ["docker", "run", *HARDENED, ref, *STARTUP_COMMAND]
    subprocess.run(command, capture_output=True, check=True)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(registry: str, tag: str, images: list[str], base: str, startup: int) -> list[dict]:
    """One row per image: size, size over the base, layer count, torch/onnxruntime presence, start-up."""
    base_info = inspect(base)
    base_mb = base_info["Size"] / 1e6 if base_info else None
    rows = []
    if base_info:
        rows.append(
            {"image": base, "mb": round(base_mb), "over_base_mb": 0, "layers": len(base_info["RootFS"]["Layers"])}
        )
    for name in images:
        ref = f"{registry}/{name}:{tag}"
        info = inspect(ref)
        if info is None:
            rows.append({"image": ref, "missing": True})
            continue
        mb = info["Size"] / 1e6
        row = {
            "image": ref,
            "mb": round(mb),
            "over_base_mb": round(mb - base_mb) if base_mb is not None else None,
            "layers": len(info["RootFS"]["Layers"]),
            "torch": has_module(ref, "torch"),
            "onnxruntime": has_module(ref, "onnxruntime"),
        }
        if startup:
            row["startup_s"] = round(startup_seconds(ref, startup), 2)
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    """Markdown table of the measured rows."""
    with_startup = any("startup_s" in row for row in rows)
    header = ["image", "MB", "over base MB", "layers", "torch", "onnxruntime"]
    if with_startup:
        header.append("start-up s (median)")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        if row.get("missing"):
            lines.append(f"| {row['image']} | not built |" + " |" * (len(header) - 2))
            continue
        cells = [
            row["image"],
            f"{row['mb']:,}",
            _cell(row.get("over_base_mb")),
            str(row["layers"]),
            _yes_no(row.get("torch")),
            _yes_no(row.get("onnxruntime")),
        ]
        if with_startup:
            cells.append(_cell(row.get("startup_s")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def main(argv: list[str] | None = None) -> int:
    """Parse options, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", default=list(IMAGES), help="image names (default: images/images.tsv)")
    parser.add_argument("--registry", default="genai-pipeline")
    parser.add_argument("--tag", help="default: the content tag images/tag.sh prints for this tree")
    parser.add_argument("--base", default=BASE_IMAGE, help="base image the sizes are compared with")
    parser.add_argument("--startup", type=int, default=0, metavar="N", help="also time N container starts")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    args = parser.parse_args(argv)
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        print("no Docker engine answers (scripts/ensure-docker.sh starts one)", file=sys.stderr)
        return 1
    tag = (
        args.tag
        or subprocess.run(["bash", str(REPO / "images" / "tag.sh")], capture_output=True, text=True).stdout.strip()
    )
    rows = measure(args.registry, tag, args.images, args.base, args.startup)
    print(json.dumps(rows, indent=2) if args.json else table(rows))
    return 1 if any(row.get("missing") for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
