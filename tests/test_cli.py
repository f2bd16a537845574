import json
import subprocess
import sys

import pandas as pd
import pytest

from mtlab.cli import main


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "diagonal" in out and "--preset quick" in out and "--preset paper" in out


def test_reproduce_tiny_end_to_end_and_report(required_columns, tmp_path, capsys):
    out = tmp_path / "diag"
    assert main(["reproduce", "diagonal", "--preset", "tiny", "--out", str(out), "--quiet"]) == 0
    for name in (
        "config.yaml",
        "results.parquet",
        "results.csv",
        "curves.parquet",
        "report.md",
        "report.html",
        "claims.json",
        "figures/penalty_landscape.png",
        "figures/generalization.png",
        "figures/rescaling.png",
        "figures/theory_agreement.png",
    ):
        assert (out / name).exists(), name
    df = pd.read_parquet(out / "results.parquet")
    for col in required_columns:
        assert col in df.columns
    assert set(df.method) == {"stl", "mtl", "pt", "ptft", "ptft_lr"}
    assert set(df.setting.dropna()) == {
        "identical",
        "nested_subset",
        "all_aux",
        "new_dims",
        "partial_overlap",
    }
    assert set(df.rescale.dropna()) == {1.0, 0.1, 0.01, 0.001}
    claims = json.loads((out / "claims.json").read_text())["claims"]
    ids = {c["id"] for c in claims}
    assert {
        "penalty.window",
        "generalization.shared_features",
        "rescaling.nested_subset",
        "rescaling.all_aux",
        "rescaling.new_dims",
        "theory.gd_matches_exact_flow",
    } <= ids
    assert all(c["verdict"] in ("holds", "contradicted", "inconclusive") and c["evidence"]
               for c in claims)  # fmt: skip
    html = (out / "report.html").read_text()
    assert "data:image/png;base64" in html and "Claims" in html
    # resume: nothing retrained
    capsys.readouterr()
    assert (
        main(
            [
                "reproduce",
                "diagonal",
                "--preset",
                "tiny",
                "--out",
                str(out),
                "--quiet",
                "--no-report",
            ]
        )
        == 0
    )
    assert "trained 0 runs" in capsys.readouterr().err
    # report rebuilds from stored results
    (out / "report.md").unlink()
    assert main(["report", str(out)]) == 0 and (out / "report.md").exists()


def test_run_yaml_sweep(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        "study: mine\nbase: {d: 40, k1: 6, n_aux: 64, max_steps: 500, "
        "pt_max_steps: 500, n_val: 20, n_test: 20}\n"
        "grid:\n  method: [stl, ptft]\n  n_main: [8]\n  rescale: [1.0, 0.1]\n"
    )
    out = tmp_path / "mine"
    assert main(["run", str(sweep), "--out", str(out), "--quiet"]) == 0
    df = pd.read_parquet(out / "results.parquet")
    assert len(df) == 4 and set(df.study) == {"mine"}  # stl once, ptft twice, pt once
    assert (out / "report.html").exists() and (out / "figures" / "test_loss.png").exists()


@pytest.mark.parametrize(
    "args,msg",
    [
        (["reproduce", "nope", "--out", "X"], "unknown study"),
        (["reproduce", "diagonal", "--preset", "huge", "--out", "X"], "no preset"),
        (["reproduce", "diagonal", "--seeds", "0", "--out", "X"], "positive integer"),
        (["reproduce", "diagonal", "--chunk", "0", "--out", "X"], "--chunk"),
        (["report", "X"], "not an mtlab run folder"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, args, msg):
    args = [str(tmp_path / "out") if a == "X" else a for a in args]
    with pytest.raises(SystemExit) if "--seeds" in args or "--chunk" in args else _noop():
        code = main(args)
        assert code == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_invalid_sweep_exits_2_before_any_work(tmp_path, capsys):
    sweep = tmp_path / "bad.yaml"
    sweep.write_text("grid:\n  n_main: [16, -4]\n  method: [stl, magic]\n")
    assert main(["run", str(sweep), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "n_main" in err and "method" in err and "-4" in err
    assert not (tmp_path / "o").exists()


def test_out_folder_of_another_study_is_refused(tmp_path, capsys):
    out = tmp_path / "o"
    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        "base: {d: 30, k1: 4, max_steps: 50, n_val: 10, n_test: 10}\ngrid: {n_main: [4]}\n"
    )
    assert main(["run", str(sweep), "--out", str(out), "--quiet", "--no-report"]) == 0
    assert main(["reproduce", "diagonal", "--preset", "tiny", "--out", str(out)]) == 2
    assert "already holds" in capsys.readouterr().err


def test_console_script_exit_code(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "mtlab.cli",
            "reproduce",
            "diagonal",
            "--preset",
            "nope",
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "no preset" in r.stderr


class _noop:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_dry_run_counts_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["reproduce", "diagonal", "--preset", "paper", "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "1446 runs" in text and "pt 6" in text and "ptft 900" in text
    assert not out.exists()
