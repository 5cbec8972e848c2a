"""The `rarl` command: lists the stages, stays light (no heavy import on the help path), validates params."""

from __future__ import annotations

import subprocess
import sys

from tasks import STAGES
from tests.conftest import REPO


def test_help_lists_stages_without_heavy_imports():
    code = (
        "import sys, contextlib, io\n"
        "from rarl.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    try: main(['--help'])\n"
        "    except SystemExit: pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'mlflow', 'litellm', 'prefect', 'trl', 'pandas') if m in sys.modules]\n"
        "print(out.getvalue()); print('HEAVY', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert "HEAVY []" in done.stdout
    for stage in STAGES:
        assert stage in done.stdout


def test_check_validates_params(tmp_path):
    from rarl.cli import main

    assert main(["check", "--params", str(REPO / "params.yaml")]) == 0
    bad = tmp_path / "params.yaml"
    bad.write_text("grpo:\n  batch_size: 7\n")
    assert main(["check", "--params", str(bad)]) == 2


def test_compare_runs_its_own_pipeline_file(monkeypatch, capsys):
    """`rarl compare` is `dvc repro compare/dvc.yaml`; `-S` makes it a DVC experiment, checked before DVC starts;
    `--force` re-runs the comparison only, not the stages it needs."""
    from rarl import cli

    calls = []
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(cli, "dvc", lambda *args: calls.append(list(args)) or 1)
    assert cli.main(["compare"]) == 1
    assert cli.main(["compare", "--force"]) == 1
    assert cli.main(["compare", "-S", "compare.seeds=[0,1,2,3]"]) == 1
    assert calls == [["repro", "compare/dvc.yaml"], ["repro", "--force", "--single-item", "compare/dvc.yaml"],
                     ["exp", "run", "-S", "compare.seeds=[0,1,2,3]", "compare/dvc.yaml"]]
    assert cli.main(["compare", "-S", "compare.control=flops"]) == 2
    assert "compare.control" in capsys.readouterr().err and len(calls) == 3
