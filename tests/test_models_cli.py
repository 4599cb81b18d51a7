"""`python -m lab models` lists every model with its depth and parameter count."""

import core
from lab.cli import main


def test_models_table_lists_every_model(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in core.list_models():
        assert f"\n{name} " in out
    line = next(ln for ln in out.splitlines() if ln.startswith("hamiltonian-1202 "))
    assert "1202" in line and "100-100-100" in line and "9.699M" in line
