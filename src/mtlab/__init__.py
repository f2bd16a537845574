"""mtlab — a lab bench for multi-task learning (MTL) and pretraining + finetuning (PT+FT).

Layers (bottom to top, each importing only from its own layer or below; the table and the test
that holds it: docs/ARCHITECTURE.md, tests/test_layers.py):

* ``mtlab.tasks``, ``mtlab.models`` — task families with ground truth and the one reader of a
  user's data; networks with named shared and task-specific parameters.
* ``mtlab.measure``, ``mtlab.theory``, ``mtlab.grad`` — pure measurements, closed forms / solvers,
  the gradient engine and the multi-task methods.
* ``mtlab.train``, ``mtlab.grouping``, ``mtlab.loop``, ``mtlab.report`` — the training loops (one
  per shape of data; ARCHITECTURE's *The training loops*), task grouping, the gradient engine for
  a user's own loop, and what a report shows and how it is drawn.
* ``mtlab.runs`` — validated run configs, the families, sweeps, the results store, the executors.
* ``mtlab.studies``, ``mtlab.advise`` — the studies and their claims; ``mtlab advise``.
* ``mtlab.cli`` — the command line.

Importing :mod:`mtlab` is cheap: heavy modules (scipy, matplotlib, pandas) load on first use.
"""

__version__ = "0.1.0"
