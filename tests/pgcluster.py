"""A throwaway PostgreSQL cluster for the tests that stop, start or restart the server.

:func:`throwaway_postgres` runs ``initdb`` into a fresh directory and ``pg_ctl`` on a free
port on 127.0.0.1 with its own socket directory, so the machine's server (127.0.0.1:5432),
and the tests that share it, are never touched. Trust authentication, superuser
``postgres``. The cluster is stopped and its directory removed at the end, whatever happens.

PostgreSQL refuses to run as root: under root, ``initdb`` and the server run as the
``postgres`` OS user (which the server package creates), in a directory it owns. The
directory is made with :func:`tempfile.mkdtemp` rather than under pytest's ``tmp_path``, whose
parents are private to the user running pytest.

Without the server binaries (``initdb``, ``pg_ctl``) the test fails when CI=true and skips
otherwise, saying what to install.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import free_port, missing_requirement

DATABASE = "vod2s3"
INSTALL = (
    "install the PostgreSQL server package (Debian/Ubuntu: `apt-get install postgresql`), or "
    "set VOD2S3_TEST_PG_BINDIR to the folder holding initdb and pg_ctl"
)


def find_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: $VOD2S3_TEST_PG_BINDIR, the newest
    /usr/lib/postgresql/<version>/bin (Debian), or the PATH."""
    candidates: list[Path] = []
    if os.environ.get("VOD2S3_TEST_PG_BINDIR"):
        candidates.append(Path(os.environ["VOD2S3_TEST_PG_BINDIR"]))
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = [p for p in debian.iterdir() if re.fullmatch(r"\d+(\.\d+)?", p.name)]
        versions.sort(key=lambda p: tuple(int(n) for n in p.name.split(".")), reverse=True)
        candidates += [p / "bin" for p in versions]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for bindir in candidates:
        if all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "pg_ctl")):
            return bindir
    return None


def _server_user() -> tuple[int, int] | None:
    """Under root, the ``postgres`` OS user's (uid, gid) to run the server as; else None."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        missing_requirement(
            "PostgreSQL will not run as root and there is no `postgres` OS user to run a "
            f"throwaway cluster as: {INSTALL}"
        )
    return entry.pw_uid, entry.pw_gid


@dataclass
class PgCluster:
    bindir: Path
    base: Path  # owned by the server's user: data/, the socket and server.log
    port: int
    user: tuple[int, int] | None  # (uid, gid) to run the binaries as; None: as ourselves

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log_file(self) -> Path:
        return self.base / "server.log"

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def url(self) -> str:
        """The database made for the test (``vod2s3``)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def run(self, tool: str, *args: str, timeout: float = 60.0) -> None:
        """Run one of the server's binaries as the server's user; raise, with its output and
        the server log's end, if it fails."""
        command = [str(self.bindir / tool), *args]
        uid, gid = self.user or (None, None)
        done = subprocess.run(
            command,
            cwd=self.base,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            user=uid,
            group=gid,
            extra_groups=None if uid is None else [],
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} exited with {done.returncode}\n{done.stdout}{done.stderr}"
                f"\n--- {self.log_file}\n{self.log_tail()}"
            )

    def _pg_ctl(self, action: str, *args: str, timeout: float) -> float:
        began = time.monotonic()
        self.run(
            "pg_ctl", action, "-D", str(self.data), "-w", "-t", str(int(timeout)), *args,
            timeout=timeout + 10,
        )  # fmt: skip
        return time.monotonic() - began

    def _server_options(self) -> tuple[str, ...]:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1"
        return ("-o", options, "-l", str(self.log_file))

    def start(self, timeout: float = 60.0) -> float:
        """Start the server and wait until it accepts connections; returns the seconds."""
        return self._pg_ctl("start", *self._server_options(), timeout=timeout)

    def stop(self, mode: str = "fast", timeout: float = 60.0) -> float:
        """Stop the server (every connection to it ends); returns the seconds it took."""
        return self._pg_ctl("stop", "-m", mode, timeout=timeout)

    def restart(self, timeout: float = 60.0) -> float:
        """``pg_ctl restart -m fast``: down for a moment; returns the seconds it took."""
        return self._pg_ctl("restart", "-m", "fast", *self._server_options(), timeout=timeout)

    def ready(self) -> bool:
        """Whether the server accepts connections now."""
        import psycopg

        try:
            psycopg.connect(self.admin_url, connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def postmaster_pid(self) -> int | None:
        """The running server's pid, from postmaster.pid; None when it is not running."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no server log)"

    def _shut_down(self) -> None:
        """Stop the server for good, by force if need be; return once it is gone."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.stop(mode="immediate", timeout=30)
        # pg_ctl failed: SIGQUIT is an immediate shutdown, SIGKILL the last resort (the
        # server's children exit when they find their postmaster gone).
        for sig in (signal.SIGQUIT, signal.SIGKILL):
            if not _alive(pid):
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        if _alive(pid):
            raise RuntimeError(f"the throwaway PostgreSQL server (pid {pid}) would not stop")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own child that exited) counts as gone.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


@contextlib.contextmanager
def throwaway_postgres(keep_log: Path | None = None) -> Iterator[PgCluster]:
    """A new PostgreSQL cluster, running, with an empty database ``vod2s3`` (its URL is
    ``.url``). Stopped and deleted afterwards; its server log is copied to ``keep_log``
    first, if given. Fails when CI=true and the server binaries are missing, skips
    otherwise."""
    bindir = find_bindir()
    if bindir is None:
        missing_requirement(f"initdb and pg_ctl not found, so no throwaway cluster: {INSTALL}")
    user = _server_user()
    base = Path(tempfile.mkdtemp(prefix="vod2s3-pg-"))
    cluster = PgCluster(bindir, base, free_port(), user)
    try:
        if user is not None:
            os.chown(base, *user)
        cluster.run(
            "initdb", "-D", str(cluster.data), "-A", "trust", "-U", "postgres",
            "-E", "UTF8", "--no-locale", "--no-sync",
        )  # fmt: skip
        cluster.start()
        import psycopg

        with psycopg.connect(cluster.admin_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{DATABASE}"')
        yield cluster
    finally:
        try:
            cluster._shut_down()
        finally:
            if keep_log is not None:
                with contextlib.suppress(OSError):
                    shutil.copyfile(cluster.log_file, keep_log)
            shutil.rmtree(base, ignore_errors=True)
