"""Train the MNIST digit classifier, fine-tune it on user feedback, and promote or roll back the production model.

    python train.py                  # train from scratch: a tracked run and a new registered version
    python train.py --dry-run        # a few batches end to end (tests, CI)
    python train.py --retrain        # fine-tune production on MNIST + labelled feedback -> models/candidate.pth
    python train.py --retrain-if-needed   # the loop's scheduled check (= make loop): retrain only when called for
    python train.py --promote 7      # gate version 7, then ship it as models/model.pth (= make promote VERSION=7)
    python train.py --rollback       # restore the model production had before the last promotion
    python train.py --evaluate models/model.pth   # test-set report + models/confusion_matrix.png

A thin command line over training/: the flags become a `Recipe` (training.options), and each action is one
module's function. Every run is an MLflow run (training.lifecycle.registry) and registers a new version of
`mnist-digit-classifier`; models/model.pth changes only through the promotion gate (training.lifecycle.promotion).
"""

from __future__ import annotations

import sys

from training.options import build_parser, to_recipe


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    recipe = to_recipe(args, argv)
    if args.retrain_if_needed:  # first, before torch and the training stack: a check with nothing to do is quick
        from training.lifecycle import loop

        return loop.check(recipe)
    import torch

    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    from training import scratch
    from training.lifecycle import promotion
    from training.lifecycle.record import run_evaluation
    from training.retrain import retrain

    if args.evaluate:
        run_evaluation(args.evaluate, recipe.data_dir)
        return 0
    if args.promote:
        return promotion.promote(args.promote, recipe.data_dir)
    if args.rollback:
        return promotion.rollback()
    if args.retrain:
        return retrain(recipe)
    return scratch.run(recipe)


if __name__ == "__main__":
    sys.exit(main())
