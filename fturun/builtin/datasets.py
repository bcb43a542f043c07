"""Built-in dataset sources: local files, a folder-per-label text corpus, Hugging Face Hub datasets,
conversation files (prompt -> response pairs) and CoNLL/IOB tagged files.

This module is also the example to copy for a plugin: one ``@hookimpl`` per kind, factories that
import their heavy dependencies inside, and a params schema per component.
"""

from __future__ import annotations

import os
import sys

from fturun.api import (
    RecipeRuntimeError,
    datasets_cache_dir,
    free_bytes,
    hookimpl,
    hub_unreachable_message,
    human_bytes,
)

from .conversation_files import conversations_in
from .json_lines import json_problem

FORMATS = {"csv": "csv", "tsv": "csv", "json": "json", "jsonl": "json", "parquet": "parquet",
           "text": "text", "txt": "text"}

PATHS = {
    "description": "a file, a glob, or a list of them; 'package:NAME/sub/path' names a path "
                   "inside an installed Python package",
    "anyOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
    ],
}

FILES_SCHEMA = {
    "type": "object",
    "required": ["path"],
    "properties": {
        "path": PATHS,
        "format": {"enum": sorted(FORMATS), "description": "default: from the file extension"},
        "encoding": {"type": "string", "default": "utf-8",
                     "description": "text encoding of csv/tsv/json/text files, e.g. latin-1"},
        "delimiter": {"type": "string", "minLength": 1, "maxLength": 1,
                      "description": "csv field separator (default ',' for csv, tab for tsv)"},
        "field": {"type": "string", "description": "json: the key holding the list of rows"},
    },
}

TEXT_FOLDER_SCHEMA = {
    "type": "object",
    "required": ["path"],
    "properties": {
        "path": {"type": "string", "minLength": 1,
                 "description": "a folder with one sub-folder per label, each holding text "
                                "files; 'package:NAME/sub/path' works too"},
        "encoding": {"type": "string", "default": "utf-8"},
        "extension": {"type": "string", "default": ".txt",
                      "description": "only files with this extension are read"},
    },
}

HUB_SCHEMA = {
    "type": "object",
    "required": ["path"],
    "properties": {
        "path": {"type": "string", "minLength": 1,
                 "description": "dataset name on the Hub, e.g. 'yelp_review_full'"},
        "name": {"type": "string", "description": "configuration name"},
        "split": {"type": "string", "default": "train"},
        "revision": {"type": "string"},
        "data_dir": {"type": "string"},
    },
}


def _paths(context, value):
    values = [value] if isinstance(value, str) else list(value)
    resolved = []
    for v in values:
        path = context.resolve_path(v)
        if not any(ch in path for ch in "*?[") and not os.path.exists(path):
            raise RecipeRuntimeError(f"data file '{v}' not found (looked for {path})")
        resolved.append(path)
    return resolved


def load_files(params, context):
    """Rows from csv/tsv/json/jsonl/parquet/text files through ``datasets``' own builders."""
    from datasets import load_dataset
    from datasets.exceptions import DatasetGenerationError

    paths = _paths(context, params["path"])
    stats = _file_stats(paths)
    paths = [path for path, _, _ in stats]  # globs resolved, empty files left out
    fmt = params.get("format")
    if fmt is None:
        ext = os.path.splitext(paths[0])[1].lstrip(".").lower()
        if ext not in FORMATS:
            raise RecipeRuntimeError(f"cannot tell the format of '{paths[0]}' from its "
                                     f"extension: set params.format to one of "
                                     f"{', '.join(sorted(FORMATS))}")
        fmt = ext
    builder = FORMATS[fmt]
    check_cache_room([size for _, size, _ in stats], f"{len(stats):,} file(s) of {paths[0]}")
    kwargs = {}
    if builder == "csv":
        kwargs["sep"] = params.get("delimiter", "\t" if fmt == "tsv" else ",")
        kwargs["encoding"] = params.get("encoding", "utf-8")
    elif builder in ("json", "text"):
        kwargs["encoding"] = params.get("encoding", "utf-8")
        if builder == "json" and params.get("field"):
            kwargs["field"] = params["field"]
    try:
        return load_dataset(builder, data_files=paths, split="train", **kwargs)
    except (ValueError, DatasetGenerationError, StopIteration) as exc:
        cause = exc.__cause__ or exc
        if NO_ROWS in str(exc):
            raise RecipeRuntimeError(f"{_files_text(paths)} hold no rows (a csv header alone? "
                                     "an empty json list?): add the examples, or set "
                                     "params.path to the files that hold them") from None
        located = json_problem(paths, kwargs["encoding"]) if builder == "json" else None
        raise RecipeRuntimeError(located or f"cannot read {_files_text(paths)} as {fmt}: "
                                 f"{type(cause).__name__}: {cause} (check params.format, "
                                 "params.encoding and params.delimiter)") from None


NO_ROWS = "corresponds to no data"  # what ``datasets`` says of a source without rows


def _files_text(paths) -> str:
    return f"'{paths[0]}'" if len(paths) == 1 else f"{len(paths):,} files ({paths[0]}, ...)"


def load_text_folder(params, context):
    """One row per text file, labelled with the name of the folder it is in.

    The rows are written once to the ``datasets`` cache (keyed on every file's path, size and
    modification time), so a second run reads them back and reuses the tokenization cache."""
    from datasets import Dataset, Features, Value
    from datasets.exceptions import DatasetGenerationError

    root = context.resolve_path(params["path"])
    if not os.path.isdir(root):
        raise RecipeRuntimeError(f"text folder '{params['path']}' not found (looked for {root})")
    extension = params.get("extension", ".txt")
    encoding = params.get("encoding", "utf-8")
    files = []
    for label in sorted(os.listdir(root)):
        folder = os.path.join(root, label)
        if not os.path.isdir(folder) or label.startswith((".", "_")):
            continue
        for name in sorted(os.listdir(folder)):
            if name.endswith(extension):
                path = os.path.join(folder, name)
                stat = os.stat(path)
                files.append((label, path, stat.st_size, stat.st_mtime_ns))
    if not files:
        raise RecipeRuntimeError(f"no '*{extension}' files in the label folders of {root}")
    check_cache_room([size for _, _, size, _ in files], f"{len(files):,} file(s) of {root}")
    try:
        return Dataset.from_generator(
            _text_folder_rows, gen_kwargs={"files": [files], "encoding": encoding},
            features=Features({"text": Value("string"), "label": Value("string")}))
    except DatasetGenerationError as exc:
        cause = exc.__cause__ or exc
        if isinstance(cause, UnicodeDecodeError):
            raise RecipeRuntimeError(
                f"cannot read the files of {root} as {encoding} ({cause.reason} at byte "
                f"{cause.start}); set params.encoding, e.g. \"latin-1\"") from None
        raise RecipeRuntimeError(f"cannot read the files of {root}: {cause}") from None


def _text_folder_rows(files, encoding):
    # gen_kwargs lists are sharded by datasets: the list of files comes wrapped in a list
    for shard in files:
        for label, path, _size, _mtime in shard:
            with open(path, encoding=encoding, errors="strict") as f:
                yield {"text": f.read().strip(), "label": label}


CONVERSATIONS_SCHEMA = {
    "type": "object",
    "required": ["path"],
    "properties": {
        "path": PATHS,
        "encoding": {"type": "string", "default": "utf-8"},
        "field": {"type": "string", "minLength": 1, "default": "conversations",
                  "description": "the key of each file's top-level mapping that holds the list "
                                 "of conversations"},
        "pairs": {"enum": ["consecutive", "first"], "default": "consecutive",
                  "description": "'consecutive': every turn -> the next turn; 'first': only "
                                 "the first turn -> the second"},
    },
}

CONLL_SCHEMA = {
    "type": "object",
    "required": ["path"],
    "properties": {
        "path": PATHS,
        "encoding": {"type": "string", "default": "utf-8"},
        "columns": {"type": "array", "items": {"type": "string", "minLength": 1},
                    "minItems": 2, "uniqueItems": True, "default": ["tokens", "ner_tags"],
                    "description": "a name for each whitespace-separated column of a line, "
                                   "the token first; e.g. CoNLL-2003: [\"tokens\", \"pos_tags\", "
                                   "\"chunk_tags\", \"ner_tags\"]"},
        "delimiter": {"type": "string", "minLength": 1,
                      "description": "column separator (default: any whitespace)"},
        "comment_prefix": {"type": "string", "minLength": 1,
                           "description": "skip lines starting with this, e.g. '#'"},
    },
}


def _file_stats(paths):
    """``[(path, size, mtime)]`` of every file the paths (and globs) name, sorted. A folder
    named as a path, an empty (0-byte) file named alone, or only empty files, are errors that
    say what to write instead; empty files among others are left out with a warning."""
    import glob

    files = []
    for path in paths:
        if os.path.isdir(path):
            raise RecipeRuntimeError(_folder_message(path))
        matches = sorted(glob.glob(path)) if any(ch in path for ch in "*?[") else [path]
        files.extend(m for m in matches if os.path.isfile(m))
    if not files:
        raise RecipeRuntimeError(f"no files match {', '.join(paths)}")
    stats = [(f, os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files]
    empty = [f for f, size, _ in stats if size == 0]
    if len(empty) == len(stats):
        raise RecipeRuntimeError(
            f"data file {_files_text(empty)} {'is' if len(empty) == 1 else 'are'} empty (0 "
            "bytes): write the examples (csv: a header line, then a row per example), or set "
            "params.path to the files that hold them")
    if empty:
        print(f"warning: skipping {len(empty):,} empty (0-byte) data file(s): "
              f"{_files_text(empty)}", file=sys.stderr)
    return [s for s in stats if s[1] > 0]


def _folder_message(path: str) -> str:
    """A folder named where files are expected."""
    names = sorted(n for n in os.listdir(path) if os.path.isfile(os.path.join(path, n)))
    if not names:
        return f"'{path}' is a folder with no files in it: set params.path to the data files"
    glob = os.path.join(path, "*" + os.path.splitext(names[0])[1])
    return (f"'{path}' is a folder: name its files, e.g. params.path = \"{glob}\" (or use "
            "the 'text_folder' dataset: a folder of text files per label)")


def check_cache_room(sizes, what: str) -> None:
    """Sources are written row by row to Arrow files in the ``datasets`` cache (then
    memory-mapped, never held whole in memory): refuse before reading when the files are larger
    than the free space there."""
    total = sum(sizes)
    cache = datasets_cache_dir()
    free = free_bytes(cache)
    if total > free:
        raise RecipeRuntimeError(
            f"{what} ({human_bytes(total)}) would be written to the datasets cache in {cache}, "
            f"but only {human_bytes(free)} is free there; set HF_DATASETS_CACHE to a folder on "
            "a larger disk, or read fewer files")


def _from_generator(generator, files, features, what, encoding, **kwargs):
    """A dataset written once to the ``datasets`` cache (keyed on the files' paths, sizes and
    modification times); read errors become :class:`RecipeRuntimeError`."""
    from datasets import Dataset
    from datasets.exceptions import DatasetGenerationError

    check_cache_room([size for _, size, _ in files], what)
    try:
        return Dataset.from_generator(generator, features=features,
                                      gen_kwargs={"files": [files], "encoding": encoding,
                                                  **kwargs})
    except DatasetGenerationError as exc:
        cause = exc.__cause__ or exc
        if isinstance(cause, UnicodeDecodeError):
            raise RecipeRuntimeError(
                f"cannot read {what} as {encoding} ({cause.reason} at byte {cause.start}); "
                "set params.encoding, e.g. \"latin-1\"") from None
        if isinstance(cause, RecipeRuntimeError):
            raise cause from None
        raise RecipeRuntimeError(f"cannot read {what}: {cause}") from None
    except ValueError as exc:
        if NO_ROWS not in str(exc):
            raise
        raise RecipeRuntimeError(f"{what} hold no rows: add the examples, or set params.path "
                                 "to the files that hold them") from None


def load_conversations(params, context):
    """Question -> answer pairs from YAML (or JSON) files holding lists of conversations, each
    a list of turns, e.g. the ``chatterbot-corpus`` package
    (``package:chatterbot_corpus/data/english/*.yml``). One row per pair: ``prompt``,
    ``response`` and ``source`` (the file's name without extension)."""
    from datasets import Features, Value

    files = _file_stats(_paths(context, params["path"]))
    encoding = params.get("encoding", "utf-8")
    features = Features({"prompt": Value("string"), "response": Value("string"),
                         "source": Value("string")})
    return _from_generator(_conversation_rows, files, features, f"{len(files)} file(s)",
                           encoding, field=params.get("field", "conversations"),
                           pairs=params.get("pairs", "consecutive"))


def _conversation_rows(files, encoding, field, pairs):
    for source, turns in conversations_in(files, encoding, field):
        last = 1 if pairs == "first" else len(turns) - 1
        for i in range(min(last, len(turns) - 1)):
            yield {"prompt": turns[i], "response": turns[i + 1], "source": source}


def load_conll(params, context):
    """Sentences from CoNLL/IOB files: one token per line with its tags in further columns,
    a blank line between sentences, ``-DOCSTART-`` lines skipped. One row per sentence, a list
    per column (default ``tokens`` and ``ner_tags``)."""
    from datasets import Features, List, Value

    files = _file_stats(_paths(context, params["path"]))
    columns = list(params.get("columns", ["tokens", "ner_tags"]))
    features = Features({name: List(Value("string")) for name in columns})
    return _from_generator(_conll_rows, files, features, f"{len(files)} CoNLL file(s)",
                           params.get("encoding", "utf-8"), columns=tuple(columns),
                           delimiter=params.get("delimiter"),
                           comment_prefix=params.get("comment_prefix"))


def _conll_rows(files, encoding, columns, delimiter, comment_prefix):
    for shard in files:
        for path, _size, _mtime in shard:
            sentence = {name: [] for name in columns}
            with open(path, encoding=encoding, errors="strict") as f:
                for number, line in enumerate(f, 1):
                    line = line.rstrip("\r\n")
                    if comment_prefix and line.startswith(comment_prefix):
                        continue
                    if not line.strip() or line.startswith("-DOCSTART-"):
                        if sentence[columns[0]]:
                            yield sentence
                        sentence = {name: [] for name in columns}
                        continue
                    fields = line.split(delimiter) if delimiter else line.split()
                    if len(fields) != len(columns):
                        raise RecipeRuntimeError(
                            f"{path}:{number}: {len(fields)} columns, expected {len(columns)} "
                            f"({', '.join(columns)}): {line[:60]!r}; set params.columns to a "
                            "name per column")
                    for name, value in zip(columns, fields):
                        sentence[name].append(value)
            if sentence[columns[0]]:
                yield sentence


def load_hub(params, context):
    """A dataset from the Hugging Face Hub (or its local cache)."""
    from datasets import load_dataset

    message = hub_unreachable_message("dataset", params["path"])
    if message:
        raise RecipeRuntimeError(message)
    kwargs = {k: params[k] for k in ("name", "revision", "data_dir") if k in params}
    return load_dataset(params["path"], split=params.get("split", "train"), **kwargs)


@hookimpl
def fturun_register_datasets(register):
    """The built-in dataset sources."""
    register("files", load_files, FILES_SCHEMA,
             "Local csv/tsv/json/jsonl/parquet/text files (or files inside a Python package)")
    register("text_folder", load_text_folder, TEXT_FOLDER_SCHEMA,
             "A folder with one sub-folder of text files per label (label = folder name)")
    register("hub", load_hub, HUB_SCHEMA, "A dataset from the Hugging Face Hub by name")
    register("conversations", load_conversations, CONVERSATIONS_SCHEMA,
             "Prompt -> response pairs from YAML/JSON lists of conversations (chatterbot-corpus)")
    register("conll", load_conll, CONLL_SCHEMA,
             "CoNLL/IOB files: a token and its tags per line, sentences between blank lines")
