"""``mtlab advise``: a user's own multi-task table in, advice out (see :mod:`.pipeline`)."""

from mtlab.advise.engine import Settings, Spec
from mtlab.advise.pipeline import Options, advise

__all__ = ["Options", "Settings", "Spec", "advise"]
