"""``fturun runs`` and ``fturun rerun``: the team's MLflow runs, newest first, and a tracked
run's recipe run again."""

from __future__ import annotations

import tempfile

from .common import load_valid_recipe


def _client(uri):
    from ..tracking.queries import open_client

    return open_client(uri)


def cmd_runs(args) -> int:
    """List runs: newest first, with their final eval metrics (a search: its best value),
    recipe and overrides; ``--json``: every field, for scripts."""
    from ..tracking.queries import list_runs, store_errors

    client, uri = _client(args.tracking_uri)
    with store_errors(uri):
        rows = list_runs(client, args.experiment, max_results=args.max)
    if args.json:
        import dataclasses
        import json

        print(json.dumps([dataclasses.asdict(row) for row in rows], indent=2))
        return 0
    if not rows:
        print(f"no fturun runs at {uri}")
        return 0
    header = ("run id", "experiment", "name", "status", "results", "recipe", "overrides")
    table = [header] + [(row.run_id, row.experiment, row.name, row.status, results_text(row),
                         row.recipe_path, row.overrides) for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line, widths)] + [line[-1]]
        print("  ".join(cells).rstrip())
    return 0


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
    from ..tracking.queries import copy_provenance, fetch_run_recipe, prepare_rerun

    client, uri = _client(args.tracking_uri)
    # the fetched recipe lives as long as the rerun (its files are logged at the end)
    with tempfile.TemporaryDirectory(prefix="fturun-rerun-") as folder:
        path, original = fetch_run_recipe(client, args.run_id, folder)
        recipe, loaded = load_valid_recipe(path, args.overrides, check_hub=False)
        output_dir = prepare_rerun(recipe, args.run_id, uri, original)
        copy_provenance(recipe, client.get_run(args.run_id))
        check_recipe_hub_access(recipe.data, recipe.base_dir)  # found from the original's folder
        print(f"rerun of {args.run_id}: training into {output_dir}")
        from ..run.session import run_recipe

        return run_recipe(recipe, loaded.registry, resume=None, overwrite=args.overwrite)
