"""The parity image's trainer: a stand-in for the samples' TensorFlow trainers (the image is the one
thing the parity suite changes). It runs as the Dockerfile's ``ENTRYPOINT`` (``python -m
trainer.task``) and takes the hyperparameters of every sample it serves as ``--name=value`` (or
``--name value``): the notebook's ``learning_rate``/``momentum``/``num_units``, the job_service
snippet's ``lr``, the model-builder sample's ``lr``/``units``/``activation``/``batch_size``;
others are ignored, as argparse's ``parse_known_args`` does.

As a trial (``CLOUD_ML_TRIAL_ID`` set) it "trains" 3 epochs of 0.1 s and reports ``accuracy`` and
``loss`` with cloudml-hypertune after each (both tags: the samples tune one or the other). As a
plain custom job it trains up to 60 epochs of 1 s (so that the samples' cancel has something to
cancel) and reports the same way.
"""

import argparse
import math
import os
import sys
import time

import hypertune


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("learning_rate", "lr"):
        parser.add_argument(f"--{name}", type=float)
    parser.add_argument("--momentum", type=float, default=0.5)
    for name in ("num_units", "units", "batch_size"):
        parser.add_argument(f"--{name}", type=float, default=64)
    parser.add_argument("--activation", default="relu")
    args, _ = parser.parse_known_args()
    print(f"trainer.task started: argv={sys.argv[1:]} cwd={os.getcwd()}", flush=True)
    trial = os.environ.get("CLOUD_ML_TRIAL_ID")
    epochs, seconds = (3, 0.1) if trial else (60, 1.0)
    lr = args.learning_rate or args.lr or 0.01
    # a smooth made-up objective: best near lr = 0.03 and momentum = 0.9, a little from the rest
    distance = (math.log10(lr) - math.log10(0.03)) ** 2 + (args.momentum - 0.9) ** 2
    distance += 0.01 * (args.activation != "relu") + 0.001 * math.log2(max(args.num_units, 1))
    reporter = hypertune.HyperTune()
    for epoch in range(1, epochs + 1):
        time.sleep(seconds)
        accuracy = (1 - math.exp(-epoch)) / (1 + distance)
        reporter.report_hyperparameter_tuning_metric(
            hyperparameter_metric_tag="accuracy", metric_value=accuracy, global_step=epoch
        )
        reporter.report_hyperparameter_tuning_metric(
            hyperparameter_metric_tag="loss", metric_value=1 - accuracy, global_step=epoch
        )
        print(f"epoch {epoch}: accuracy={accuracy:.4f}", flush=True)


if __name__ == "__main__":
    main()
