"""The scenario-analysis Python example in the README runs as written."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "README.md"


def test_python_example_in_the_docs_runs(tmp_path, monkeypatch, capsys):
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    code = next(b for b in blocks if "allocator.Sweep(" in b)
    monkeypatch.chdir(tmp_path)  # the example writes out/two_segments-sweep
    exec(compile(code, str(DOC), "exec"), {"__name__": "__doc_example__"})
    out = capsys.readouterr().out
    assert "switches_on" in out and "robust_cvar" in out and "v0009" in out
    assert (tmp_path / "out" / "two_segments-sweep" / "summary.csv").is_file()
