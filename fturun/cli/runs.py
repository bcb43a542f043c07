"""``fturun runs`` and ``fturun rerun``: the team's MLflow runs, newest first, and a tracked
run's recipe run again."""

from __future__ import annotations

from .common import load_valid_recipe


def _client(uri):
    from ..tracking.queries import open_client

    return open_client(uri)


def cmd_runs(args) -> int:
    """List runs: newest first, with their final eval metrics and recipe."""
    from ..tracking.queries import list_runs

    client, uri = _client(args.tracking_uri)
    rows = list_runs(client, args.experiment, max_results=args.max)
    if not rows:
        print(f"no fturun runs at {uri}")
        return 0
    print(f"{'run id':<32}  {'experiment':<16} {'name':<22} {'status':<9} metrics / recipe")
    for row in rows:
        shown = " ".join(f"{k}={v:.4g}" for k, v in list(row.metrics.items())[:4])
        print(f"{row.run_id:<32}  {row.experiment[:16]:<16} {row.name[:22]:<22} "
              f"{row.status:<9} {shown}  {row.recipe_path}")
    return 0


def cmd_rerun(args) -> int:
    """Download the resolved recipe of a run and run it again."""
    from ..tracking.queries import fetch_run_recipe, prepare_rerun

    client, uri = _client(args.tracking_uri)
    path, original = fetch_run_recipe(client, args.run_id)
    recipe, loaded = load_valid_recipe(path, args.overrides)
    prepare_rerun(recipe, args.run_id, uri, original)
    from ..session import run_recipe

    return run_recipe(recipe, loaded.registry, resume=None)
