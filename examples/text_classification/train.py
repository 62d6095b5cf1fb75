"""Fine-tune a tiny BERT on short reviews with the Hugging Face ``Trainer``, set up by Hydra.

    python train.py                                   # defaults from conf/
    python train.py optimizer.lr=1e-3 model.hidden_size=64 trainer.report_to=none

Nothing is downloaded: the model is built from a ``BertConfig``, the tokenizer is a word-level
``tokenizers`` model trained on the shipped ``data/reviews.tsv`` and wrapped in
``PreTrainedTokenizerFast``. The Trainer logs to W&B (``report_to: wandb``); the run's name is
``cfg.run_name``. Returns the validation loss of the best epoch (lower is better): hydra-vertex
reports it as the tuning objective, and each epoch's ``eval_loss`` as an intermediate measurement
(``hydra_vertex.hf.ReportEvaluationCallback``: early stopping judges them). With
``AIP_MODEL_DIR`` set (a Vertex or emulator job), the model and its tokenizer are saved there and
load back with ``from_pretrained``.
"""

from __future__ import annotations

import csv
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]


def read_rows(path: Path) -> list[tuple[str, int]]:
    with open(path, encoding="utf-8", newline="") as f:
        return [(row["text"], int(row["label"])) for row in csv.DictReader(f, delimiter="\t")]


def build_tokenizer(texts: list[str], max_length: int) -> Any:
    """A word-level tokenizer trained on ``texts``, as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=SPECIAL))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=max_length,
    )


def build_model(cfg: DictConfig, vocab_size: int, max_length: int) -> Any:
    from transformers import BertConfig, BertForSequenceClassification

    m = cfg.model
    width = int(m.hidden_size)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=width,
        num_hidden_layers=int(m.num_hidden_layers),
        num_attention_heads=int(m.num_attention_heads),
        intermediate_size=int(m.intermediate_factor) * width,
        hidden_dropout_prob=float(m.dropout),
        attention_probs_dropout_prob=float(m.dropout),
        max_position_embeddings=max_length,
        num_labels=2,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    )
    return BertForSequenceClassification(config)


class Encoded:
    """A list of tokenized examples the Trainer can index (no ``datasets`` dependency)."""

    def __init__(self, tokenizer: Any, rows: list[tuple[str, int]], max_length: int) -> None:
        enc = tokenizer([t for t, _ in rows], truncation=True, max_length=max_length)
        self.items = [
            {"input_ids": ids, "attention_mask": mask, "labels": label}
            for ids, mask, (_, label) in zip(
                enc["input_ids"], enc["attention_mask"], rows, strict=True
            )
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


def accuracy(eval_pred: Any) -> dict[str, float]:
    logits, labels = eval_pred
    return {"accuracy": float((logits.argmax(-1) == labels).mean())}


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> float:
    import random

    import torch
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    from hydra_vertex.hf import ReportEvaluationCallback

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    set_seed(int(cfg.seed))
    rows = read_rows(HERE / str(cfg.data.path))
    random.Random(int(cfg.seed)).shuffle(rows)
    n_val = max(1, int(len(rows) * float(cfg.data.val_fraction)))
    train_rows, val_rows = rows[n_val:], rows[:n_val]

    max_length = int(cfg.data.max_length)
    tokenizer = build_tokenizer([t for t, _ in train_rows], max_length)
    model = build_model(cfg, len(tokenizer), max_length)

    model_dir = os.environ.get("AIP_MODEL_DIR")
    checkpoints = os.environ.get("AIP_CHECKPOINT_DIR") or tempfile.mkdtemp(prefix="checkpoints-")
    args = TrainingArguments(
        output_dir=checkpoints,
        run_name=str(cfg.run_name),
        report_to=str(cfg.trainer.report_to),
        num_train_epochs=float(cfg.trainer.epochs),
        per_device_train_batch_size=int(cfg.trainer.batch_size),
        per_device_eval_batch_size=64,
        learning_rate=float(cfg.optimizer.lr),
        weight_decay=float(cfg.optimizer.weight_decay),
        optim=str(cfg.optimizer.name),
        warmup_steps=float(cfg.trainer.warmup_ratio),  # < 1: a fraction of the steps
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        load_best_model_at_end=True,  # WANDB_LOG_MODEL=end then uploads the best checkpoint
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        logging_steps=int(cfg.trainer.logging_steps),
        seed=int(cfg.seed),
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=Encoded(tokenizer, train_rows, max_length),
        eval_dataset=Encoded(tokenizer, val_rows, max_length),
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=accuracy,
        callbacks=[ReportEvaluationCallback("eval_loss")],  # each epoch's eval_loss, in a trial
    )
    trainer.train()
    metrics = trainer.evaluate()  # the best checkpoint (load_best_model_at_end)
    eval_loss = float(metrics["eval_loss"])
    log.info("eval_loss=%.6f accuracy=%.4f", eval_loss, metrics["eval_accuracy"])

    if model_dir:
        trainer.save_model(model_dir)  # model, config and tokenizer: from_pretrained(model_dir)
        (Path(model_dir) / "hydra_config.yaml").write_text(OmegaConf.to_yaml(cfg))
        log.info("saved model to %s", model_dir)
    _finish_wandb()
    return eval_loss


def _finish_wandb() -> None:
    """Close the W&B run (the Trainer leaves it open) so its files are complete on exit."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


if __name__ == "__main__":
    main()
