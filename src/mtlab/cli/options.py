"""Option types and validators shared by every command: each option means one thing and is
checked in one place (a bad value exits 2 before anything is trained or written)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (got {value!r})")
    return n


def workers(text: str) -> int:
    """``--workers``: a count >= 0."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {n}")
    return n


def chunk(value: str) -> int | str:
    if value in ("auto", "measure"):
        return value
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(
            f"--chunk must be 'auto', 'measure' or a positive integer (got {value!r})"
        )
    return n


def device(value: str) -> str:
    import torch

    try:
        dev = torch.device(value)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"--device: unknown device {value!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError("--device cuda: no CUDA device is available here")
    return value


def names(value: str | None) -> list[str] | None:
    """A comma-separated list (None stays None; empty items dropped)."""
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def widths(value: str, flag: str | None = None) -> tuple[int, ...]:
    """Comma-separated positive integers (``flag``: how the error names the option)."""
    flag = flag or f"--widths {value!r}"
    try:
        out = tuple(int(w) for w in value.split(","))
    except ValueError:
        out = ()
    if not out or min(out) < 1:
        raise ValueError(f"{flag}: widths must be positive integers, comma-separated")
    return out


def methods(value: str | None, flag: str = "--methods", stl: bool = False) -> list[str] | None:
    """Multi-task method names (``stl`` too where ``stl``), each known and installed; None if
    not given. The one check of a method option."""
    from mtlab.grad.methods import check_methods, method_names

    chosen = names(value)
    if chosen is None:
        return None
    allowed = method_names()
    unknown = [m for m in chosen if m not in allowed and not (stl and m == "stl")]
    if unknown:
        raise ValueError(f"{flag}: unknown method(s) {', '.join(unknown)}; allowed: "
                         f"{', '.join(['stl', *allowed] if stl else allowed)}")  # fmt: skip
    check_methods([m for m in chosen if m != "stl"])
    return chosen


DEFAULT_WIDTHS = {"mlp": (128, 128), "cnn": (16, 32)}


def model(value: str | None, images: bool) -> tuple[str, tuple[int, ...]]:
    """``--model``: ``mlp:W,W,…`` or ``cnn:C,C,…`` (image inputs only) → (trunk, widths)."""
    kind, _, given = (value or ("cnn" if images else "mlp")).partition(":")
    if kind not in DEFAULT_WIDTHS:
        raise ValueError(f"--model {value!r}: mlp:WIDTH,… or (for images) cnn:CHANNELS,…")
    if kind == "cnn" and not images:
        raise ValueError(f"--model {value!r}: a CNN needs image inputs (--images or --labels)")
    return kind, widths(given, f"--model {value!r}") if given else DEFAULT_WIDTHS[kind]


def add_data(p: Any, required: bool) -> None:  # a parser or an argument group
    """A user's own data: a table, a label table with an image folder, or IDX files."""
    p.add_argument(
        "--data", type=Path, required=required,
        help="your own data: a CSV, Parquet or NPZ table; with --images a label table naming "
        "image files; with --labels an IDX image file",
    )  # fmt: skip
    p.add_argument(
        "--targets", default=None, help="comma-separated target columns (default for an NPZ: "
        "every array but x; for IDX: the label columns)",
    )  # fmt: skip
    p.add_argument("--features", default=None, help="comma-separated (default: all others)")
    p.add_argument(
        "--kinds", default=None, help="override inferred task kinds: ltv=regression,churn=classification"
    )  # fmt: skip
    p.add_argument("--split-column", default=None, help="a column of train / val / test")
    p.add_argument("--images", type=Path, default=None, help="a folder of images named in --data")
    p.add_argument("--image-column", default="file", help="the column naming each row's image")
    p.add_argument(
        "--image-size", type=positive, default=None,
        help="resize every image to N×N (default: all must have the first one's size)",
    )  # fmt: skip
    p.add_argument("--labels", type=Path, default=None, help="IDX labels for an IDX --data")


#: the own-data options (beside --data): given without --data they would be ignored silently
OWN_DATA_OPTIONS = ("targets", "features", "kinds", "split_column", "images", "labels", "model")


def own_data_without_data(args: argparse.Namespace) -> str | None:
    """Why the own-data options cannot be used (given without ``--data``), or None."""
    if getattr(args, "data", None) is not None:
        return None
    own = [f for f in OWN_DATA_OPTIONS if getattr(args, f, None) is not None]
    return None if not own else f"--{own[0].replace('_', '-')} is for your own data (--data)"


def add_sweep(
    sp: argparse.ArgumentParser, out_required: bool = True, report: bool = True,
    append: bool = True,
) -> None:  # fmt: skip
    """The options of every command that trains: the folder, ensemble size, device, executor
    (local or Ray), progress, dry run."""
    sp.add_argument(
        "--out", required=out_required, type=Path, help="output folder (resumes if present)"
    )
    sp.add_argument(
        "--chunk", type=chunk, default="auto",
        help="runs per ensemble: 'auto' (the families' deterministic cost model: the same "
        "numbers on a busy and an idle machine), 'measure' (timed once, stored in "
        "OUT/plan.json and reused) or a number; 1 = one at a time",
    )  # fmt: skip
    sp.add_argument("--device", type=device, default="cpu", help="torch device (default cpu)")
    sp.add_argument(
        "--workers", type=workers, default=None,
        help="worker processes on this machine, one thread each (default: one per core "
        "granted to mtlab; the numbers are bitwise the same for any count); 0 = in this "
        "process",
    )  # fmt: skip
    cluster = sp.add_argument_group('cluster (Ray; pip install "mtlab[ray]")')
    cluster.add_argument(
        "--executor", choices=("local", "ray"), default="local",
        help="where chunks run: on this machine (default; see --workers) or as Ray tasks",
    )  # fmt: skip
    cluster.add_argument(
        "--address", default=None,
        help="Ray cluster to join ('auto' or host:port); default: start a local instance "
        "on this machine's cores, taken down when mtlab exits",
    )  # fmt: skip
    cluster.add_argument(
        "--cpus-per-chunk", type=float, default=1.0, help="CPUs a chunk declares (default 1)"
    )
    cluster.add_argument(
        "--gpus-per-chunk", type=float, default=0.0,
        help="GPUs a chunk declares, fractions allowed (0.25: four chunks per GPU); >0 "
        "trains on cuda",
    )  # fmt: skip
    cluster.add_argument(
        "--retries", type=int, default=3,
        help="times a chunk whose worker (process or Ray task) died is retried before its "
        "runs are tried one at a time, then stored as failed (default 3)",
    )  # fmt: skip
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    if report:
        sp.add_argument("--no-report", action="store_true", help="train only; no figures/report")
    sp.add_argument(
        "--dry-run", action="store_true",
        help="validate and count the runs (by method); train and write nothing",
    )  # fmt: skip
    if not append:
        return
    sp.add_argument(
        "--append", action="store_true",
        help="add this sweep's runs to a folder that holds another sweep of the same study "
        "and preset (recorded in sessions.json); without it such a folder is refused",
    )  # fmt: skip


__all__ = [
    "DEFAULT_WIDTHS",
    "OWN_DATA_OPTIONS",
    "add_data",
    "add_sweep",
    "chunk",
    "device",
    "methods",
    "model",
    "names",
    "own_data_without_data",
    "positive",
    "widths",
    "workers",
]
