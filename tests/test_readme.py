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


def readme_commands() -> list[str]:
    """Every ``mtlab …`` command line of the README's shell blocks (continuations joined,
    comments dropped)."""
    text = (Path(__file__).parents[1] / "README.md").read_text().replace("\\\n", " ")
    out, lang = [], None  # lang: the open block's language, None outside a block
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("```"):
            lang = line[3:] if lang is None else None
            continue
        if lang in ("", "bash", "sh"):
            line = line.split(" #")[0].strip()
            for prefix in ("mtlab ", ".venv/bin/mtlab "):
                if line.startswith(prefix):
                    out.append(line[len(prefix) :])
    return out


def test_readme_command_lines_parse():
    """The README's command lines are valid for the CLI as built (options renamed or removed
    would fail here, not in a user's shell)."""
    import shlex

    from mtlab.cli import build_parser

    commands = readme_commands()
    assert len(commands) > 20 and any(c.startswith("advise ") for c in commands)
    parser = build_parser()
    for command in commands:
        # (--device cuda is checked against the machine at parse time; this one has none)
        try:
            parser.parse_args(shlex.split(command.replace("--device cuda", "--device cpu")))
        except SystemExit as err:
            raise AssertionError(f"README: `mtlab {command}` does not parse") from err
