"""A small, strict client for remote SPARQL servers (SPARQL 1.1 Protocol and Graph Store Protocol).

itkg hands large patient sets to a SPARQL server (Oxigraph, Virtuoso, Jena; GraphDB and Fuseki
through the same standard protocols, never their own APIs). This module is that hand-off: it sends
queries, reads SPARQL JSON results into rdflib terms, and loads RDF through the Graph Store
Protocol. It is deliberately strict, because a wrong answer about eligibility is worse than none:

* every failure is an :class:`~itkg.errors.EndpointError` whose message names the URL and the
  HTTP status but never the query, the data or the credentials; the short error summary a server
  sends back is cut to one line and scrubbed of anything that came from the request;
* an answer is used only if its Content-Type says SPARQL JSON and its JSON has the SPARQL shape
  (some servers answer a wrong URL with an HTML page and ``200 OK``);
* an answer the server marks as partial (Virtuoso's ``X-SQL-State`` after its "anytime" timeout,
  ``X-SPARQL-MaxRows`` when the rows reach it, or as many rows as the declared server cap) is an
  error that says which server setting to raise, never an answer;
* ``timeout`` is a deadline for the whole request, however slowly the server trickles its answer,
  and an answer larger than ``max_response_bytes`` is refused while it is read;
* redirects are never followed, so a query cannot be sent on to another host, and proxy
  settings and ``.netrc`` from the environment are ignored. Credentials come from the
  environment or a file (:class:`Credentials`), and are sent only in answer to the server's own
  Digest or Basic challenge.

Queries are sent as written: nothing in this module builds query text out of values.
"""

from __future__ import annotations

import html
import json
import os
import re
import socket
import stat
import threading
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, unquote_plus, urlencode, urljoin, urlsplit, urlunsplit

import httpx
from rdflib.term import BNode, Identifier, Literal, URIRef

from itkg import names, processes
from itkg.errors import EndpointError

__all__ = ["METHODS", "Credentials", "SparqlEndpoint", "derive_store_url"]

SPARQL_QUERY_TYPE = "application/sparql-query"
FORM_TYPE = "application/x-www-form-urlencoded"
SPARQL_JSON_TYPE = "application/sparql-results+json"
#: How queries are sent: ``direct`` is a POST with the query as the body
#: (``application/sparql-query``), ``form`` the URL-encoded POST form of the protocol, ``auto``
#: tries ``direct`` once with a tiny ``ASK {}`` and falls back to ``form`` when the server does
#: not answer it (Virtuoso 7 never answers a direct POST).
METHODS = names.ENDPOINT_METHODS
#: Seconds the ``auto`` probe waits for an answer to a direct POST before falling back to form.
PROBE_TIMEOUT_S = 1.0
#: Statuses with which a server may refuse a direct POST it does not implement.
_PROBE_REFUSALS = frozenset({400, 405, 406, 411, 415, 500, 501})
#: Default bound on one answer, in bytes (the 100,000-patient evidence query is about 100 MB).
DEFAULT_MAX_RESPONSE_BYTES = 1 << 30
#: Environment variables for credentials: a user and a password, or a file holding ``user:password``.
USER_VARIABLE = "ITKG_ENDPOINT_USER"
PASSWORD_VARIABLE = "ITKG_ENDPOINT_PASSWORD"
CREDENTIALS_VARIABLE = "ITKG_ENDPOINT_CREDENTIALS"
#: Media types accepted as SPARQL JSON results; some servers label them plain JSON.
_JSON_RESULT_TYPES = frozenset({SPARQL_JSON_TYPE, "application/json"})
#: Graph Store Protocol success codes: 201 for a new graph, 200 or 204 otherwise.
_STORE_SUCCESS = frozenset({200, 201, 204})
#: Longest server error summary quoted in a message.
_SUMMARY_LENGTH = 200
#: Words that may stay in a server's error summary even when the request contained them: they are
#: SPARQL and Turtle syntax, not data, and they are what makes "expected WHERE" useful.
_SYNTAX_WORDS = frozenset(
    word.lower()
    for word in """
    ask base bind by construct count describe distinct exists filter from graph group having
    in limit minus named not offset optional order prefix reduced select service union values
    where true false
    """.split()
)
#: A word for scrubbing: letters and digits only, so ``anna_smith`` and ``anna-smith`` both
#: yield ``anna`` and ``smith``.
_WORD = re.compile(r"[^\W_]+")
_ABSOLUTE_IRI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`]*")
#: Quoted text in a server's message ('...', "...", `...`): always data or query text.
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`")
#: A SQL state as Virtuoso sends it (``S1TAT``, ``42000``); anything else is not quoted.
_SQL_STATE = re.compile(r"[A-Z0-9]{5}")


def derive_store_url(query_url: str) -> str | None:
    """The Graph Store Protocol URL that belongs to ``query_url``, where the layout is unambiguous.

    Oxigraph serves queries at ``/query`` and the graph store at ``/store``; GraphDB serves a
    repository's queries at ``/repositories/ID`` and its graph store at
    ``/repositories/ID/rdf-graphs/service``. Any other layout (Fuseki's ``/DATASET/query``,
    Virtuoso's ``/sparql``, Oxigraph behind a path prefix) gives ``None``, and the store URL has
    to be given: guessing would send data to a URL that may mean something else.

    >>> derive_store_url("http://127.0.0.1:7878/query")
    'http://127.0.0.1:7878/store'
    >>> derive_store_url("http://localhost:7200/repositories/itkg")
    'http://localhost:7200/repositories/itkg/rdf-graphs/service'
    >>> derive_store_url("http://localhost:3030/ds/query") is None
    True
    """
    parts = urlsplit(query_url)
    path = parts.path.rstrip("/")
    if path == "/query":
        store_path = "/store"
    elif re.fullmatch(r"/repositories/[^/]+", path):
        store_path = f"{path}/rdf-graphs/service"
    else:
        return None
    return urlunsplit((parts.scheme, parts.netloc, store_path, "", ""))


def _display(url: str) -> str:
    """``url`` without user, password and query string, for messages and logs."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "a malformed URL"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _check_url(url: str, role: str) -> str:
    """Refuse anything but an absolute http(s) URL, before any connection is made."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a malformed port
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid:
        raise EndpointError(f"the {role} URL must be an absolute http:// or https:// URL")
    return url


@dataclass(frozen=True)
class Credentials:
    """A user name and password for a server that asks for HTTP Digest or Basic authentication.

    They come from the environment or from a file, never from the command line, where every
    user of the machine can read them (``ps``). The password is left out of ``repr`` and is never
    put in a message.
    """

    user: str
    password: str = field(repr=False)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Credentials:
        """Read ``user:password`` from the first line of ``path``.

        The file must not be readable by group or others (like ``~/.ssh`` keys): a password file
        anyone can read is refused rather than used.
        """
        where = Path(path)
        try:
            mode = where.stat().st_mode
            text = where.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            raise EndpointError(f"{where}: cannot read the credentials file") from None
        if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise EndpointError(f"{where}: the credentials file is readable by others: "
                                f"chmod 600 {where}")
        first = text.splitlines()[0] if text.strip() else ""
        user, colon, password = first.partition(":")
        if not colon or not user:
            raise EndpointError(f"{where}: the credentials file must hold user:password on its "
                                "first line")
        return cls(user, password)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Credentials | None:
        """``ITKG_ENDPOINT_USER`` and ``ITKG_ENDPOINT_PASSWORD``, or the file named by
        ``ITKG_ENDPOINT_CREDENTIALS``; ``None`` when none of them is set."""
        environ = os.environ if environ is None else environ
        user, password = environ.get(USER_VARIABLE), environ.get(PASSWORD_VARIABLE)
        if user or password:
            if not (user and password is not None):
                raise EndpointError(f"set both {USER_VARIABLE} and {PASSWORD_VARIABLE}, or neither")
            return cls(user, password)
        path = environ.get(CREDENTIALS_VARIABLE)
        return cls.from_file(path) if path else None


#: A request body at least this large is not sent before the server's challenge is known: a
#: ``HEAD`` to the same URL asks for the challenge first (:class:`_ChallengeAuth`).
PROBE_BODY_BYTES = 64 * 1024


class _ChallengeAuth(httpx.Auth):
    """Answer the server's own challenge: HTTP Digest when it offers it, else Basic.

    Nothing is sent before the server asks (a server that needs no password never sees one), and
    once the scheme is known the following requests use it straight away.

    A challenge is an answer to a request, so the first request goes out without credentials:
    for a large body (an upload) that would send the body twice, once to be refused with 401
    and once with the answer to the challenge. So when the scheme is not known yet and the body
    is :data:`PROBE_BODY_BYTES` or more, a ``HEAD`` to the same URL (no body, no side effect)
    fetches the challenge first. A server that answers the ``HEAD`` without a challenge (it
    protects writes only) gets the request as before, and may still see its body twice.
    """

    def __init__(self, credentials: Credentials) -> None:
        self._digest = httpx.DigestAuth(credentials.user, credentials.password)
        self._basic = httpx.BasicAuth(credentials.user, credentials.password)
        self._scheme: str | None = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._scheme == "digest":
            yield from self._digest.auth_flow(request)
            return
        if self._scheme == "basic":
            yield from self._basic.auth_flow(request)
            return
        if int(request.headers.get("content-length", "0") or 0) >= PROBE_BODY_BYTES:
            probe = httpx.Request("HEAD", request.url, headers={
                name: value for name, value in request.headers.items()
                if name.lower() not in ("content-length", "content-type", "transfer-encoding")})
            answer = yield probe
            if self._learn(probe, answer):
                yield from self.auth_flow(request)  # now with the scheme, the body sent once
                return
        response = yield request
        if response.status_code != 401:
            return
        schemes = {value.strip().split(None, 1)[0].lower()
                   for value in response.headers.get_list("www-authenticate") if value.strip()}
        if "digest" in schemes:
            self._scheme = "digest"
            flow = self._digest.auth_flow(request)
            next(flow)  # the unauthenticated request: already sent, and answered above
            try:
                retry = flow.send(response)
            except StopIteration:
                return
            yield retry
        elif "basic" in schemes:
            self._scheme = "basic"
            yield from self._basic.auth_flow(request)

    def _learn(self, probe: httpx.Request, answer: httpx.Response) -> bool:
        """Take the scheme (and a Digest challenge) from the answer to a probe; ``False`` if the
        answer holds no challenge itkg answers."""
        if answer.status_code != 401:
            return False
        schemes = {value.strip().split(None, 1)[0].lower()
                   for value in answer.headers.get_list("www-authenticate") if value.strip()}
        if "digest" in schemes:
            flow = self._digest.auth_flow(probe)
            next(flow)
            try:
                flow.send(answer)  # parses and keeps the challenge; the signed probe is not sent
            except StopIteration:
                return False
            self._scheme = "digest"
            return True
        if "basic" in schemes:
            self._scheme = "basic"
            return True
        return False


def _media_type(headers: httpx.Headers) -> str:
    """The media type, lower case, without parameters (``""`` when absent)."""
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _summary(headers: httpx.Headers, body: bytes, sent: bytes) -> str:
    """The first line of a plain-text error answer, scrubbed of everything that came from ``sent``.

    Servers like to quote the offending query or triple back; that text may hold patient IRIs
    and literals, so every IRI and every quoted string is blanked, and so is every word the
    request itself contained (SPARQL keywords excepted) and every word with a letter outside
    ASCII (a name the request carried escaped, as N-Triples does). An HTML page gives the text
    of its ``<xmp>`` or ``<pre>`` block, or of its body; JSON error pages are not summarised.
    """
    media_type = _media_type(headers)
    text = body[:8192].decode("utf-8", errors="replace")
    if media_type == "text/html":
        text = _html_reason(text)
    elif media_type != "text/plain":
        return ""
    lines = (line.strip() for line in text.splitlines())
    first = next((line for line in lines if line), "")
    first = re.sub(r"<[^<>\s]*>", "<…>", first)
    first = re.sub(r"\b[A-Za-z][A-Za-z0-9+.\-]*://\S+", "…", first)
    sent_words = {
        word for word in _WORD.findall(sent.decode("utf-8", errors="replace").lower())
        if len(word) >= 3 and word not in _SYNTAX_WORDS
    }

    def private(word: str) -> bool:
        return word.lower() in sent_words or not word.isascii()

    # A quoted passage goes whole when any word of it came from the request.
    first = _QUOTED.sub(lambda m: "'…'" if any(map(private, _WORD.findall(m.group(0))))
                        else m.group(0), first)
    first = _WORD.sub(lambda m: "…" if private(m.group(0)) else m.group(0), first)
    first = "".join(char if char.isprintable() else " " for char in first)
    if len(first) > _SUMMARY_LENGTH:
        first = first[: _SUMMARY_LENGTH - 1] + "…"
    return first


def _html_reason(page: str) -> str:
    """The reason in an HTML error page: the text of its first ``<xmp>`` or ``<pre>`` block
    (where Virtuoso's Graph Store puts it), else its body's text without the status heading."""
    page = re.sub(r"(?is)<(head|script|style)\b.*?</\1\s*>", "", page)
    block = re.search(r"(?is)<(xmp|pre)\b[^>]*>(.*?)</\1\s*>", page)
    if block is not None:
        text = block.group(2)
    else:
        page = re.sub(r"(?is)<h1\b.*?</h1\s*>", "", page)
        text = re.sub(r"(?s)<[^>]*>", "\n", page)
    return html.unescape(text)


def _term(value: Any, where: str) -> Identifier:
    """One SPARQL JSON RDF term as an rdflib term."""
    if not isinstance(value, dict) or not isinstance(value.get("value"), str):
        raise EndpointError(f"{where} is not a SPARQL endpoint: a result binding is malformed")
    kind, text = value.get("type"), value["value"]
    if kind == "uri":
        return URIRef(text)
    if kind == "bnode":
        return BNode(text)
    if kind in ("literal", "typed-literal"):  # "typed-literal" is the 2008 spelling Virtuoso uses
        language, datatype = value.get("xml:lang"), value.get("datatype")
        try:
            if language:
                return Literal(text, lang=language)
            if datatype:
                return Literal(text, datatype=URIRef(datatype))
            return Literal(text)
        except (TypeError, ValueError) as exc:
            raise EndpointError(f"{where} is not a SPARQL endpoint: a result literal is "
                                "malformed") from exc
    raise EndpointError(f"{where} returned a kind of RDF term itkg does not support")


@dataclass(frozen=True)
class _Answer:
    """A complete HTTP answer: status, headers and the whole body (read within the limits)."""

    status: int
    headers: httpx.Headers
    body: bytes


class SparqlEndpoint:
    """A SPARQL server reached over HTTP: queries at ``query_url``, graph uploads at ``store_url``.

    ``store_url`` defaults to :func:`derive_store_url` of ``query_url``; it is only needed by
    :meth:`upload`. ``timeout`` (seconds) is the deadline of each call (:meth:`select`,
    :meth:`ask`, :meth:`upload`), from the first byte sent to the last byte read; ``deadline``, a
    :func:`time.monotonic` time, additionally bounds every call together (the command line gives
    one deadline to a whole command). ``method`` is one of :data:`METHODS`. ``credentials``
    answer a Digest or Basic challenge; ``None`` reads them from the environment
    (:meth:`Credentials.from_environment`). ``max_rows`` declares the server's row cap: a result
    with that many rows is treated as truncated. ``max_response_bytes`` bounds one answer.
    ``headers`` are sent with every request. Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, query_url: str, *, store_url: str | None = None, timeout: float = 60.0,
                 headers: Mapping[str, str] | None = None, method: str = "auto",
                 credentials: Credentials | None = None, max_rows: int | None = None,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
                 deadline: float | None = None) -> None:
        if not timeout > 0:
            raise EndpointError("the endpoint timeout must be a positive number of seconds")
        if method not in METHODS:
            raise EndpointError(f"the query method must be one of {', '.join(METHODS)}")
        if max_rows is not None and max_rows < 1:
            raise EndpointError("the server's row cap must be a positive number")
        if max_response_bytes < 1:
            raise EndpointError("the largest answer must be a positive number of bytes")
        self.query_url = _check_url(query_url, "query")
        derived = store_url if store_url is not None else derive_store_url(query_url)
        self.store_url = None if derived is None else _check_url(derived, "store")
        self.timeout = timeout
        self.deadline = deadline
        self.method = method
        self.max_rows = max_rows
        self.max_response_bytes = max_response_bytes
        if credentials is None:
            credentials = Credentials.from_environment()
        self._has_credentials = credentials is not None
        self._resolved_method: str | None = None if method == "auto" else method
        self._client = httpx.Client(
            headers=dict(headers or {}),
            auth=_ChallengeAuth(credentials) if credentials is not None else None,
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
            # One connection per request: the deadline's watchdog then always knows the socket
            # to cut, and an idle connection never outlives the request that opened it.
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    def __enter__(self) -> SparqlEndpoint:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Release the connections."""
        self._client.close()

    # --- queries -------------------------------------------------------------------------------

    def select(self, query: str) -> tuple[list[str], list[dict[str, Identifier]]]:
        """Run a SELECT query; return the variable names and one ``{variable: term}`` per row.

        Unbound variables are absent from a row's dict. Blank nodes keep the labels the server
        gave them, which are only meaningful within this one result. Rows come in the server's
        order; sort them where they are shown (some servers do not honour ``ORDER BY`` fully).
        """
        where = _display(self.query_url)
        answer, document = self._query(query)
        head, results = document.get("head"), document.get("results")
        if "boolean" in document and results is None:
            raise EndpointError(f"the query is not a SELECT query: {where} answered yes/no")
        variables = head.get("vars") if isinstance(head, dict) else None
        bindings = results.get("bindings") if isinstance(results, dict) else None
        if (not isinstance(variables, list) or not all(isinstance(v, str) for v in variables)
                or not isinstance(bindings, list)):
            raise EndpointError(f"{where} is not a SPARQL endpoint: its answer lacks SPARQL "
                                "SELECT results")
        self._refuse_truncated(answer.headers, len(bindings))
        rows = []
        for binding in bindings:
            if not isinstance(binding, dict):
                raise EndpointError(f"{where} is not a SPARQL endpoint: a result row is malformed")
            rows.append({name: _term(value, where) for name, value in binding.items()})
        return list(variables), rows

    def ask(self, query: str) -> bool:
        """Run an ASK query and return its answer."""
        _, document = self._query(query)
        answer = document.get("boolean")
        if not isinstance(answer, bool):
            raise EndpointError(f"{_display(self.query_url)} is not a SPARQL endpoint: "
                                "its answer lacks an ASK result")
        return answer

    def _refuse_truncated(self, headers: httpx.Headers, count: int) -> None:
        """Raise when the server says, or the row count shows, that the answer is partial."""
        where = _display(self.query_url)
        state = headers.get("x-sql-state")
        if state is not None:
            code = state.strip() if _SQL_STATE.fullmatch(state.strip()) else "?"
            raise EndpointError(
                f"{where} sent a partial answer (X-SQL-State {code}: the query hit the server's "
                "time limit and it returned what it had so far); itkg does not use partial "
                "answers: raise the server's query time limit (Virtuoso: MaxQueryExecutionTime "
                "in the [SPARQL] section of virtuoso.ini) and leave out any timeout parameter")
        cap = headers.get("x-sparql-maxrows")
        if cap is not None:
            try:
                limit: int | None = int(cap.strip())
            except ValueError:
                limit = 0
            if limit is not None and count >= limit:
                raise EndpointError(
                    f"{where} cut the answer at {count} rows (X-SPARQL-MaxRows {limit}); itkg "
                    "does not use partial answers: raise the server's row limit (Virtuoso: "
                    "ResultSetMaxRows in the [SPARQL] section of virtuoso.ini) above the number "
                    "of rows the query can return")
        if self.max_rows is not None and count >= self.max_rows:
            raise EndpointError(
                f"{where} returned {count} rows, as many as the server's declared row cap "
                f"({self.max_rows}), so the answer may be cut short; itkg does not use partial "
                "answers: raise the server's result row limit and the declared cap "
                "(--endpoint-max-rows)")

    def _query(self, query: str) -> tuple[_Answer, dict[str, Any]]:
        """Send ``query`` and return the answer with its SPARQL JSON as a dict, after every check."""
        started = time.monotonic()
        method = self._method(started)
        answer = self._send_query(method, query, started)
        return answer, self._document(answer)

    def _method(self, started: float) -> str:
        """The query method: as chosen, or found out once with a tiny ``ASK {}`` (``auto``)."""
        if self._resolved_method is not None:
            return self._resolved_method
        probe = "ASK {}"
        try:
            answer = self._send_query("direct", probe, started, probe=True)
            self._document(answer)
            self._resolved_method = "direct"
        except _ProbeFailed:
            # No answer in time, or a refusal of the media type: the URL-encoded form is the
            # protocol's other POST binding, which every server implements.
            self._resolved_method = "form"
        except EndpointError as error:
            if "not a SPARQL endpoint" not in str(error):
                raise
            self._resolved_method = "form"
        return self._resolved_method

    def _send_query(self, method: str, query: str, started: float, probe: bool = False) -> _Answer:
        """POST ``query`` the ``direct`` or the ``form`` way; check the status."""
        if method == "direct":
            body, content_type = query.encode("utf-8"), SPARQL_QUERY_TYPE
        else:
            body, content_type = urlencode({"query": query}).encode("ascii"), FORM_TYPE
        return self._send("POST", self.query_url, body, content_type, SPARQL_JSON_TYPE, "query",
                          started, probe=probe)

    def _document(self, answer: _Answer) -> dict[str, Any]:
        """The SPARQL JSON document of a 2xx answer, or EndpointError."""
        where = _display(self.query_url)
        media_type = _media_type(answer.headers)
        if media_type not in _JSON_RESULT_TYPES:
            answered = media_type or "without a content type"
            raise EndpointError(f"{where} is not a SPARQL endpoint: it answered {answered}, "
                                "not SPARQL JSON results")
        try:
            document = json.loads(answer.body)
        except (ValueError, RecursionError) as exc:
            raise EndpointError(f"{where} is not a SPARQL endpoint: its answer is not valid "
                                "JSON") from exc
        if not isinstance(document, dict) or not isinstance(document.get("head"), dict):
            raise EndpointError(f"{where} is not a SPARQL endpoint: its JSON answer has no "
                                "SPARQL results head")
        return document

    # --- uploads -------------------------------------------------------------------------------

    def upload(self, data: bytes, content_type: str, graph: str | None = None,
               replace: bool = False) -> None:
        """Load RDF ``data`` (of media type ``content_type``, e.g. ``text/turtle``) into a graph.

        ``graph`` is the IRI of a named graph; ``None`` means the default graph (which some
        servers, Virtuoso among them, cannot write: give a graph there). ``replace`` sends PUT,
        which replaces the graph's content; otherwise POST merges into it.
        """
        if self.store_url is None:
            raise EndpointError(
                f"no Graph Store URL is known for {_display(self.query_url)}: give the store URL "
                "(--store-url) as well as the query URL"
            )
        if graph is not None and not _ABSOLUTE_IRI.fullmatch(graph):
            raise EndpointError("the graph name must be an absolute IRI")
        target = "default" if graph is None else "graph=" + quote(graph, safe="")
        url = self.store_url + ("&" if urlsplit(self.store_url).query else "?") + target
        try:
            answer = self._send("PUT" if replace else "POST", url, data, content_type, None,
                                "upload", time.monotonic())
        except EndpointError as error:
            if graph is None and getattr(error, "status", 0) >= 400 \
                    and getattr(error, "status", 0) not in (401, 403):
                raise EndpointError(f"{error} (the server may have no writable default graph, "
                                    "as Virtuoso has none: give a named graph with --graph)") from None
            raise
        if answer.status not in _STORE_SUCCESS:
            raise EndpointError(f"{_display(url)} answered the upload with HTTP {answer.status}, "
                                "which is not a success code")

    # --- one request ---------------------------------------------------------------------------

    def _remaining(self, started: float) -> float:
        """Seconds left of this call's ``timeout`` and of the overall ``deadline``."""
        end = started + self.timeout
        if self.deadline is not None:
            end = min(end, self.deadline)
        return end - time.monotonic()

    def _send(self, method: str, url: str, body: bytes, content_type: str, accept: str | None,
              what: str, started: float, probe: bool = False) -> _Answer:
        """Send one request and read its whole answer within the deadline and the size bound;
        turn transport failures and non-2xx statuses into EndpointError."""
        headers = {"Content-Type": content_type}
        if accept is not None:
            headers["Accept"] = accept
        where = _display(url)
        remaining = self._remaining(started)
        budget = remaining if not probe else min(remaining, PROBE_TIMEOUT_S)
        if budget <= 0:
            raise EndpointError(f"{where} did not answer within {self.timeout:g} s (the deadline "
                                "of the whole request)")
        answer = self._exchange(method, url, body, headers, budget, where, probe)
        status = answer.status
        if 200 <= status < 300:
            return answer
        if probe and status in _PROBE_REFUSALS:
            raise _ProbeFailed
        if 300 <= status < 400:
            location = answer.headers.get("location")
            try:
                target = f" to {_display(urljoin(url, location))}" if location else ""
            except ValueError:
                target = " to a malformed URL"
            raise EndpointError(
                f"{where} answered the {what} with a redirect (HTTP {status}){target}; itkg does "
                "not follow redirects: give the final URL instead"
            )
        if status == 401:
            hint = ("the credentials were refused" if self._has_credentials else
                    f"set {USER_VARIABLE} and {PASSWORD_VARIABLE}, or {CREDENTIALS_VARIABLE} "
                    "(a file holding user:password), or use --credentials FILE")
            raise _StatusError(f"{where} requires authentication for the {what} (HTTP 401): "
                               f"{hint}", status)
        # Scrub against the request as the server read it: a form is URL-decoded first.
        sent = unquote_plus(body.decode("ascii")).encode("utf-8") if content_type == FORM_TYPE \
            else body
        summary = _summary(answer.headers, answer.body, sent)
        detail = f": {summary}" if summary else ""
        if 400 <= status < 500:
            raise _StatusError(f"{where} rejected the {what} (HTTP {status}){detail}", status)
        raise _StatusError(f"{where} failed on the {what} (HTTP {status}){detail}", status)

    def _exchange(self, method: str, url: str, body: bytes, headers: dict[str, str],
                  budget: float, where: str, probe: bool) -> _Answer:
        """The request itself. ``budget`` seconds bound all of it: httpx's per-step timeouts
        cannot (a server that trickles a byte per second never trips them), so a watchdog shuts
        the socket down when the budget is spent, and the body is read chunk by chunk against
        the size bound."""
        end = time.monotonic() + budget
        sockets: list[socket.socket] = []
        expired = threading.Event()

        def trace(event: str, info: dict[str, Any]) -> None:
            if event == "connection.connect_tcp.complete":
                stream = info.get("return_value")
                sock = stream.get_extra_info("socket") if stream is not None else None
                if isinstance(sock, socket.socket):
                    sockets.append(sock)
                    if expired.is_set():
                        _shut(sock)

        def expire() -> None:
            expired.set()
            for sock in sockets:
                _shut(sock)

        def timed_out() -> EndpointError:
            if probe:
                return _ProbeFailed()
            return EndpointError(f"{where} did not answer within {self.timeout:g} s (the deadline "
                                 "of the whole request)")

        watchdog = threading.Timer(budget, expire)
        watchdog.daemon = True
        processes.start_thread(watchdog)
        try:
            with self._client.stream(method, url, content=body, headers=headers,
                                     timeout=httpx.Timeout(budget),
                                     extensions={"trace": trace}) as response:
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_response_bytes:
                    raise self._too_large(where)
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self.max_response_bytes:
                        raise self._too_large(where)
                    chunks.append(chunk)
                    if expired.is_set() or time.monotonic() > end:
                        raise timed_out()
                if expired.is_set():
                    raise timed_out()
                return _Answer(response.status_code, response.headers, b"".join(chunks))
        except httpx.TimeoutException as exc:
            raise timed_out() from exc
        except httpx.ConnectError as exc:
            if expired.is_set():
                raise timed_out() from exc
            raise EndpointError(f"cannot connect to {where}: {_reason(exc)}") from exc
        except httpx.HTTPError as exc:
            if expired.is_set():
                raise timed_out() from exc
            raise EndpointError(f"the connection to {where} failed "
                                f"({type(exc).__name__})") from exc
        finally:
            watchdog.cancel()

    def _too_large(self, where: str) -> EndpointError:
        return EndpointError(
            f"{where} sent an answer larger than {self.max_response_bytes / 2**20:g} MB; itkg "
            "stopped reading it: raise the bound (--endpoint-max-mb) if the answer is expected")


class _ProbeFailed(EndpointError):
    """The ``auto`` probe found no answer to a direct POST: use the form instead."""

    def __init__(self) -> None:
        super().__init__("the server does not answer a direct POST")


class _StatusError(EndpointError):
    """An HTTP error status, kept so that callers can add advice for particular statuses."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _shut(sock: socket.socket) -> None:
    """Cut a connection from another thread: ``shutdown`` wakes a blocked ``recv``."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _reason(exc: Exception) -> str:
    """A connection failure's reason without the host name resolution details repeated."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:_SUMMARY_LENGTH]
