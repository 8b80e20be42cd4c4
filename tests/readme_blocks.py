"""Run the code blocks of README.md and compare the outputs it shows with the real ones.

Used by ``tests/test_readme.py``; also a script::

    python tests/readme_blocks.py --print-outputs   # the actual output of every output block, to paste
    python tests/readme_blocks.py --check           # run every block; list what differs

Convention (one HTML comment right before a fenced block, blank lines allowed between)::

    <!-- readme: output-of allocator plan scenarios/example.yaml -->
    <!-- readme: output-of allocator plan bad.yaml | exit 2 | file bad.yaml=tests/readme/bad.yaml -->
    <!-- readme: same-as scenarios/example_sweep.yaml -->
    <!-- readme: valid-scenario scenarios/readme_cases.yaml -->
    <!-- readme: run | skip-line dask:// (needs a running Dask scheduler) -->
    <!-- readme: skip (installs the project into a new virtualenv; the tests already run inside one) -->

* ``bash`` and ``python`` blocks are run unless marked ``skip (REASON)``: bash with ``-e`` (every
  command must succeed), python as a script; ``skip-line TEXT (REASON)`` leaves out the commands
  containing TEXT.
* ``output-of COMMAND``: the block shows (part of) what COMMAND prints. Each shown line must be a
  line of the real output (stdout then stderr) with the same words and equal numbers; spacing may
  differ, lines may be left out (``...``) or reordered. ``$ ...`` lines in the block repeat the
  command and must equal it. ``exit N`` is the expected exit code (default 0).
* ``same-as PATH``: the block's YAML equals the file's (comments may differ).
* ``valid-scenario PATH``: the block, written to PATH, passes ``allocator validate``.
* ``file DEST=SRC``: copy SRC (relative to the repository) to DEST before running; for commands
  whose input file the README only names (``bad.yaml``).
* ``skip (REASON)``: not run; every skip says why. Every block that is not bash or python needs a
  marker, so an output block cannot drift unnoticed.

Everything runs in a temporary directory holding copies of ``scenarios/``, ``models/`` and
``data/``, so commands that write ``out/`` or regenerate ``models/`` never touch tracked files.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
COPIED = ("scenarios", "models", "data")
RUNNABLE = ("bash", "python")
KINDS = ("run", "skip", "output-of", "same-as", "valid-scenario")
TIMEOUT = 300

_MARKER = re.compile(r"^<!--\s*readme:\s*(.*?)\s*-->\s*$")
_FENCE = re.compile(r"^```(\S*)\s*$")
# a number as printed: 1,500,000  1.275  -0.1  77.57%  0.00e+00  $500.8
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")


@dataclass
class Marker:
    kind: str
    arg: str = ""
    exit: int = 0
    files: list[tuple[str, str]] = field(default_factory=list)
    skip_lines: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Block:
    line: int            # 1-based line of the opening fence
    lang: str
    text: str
    marker: Marker | None

    @property
    def id(self) -> str:
        kind = self.marker.kind if self.marker else "run"
        return f"L{self.line}-{self.lang or 'text'}-{kind}"


class MarkerError(ValueError):
    """A malformed ``<!-- readme: ... -->`` comment or an unmarked block that needs one."""


def parse_marker(text: str, line: int) -> Marker:
    parts = [p.strip() for p in text.split("|")]
    head, _, arg = parts[0].partition(" ")
    if head not in KINDS:
        raise MarkerError(f"README line {line}: unknown readme marker '{head}'; known: {', '.join(KINDS)}")
    m = Marker(head, arg.strip())
    if head == "skip" and not re.fullmatch(r"\(.+\)", m.arg):
        raise MarkerError(f"README line {line}: a skip needs a reason in parentheses: skip (WHY)")
    if head in ("output-of", "same-as", "valid-scenario") and not m.arg:
        raise MarkerError(f"README line {line}: '{head}' needs an argument")
    for opt in parts[1:]:
        name, _, val = opt.partition(" ")
        val = val.strip()
        if name == "exit":
            m.exit = int(val)
        elif name == "file":
            dest, _, src = val.partition("=")
            if not (ROOT / src).is_file():
                raise MarkerError(f"README line {line}: file {src} does not exist")
            m.files.append((dest.strip(), src.strip()))
        elif name == "skip-line":
            match = re.fullmatch(r"(\S+)\s+\((.+)\)", val)
            if not match:
                raise MarkerError(f"README line {line}: skip-line needs TEXT (REASON)")
            m.skip_lines.append((match.group(1), match.group(2)))
        else:
            raise MarkerError(f"README line {line}: unknown option '{name}' (exit, file, skip-line)")
    return m


def parse_blocks(text: str | None = None) -> list[Block]:
    """Every fenced block of the README with the marker before it; unmarked non-runnable blocks raise."""
    lines = (README.read_text(encoding="utf-8") if text is None else text).splitlines()
    blocks: list[Block] = []
    pending: tuple[Marker, int] | None = None
    i = 0
    while i < len(lines):
        mm = _MARKER.match(lines[i].strip())
        if mm:
            pending = (parse_marker(mm.group(1), i + 1), i + 1)
            i += 1
            continue
        fm = _FENCE.match(lines[i])
        if fm:
            start, lang = i, fm.group(1)
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            marker = pending[0] if pending else None
            if marker is None and lang not in RUNNABLE:
                raise MarkerError(f"README line {start + 1}: a ```{lang} block needs a readme marker "
                                  f"(output-of, same-as, valid-scenario or skip (WHY)); see tests/readme_blocks.py")
            blocks.append(Block(start + 1, lang, "\n".join(lines[start + 1:j]), marker))
            pending = None
            i = j + 1
            continue
        if lines[i].strip() and pending is not None:
            raise MarkerError(f"README line {pending[1]}: a readme marker must come right before a code block")
        i += 1
    return blocks


# ---------------------------------------------------------------- running

def workdir(parent: Path, files: list[tuple[str, str]] = ()) -> Path:
    """A fresh directory with copies of the repository's inputs (and the marker's extra files)."""
    wd = Path(tempfile.mkdtemp(prefix="readme-", dir=parent))
    for name in COPIED:
        shutil.copytree(ROOT / name, wd / name)
    for dest, src in files:
        (wd / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / src, wd / dest)
    return wd


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # the interpreter running the tests (and its `allocator` script) come first
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("MPLBACKEND", "Agg")
    return env


@dataclass
class Result:
    code: int
    output: str          # stdout, then stderr
    cwd: Path


def run_shell(script: str, cwd: Path) -> Result:
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=TIMEOUT)
    return Result(proc.returncode, proc.stdout + proc.stderr, cwd)


def run_python(code: str, cwd: Path) -> Result:
    path = cwd / "_readme_block.py"
    path.write_text(code, encoding="utf-8")
    proc = subprocess.run([sys.executable, str(path)], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=TIMEOUT)
    return Result(proc.returncode, proc.stdout + proc.stderr, cwd)


def bash_commands(block: Block) -> str:
    """The block's script without the commands its marker leaves out (continuation lines kept together)."""
    commands: list[str] = []
    buf = ""
    for line in block.text.splitlines():
        buf += line + "\n"
        if not line.rstrip().endswith("\\"):
            commands.append(buf)
            buf = ""
    if buf:
        commands.append(buf)
    skips = block.marker.skip_lines if block.marker else []
    return "".join(c for c in commands if not any(t in c for t, _ in skips))


# ---------------------------------------------------------------- comparing shown and real output

def skeleton(line: str) -> str:
    """The words of a line with every number replaced by ``#`` and spacing normalized."""
    return " ".join(_NUMBER.sub("#", line).split())


def numbers(line: str) -> list[str]:
    return [n.replace(",", "") for n in _NUMBER.findall(line)]


def shown_lines(block: Block) -> list[str]:
    """The lines a block claims are in the output (no blanks, no ``...``, no ``$ command`` lines)."""
    return [ln for ln in block.text.splitlines()
            if ln.strip() and ln.strip() not in ("...", "…") and not ln.lstrip().startswith("$ ")]


def compare(shown: list[str], actual: str) -> list[str]:
    """Differences: each shown line must be an actual line with the same words and equal numbers."""
    real = [ln for ln in actual.splitlines() if ln.strip()]
    by_skeleton: dict[str, list[str]] = {}
    for ln in real:
        by_skeleton.setdefault(skeleton(ln), []).append(ln)
    problems = []
    for ln in shown:
        cands = by_skeleton.get(skeleton(ln), [])
        if any(numbers(c) == numbers(ln) for c in cands):
            continue
        if cands:
            # the candidate agreeing on most leading numbers/words is the line meant (e.g. same cell)
            best = max(cands, key=lambda c: sum(a == b for a, b in zip(numbers(c), numbers(ln))))
            problems.append(f"numbers differ:\n    shown:  {ln.strip()}\n    actual: {best.strip()}")
        else:
            words = set(ln.split()[:2])
            near = [c for c in real if words and words <= set(c.split())][:1]
            problems.append(f"no output line like:\n    shown:  {ln.strip()}"
                            + (f"\n    nearest: {near[0].strip()}" if near else ""))
    return problems


def check_commands_in_block(block: Block) -> list[str]:
    """``$ cmd`` lines inside an output block must repeat the marker's command."""
    cmds = [ln.strip()[2:] for ln in block.text.splitlines() if ln.lstrip().startswith("$ ")]
    return [f"block shows `$ {c}` but its marker runs `{block.marker.arg}`" for c in cmds if c != block.marker.arg]


# ---------------------------------------------------------------- one block

def check_block(block: Block, parent: Path, cache: dict | None = None) -> list[str]:
    """Run or compare one block; return what is wrong (empty: the README is right)."""
    m = block.marker
    kind = m.kind if m else "run"
    if kind == "skip":
        return []
    if kind == "same-as":
        shown = yaml.safe_load(block.text)
        real = yaml.safe_load((ROOT / m.arg).read_text(encoding="utf-8"))
        return [] if shown == real else [f"the YAML shown differs from {m.arg}:\n  shown: {shown}\n  file:  {real}"]
    if kind == "valid-scenario":
        wd = workdir(parent, m.files)
        (wd / m.arg).write_text(block.text + "\n", encoding="utf-8")
        res = run_shell(f"allocator validate {m.arg}", wd)
        return [] if res.code == 0 else [f"`allocator validate` of the block failed ({res.code}):\n{res.output}"]
    if kind == "output-of":
        res = command_output(m, parent, cache)
        problems = check_commands_in_block(block)
        if res.code != m.exit:
            problems.append(f"`{m.arg}` exited {res.code}, expected {m.exit}:\n{res.output[-3000:]}")
        return problems + compare(shown_lines(block), res.output)
    wd = workdir(parent, m.files if m else [])
    res = run_python(block.text, wd) if block.lang == "python" else run_shell(bash_commands(block), wd)
    expected = m.exit if m else 0
    return [] if res.code == expected else [f"block exited {res.code}, expected {expected}:\n{res.output[-4000:]}"]


def command_output(m: Marker, parent: Path, cache: dict | None = None) -> Result:
    """Run an output block's command once per session (two blocks may show the same command)."""
    key = (m.arg, tuple(m.files))
    if cache is not None and key in cache:
        return cache[key]
    res = run_shell(m.arg, workdir(parent, m.files))
    if cache is not None:
        cache[key] = res
    return res


# ---------------------------------------------------------------- script

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--print-outputs", action="store_true", help="print the real output of every output block")
    g.add_argument("--check", action="store_true", help="run every block and list the differences")
    args = ap.parse_args(argv)
    blocks = parse_blocks()
    cache: dict = {}
    failed = 0
    with tempfile.TemporaryDirectory(prefix="readme-check-") as tmp:
        for b in blocks:
            if args.print_outputs:
                if b.marker and b.marker.kind == "output-of":
                    res = command_output(b.marker, Path(tmp), cache)
                    print(f"===== README line {b.line}: output-of `{b.marker.arg}` (exit {res.code})")
                    print(res.output.rstrip())
                    diffs = compare(shown_lines(b), res.output)
                    print(f"----- {len(diffs)} shown line(s) differ" + ("" if not diffs else ":"))
                    for d in diffs:
                        print("  " + d.replace("\n", "\n  "))
                    print()
                continue
            problems = check_block(b, Path(tmp), cache)
            status = "skip" if b.marker and b.marker.kind == "skip" else ("FAIL" if problems else "ok")
            print(f"{status:4} {b.id}")
            for p in problems:
                print("     " + p.replace("\n", "\n     "))
            failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
