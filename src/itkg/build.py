"""Build every generated file from ``ontology/itkg.ttl``: ``python -m itkg.build [--check]``.

One command for the whole rules build, in order:

1. the OWL defined class of each indication, between the markers in ``ontology/itkg.ttl``
   (:func:`itkg.rulegen.owl_classes`);
2. the four status queries of ``queries/`` (:func:`itkg.rulegen.query`);
3. ``shapes/planned-therapy.ttl`` (:func:`itkg.rulegen.planned_therapy_shapes`) and
   ``shapes/vocabulary.ttl`` (:func:`itkg.shapegen.vocabulary_shapes`);
4. ``ontology/itkg.owl`` and ``docs/ontology/index.html`` from the Turtle, and its SSSOM
   cross-references (:mod:`itkg.build_owl`, which can still be run alone);
5. ``ontology/itkg.knowledge.json``, what the rule engine reads of the Turtle as rebuilt, with
   its checksum (:func:`itkg.knowledge.knowledge_json`: commands read it instead of parsing).

``--check`` writes nothing and exits 1 when any file is stale (``tests/test_build.py`` runs it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import build_owl, rulegen, shapegen
from .knowledge import Knowledge, knowledge_json, knowledge_path
from .resources import data_root


def _root() -> Path:
    return data_root()


def targets(root: Path) -> dict[Path, str]:
    """Every generated file under ``root`` and the text it must have (the ontology's own
    generated block first: the rest is generated from the ontology as rebuilt)."""
    import rdflib

    ttl = root / "ontology" / "itkg.ttl"
    source = ttl.read_text(encoding="utf-8")
    knowledge = Knowledge(rdflib.Graph().parse(data=source, format="turtle"))
    begin, end = source.find(rulegen.BEGIN_OWL), source.find(rulegen.END_OWL)
    if begin < 0 or end < begin:
        raise SystemExit(f"{ttl}: the markers {rulegen.BEGIN_OWL!r} ... {rulegen.END_OWL!r} are missing")
    rebuilt = source[:begin] + rulegen.owl_classes(knowledge) + source[end + len(rulegen.END_OWL):]
    found: dict[Path, str] = {ttl: rebuilt}
    final = Knowledge(rdflib.Graph().parse(data=rebuilt, format="turtle")) if rebuilt != source else knowledge
    found[knowledge_path(ttl)] = knowledge_json(final, rebuilt.encode("utf-8"))
    for name in rulegen.QUERIES:
        found[root / "queries" / f"{name}.rq"] = rulegen.query(name, knowledge)
    for name, generate in shapegen.GENERATED.items():
        found[root / "shapes" / name] = generate(knowledge)
    return found


def build(root: Path, check: bool = False) -> list[Path]:
    """Write (or with ``check`` only compare) the generated files; the stale ones are returned."""
    stale = []
    for path, text in targets(root).items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            stale.append(path)
            if not check:
                path.write_text(text, encoding="utf-8")
    # Then what python -m itkg.build_owl makes from the Turtle: the SSSOM cross-references (in the
    # bundled checkout), ontology/itkg.owl and the HTML documentation of the ontology.
    args = ["--check"] if check else []
    if root.resolve() != _root().resolve():
        docs = root / "docs" / "ontology" / "index.html"
        if not check:
            docs.parent.mkdir(parents=True, exist_ok=True)
        args += ["--ttl", str(root / "ontology" / "itkg.ttl"), "--owl", str(root / "ontology" / "itkg.owl"),
                 "--docs", str(docs)]
    if build_owl.main(args) != 0:
        stale.append(root / "ontology" / "itkg.owl")
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m itkg.build``."""
    parser = argparse.ArgumentParser(prog="python -m itkg.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is stale")
    parser.add_argument("--root", type=Path, default=None, help="the checkout to build (default: this one)")
    args = parser.parse_args(argv)
    stale = build(args.root or _root(), check=args.check)
    for path in stale:
        print(f"{'stale' if args.check else 'rebuilt'}: {path}", file=sys.stderr)
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
