"""``fturun promote RUN_ID ALIAS``: point a registered model's alias (``champion``,
``staging``, ...) at the model version of a tracked run, after the fact; with ``--name`` a run
whose model was never registered is registered first."""

from __future__ import annotations

HELP = (
    "point a registered model's alias at a tracked run's model version",
    "Point ALIAS (e.g. champion) of the registered model at the model version that run RUN_ID "
    "logged, moving it from the version it pointed at, when that version is at least as good "
    "on the metric the run's recipe promotes on (tracking.promote_on, else "
    "training.metric_for_best_model, else eval_loss) and was evaluated on the same eval data; "
    "--force promotes a worse or incomparable one. --name NAME chooses the registered "
    "model (needed when the run is registered under several) and registers the run's MLflow "
    "Model under NAME first when it has no version there. Load the promoted model with "
    "mlflow.pyfunc.load_model('models:/NAME@ALIAS').",
    """\
  fturun promote 294d767e03384a57a69629546b8219ec champion
  fturun promote 294d767e03384a57a69629546b8219ec staging --name bbc-lora
  fturun promote 294d767e03384a57a69629546b8219ec champion --force
  fturun promote RUN_ID champion --tracking-uri http://mlflow:5000
""")


def add_arguments(p) -> None:
    """The arguments of ``fturun promote``."""
    p.add_argument("run_id", metavar="RUN_ID", help="the MLflow run id ('fturun runs' lists them)")
    p.add_argument("alias", metavar="ALIAS",
                   help="the alias to point at the run's version: letters, digits, '_', '-' "
                        "(not 'latest' or v1, v2, ...)")
    p.add_argument("--force", action="store_true",
                   help="promote even when the run's version is worse than (or not comparable "
                        "with) the version the alias points at")
    p.add_argument("--name", metavar="NAME",
                   help="the registered model (default: the one the run's version belongs to)")
    p.add_argument("--tracking-uri", metavar="URI",
                   help="the MLflow tracking server (default: $MLFLOW_TRACKING_URI, else "
                        "sqlite:///mlflow.db here)")


def cmd_promote(args) -> int:
    """Point the alias at the run's version; print what moved."""
    from ..tracking.model_registry import promote_run
    from ..tracking.queries import open_client, store_errors

    client, uri = open_client(args.tracking_uri)
    with store_errors(uri):
        done = promote_run(client, args.run_id, args.alias, args.name, force=args.force)
    if done.registered:
        print(f"registered the MLflow Model of run {done.run_id} as {done.name} version "
              f"{done.version}")
    moved = f" (it pointed at version {done.previous})" if done.previous and \
        done.previous != done.version else ""
    print(f"{done.name}@{done.alias} -> version {done.version} of run {done.run_id}{moved} "
          f"at {uri}")
    if done.evidence is not None:
        forced = " (forced)" if not done.evidence.move else ""
        print(f"  evidence: {done.evidence.reason}{forced}")
    print(f"  load it: mlflow.pyfunc.load_model('models:/{done.name}@{done.alias}')")
    return 0
