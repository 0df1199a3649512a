"""Fixtures shared by the test modules."""

from __future__ import annotations

import shutil

import pytest

from itkg import jena


@pytest.fixture(scope="session")
def jena_required() -> None:
    """The Jena SHACL back-end must be usable: skip only where there is no Java at all; Java
    without the Jena jars (or older than 11) is a broken setup, and fails."""
    if jena.available():
        return
    if shutil.which("java") is None:
        pytest.skip("java is not installed")
    pytest.fail(f"java is installed but the Jena back-end is not usable: install libapache-jena-java "
                f"(and java {jena.MIN_JAVA} or newer)")
