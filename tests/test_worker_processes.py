"""Worker processes never outlive a run: interrupts stop the whole process tree quickly, a killed main process
takes its workers with it, and a plain script without a `__main__` guard still clears (issue 14, items 2 and 3).

Each signal test starts a real `tdmarket clear --scheme hierarchical --executor process --workers 2` in a new
session, waits until both workers run, signals, and then looks for any process left in that session (`/proc`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

WORKTREE = Path(__file__).resolve().parents[1]


def _session_processes(sid: int) -> list[tuple[int, int, str]]:
    """(pid, parent pid, command) of every live (non-zombie) process of session `sid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        state, ppid, session = fields[0], int(fields[1]), int(fields[3])
        if session == sid and state != "Z":
            found.append((int(entry), ppid, cmd[:120]))
    return found


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan's zombie waits for whoever adopted it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _workers(sid: int, main_pid: int) -> list[int]:
    """Worker processes: children of the forkserver, itself a child of the main process."""
    procs = _session_processes(sid)
    servers = {pid for pid, ppid, cmd in procs if ppid == main_pid and "forkserver" in cmd}
    return [pid for pid, ppid, _ in procs if ppid in servers]


def _wait_until(predicate, timeout_s: float, step_s: float = 0.05) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()


@pytest.fixture(scope="module")
def slow_instance(tmp_path_factory) -> Path:
    """The built-in example with 16 DSO areas: a hierarchical run with 2 workers lasts well over 10 s."""
    out = tmp_path_factory.mktemp("interrupts") / "sixteen-areas"
    subprocess.run(
        [sys.executable, "-m", "tdmarket", "variant", "--example", "--seed", "3", "--dso-areas", "16", str(out)],
        check=True,
        capture_output=True,
        cwd=WORKTREE,
    )
    return out


def _sigint_as_in_a_terminal() -> None:
    """The run's Ctrl-C as in a terminal's foreground job: a shell starts a background job (`make test &`,
    `nohup ... &`) with SIGINT ignored, and its children inherit that (measured: this module's SIGINT test then
    saw the run finish with exit 0)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_and_wait_for_workers(instance: Path, err_file: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tdmarket", "clear", str(instance), "--scheme", "hierarchical"]
        + ["--executor", "process", "--workers", "2", "--relax"],
        stdout=subprocess.DEVNULL,
        stderr=open(err_file, "w"),  # a file, not a pipe: an orphan holding a pipe must not block the test
        start_new_session=True,
        preexec_fn=_sigint_as_in_a_terminal,
        cwd=WORKTREE,
    )
    if not _wait_until(lambda: len(_workers(proc.pid, proc.pid)) == 2, 60):
        proc.kill()
        pytest.fail(f"the workers did not start: {err_file.read_text()}")
    time.sleep(0.5)  # the workers are busy with the first stage now
    assert proc.poll() is None, "the run ended before it could be interrupted"
    return proc


def _kill_session(sid: int) -> None:
    for pid, _, _ in _session_processes(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.mark.parametrize(
    ("how", "exit_code", "message"),
    [("SIGINT to the group", 130, "tdmarket: interrupted"), ("SIGTERM to the main", 143, "tdmarket: terminated")],
)
def test_interrupt_stops_everything_within_two_seconds(slow_instance, tmp_path, how, exit_code, message):
    err = tmp_path / "stderr.txt"
    proc = _start_and_wait_for_workers(slow_instance, err)
    try:
        t0 = time.monotonic()
        if how.startswith("SIGINT"):
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        else:
            proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        elapsed = time.monotonic() - t0
        assert rc == exit_code
        assert elapsed < 3.0, f"exit took {elapsed:.2f} s"
        assert _wait_until(lambda: not _session_processes(proc.pid), 3.0), _session_processes(proc.pid)
        text = err.read_text()
        assert text.rstrip().splitlines()[-1] == message
        assert "Traceback" not in text
    finally:
        _kill_session(proc.pid)


def test_killed_main_process_takes_its_workers_with_it(slow_instance, tmp_path):
    proc = _start_and_wait_for_workers(slow_instance, tmp_path / "stderr.txt")
    try:
        workers = _workers(proc.pid, proc.pid)
        proc.kill()
        proc.wait(timeout=10)
        assert _wait_until(lambda: not _session_processes(proc.pid), 10.0), _session_processes(proc.pid)
        assert len(workers) == 2 and not any(_alive(pid) for pid in workers)
    finally:
        _kill_session(proc.pid)


def test_plain_script_without_main_guard_clears(tmp_path):
    """`tdmarket.clear(..., scheme="hierarchical")` at a script's top level: workers would re-run the script,
    so it runs inline with one warning, and gives the process executor's result."""
    script = tmp_path / "plain.py"
    script.write_text(
        textwrap.dedent(
            """
            import tdmarket
            from tdmarket.examples import builtin_path

            result = tdmarket.clear(builtin_path(), scheme="hierarchical", relax=True, workers=2)
            print(f"COST {result.total_cost:.6f}")
            """
        )
    )
    guarded = tmp_path / "guarded.py"
    guarded.write_text(
        textwrap.dedent(
            """
            import tdmarket
            from tdmarket.examples import builtin_path

            if __name__ == "__main__":
                result = tdmarket.clear(builtin_path(), scheme="hierarchical", relax=True, workers=2)
                print(f"COST {result.total_cost:.6f}")
            """
        )
    )
    env = dict(os.environ, PYTHONPATH=str(WORKTREE))
    plain = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert "Traceback" not in plain.stderr and "BrokenProcessPool" not in plain.stderr
    assert 'without `if __name__ == "__main__":`' in plain.stderr and plain.stderr.count("\n") <= 3
    ok = subprocess.run([sys.executable, str(guarded)], capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "__main__" not in ok.stderr  # the process executor, no warning
    cost = lambda out: float(out.split("COST ")[1])  # noqa: E731
    assert cost(plain.stdout) == pytest.approx(cost(ok.stdout), rel=1e-6)


def test_the_workers_fork_server_starts_before_the_first_request():
    """`start_process_workers_early` (called by `clear` and `compare` before they read the instance) starts the
    fork server that imports the agents' code, and the process executor's workers are then forked from it."""
    from multiprocessing import forkserver

    from tdmarket.operators import executors

    executors.start_process_workers_early("process")
    server = forkserver._forkserver._forkserver_pid  # (private: the running server's pid)
    assert server is not None and _alive(server)
    executor = executors.ProcessExecutor(1)
    try:
        worker_parent = executor._pool(0).submit(os.getppid).result(timeout=60)
    finally:
        executor.close()
    assert worker_parent == server
