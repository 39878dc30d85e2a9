"""Contrastive fine-tuning of the sentence encoder, run in a child process.

    python -m indexer.adaptation.train WORK_DIR OUT_DIR

WORK_DIR holds `config.json` (base model folder, hyper-parameters) and `pairs.jsonl`
(`anchor`, `positive`, optional `negative`); the trained model is saved into OUT_DIR.
One JSON object per line on stdout reports progress (`step`) and the outcome (`done`).

A child process keeps the service responsive and its memory flat: training holds
several GB that the service could not give back, runs at a lower CPU priority, and a
crash (or a kill) of the child cannot touch the models the service is using.
"""
from __future__ import annotations

import json
import math
import os
import random
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROMPTS = {"anchor": "query: ", "positive": "passage: ", "negative": "passage: "}


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}, ensure_ascii=False), flush=True)


def read_pairs(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _datasets(pairs: list[dict[str, str]]) -> Any:
    """Pairs and triplets go to separate datasets: a dataset needs the same columns in every row."""
    from datasets import Dataset, DatasetDict

    plain = [p for p in pairs if not p.get("negative")]
    triplets = [p for p in pairs if p.get("negative")]
    parts = {}
    if plain:
        parts["pairs"] = Dataset.from_dict({"anchor": [p["anchor"] for p in plain],
                                            "positive": [p["positive"] for p in plain]})
    if triplets:
        parts["triplets"] = Dataset.from_dict({c: [p[c] for p in triplets]
                                               for c in ("anchor", "positive", "negative")})
    if len(parts) == 1:
        return next(iter(parts.values()))
    return DatasetDict(parts)


def train(config: dict[str, Any], pairs: list[dict[str, str]], out_dir: Path, scratch_dir: Path,
          on_step: Callable[[int, int, float | None], None] | None = None,
          extra_callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Fine-tune `config["base_path"]` on `pairs` and save it to `out_dir`; returns statistics.

    Bounded by `max_seconds`: training stops after the step that crosses it and the model
    trained so far is saved (`stopped_early`).
    """
    import torch
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer import losses
    from transformers import TrainerCallback

    seed = int(config["seed"])
    random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(int(config["threads"]))
    model = SentenceTransformer(str(config["base_path"]), device="cpu")
    serving_length = model.max_seq_length
    # Training on shorter sequences is much cheaper; serving keeps the base model's limit.
    model.max_seq_length = min(int(config["max_seq_length"]), serving_length)
    if config.get("freeze_embeddings"):
        # The 250k-row vocabulary table is 80% of the weights: freezing it cuts optimizer
        # memory by about 1 GB and most of the optimizer time, for rows few pairs touch.
        model[0].auto_model.embeddings.word_embeddings.weight.requires_grad_(False)
    if config.get("gradient_checkpointing"):
        # Activations, not weights, dominate memory with long texts: keeping only each layer's
        # input cut the peak from 12.7 GB to 4.8 GB on the demo's labelled triplets
        # (batch 16 × 3 texts × 256 tokens), for roughly a third more compute.
        model[0].auto_model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False})
    directions = ("query_to_doc", "doc_to_query") if config["loss"] == "mnrl_symmetric" \
        else ("query_to_doc",)
    loss = losses.MultipleNegativesRankingLoss(model, scale=float(config["scale"]),
                                               directions=directions)
    started = time.monotonic()
    budget = float(config["max_seconds"])
    parent = os.getppid()
    state_box: dict[str, Any] = {"stopped_early": False, "loss": None}

    class Watch(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> Any:
            if os.getppid() != parent:  # the service died: nobody will use this model
                raise SystemExit(3)
            if on_step is not None:
                on_step(state.global_step, state.max_steps, state_box["loss"])
            if time.monotonic() - started > budget and state.global_step < state.max_steps:
                state_box["stopped_early"] = True
                control.should_training_stop = True
            return control

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **_: Any) -> Any:
            if logs and "loss" in logs:
                state_box["loss"] = float(logs["loss"])
            return control

    args = SentenceTransformerTrainingArguments(
        output_dir=str(scratch_dir / "trainer"),
        per_device_train_batch_size=int(config["batch_size"]),
        learning_rate=float(config["learning_rate"]),
        num_train_epochs=float(config["epochs"]),
        warmup_ratio=float(config["warmup_ratio"]),
        seed=seed, data_seed=seed, use_cpu=True, dataloader_num_workers=0,
        save_strategy="no", report_to=[], logging_steps=1, disable_tqdm=True,
        prompts=PROMPTS, batch_sampler="no_duplicates",
    )
    trainer_class = _trainer_class()
    trainer = trainer_class(model=model, args=args, train_dataset=_datasets(pairs), loss=loss,
                            callbacks=[Watch(), *(extra_callbacks or [])])
    t0 = time.monotonic()
    output = trainer.train()
    seconds = time.monotonic() - t0
    steps = int(trainer.state.global_step)
    # Pairs seen, counting repeats over epochs (a bounded run may stop short of them all).
    trained_pairs = min(math.ceil(len(pairs) * float(config["epochs"])),
                        steps * int(config["batch_size"]))
    model.max_seq_length = serving_length
    model.save(str(out_dir), create_model_card=False)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # KiB on Linux
    return {"steps": steps, "max_steps": int(trainer.state.max_steps), "seconds": round(seconds, 2),
            "peak_rss_mb": int(peak_mb),
            "pairs_trained": trained_pairs,
            "pairs_per_s": round(trained_pairs / seconds, 3) if seconds > 0 else None,
            "stopped_early": state_box["stopped_early"], "train_loss": round(output.training_loss, 4)}


def _trainer_class() -> type:
    from sentence_transformers import SentenceTransformerTrainer

    class Quiet(SentenceTransformerTrainer):
        def add_model_card_callback(self, *_: Any, **__: Any) -> None:
            # The model card callback embeds sample texts at start-up: seconds of CPU for a README.
            return None

    return Quiet


def main(argv: list[str]) -> int:
    work, out = Path(argv[0]), Path(argv[1])
    config = json.loads((work / "config.json").read_text(encoding="utf-8"))
    nice = int(config.get("nice", 0))
    if nice:
        os.nice(nice)
    pairs = read_pairs(work / "pairs.jsonl")
    emit("start", pairs=len(pairs), pid=os.getpid())
    stats = train(config, pairs, out, work,
                  on_step=lambda s, n, loss: emit("step", step=s, max_steps=n, loss=loss))
    emit("done", **stats)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
