"""The recipe: every number `make train` uses in one frozen value, variants made by replacing fields, and the
experiments built as variants of it."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from training import dataset
from training.lifecycle import experiments, promotion
from training.recipe import RECIPE, Augmentation, Gate, Recipe


def test_the_recipe_is_frozen_and_variants_are_new_values() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        RECIPE.epochs = 9  # type: ignore[misc]
    variant = dataclasses.replace(RECIPE, keep_digits=0.9995)
    assert variant.keep_digits == 0.9995 and RECIPE.keep_digits == 0.999
    assert Recipe().named("train").run_name == "train" and Recipe(run_name="x").named("train").run_name == "x"


def test_a_checkpoint_keeps_the_recipe_as_plain_values() -> None:
    portable = Recipe(data_dir=None).portable()
    assert portable["augmentation"] == dataclasses.asdict(Augmentation())
    assert portable["gate"] == dataclasses.asdict(Gate())
    assert portable["validation_size"] == 5_000 and portable["warmup_share"] == 0.25


def test_the_augmentation_follows_the_recipe() -> None:
    images = torch.zeros(64, 1, 28, 28)
    images[:, :, 8:20, 12:16] = 1.0
    still = Augmentation(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    assert torch.allclose(dataset.augment(images, torch.Generator().manual_seed(1), still), images, atol=1e-5)
    moved = dataset.augment(images, torch.Generator().manual_seed(1), RECIPE.augmentation)
    assert not torch.allclose(moved, images, atol=1e-3)


def test_the_gate_reads_the_recipe_s_bars() -> None:
    candidate = {"official": 0.9960, "drawn": 0.99, "flagged": 0.95}
    assert promotion.gate(candidate, None) == []
    stricter = Gate(min_official=0.997)
    assert any("below the 99.7% bar" in reason for reason in promotion.gate(candidate, None, bars=stricter))


def test_every_experiment_is_a_variant_of_today_s_recipe() -> None:
    names = [e.name for e in experiments.EXPERIMENTS]
    assert len(names) == len(set(names)) and names[0] == "recipe"
    assert experiments.EXPERIMENTS[0].recipe(RECIPE) == RECIPE, "the reference is make train's recipe"
    for experiment in experiments.EXPERIMENTS[1:]:
        variant = experiment.recipe(RECIPE)  # an unknown field would raise here
        changed = {f.name for f in dataclasses.fields(Recipe) if getattr(variant, f.name) != getattr(RECIPE, f.name)}
        assert changed == set(experiment.changes), experiment.name
