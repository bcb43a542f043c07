"""Argument schemas of the installed libraries: a schema generated from a library's dataclass
(``TrainingArguments``, accelerate's FSDP constants, TRL's ``DPOConfig``) follows the version
the run will use, not the one it was committed from.

Each such schema is committed (the reference for editors and the docs, generated from the
versions in ``constraints.txt``) and names the versions it was made from
(``x-generated-from``). At first use :func:`installed_schema` compares them with the installed
versions, read from the packages' metadata (no import):

- the same versions: the committed file;
- others: the schema generated from the installed libraries, cached per version in the user's
  cache directory (``$FTURUN_CACHE_DIR``, else ``$XDG_CACHE_HOME/fturun``, else
  ``~/.cache/fturun``) under ``schemas/``; a cache hit imports nothing heavy, a miss imports the
  libraries once to generate it.

:func:`schema_sources` says, per schema, where it came from and which versions: what
``fturun plugins`` and the run's ``environment.json`` show, so drift is visible.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata
from pathlib import Path

from ..core.io import write_text

#: schema name -> {"generated_from", "installed", "source", "path"} of each schema used here
_SOURCES: dict = {}
_LOADED: dict = {}


def user_cache_dir() -> Path:
    """fturun's cache folder of this user (created on first write, not here)."""
    if os.environ.get("FTURUN_CACHE_DIR"):
        return Path(os.environ["FTURUN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fturun"


def installed_versions(packages) -> dict:
    """``{distribution: version}`` of the installed ``packages`` (``None`` when one is
    missing), from their metadata: nothing is imported."""
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def generator_digest(*files) -> str:
    """A short digest of the generator's own source files: a cached schema made by other
    generator code (another constraint, another fturun) is not reused."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:12]


def installed_schema(name: str, committed_file, generate, packages, generator_files=()) -> dict:
    """The schema ``name`` for the installed versions of ``packages``.

    ``committed_file`` is the committed schema (JSON with ``x-generated-from``: the versions it
    was made from); ``generate()`` makes the schema from the installed libraries (it may import
    them); ``generator_files`` are the source files of the generator (their digest is part of
    the cache key). Loaded once per process."""
    if name in _LOADED:
        return _LOADED[name]
    committed_file = Path(committed_file)
    committed = json.loads(committed_file.read_text(encoding="utf-8"))
    made_from = committed.get("x-generated-from") or {}
    installed = installed_versions(packages)
    if all(made_from.get(p) == v for p, v in installed.items()) or None in installed.values():
        # the committed versions (or a library is missing: the run fails on its import anyway,
        # with a message naming the package; validation keeps the committed reference)
        schema, source, path = committed, "committed", committed_file
    else:
        key = "-".join(f"{p}{v}" for p, v in sorted(installed.items()))
        path = user_cache_dir() / "schemas" / (
            f"{name}-{key}-{generator_digest(*generator_files)}.json")
        schema = _read_cached(path)
        source = "cache"
        if schema is None:
            schema = generate()
            schema["x-generated-from"] = installed
            try:
                write_text(str(path), json.dumps(schema, indent=2, sort_keys=True) + "\n")
            except OSError:
                pass  # a read-only cache: generate again next time, validation still right
            source = "generated"
    _SOURCES[name] = {"generated_from": schema.get("x-generated-from") or {},
                      "installed": installed, "source": source, "path": str(path)}
    _LOADED[name] = schema
    return schema


def _read_cached(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def schema_sources() -> dict:
    """Per schema used in this process: the versions it was generated from, the installed
    ones, and whether it is the committed file, a cached or a freshly generated one."""
    return {name: dict(info) for name, info in sorted(_SOURCES.items())}


def forget_loaded() -> None:
    """Drop what this process loaded (tests that change the installed versions)."""
    _LOADED.clear()
    _SOURCES.clear()
