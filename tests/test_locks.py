"""Cross-process locks (models/locks.py) on both databases: one holder, freed with its holder."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from sqlalchemy import create_engine

from models.locks import ProcessLock, lock_dir, lock_is_free


def test_one_holder_at_a_time_and_free_again_after_release(tmp_path: Path, database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        first, second = (ProcessLock(engine, lock_dir(tmp_path), "index-builder") for _ in range(2))
        assert first.try_acquire() and first.held and first.still_held()
        assert not second.try_acquire() and not first.try_acquire()  # re-entrant for nobody
        assert not lock_is_free(engine, lock_dir(tmp_path), "index-builder")
        assert lock_is_free(engine, lock_dir(tmp_path), "another-name")
        first.release()
        assert lock_is_free(engine, lock_dir(tmp_path), "index-builder") and second.try_acquire()
        second.release()
    finally:
        engine.dispose()


def test_a_killed_holder_frees_the_lock(tmp_path: Path, database_url: str) -> None:
    holder = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from sqlalchemy import create_engine
        from models.locks import ProcessLock
        lock = ProcessLock(create_engine({database_url!r}), Path({str(tmp_path / 'locks')!r}), "index-builder")
        assert lock.try_acquire()
        print("held", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    engine = create_engine(database_url)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        assert not lock_is_free(engine, tmp_path / "locks", "index-builder")
        proc.kill()
        proc.wait(timeout=30)
        waiter = ProcessLock(engine, tmp_path / "locks", "index-builder")
        assert waiter.acquire(timeout=10, poll_s=0.1)  # the server ends the dead session's locks
        waiter.release()
    finally:
        if proc.poll() is None:
            proc.kill()
        engine.dispose()
