"""Shared builders of the service tests: a real uvicorn server, keys, a PostgreSQL server, scenarios.

(Named ``test_service_*`` so it sits with them; it holds no tests.)
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "scenarios" / "example.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def example_json(**changes: Any) -> dict[str, Any]:
    """The bundled example as the JSON a request carries (resolved and validated by the library)."""
    from allocator.client import scenario_json

    return {**scenario_json(EXAMPLE), **changes}


def s_curve_json(n: int, seed: int = 0, name: str = "scurves", tolerance: float | None = None,
                 time_limit: float | None = None) -> dict[str, Any]:
    """``n`` S-shaped hill cells under a budget: the global solver's problem (a job)."""
    rng = np.random.default_rng(seed)
    segs = [{"id": f"s{i}", "tasks": {"acquisition": {
        "pool": float(rng.uniform(100, 5000)), "value": float(rng.uniform(20, 200)),
        "curve": {"family": "hill", "ceiling": float(rng.uniform(.05, .6)),
                  "half_saturation": float(rng.uniform(1, 20)), "shape": float(rng.uniform(1.5, 3))}}}}
        for i in range(n)]
    solver: dict[str, Any] = {"name": "auto"}
    if tolerance is not None:
        solver["tolerance"] = tolerance
    if time_limit is not None:
        solver["time_limit"] = time_limit
    return {"name": name, "budget": {"total": float(n * 3000)}, "segments": segs, "solver": solver}


def keys_cli(*argv: str) -> str:
    """Run ``allocator keys ...`` through its own parser (as the CLI does); return what it printed."""
    import argparse

    from allocator.cli import keys_cmd

    parser = argparse.ArgumentParser(prog="allocator")
    sub = parser.add_subparsers(dest="command")
    keys_cmd.register(sub)
    args = parser.parse_args(["keys", *argv])
    out = io.StringIO()
    with redirect_stdout(out):
        assert args.handler(args) == 0
    return out.getvalue()


def new_key(data_dir: Path | None, workspace: str, read_only: bool = False, url: str | None = None) -> str:
    """A key made by ``allocator keys create``: the last line of its output."""
    where = ["--database-url", url] if url else ["--data-dir", str(data_dir)]
    text = keys_cli(*where, "create", "--workspace", workspace, *(["--read-only"] if read_only else []))
    return text.strip().splitlines()[-1]


class Server:
    """``python -m allocator.service`` on 127.0.0.1 (a real uvicorn process), stopped by :meth:`stop`.

    ``workers``: ``--workers N`` (default: the command's own, one per core).
    """

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, database_url: str | None = None,
                 workers: int | None = None):
        self.data_dir, self.port = Path(data_dir), free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, "ALLOCATOR_DATA_DIR": str(data_dir), **(env or {})}
        if database_url:
            full_env["ALLOCATOR_DATABASE_URL"] = database_url
        else:
            full_env.pop("ALLOCATOR_DATABASE_URL", None)
        self.log = open(Path(data_dir) / f"server-{self.port}.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "allocator.service", "--host", "127.0.0.1",
                                      "--port", str(self.port), "--log-level", "warning",
                                      *(["--workers", str(workers)] if workers else [])],
                                     cwd=ROOT, env=full_env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}): {self.log_text()}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server did not answer within 120 s: {self.log_text()}")
            time.sleep(0.2)

    def log_text(self) -> str:
        self.log.flush()
        return (Path(self.data_dir) / f"server-{self.port}.log").read_text()[-3000:]

    def client(self, key: str | None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"} if key else {},
                            timeout=120)

    def kill(self) -> None:
        """Stop at once, as a crash would (SIGKILL to the server; its job processes die with it)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.log.close()


def wait_job(http: httpx.Client, job_id: str, until: tuple[str, ...] = ("done", "failed", "cancelled"),
             timeout: float = 300, seen: list | None = None) -> dict[str, Any]:
    """Poll a job until its status is in ``until`` (``seen`` collects every state observed)."""
    deadline = time.monotonic() + timeout
    while True:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if seen is not None:
            seen.append(job)
        if job["status"] in until:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s: {job}")
        time.sleep(0.1)


def job_pids(job_id: str) -> list[int]:
    """Processes named for the job (``job-<id>``, set by the job process itself)."""
    want = f"job-{job_id[:11]}"
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() == want and (d / "stat").read_text().split(") ")[1][0] != "Z":
                    out.append(int(d.name))
            except (OSError, IndexError):
                pass
    return out


# ---------------------------------------------------------------- PostgreSQL from the system's binaries

def _pg_bindir() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    return Path(dirs[-1]) if dirs and (Path(dirs[-1]) / "initdb").exists() else None


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server in a temporary folder on a free local port; yields its SQLAlchemy URL.

    ``initdb`` refuses to run as root, so as root the server runs as the ``postgres`` user. Skips,
    saying why, only where the binaries are missing.
    """
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine; "
                    "`apt-get install postgresql` provides them (.ci/run does)")
    prefix: list[str] = []
    if os.geteuid() == 0:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the PostgreSQL server as")
        prefix = ["runuser", "-u", "postgres", "--"]
    tmp = Path(tempfile.mkdtemp(prefix="allocator-pg-"))
    if prefix:
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
    data, port = tmp / "data", free_port()
    run = dict(check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=180)
    try:
        subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--no-locale"], **run)
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(tmp / "log"), "-w", "-t", "120",
                        "-o", f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off", "start"], **run)
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL: {exc.stdout.decode(errors='replace')[-2000:]}") from None
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


def without_timing(summary: dict[str, Any]) -> dict[str, Any]:
    """A summary without the fields that measure time (they differ between any two solves)."""
    out = {k: v for k, v in summary.items() if k != "solve_seconds"}
    out["solver_info"] = {k: v for k, v in (summary.get("solver_info") or {}).items()
                          if "seconds" not in k and "time" not in k and k != "elapsed"}
    return out
