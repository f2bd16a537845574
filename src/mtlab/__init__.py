"""mtlab — a lab bench for multi-task learning (MTL) and pretraining + finetuning (PT+FT).

Layers (bottom to top, each importing only from below; see docs/ARCHITECTURE.md):

* ``mtlab.tasks``, ``mtlab.models`` — task families with ground truth; networks with named shared
  and task-specific parameters, evaluated as *ensembles* (a leading run dimension ``E``).
* ``mtlab.measure``, ``mtlab.theory``, ``mtlab.grad`` — pure measurements, closed forms / solvers,
  the gradient step rules.
* ``mtlab.train`` — the one training loop and the regimes (STL, MTL, PT, PT+FT, PT+FT (LR)).
* ``mtlab.runs``, ``mtlab.studies`` — validated configs, sweeps, the results store, studies.
* ``mtlab.report``, ``mtlab.cli`` — figures, reports and the command line.

Importing :mod:`mtlab` is cheap: heavy modules (scipy, matplotlib, pandas) load on first use.
"""

__version__ = "0.1.0"
