"""A real PgBouncer (Debian's package) in transaction pooling mode in front of the test
Postgres, on a free loopback port, for as long as a test module needs it.

The pool is deliberately tiny (2 server connections per database and user): every
client connection of the gateway then shares server connections with the others, so a
prepared statement that outlives its transaction is found missing (or already there)
at once instead of by chance.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.support.processes import LogTail, free_port

PGBOUNCER = Path("/usr/sbin/pgbouncer")
SERVER_POOL_SIZE = 2
START_TIMEOUT_SECONDS = 30.0

CONFIG = """\
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
auth_type = trust
auth_file = {directory}/users.txt
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 500
server_reset_query =
logfile =
pidfile =
"""


def available() -> bool:
    return PGBOUNCER.exists()


@contextmanager
def running_pgbouncer(database_url: str) -> Iterator[str]:
    """PgBouncer in front of `database_url`'s server; yields the same URL through it."""
    url = make_url(database_url)
    listen_port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="nzgw-pgbouncer-"))
    directory.chmod(0o755)  # it drops to the postgres user when started as root
    (directory / "users.txt").write_text(f'"{url.username}" ""\n')
    config = directory / "pgbouncer.ini"
    config.write_text(
        CONFIG.format(
            host=url.host,
            port=url.port or 5432,
            listen_port=listen_port,
            directory=directory,
            pool_size=SERVER_POOL_SIZE,
        )
    )
    as_user = ["-u", "postgres"] if os.geteuid() == 0 else []
    process = subprocess.Popen(
        [str(PGBOUNCER), *as_user, str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    log = LogTail(directory / "pgbouncer.log")
    threading.Thread(target=log.follow, args=(process.stdout,), daemon=True).start()
    try:
        if log.wait_for(lambda line: "process up" in line, START_TIMEOUT_SECONDS) is None:
            raise RuntimeError(f"pgbouncer did not start:\n{log.text()}")
        yield url.set(host="127.0.0.1", port=listen_port).render_as_string(hide_password=False)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(directory, ignore_errors=True)
