"""Where the ontology, shapes and queries live, both in a source checkout and in an installed wheel.

The wheel carries them under ``itkg/_data``; an editable install or a checkout reads them from the
repository root. Everything else in itkg asks this module instead of building paths itself.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


@lru_cache(maxsize=None)
def data_root() -> Path:
    """The folder holding ``ontology/``, ``shapes/`` and ``queries/``."""
    packaged = _PACKAGE_DIR / "_data"
    if (packaged / "ontology" / "itkg.ttl").is_file():
        return packaged
    checkout = _PACKAGE_DIR.parent.parent
    if (checkout / "ontology" / "itkg.ttl").is_file():
        return checkout
    raise FileNotFoundError("itkg data files (ontology/, shapes/, queries/) not found")


def ontology_path() -> Path:
    """The Turtle source of the ontology."""
    return data_root() / "ontology" / "itkg.ttl"


def ontology_owl_path() -> Path:
    """The RDF/XML rendering of the ontology, for Protégé and owlready2."""
    return data_root() / "ontology" / "itkg.owl"


def shapes_paths() -> list[Path]:
    """Every SHACL shapes file, sorted by name."""
    return sorted((data_root() / "shapes").glob("*.ttl"))


def queries_dir() -> Path:
    """The folder of the contract's SPARQL queries."""
    return data_root() / "queries"


def query_path(name: str) -> Path:
    """The query file called ``name`` (with or without ``.rq``) in ``queries/``."""
    stem = name[:-3] if name.endswith(".rq") else name
    path = queries_dir() / f"{stem}.rq"
    if not path.is_file() or path.parent != queries_dir():
        raise FileNotFoundError(name)
    return path
