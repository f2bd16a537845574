"""Deterministic random streams: every sampler takes a ``torch.Generator`` made here."""

from __future__ import annotations

import hashlib

import torch


def derive_seed(*parts: object) -> int:
    """A 63-bit seed determined by ``parts`` (e.g. ``(seed, "aux_x", n)``).

    Streams named by different parts are independent, and the same parts always give the
    same seed on every machine (SHA-256 of their ``repr``), unlike Python's salted ``hash``.
    """
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(*parts: object) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`derive_seed` of ``parts``."""
    g = torch.Generator()
    g.manual_seed(derive_seed(*parts))
    return g
