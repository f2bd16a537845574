import ast
import re
from pathlib import Path


def test_readme_python_example_runs(capsys):
    text = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})
    diagonal, subspace, relu, factors, own = capsys.readouterr().out.strip().splitlines()
    status, steps, dist = diagonal.split()
    assert status in ("converged", "max_steps") and int(steps) > 0
    assert float(dist) < 0.05  # gradient descent lands near the theory's interpolator
    metrics = ast.literal_eval(subspace)
    assert metrics["n_dirs"] == 4 and metrics["sin_max"] < 0.5  # all r directions recovered
    rich, lazy, misaligned = ast.literal_eval(relu)
    assert rich < 1.1 and lazy > 1.9 and misaligned < 1
    sharp_all, sharp_head, fisher = (float(v) for v in factors.split())
    # the head's block of the Hessian is a principal submatrix: its top eigenvalue is no larger
    assert 0 < sharp_head <= sharp_all * (1 + 1e-3) and fisher > 0
    # own loop: the related task helps task a more than the noise task does; 5 probes
    a_from_b, a_from_noise, conflict, steps = own.split(" ", 3)
    assert float(a_from_b) > float(a_from_noise) and 0 <= float(conflict) <= 1
    assert steps == "[0, 10, 20, 30, 40]"
