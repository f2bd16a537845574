"""Your own data on the command line: the data options read and checked once, before any work,
into the fields every run of the command shares (the folder's identity)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from mtlab.cli import options


@dataclass
class OwnData:
    """The checked data (``table``, ``prep``: split and standardised, as the runs will see it)
    and ``base``: the :class:`~mtlab.runs.config.OwnDataRunConfig` fields every run of the
    command shares — where the data are and what they are, and the training settings."""

    table: Any
    prep: Any
    base: dict[str, Any]

    @property
    def identity(self) -> dict[str, Any]:
        """The folder's identity: ``base`` without the paths of hashed files (moved, the same
        bytes are the same data)."""
        return {k: v for k, v in self.base.items()
                if not (k in ("data", "labels") and self.base.get(f"{k}_sha256"))}  # fmt: skip

    @property
    def tasks(self) -> list[str]:
        return [t.name for t in self.prep.tasks]

    def config(self, **fields: Any) -> Any:
        from mtlab.runs.config import make_config

        return make_config({**self.base, **fields})


def is_images(args: argparse.Namespace) -> bool:
    return args.images is not None or args.labels is not None


def read(
    args: argparse.Namespace,
    study: str,
    trunk: str,
    widths: tuple[int, ...],
    **settings: Any,
) -> OwnData:
    """Read and check ``--data`` with the data options (raises ValueError / DataError, which
    the commands turn into exit 2); ``settings``: training fields (steps, lr, batch_size, …)."""
    from mtlab.runs.owndata import file_digest, load_data

    if settings.get("lr", 1.0) <= 0:
        raise ValueError("--lr must be positive")
    if not args.data.is_file():
        raise ValueError(f"{args.data}: no such file")
    kinds = options.names(args.kinds) or []
    base: dict[str, Any] = {
        "family": "owndata",
        "study": study,
        "data": str(args.data),
        "data_sha256": file_digest(args.data),
        "targets": None,
        "features": None if args.features is None else tuple(options.names(args.features) or []),
        "kinds": tuple(kinds),
        "split_column": args.split_column,
        "images": None if args.images is None else str(args.images),
        "image_column": args.image_column if args.images is not None else None,
        "image_size": args.image_size,
        "labels": None if args.labels is None else str(args.labels),
        "labels_sha256": None if args.labels is None or not args.labels.is_file()
        else file_digest(args.labels),
        "trunk": trunk,
        "widths": tuple(widths),
        **settings,
    }
    wanted = options.names(args.targets)
    if wanted is not None and len(wanted) < 2:
        raise ValueError(f"{study} needs at least two target tasks (--targets)")
    prep = load_data({**base, "targets": None if wanted is None else tuple(wanted)})
    targets = tuple(t.name for t in prep.tasks)
    if len(targets) < 2:
        raise ValueError(f"{study} needs at least two target tasks")
    base["targets"] = targets
    load_data(base)  # the runs' own key (cached: the local runs reuse it)
    return OwnData(prep.table, prep, base)


__all__ = ["OwnData", "is_images", "read"]
