"""A small, strict client for remote SPARQL servers (SPARQL 1.1 Protocol and Graph Store Protocol).

itkg hands large patient sets to a SPARQL server (Oxigraph first; Fuseki, GraphDB and Virtuoso
through the same standard protocols, never their own APIs). This module is that hand-off: it sends
queries, reads SPARQL JSON results into rdflib terms, and loads RDF through the Graph Store
Protocol. It is deliberately strict, because a wrong answer about eligibility is worse than none:

* every failure is an :class:`~itkg.errors.EndpointError` whose message names the URL and the
  HTTP status but never the query or the data, which may carry patient IRIs; the short error
  summary a server sends back is cut to one line and scrubbed of anything that came from the
  request;
* an answer is used only if its Content-Type says SPARQL JSON and its JSON has the SPARQL shape
  (some servers answer a wrong URL with an HTML page and ``200 OK``);
* redirects are never followed, so a query cannot be sent on to another host, and proxy
  settings from the environment are ignored, so it cannot go through an unexpected proxy either.

Queries are sent as written: nothing in this module builds query text out of values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import TracebackType
from typing import Any
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

import httpx
from rdflib.term import BNode, Identifier, Literal, URIRef

from itkg.errors import EndpointError

__all__ = ["SparqlEndpoint", "derive_store_url"]

SPARQL_QUERY_TYPE = "application/sparql-query"
SPARQL_JSON_TYPE = "application/sparql-results+json"
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


def _media_type(response: httpx.Response) -> str:
    """The response's media type, lower case, without parameters (``""`` when absent)."""
    return response.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _summary(response: httpx.Response, sent: bytes) -> str:
    """The first line of a plain-text error answer, scrubbed of everything that came from ``sent``.

    Servers like to quote the offending query or triple back; that text may hold patient IRIs
    and literals, so every IRI is blanked and so is every word the request itself contained
    (SPARQL keywords excepted). HTML and JSON error pages are not summarised at all.
    """
    if _media_type(response) != "text/plain":
        return ""
    lines = (line.strip() for line in response.text[:4096].splitlines())
    first = next((line for line in lines if line), "")
    first = re.sub(r"<[^<>\s]*>", "<…>", first)
    first = re.sub(r"\b[A-Za-z][A-Za-z0-9+.\-]*://\S+", "…", first)
    sent_words = {
        word for word in _WORD.findall(sent.decode("utf-8", errors="replace").lower())
        if len(word) >= 3 and word not in _SYNTAX_WORDS
    }
    first = _WORD.sub(lambda m: "…" if m.group(0).lower() in sent_words else m.group(0), first)
    if len(first) > _SUMMARY_LENGTH:
        first = first[: _SUMMARY_LENGTH - 1] + "…"
    return first


def _term(value: Any) -> Identifier:
    """One SPARQL JSON RDF term as an rdflib term."""
    if not isinstance(value, dict) or not isinstance(value.get("value"), str):
        raise EndpointError("not a SPARQL endpoint: a result binding is malformed")
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
            raise EndpointError("not a SPARQL endpoint: a result literal is malformed") from exc
    raise EndpointError("the endpoint returned a kind of RDF term itkg does not support")


class SparqlEndpoint:
    """A SPARQL server reached over HTTP: queries at ``query_url``, graph uploads at ``store_url``.

    ``store_url`` defaults to :func:`derive_store_url` of ``query_url``; it is only needed by
    :meth:`upload`. ``timeout`` (seconds) bounds each step of a request (connecting, sending,
    each wait for data), as httpx does. ``headers`` are sent with every request, for example an
    ``Authorization`` header. Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, query_url: str, *, store_url: str | None = None, timeout: float = 60.0,
                 headers: Mapping[str, str] | None = None) -> None:
        if not timeout > 0:
            raise EndpointError("the endpoint timeout must be a positive number of seconds")
        self.query_url = _check_url(query_url, "query")
        derived = store_url if store_url is not None else derive_store_url(query_url)
        self.store_url = None if derived is None else _check_url(derived, "store")
        self.timeout = timeout
        self._client = httpx.Client(
            headers=dict(headers or {}),
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
        )

    def __enter__(self) -> SparqlEndpoint:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Release the connections."""
        self._client.close()

    def select(self, query: str) -> tuple[list[str], list[dict[str, Identifier]]]:
        """Run a SELECT query; return the variable names and one ``{variable: term}`` per row.

        Unbound variables are absent from a row's dict. Blank nodes keep the labels the server
        gave them, which are only meaningful within this one result.
        """
        document = self._query(query)
        head, results = document.get("head"), document.get("results")
        if "boolean" in document and results is None:
            raise EndpointError("the query is not a SELECT query: the endpoint answered yes/no")
        variables = head.get("vars") if isinstance(head, dict) else None
        bindings = results.get("bindings") if isinstance(results, dict) else None
        if (not isinstance(variables, list) or not all(isinstance(v, str) for v in variables)
                or not isinstance(bindings, list)):
            raise EndpointError(f"{_display(self.query_url)} is not a SPARQL endpoint: "
                                "its answer lacks SPARQL SELECT results")
        rows = []
        for binding in bindings:
            if not isinstance(binding, dict):
                raise EndpointError("not a SPARQL endpoint: a result row is malformed")
            rows.append({name: _term(value) for name, value in binding.items()})
        return list(variables), rows

    def ask(self, query: str) -> bool:
        """Run an ASK query and return its answer."""
        answer = self._query(query).get("boolean")
        if not isinstance(answer, bool):
            raise EndpointError(f"{_display(self.query_url)} is not a SPARQL endpoint: "
                                "its answer lacks an ASK result")
        return answer

    def upload(self, data: bytes, content_type: str, graph: str | None = None,
               replace: bool = False) -> None:
        """Load RDF ``data`` (of media type ``content_type``, e.g. ``text/turtle``) into a graph.

        ``graph`` is the IRI of a named graph; ``None`` means the default graph. ``replace``
        sends PUT, which replaces the graph's content; otherwise POST merges into it.
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
        response = self._send("PUT" if replace else "POST", url, data, content_type, None,
                              "upload")
        if response.status_code not in _STORE_SUCCESS:
            raise EndpointError(f"the graph store answered the upload with HTTP "
                                f"{response.status_code}, which is not a success code")

    def _query(self, query: str) -> dict[str, Any]:
        """POST ``query`` and return its SPARQL JSON answer as a dict, after every check."""
        response = self._send("POST", self.query_url, query.encode("utf-8"), SPARQL_QUERY_TYPE,
                              SPARQL_JSON_TYPE, "query")
        where = _display(self.query_url)
        media_type = _media_type(response)
        if media_type not in _JSON_RESULT_TYPES:
            answered = media_type or "without a content type"
            raise EndpointError(f"{where} is not a SPARQL endpoint: it answered {answered}, "
                                "not SPARQL JSON results")
        try:
            document = response.json()
        except ValueError as exc:
            raise EndpointError(f"{where} is not a SPARQL endpoint: its answer is not valid "
                                "JSON") from exc
        if not isinstance(document, dict) or not isinstance(document.get("head"), dict):
            raise EndpointError(f"{where} is not a SPARQL endpoint: its JSON answer has no "
                                "SPARQL results head")
        return document

    def _send(self, method: str, url: str, body: bytes, content_type: str, accept: str | None,
              what: str) -> httpx.Response:
        """Send one request; turn transport failures and non-2xx statuses into EndpointError."""
        headers = {"Content-Type": content_type}
        if accept is not None:
            headers["Accept"] = accept
        where = _display(url)
        try:
            response = self._client.request(method, url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise EndpointError(f"{where} did not answer within {self.timeout:g} s") from exc
        except httpx.ConnectError as exc:
            raise EndpointError(f"cannot connect to {where}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise EndpointError(f"the connection to {where} failed "
                                f"({type(exc).__name__})") from exc
        status = response.status_code
        if 200 <= status < 300:
            return response
        if 300 <= status < 400:
            location = response.headers.get("location")
            try:
                target = f" to {_display(urljoin(url, location))}" if location else ""
            except ValueError:
                target = " to a malformed URL"
            raise EndpointError(
                f"{where} answered the {what} with a redirect (HTTP {status}){target}; itkg does "
                "not follow redirects: give the final URL instead"
            )
        summary = _summary(response, body)
        detail = f": {summary}" if summary else ""
        if 400 <= status < 500:
            raise EndpointError(f"the endpoint rejected the {what} (HTTP {status}){detail}")
        raise EndpointError(f"the endpoint failed on the {what} (HTTP {status}){detail}")
