"""``mtlab advise``: a user's own multi-task data in, advice out — the stages (:mod:`.pipeline`)
are sweeps of own-data runs (:mod:`mtlab.runs.owndata`), decided by the rules of :mod:`.rules` and
written by :mod:`.report`."""

from mtlab.advise.pipeline import Options, Outcome, Stages, advise

__all__ = ["Options", "Outcome", "Stages", "advise"]
