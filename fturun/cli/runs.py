"""``fturun runs`` and ``fturun rerun``: the team's MLflow runs, newest first, and a tracked
run's recipe run again."""

from __future__ import annotations

import tempfile

from .common import load_valid_recipe


def _client(uri):
    from ..tracking.queries import open_client

    return open_client(uri)


#: the width ``fturun runs`` fits by default (``--wide``: every field, whatever the width)
WIDTH = 100
#: the most each column but the last (the recipe) takes by default: id, started, user, status,
#: metric, model@alias; a longer cell is cut with '…'
CAPS = (8, 11, 10, 9, 16, 30)


def cmd_runs(args) -> int:
    """List runs: newest first, fitted to 100 columns (``--wide``: every field), filtered by
    ``--mine``, ``--status``, ``--since``; ``--json``: every field, for scripts."""
    from ..tracking.queries import list_runs, store_errors

    client, uri = _client(args.tracking_uri)
    with store_errors(uri):
        rows = list_runs(client, args.experiment, max_results=args.max,
                         user=_me() if args.mine else None, status=args.status,
                         since_ms=args.since)
    if args.json:
        import dataclasses
        import json

        print(json.dumps([dataclasses.asdict(row) for row in rows], indent=2))
        return 0
    if not rows:
        print(f"no fturun runs at {uri}")
        return 0
    if args.wide:
        header = ("run id", "started", "user", "experiment", "name", "status", "results",
                  "model", "recipe", "overrides")
        table = [header] + [(row.run_id, row.start_time, row.user, row.experiment, row.name,
                             row.status, results_text(row), models_text(row), row.recipe_path,
                             row.overrides) for row in rows]
    else:
        header = ("run", "started", "user", "status", "metric", "model", "recipe")
        table = [header] + [(row.run_id[:8], row.start_time[5:16].replace("T", " "),
                             row.user, row.status.lower(), key_metric_text(row),
                             models_text(row), recipe_text(row)) for row in rows]
    for line in fit(table, None if args.wide else WIDTH, CAPS):
        print(line)
    return 0


def fit(table: list, width: int | None, caps=()) -> list:
    """The table's lines, columns two spaces apart; with ``width``, every column but the last
    cut to its cap and the last to what is left (cut cells end with '…')."""
    columns = len(table[0])
    widths = [max(len(line[i]) for line in table) for i in range(columns - 1)]
    if width is not None:
        widths = [min(w, cap) for w, cap in zip(widths, caps)]
    lines = []
    for line in table:
        cells = [_cut(cell, w).ljust(w) for cell, w in zip(line, widths)]
        last = line[-1]
        if width is not None:
            last = _cut(last, max(width - sum(widths) - 2 * (columns - 1), 8))
        lines.append("  ".join(cells + [last]).rstrip())
    return lines


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _me() -> str:
    import getpass

    return getpass.getuser()


def key_metric_text(row) -> str:
    """The metric the run's versions are promoted on, short (``accuracy=0.86``); a search: its
    best value."""
    if row.best:
        return f"best={row.best['value']:.4g}"
    if not row.key_metric:
        return ""
    return f"{row.key_metric['name'].removeprefix('eval_')}={row.key_metric['value']:.4g}"


def models_text(row) -> str:
    """The run's registered versions: ``name/v3@champion``."""
    return " ".join(f"{m['name']}/v{m['version']}" + "".join(f"@{a}" for a in m["aliases"])
                    for m in row.models)


def recipe_text(row) -> str:
    """The recipe file's name and the overrides."""
    import os

    name = os.path.basename(row.recipe_path) if row.recipe_path else ""
    return f"{name} {row.overrides}".strip()


def results_text(row) -> str:
    """A run's results as ``fturun runs`` shows them: its first four eval/test metrics; a
    search's best value and trial."""
    if row.best:
        trial = f" (trial {row.best['trial']})" if row.best.get("trial") is not None else ""
        return f"best {row.best['metric']}={row.best['value']:.4g}{trial}"
    return " ".join(f"{k}={v:.4g}" for k, v in list(row.metrics.items())[:4])


def cmd_rerun(args) -> int:
    """Download the resolved recipe of a run and run it again."""
    from ..engine.hub import check_recipe_hub_access
    from ..tracking.queries import copy_provenance, fetch_run_recipe, hold_alias, prepare_rerun

    client, uri = _client(args.tracking_uri)
    # the fetched recipe lives as long as the rerun (its files are logged at the end)
    with tempfile.TemporaryDirectory(prefix="fturun-rerun-") as folder:
        path, original = fetch_run_recipe(client, args.run_id, folder)
        recipe, loaded = load_valid_recipe(path, args.overrides, check_hub=False)
        output_dir = prepare_rerun(recipe, args.run_id, uri, original)
        copy_provenance(recipe, client.get_run(args.run_id))
        check_recipe_hub_access(recipe.data, recipe.base_dir)  # found from the original's folder
        print(f"rerun of {args.run_id}: training into {output_dir}")
        held = hold_alias(recipe)
        if held:
            print(f"  the alias {held} is not moved by a rerun (add the override "
                  f"tracking.registered_model_alias={held} to move it, on evidence)")
        from ..run.session import run_recipe

        return run_recipe(recipe, loaded.registry, resume=None, overwrite=args.overwrite)
