"""The README is the spec: every code block runs, and every output it shows is the real output.

The blocks and their ``<!-- readme: ... -->`` markers are read by ``tests/readme_blocks.py``
(its docstring states the convention). Everything runs in a temporary copy of ``scenarios/``,
``models/`` and ``data/``, so no tracked file changes. To see the real outputs, to paste::

    python tests/readme_blocks.py --print-outputs
"""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest

import readme_blocks as rb

try:
    BLOCKS = rb.parse_blocks()
    PARSE_ERROR = None
except rb.MarkerError as exc:  # reported by test_every_block_is_classified, not as a collection error
    BLOCKS, PARSE_ERROR = [], str(exc)
CHECKED = [b for b in BLOCKS if not (b.marker and b.marker.kind == "skip")]


@pytest.fixture(scope="session")
def outputs():
    """Command outputs shared by the blocks showing the same command (the example plan twice)."""
    return {}


def test_every_block_is_classified():
    assert PARSE_ERROR is None, PARSE_ERROR
    kinds = {b.marker.kind if b.marker else "run" for b in BLOCKS}
    assert {"run", "output-of", "same-as", "valid-scenario"} <= kinds
    for b in BLOCKS:
        if b.lang not in rb.RUNNABLE:
            assert b.marker is not None, f"README line {b.line}: unmarked ```{b.lang} block"


@pytest.mark.parametrize("block", CHECKED, ids=[b.id for b in CHECKED])
def test_readme_block(block, tmp_path_factory, outputs):
    problems = rb.check_block(block, tmp_path_factory.mktemp("readme"), outputs)
    assert not problems, (f"README line {block.line} ({block.id}); `python tests/readme_blocks.py "
                          f"--print-outputs` prints the real outputs:\n" + "\n".join(problems))


def _tracked_digest() -> str:
    h = hashlib.sha256()
    for d in rb.COPIED:
        for p in sorted((rb.ROOT / d).rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(rb.ROOT)).encode())
                h.update(p.read_bytes())
    return h.hexdigest()


def test_calibration_block_regenerates_models_only_in_a_copy(tmp_path):
    block = next(b for b in BLOCKS if b.lang == "bash" and "allocator calibrate" in b.text)
    # the README regenerates shipped models on purpose: every calibrate command says --force
    commands = rb.bash_commands(block).replace("\\\n", " ").splitlines()
    calibrate = [c for c in commands if c.startswith("allocator calibrate")]
    assert len(calibrate) == 4 and all("--force" in c for c in calibrate)
    before = _tracked_digest()
    wd = rb.workdir(tmp_path)
    res = rb.run_shell(rb.bash_commands(block), wd)
    assert res.code == 0, res.output[-3000:]
    assert _tracked_digest() == before
    # without --force the same command refuses to replace the model it just wrote
    again = rb.run_shell(calibrate[-1].replace(" --force", ""), wd)
    assert again.code == 2 and "models/contracts.yaml already exists" in again.output


def test_frontier_csv_has_the_method_column_the_readme_promises(tmp_path):
    assert "`method` column says" in rb.README.read_text(encoding="utf-8")
    block = next(b for b in BLOCKS if b.lang == "bash" and "allocator frontier" in b.text)
    wd = rb.workdir(tmp_path)
    res = rb.run_shell(rb.bash_commands(block), wd)
    assert res.code == 0, res.output[-3000:]
    table = pd.read_csv(wd / "out" / "example" / "frontier.csv")
    assert "method" in table.columns
    assert table["method"].notna().all() and (table["method"].astype(str).str.len() > 0).all()


# ---- the comparison itself, on made-up outputs whose verdict is known ----------------------------

REAL = """Plan for scenario 'x' (exact solver, status optimal)

   segment        task  pool  spend marginal bound
  top_1pct   retention   218  5,864    1.000  none
  prospects acquisition 200,000 22,608 1.000  none

total spend 51,769 USD of budget 73,000 USD
"""


def test_compare_accepts_abridged_reordered_and_respaced_lines():
    shown = ["prospects  acquisition  200,000  22,608  1.000  none", "...",
             "segment task pool spend marginal bound", "total spend 51,769 USD of budget 73,000 USD"]
    assert rb.compare([s for s in shown if s != "..."], REAL) == []


def test_compare_names_a_changed_number_and_a_missing_line():
    problems = rb.compare(["top_1pct retention 218 5,865 1.000 none",
                           "total spend 51,769 USD of budget 73,000 USD; value 9"], REAL)
    assert len(problems) == 2
    assert problems[0].startswith("numbers differ") and "actual: top_1pct   retention   218  5,864" in problems[0]
    assert problems[1].startswith("no output line like")


def test_markers_are_checked():
    with pytest.raises(rb.MarkerError, match="a skip needs a reason"):
        rb.parse_blocks("<!-- readme: skip -->\n```bash\nls\n```\n")
    with pytest.raises(rb.MarkerError, match="needs a readme marker"):
        rb.parse_blocks("text\n\n```\nsome output\n```\n")
    with pytest.raises(rb.MarkerError, match="unknown readme marker"):
        rb.parse_blocks("<!-- readme: output_of x -->\n```\n```\n")
    blocks = rb.parse_blocks("<!-- readme: output-of allocator plan bad.yaml | exit 2 -->\n\n```\n$ x\n```\n")
    assert blocks[0].marker.exit == 2 and rb.check_commands_in_block(blocks[0]) == [
        "block shows `$ x` but its marker runs `allocator plan bad.yaml`"]
