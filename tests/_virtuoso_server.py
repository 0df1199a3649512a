"""Start and stop a private Virtuoso 7 (Debian ``virtuoso-opensource``) on 127.0.0.1 for tests.

Virtuoso is the triple store most hospitals can install, and it differs from Oxigraph where it
matters to itkg: it does not answer a direct POST of a query, it cuts long results at
``ResultSetMaxRows`` and marks "anytime" partial answers only in headers, its Graph Store has no
default graph and wants HTTP Digest for writes, and its SPARQL compiler rejects some valid
queries. The tests meet the real server, never a mock.

Each instance gets its own database folder and ``virtuoso.ini`` in a temporary folder, free ports
on 127.0.0.1 (SQL and HTTP) and no system service. Only the standard library is imported here (see
``_oxigraph_server.py`` for why); test files load this file by path.

Usage::

    with VirtuosoServer(tmp_path, max_rows=1000) as server:
        server.isql("DB.DBA.USER_CREATE ('loader', 'secret'); GRANT SPARQL_UPDATE TO \\"loader\\";")
        server.bulk_load(folder, "*.ttl", "https://example.org/graph/data")
        server.query_url                # http://127.0.0.1:PORT/sparql
        server.store_url, server.auth_store_url   # /sparql-graph-crud, /sparql-graph-crud-auth
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from _local_server import Endpoint, LocalServer, free_port

#: How long the server may take to accept HTTP requests before the start is given up.
STARTUP_DEADLINE_S = 60.0
#: The password of ``dba`` in a new database.
DBA_PASSWORD = "dba"

INI = """\
[Database]
DatabaseFile = {dir}/virtuoso.db
ErrorLogFile = {dir}/virtuoso.log
LockFile = {dir}/virtuoso.lck
TransactionFile = {dir}/virtuoso.trx
xa_persistent_file = {dir}/virtuoso.pxa
ErrorLogLevel = 7
FileExtend = 200
Striping = 0
TempStorage = TempDatabase

[TempDatabase]
DatabaseFile = {dir}/virtuoso-temp.db
TransactionFile = {dir}/virtuoso-temp.trx
Striping = 0

[Parameters]
ServerPort = 127.0.0.1:{sql_port}
DisableUnixSocket = 1
MaxClientConnections = 10
CheckpointInterval = 60
CaseMode = 2
; the bulk loader (ld_dir) reads only from these folders
DirsAllowed = ., {dir}, {data_dirs}
NumberOfBuffers = {buffers}
MaxDirtyBuffers = {dirty_buffers}
ThreadsPerQuery = 2
AsyncQueueMaxThreads = 4

[HTTPServer]
ServerPort = 127.0.0.1:{http_port}
ServerRoot = {dir}/vsp
MaxClientConnections = 5
ServerThreads = 5
Charset = UTF-8

[SPARQL]
ResultSetMaxRows = {max_rows}
MaxQueryExecutionTime = {max_seconds}
MaxQueryCostEstimationTime = 400
"""


def virtuoso_executable() -> str | None:
    """``virtuoso-t`` (Debian's name for the server), or ``None`` when it is not installed."""
    return shutil.which("virtuoso-t")


def isql_executable() -> str | None:
    """``isql-vt`` (Debian's name for Virtuoso's SQL client; ``isql`` elsewhere)."""
    return shutil.which("isql-vt") or shutil.which("isql-v")


class VirtuosoServer(LocalServer):
    """One ``virtuoso-t`` process with its own database in ``folder``.

    ``max_rows`` is ``ResultSetMaxRows`` (the cap at which Virtuoso cuts a result) and
    ``max_seconds`` ``MaxQueryExecutionTime``. ``data_dirs`` are the folders the bulk loader may
    read. ``buffers`` is ``NumberOfBuffers`` (8 KB pages of cache; 10000 is 80 MB).
    """

    #: Virtuoso writes a checkpoint when it stops.
    stop_grace_s = 30.0

    def __init__(self, folder: Path, *, max_rows: int = 10000, max_seconds: int = 60,
                 data_dirs: tuple[Path, ...] = (), buffers: int = 10000) -> None:
        self.folder = Path(folder)
        self.max_rows = max_rows
        self.max_seconds = max_seconds
        self.data_dirs = tuple(Path(d) for d in data_dirs)
        self.buffers = buffers
        self.sql_port = 0
        super().__init__()

    query_url = Endpoint("/sparql", "The SPARQL 1.1 Protocol endpoint.")
    store_url = Endpoint("/sparql-graph-crud",
                         "The Graph Store Protocol endpoint (read-only without authentication).")
    auth_store_url = Endpoint("/sparql-graph-crud-auth",
                              "The Graph Store Protocol endpoint that takes writes, with HTTP Digest.")

    def start(self) -> VirtuosoServer:
        """Start the server; return once it answers SPARQL, or raise ``RuntimeError``."""
        executable = virtuoso_executable()
        if executable is None:
            raise RuntimeError("virtuoso-t is not installed (Debian: virtuoso-opensource)")
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "vsp").mkdir(exist_ok=True)

        def spawn() -> subprocess.Popen[bytes]:
            self.http_port, self.sql_port = free_port(), free_port()
            for stale in self.folder.glob("virtuoso*"):
                stale.unlink()
            ini = self.folder / "virtuoso.ini"
            ini.write_text(INI.format(
                dir=self.folder, sql_port=self.sql_port, http_port=self.http_port,
                data_dirs=", ".join(str(d) for d in self.data_dirs) or str(self.folder),
                max_rows=self.max_rows, max_seconds=self.max_seconds, buffers=self.buffers,
                dirty_buffers=self.buffers * 3 // 4), encoding="utf-8")
            # +foreground: the process is ours to stop (no daemon, no system service).
            return subprocess.Popen([executable, "+configfile", str(ini), "+foreground"], cwd=self.folder,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        self._launch(spawn, "/sparql?query=ASK%7B%7D", STARTUP_DEADLINE_S, 0.1)
        return self

    def isql(self, statements: str) -> str:
        """Run SQL ``statements`` as ``dba`` with ``isql-vt``; return its output, raise on error."""
        client = isql_executable()
        if client is None:
            raise RuntimeError("isql-vt is not installed (Debian: virtuoso-opensource)")
        script = self.folder / "statements.sql"
        script.write_text(statements.rstrip().rstrip(";") + ";\n", encoding="utf-8")
        done = subprocess.run([client, f"127.0.0.1:{self.sql_port}", "dba", DBA_PASSWORD,
                               str(script)], capture_output=True, text=True, timeout=120,
                              check=False)
        output = done.stdout + done.stderr
        if done.returncode != 0 or "*** Error" in output:
            raise RuntimeError(f"isql failed:\n{output}")
        return output

    def bulk_load(self, folder: Path, pattern: str, graph: str) -> None:
        """Load the files matching ``pattern`` in ``folder`` into ``graph`` with Virtuoso's bulk
        loader (``ld_dir`` and ``rdf_loader_run``), and fail on any file it could not load."""
        output = self.isql(
            f"ld_dir ('{folder}', '{pattern}', '{graph}');\n"
            "rdf_loader_run ();\n"
            "checkpoint;\n"
            "SELECT COUNT(*) FROM DB.DBA.load_list WHERE ll_error IS NOT NULL;")
        counts = [line.strip() for line in output.splitlines() if line.strip().isdigit()]
        if counts[-1:] != ["0"]:
            raise RuntimeError(f"the bulk loader failed on some file:\n{output}")

    def log_text(self) -> str:
        """Virtuoso's log so far, for failure messages."""
        log = self.folder / "virtuoso.log"
        return log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""

