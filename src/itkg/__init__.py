"""itkg: the intrathecal-therapy knowledge graph toolkit."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("itkg")
except PackageNotFoundError:  # pragma: no cover - running from a checkout without install
    __version__ = "0.0.0"
