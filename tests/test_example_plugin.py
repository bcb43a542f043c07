"""The example plugin distribution in plugins/fturun-example: pip-installed like a third-party
plugin, seen by the CLI through its entry point, each factory tested in-process through
fturun.testing (as fturun calls it: the schema's defaults filled in), a check of all its
components together, and one short real training run that uses all of its training components."""

from __future__ import annotations

import json
import sqlite3
from types import SimpleNamespace

import pytest
from helpers import RECIPES, site_env

from fturun import testing
from fturun.core.errors import RecipeRuntimeError

LABELS = ["business", "sport", "tech"]
EXPECTED_COMPONENTS = {"dataset": ["sqlite"], "loss": ["poly1"], "metric": ["per_class_f1"],
                       "callback": ["confusion_matrix"], "optimizer": ["lion"]}


def context(**fields):
    """A BuildContext as a factory gets it; ``ctx.messages`` collects what it logs."""
    return testing.make_context(**fields)


def build(loaded, kind, name, params=None, ctx=None):
    """The component as a recipe naming it builds it (schema checked, defaults filled in)."""
    return testing.build_component(loaded, kind, {"name": name, "params": params or {}},
                                   ctx if ctx is not None else context())


def lora_recipe():
    return json.loads((RECIPES / "lora_cls.json").read_text())


# --------------------------------------------------------------------------------------------
# installed: the CLI finds it through the entry point


def test_plugins_lists_the_installed_example_plugin(run_fturun, example_site):
    result = run_fturun("plugins", env=site_env(example_site))
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    example = plugins["example"]
    assert example["status"] == "ok", example
    assert example["version"] == "0.1.0"
    assert example["module"] == "fturun_example"
    assert example["components"] == EXPECTED_COMPONENTS


def test_importing_the_plugin_imports_nothing_heavy(modules_imported_by, example_site):
    assert modules_imported_by(example_site, "import fturun_example", (
        "torch", "transformers", "datasets", "matplotlib", "sqlite3")) == []


def test_schema_and_components_show_the_example_components(run_fturun, example_site):
    env = site_env(example_site)
    schema = run_fturun("schema", env=env)
    assert schema.returncode == 0, schema.stderr
    assert "warning" not in schema.stderr
    defs = json.loads(schema.stdout)["$defs"]
    for kind, names in EXPECTED_COMPONENTS.items():
        for name in names:
            assert name in json.dumps(defs[kind]), (kind, name)
    listing = run_fturun("components", "loss", env=env)
    assert listing.returncode == 0, listing.stderr
    assert "poly1" in listing.stdout and "[example]" in listing.stdout
    assert "epsilon (number, default 1.0)" in listing.stdout
    as_json = json.loads(run_fturun("components", "optimizer", "--json", env=env).stdout)
    lion = next(c for c in as_json["optimizer"] if c["name"] == "lion")
    assert lion["plugin"] == "example"
    assert lion["params"]["additionalProperties"] is False  # added by fturun


def test_validate_accepts_recipes_using_the_example_components(run_fturun, example_site, tmp_path):
    env = site_env(example_site)
    lora = RECIPES / "lora_cls.json"
    ok = run_fturun("validate", lora,
                    "--set", 'loss={"name": "poly1", "params": {"epsilon": 2}}',
                    "--set", 'optimizer={"name": "lion", "params": {"betas": [0.95, 0.98]}}',
                    "--set", 'callbacks=["confusion_matrix"]',
                    "--set", 'metrics=["accuracy", "per_class_f1"]', env=env)
    assert ok.returncode == 0, ok.stderr
    assert "valid" in ok.stdout

    recipe = lora_recipe()
    recipe["data"]["train"] = {"name": "sqlite", "params": {
        "path": "news.db", "query": "SELECT text, label FROM news"}}
    recipe["loss"] = "poly1"
    recipe["optimizer"] = "lion"
    recipe["callbacks"] = [{"name": "confusion_matrix", "params": {"normalize": False}}]
    recipe["metrics"] = ["accuracy", "per_class_f1"]
    path = tmp_path / "example.json"
    path.write_text(json.dumps(recipe))
    ok = run_fturun("validate", path, env=env)
    assert ok.returncode == 0, ok.stderr


def test_validate_rejects_bad_example_params_with_path_and_suggestion(run_fturun, example_site):
    env = site_env(example_site)
    lora = RECIPES / "lora_cls.json"
    bad = run_fturun("validate", lora, "--set",
                     'loss={"name": "poly1", "params": {"epsiln": 0.5}}', env=env)
    assert bad.returncode == 2
    assert "$.loss.params.epsiln" in bad.stderr and "did you mean 'epsilon'" in bad.stderr
    assert "Traceback" not in bad.stderr

    bad = run_fturun("validate", lora, "--set",
                     'optimizer={"name": "lion", "params": {"betas": [0.9, 1.5]}}',
                     "--set", 'callbacks=[{"name": "confusion_matrx"}]', env=env)
    assert bad.returncode == 2
    assert "$.optimizer.params.betas[1]" in bad.stderr
    assert "did you mean 'confusion_matrix'" in bad.stderr

    bad = run_fturun("validate", lora, "--set", 'data.train={"name": "sqlite", "params": '
                     '{"path": "x.db", "query": "DELETE FROM news"}}', env=env)
    assert bad.returncode == 2
    assert "$.data.train.params.query" in bad.stderr

    # without the plugin the same names are unknown
    missing = run_fturun("validate", lora, "--set", "loss=poly1")
    assert missing.returncode == 2 and "not a registered loss" in missing.stderr


def test_load_plugins_in_process_registers_every_component(example):
    from fturun.plugin.manager import load_plugins

    loaded = load_plugins(extra_plugins={"example-inproc": example})
    info = next(p for p in loaded.plugins if p.name == "example-inproc")
    # the installed copy is on sys.path too: registering it a second time is refused as a
    # duplicate, which shows it is found through its entry point
    installed = next(p for p in loaded.plugins if p.name == "example")
    assert installed.status == "ok" and installed.components == EXPECTED_COMPONENTS
    assert info.status == "failed" and "already registered by plugin 'example'" in info.errors[0]
    for kind, names in EXPECTED_COMPONENTS.items():
        component = loaded.registry.get(kind, names[0])
        assert component.description and "\n" not in component.description
        assert component.factory.__doc__
        assert component.params_schema["type"] == "object"


# --------------------------------------------------------------------------------------------
# loss: poly1


def test_poly1_is_cross_entropy_at_epsilon_zero_and_larger_above(example_loaded):
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    logits = torch.randn(6, 4)
    labels = torch.tensor([0, 3, 1, -100, 2, 2])
    outputs = {"logits": logits}
    ce = F.cross_entropy(logits, labels, ignore_index=-100)

    plain = build(example_loaded, "loss", "poly1", {"epsilon": 0.0})(outputs, labels)
    assert torch.allclose(plain, ce, atol=1e-6)

    poly = build(example_loaded, "loss", "poly1")(outputs, labels)  # the default: epsilon 1.0
    p_true = F.softmax(logits, -1)[torch.arange(6), labels.clamp(min=0)][labels != -100]
    assert torch.allclose(poly, ce + (1 - p_true).mean(), atol=1e-6)
    assert poly > ce
    assert build(example_loaded, "loss", "poly1", {"epsilon": 3.0})(outputs, labels) > poly


def test_poly1_reduction_gradients_and_token_shapes(example_loaded):
    import torch
    import torch.nn.functional as F

    from fturun.run.wiring import MeanLoss

    torch.manual_seed(1)
    loss_fn = build(example_loaded, "loss", "poly1", {"epsilon": 0.0})
    logits = torch.randn(2, 5, 3, requires_grad=True)  # token classification
    labels = torch.tensor([[0, 1, -100, 2, 2], [1, -100, -100, 0, 1]])  # 7 labelled items
    summed = F.cross_entropy(logits.reshape(-1, 3), labels.reshape(-1), reduction="sum")
    mean = loss_fn(SimpleNamespace(logits=logits), labels)  # the contract: the plain mean
    assert torch.allclose(mean, summed / 7, atol=1e-5)
    # fturun scales it to this micro-batch's share of an optimizer step of 10 items
    value = MeanLoss("poly1", loss_fn)(SimpleNamespace(logits=logits), labels,
                                       num_items_in_batch=torch.tensor(10))
    assert torch.allclose(value, summed / 10, atol=1e-5)
    value.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    # all labels ignored: zero, not NaN
    empty = loss_fn((logits,), torch.full((2, 5), -100))
    assert empty.item() == 0.0


# --------------------------------------------------------------------------------------------
# optimizer: lion


def test_lion_factory_defaults_to_training_learning_rate(example_loaded):
    from fturun_example.lion_optimizer import Lion

    result = build(example_loaded, "optimizer", "lion",
                   ctx=context(training_args={"learning_rate": 3e-4}))
    cls, kwargs = result["optimizer_cls_and_kwargs"]
    assert cls is Lion and set(result) == {"optimizer_cls_and_kwargs"}
    assert kwargs == {"lr": 3e-4, "betas": (0.9, 0.99)}
    params = {"lr": 1e-5, "betas": [0.95, 0.98], "weight_decay": 0.5}
    cls, kwargs = build(example_loaded, "optimizer", "lion", params)["optimizer_cls_and_kwargs"]
    assert kwargs["lr"] == 1e-5 and kwargs["betas"] == (0.95, 0.98)
    assert kwargs["weight_decay"] == 0.5
    import torch

    assert issubclass(cls, torch.optim.Optimizer)
    # without training.learning_rate: TrainingArguments' default, as the run would use
    assert build(example_loaded, "optimizer", "lion")["optimizer_cls_and_kwargs"][1]["lr"] == 5e-5


def test_lion_step_changes_params_and_decreases_a_quadratic(example_loaded):
    import torch

    cls, kwargs = build(example_loaded, "optimizer", "lion",
                        {"lr": 0.05})["optimizer_cls_and_kwargs"]
    target = torch.tensor([1.0, -2.0, 0.5, 3.0])
    weight = torch.nn.Parameter(torch.zeros(4))
    optimizer = cls([weight], **kwargs)

    def quadratic():
        return ((weight - target) ** 2).sum()

    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = quadratic()
        loss.backward()
        before = weight.detach().clone()
        optimizer.step()
        losses.append(loss.item())
        # a Lion step moves every coordinate (with a non-zero gradient) by exactly lr
        assert torch.allclose((weight.detach() - before).abs(), torch.full((4,), 0.05))
    assert quadratic().item() < losses[0] / 2
    assert all(b <= a for a, b in zip(losses, losses[1:]))
    assert set(optimizer.state[weight]) == {"exp_avg"}  # one state tensor per parameter
    # the state round-trips through state_dict (checkpoints)
    restored = cls([weight], **kwargs)
    restored.load_state_dict(optimizer.state_dict())
    assert torch.equal(restored.state[weight]["exp_avg"], optimizer.state[weight]["exp_avg"])


def test_lion_weight_decay_of_the_recipe_wins_over_trainer_groups(example_loaded):
    import torch

    decay, no_decay = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    # the parameter groups the Trainer builds: weights with training.weight_decay, biases with 0
    groups = [{"params": [decay], "weight_decay": 0.01}, {"params": [no_decay],
                                                           "weight_decay": 0.0}]
    cls, kwargs = build(example_loaded, "optimizer", "lion",
                        {"lr": 0.1, "weight_decay": 2.0})["optimizer_cls_and_kwargs"]
    optimizer = cls(groups, **kwargs)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [2.0, 0.0]
    decay.grad, no_decay.grad = torch.zeros(3), torch.zeros(3)
    optimizer.step()  # zero gradient: only the decoupled decay moves the weights
    assert torch.allclose(decay, torch.full((3,), 0.8))
    assert torch.equal(no_decay.detach(), torch.ones(3))
    with pytest.raises(ValueError, match="betas"):
        cls([decay], lr=0.1, betas=(0.9, 1.0))


# --------------------------------------------------------------------------------------------
# dataset: sqlite


@pytest.fixture
def news_db(tmp_path):
    path = tmp_path / "news.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE news (id INTEGER PRIMARY KEY, body TEXT, topic TEXT)")
        db.executemany("INSERT INTO news (body, topic) VALUES (?, ?)",
                       [("Shares rose", "business"), ("A late goal", "sport"),
                        ("New phone out", "tech"), ("Profits fell", "business")])
    db.close()
    return path


def test_sqlite_dataset_reads_the_rows_of_a_select(example, news_db):
    ctx = context(recipe_dir=str(news_db.parent))
    dataset = example.load_sqlite({"path": "news.db",  # relative to the recipe's folder
                                   "query": "select body AS text, topic AS label FROM news "
                                            "ORDER BY id"}, ctx)
    assert dataset.column_names == ["text", "label"]
    assert dataset.num_rows == 4
    assert dataset[0] == {"text": "Shares rose", "label": "business"}
    assert dataset["label"] == ["business", "sport", "tech", "business"]


def test_sqlite_dataset_refuses_anything_but_a_select(example, news_db):
    ctx = context()
    for query in ("DELETE FROM news", "  drop table news", "PRAGMA table_info(news)", ""):
        with pytest.raises(RecipeRuntimeError, match="must be a SELECT statement"):
            example.load_sqlite({"path": str(news_db), "query": query}, ctx)
    # a second statement after a SELECT does not run either, and the database is read-only
    with pytest.raises(RecipeRuntimeError, match="query failed"):
        example.load_sqlite({"path": str(news_db),
                             "query": "SELECT 1; DROP TABLE news"}, ctx)
    with sqlite3.connect(news_db) as db:
        assert db.execute("SELECT COUNT(*) FROM news").fetchone() == (4,)
    db.close()


def test_sqlite_dataset_reports_missing_files_bad_sql_and_empty_results(example, news_db,
                                                                       tmp_path):
    ctx = context()
    with pytest.raises(RecipeRuntimeError, match="not found"):
        example.load_sqlite({"path": str(tmp_path / "nope.db"), "query": "SELECT 1"}, ctx)
    assert not (tmp_path / "nope.db").exists()  # not created by the attempt
    with pytest.raises(RecipeRuntimeError, match="no such column: nope"):
        example.load_sqlite({"path": str(news_db), "query": "SELECT nope FROM news"}, ctx)
    with pytest.raises(RecipeRuntimeError, match="no rows"):
        example.load_sqlite({"path": str(news_db),
                             "query": "SELECT body FROM news WHERE 0"}, ctx)


# --------------------------------------------------------------------------------------------
# metric: per_class_f1


def test_per_class_f1_scores_every_label(example):
    import numpy as np

    metric_fn = example.per_class_f1({}, context(label_names=LABELS))
    references = np.array([0, 0, 1, 1, 2, 2])
    predictions = np.array([0, 1, 1, 1, 2, 0])
    scores = metric_fn(predictions, references)
    assert list(scores) == ["f1_business", "f1_sport", "f1_tech"]
    # business: tp 1, fp 1, fn 1 -> 0.5; sport: tp 2, fp 1 -> 0.8; tech: tp 1, fn 1 -> 2/3
    assert scores["f1_business"] == pytest.approx(0.5)
    assert scores["f1_sport"] == pytest.approx(0.8)
    assert scores["f1_tech"] == pytest.approx(2 / 3)
    assert all(isinstance(v, float) for v in scores.values())

    from sklearn.metrics import f1_score

    expected = f1_score(references, predictions, average=None, labels=[0, 1, 2])
    assert list(scores.values()) == pytest.approx(expected.tolist())


def test_per_class_f1_edge_cases(example):
    import numpy as np

    # a label never predicted nor present scores 0; -100 references are skipped
    metric_fn = example.per_class_f1({}, context(label_names=["B-PER", "I PER", "O"]))
    scores = metric_fn(np.array([[0, 2, 2]]), np.array([[0, -100, 2]]))
    assert scores == {"f1_B-PER": 1.0, "f1_I_PER": 0.0, "f1_O": 1.0}
    # without label names: class ids
    scores = example.per_class_f1({}, context())(np.array([1, 1]), np.array([0, 1]))
    assert scores == {"f1_0": 0.0, "f1_1": pytest.approx(2 / 3)}


# --------------------------------------------------------------------------------------------
# callback: confusion_matrix


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_draw_confusion_matrix_writes_a_png(example, tmp_path):
    from fturun_example.callbacks import confusion_counts, draw_confusion_matrix

    matrix = confusion_counts([0, 1, 1, 2, 2, 0, 0], [0, 1, 2, 2, -100, 1, 0], 3)
    assert matrix.tolist() == [[2, 0, 0], [1, 1, 0], [0, 1, 1]]
    for normalize in (True, False):
        path = tmp_path / f"cm-{normalize}.png"
        assert draw_confusion_matrix(matrix, LABELS, str(path), normalize=normalize) == str(path)
        assert path.read_bytes()[:8] == PNG_MAGIC
    from matplotlib.image import imread

    assert imread(str(tmp_path / "cm-True.png")).shape[2] in (3, 4)


class TinyClassifier:
    """A tiny torch classifier with the Hugging Face call convention (returns ``.logits``)."""

    def __new__(cls, n_features=4, n_labels=3):
        import torch

        class Model(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.linear = torch.nn.Linear(n_features, n_labels)
                with torch.no_grad():  # predicts the arg-max feature (capped at n_labels - 1)
                    self.linear.weight.copy_(torch.eye(n_labels, n_features) * 10)
                    self.linear.bias.zero_()

            def forward(self, input_ids, attention_mask=None, labels=None):
                return SimpleNamespace(logits=self.linear(input_ids))

        return Model()


def test_confusion_matrix_callback_predicts_the_eval_data_draws_and_logs(example_loaded, tmp_path):
    import torch
    from transformers import TrainerControl, TrainerState

    features = torch.eye(3, 4).repeat(2, 1)  # rows predict 0, 1, 2, 0, 1, 2
    labels = torch.tensor([0, 1, 1, 0, 2, -100])
    dataloader = [{"input_ids": features[:4], "labels": labels[:4]},
                  {"input_ids": features[4:], "labels": labels[4:]}]
    artifacts = []
    ctx = context(label_names=LABELS, output_dir=str(tmp_path))
    model = TinyClassifier()
    model.train()
    # a tracker that records what is logged (the run's would send it to MLflow)
    ctx.tracker = SimpleNamespace(log_artifact=lambda path, artifact_path=None:
                                  artifacts.append(path))
    callback = build(example_loaded, "callback", "confusion_matrix", {"normalize": False}, ctx)
    from transformers import TrainerCallback

    assert isinstance(callback, TrainerCallback)
    args = SimpleNamespace(output_dir=str(tmp_path / "run"))
    callback.on_train_end(args, TrainerState(), TrainerControl(), model=model,
                          eval_dataloader=dataloader)
    png = tmp_path / "run" / "confusion_matrix.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert artifacts == [str(png)]
    assert model.training  # the model's mode is restored
    assert any("confusion matrix" in m for m in ctx.messages)

    # tracking off (the tracker does nothing), another file name: still drawn
    ctx = context(label_names=LABELS, output_dir=str(tmp_path))
    callback = build(example_loaded, "callback", "confusion_matrix", {"filename": "cm.png"}, ctx)
    callback.on_train_end(args, TrainerState(), TrainerControl(), model=model,
                          eval_dataloader=dataloader)
    assert (tmp_path / "run" / "cm.png").read_bytes()[:8] == PNG_MAGIC

    # no eval during training: a message, no file, no error
    callback = build(example_loaded, "callback", "confusion_matrix", {"filename": "none.png"}, ctx)
    callback.on_train_end(args, TrainerState(), TrainerControl(), model=model,
                          eval_dataloader=None)
    assert not (tmp_path / "run" / "none.png").exists()
    assert any("no confusion matrix" in m for m in ctx.messages)


def test_confusion_matrix_predictions_match_the_model(example):
    import torch
    from fturun_example.callbacks import confusion_counts, predict

    features = torch.eye(3, 4)
    predictions, references = predict(TinyClassifier(), [
        {"input_ids": features, "labels": torch.tensor([0, 2, 2])}])
    assert predictions.tolist() == [0, 1, 2] and references.tolist() == [0, 2, 2]
    assert confusion_counts(predictions, references, 3).tolist() == [[1, 0, 0], [0, 0, 0],
                                                                     [0, 1, 1]]


# --------------------------------------------------------------------------------------------
# every component together: fturun check in-process (fturun.testing)


def test_check_builds_and_trains_with_every_example_component(example_loaded, tmp_path):
    recipe = testing.tiny_recipe(tmp_path, loss={"name": "poly1", "params": {"epsilon": 0.5}},
                                 optimizer="lion", callbacks=["confusion_matrix"],
                                 metrics=["accuracy", "per_class_f1"])
    db = tmp_path / "news.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE news (body TEXT, topic TEXT)")
        connection.executemany("INSERT INTO news VALUES (?, ?)", testing.TINY_ROWS)
    connection.close()
    recipe["data"]["train"] = {"name": "sqlite", "params": {
        "path": str(db), "query": "SELECT body AS text, topic AS label FROM news"}}
    recipe["training"].update(eval_strategy="steps", eval_steps=2)
    assert testing.validate(recipe, example_loaded) == []
    typo = dict(recipe, optimizer={"name": "lion", "params": {"beta": [0.9, 0.99]}})
    assert "did you mean 'betas'" in str(testing.validate(typo, example_loaded)[0])

    result = testing.check(recipe, example_loaded)
    assert "check passed" in result.output and len(result.losses) == 2
    from fturun_example.lion_optimizer import Lion

    optimizer = result.trainer.optimizer
    assert isinstance(getattr(optimizer, "optimizer", optimizer), Lion)  # accelerate wraps it
    assert "eval_f1_sport" in result.output  # per_class_f1 on the one eval batch
    # check evaluates no eval data during training: the callback says so and draws nothing
    assert "no confusion matrix drawn" in result.output
    assert result.build.ran_params["args.optim"] == "lion (fturun_example.lion_optimizer.Lion)"


# --------------------------------------------------------------------------------------------
# end to end: a short real training run with the plugin's components


@pytest.mark.slow
def test_short_training_run_with_the_example_components(run_fturun, example_site, tmp_path):
    output_dir = tmp_path / "run"
    recipe = lora_recipe()
    assert recipe["training"]["load_best_model_at_end"] is True  # kept: eval/save both on steps
    result = run_fturun(
        RECIPES / "lora_cls.json",
        'loss={"name": "poly1", "params": {"epsilon": 1.0}}',
        "optimizer=lion",
        'callbacks=[{"name": "confusion_matrix", "params": {"normalize": true}}]',
        'metrics=["accuracy", "per_class_f1"]',
        "data.max_train_samples=24", "data.max_eval_samples=12", "data.max_length=32",
        "training.max_steps=3", "training.eval_strategy=steps", "training.eval_steps=3",
        "training.save_strategy=steps", "training.save_steps=3",
        "training.metric_for_best_model=accuracy", "training.load_best_model_at_end=true",
        f"training.output_dir={output_dir}", "tracking.enabled=false",
        env=site_env(example_site), timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "Traceback" not in result.stderr
    png = output_dir / "confusion_matrix.png"
    assert png.is_file() and png.read_bytes()[:8] == PNG_MAGIC
    results = json.loads((output_dir / "eval_results.json").read_text())
    assert 0.0 <= results["eval_accuracy"] <= 1.0
    per_class = {k for k in results if k.startswith("eval_f1_")}
    assert per_class == {f"eval_f1_{label}" for label in
                         ("business", "entertainment", "politics", "sports", "tech")}
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert state["best_model_checkpoint"].endswith("checkpoint-3")
    # the optimizer that ran is Lion: one state tensor (exp_avg) per parameter, not AdamW's two
    import torch

    saved = torch.load(output_dir / "checkpoint-3" / "optimizer.pt", weights_only=True)
    state_keys = {key for per_param in saved["state"].values() for key in per_param}
    assert state_keys == {"exp_avg"}
    assert tuple(saved["param_groups"][0]["betas"]) == (0.9, 0.99)
