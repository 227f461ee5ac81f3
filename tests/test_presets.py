"""Presets: named sets of config values, expanded into config.json; explicit flags win."""

import json

import pytest
from click.testing import CliRunner

from tfvae.cli.main import cli
from tfvae.config import Config
from tfvae.errors import ConfigError
from tfvae.presets import PRESETS, expand_preset


def test_classic_is_the_default_config():
    assert expand_preset("classic") == Config()


def test_a_preset_expands_and_explicit_values_override_it():
    config = expand_preset("best", epochs=3, latent_dim=4)
    for name, value in PRESETS["best"].items():
        if name not in ("epochs", "latent_dim"):
            assert getattr(config, name) == value, name
    assert (config.epochs, config.latent_dim) == (3, 4)


def test_every_preset_is_a_valid_config():
    for name in PRESETS:
        assert isinstance(expand_preset(name), Config)


def test_an_unknown_preset_is_refused():
    with pytest.raises(ConfigError, match="unknown --preset 'huge'"):
        expand_preset("huge")


@pytest.fixture
def captured(monkeypatch):
    """Replaces training with a stub that records the config it is given and writes it like train does."""
    import tfvae.train
    from tfvae.runs import ensure_run_dir, plan_run

    configs = []

    def fake_train(config, run_dir, **kwargs):
        configs.append(config)
        ensure_run_dir(run_dir)
        plan_run(run_dir, config)
        return {}

    monkeypatch.setattr(tfvae.train, "train_and_evaluate", fake_train)
    return configs


def test_cli_preset_with_an_override_writes_the_expanded_values(captured, tmp_path):
    result = CliRunner().invoke(cli, ["train", "--preset", "best", "--epochs", "2", "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    (config,) = captured
    assert config == expand_preset("best", epochs=2, data_dir=config.data_dir)
    with open(tmp_path / "r" / "config.json") as f:
        written = json.load(f)
    assert "preset" not in written  # the values, not the name: a later change to the preset cannot move the run
    assert {k: written[k] for k in PRESETS["best"] if k != "epochs"} == \
        {k: v for k, v in PRESETS["best"].items() if k != "epochs"}
    assert written["epochs"] == 2


def test_cli_flag_equal_to_the_default_still_overrides_the_preset(captured, tmp_path):
    """--architecture mlp is the Config default, but given explicitly it beats the preset's conv."""
    assert PRESETS["best"]["architecture"] != "mlp"
    args = ["train", "--preset", "best", "--architecture", "mlp", "--run-dir", str(tmp_path / "r")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert captured[0].architecture == "mlp" and captured[0].latent_dim == PRESETS["best"]["latent_dim"]


def test_cli_unknown_preset_is_a_usage_error():
    result = CliRunner().invoke(cli, ["train", "--preset", "huge"])
    assert result.exit_code == 2 and "huge" in result.output


def test_a_conditional_best_takes_the_per_class_prior_and_keeps_the_rest(captured, tmp_path):
    """`--preset best --condition label`: the VampPrior carries no label, so the conditional best uses mog."""
    args = ["train", "--preset", "best", "--condition", "label", "--dataset", "mnist", "--run-dir", str(tmp_path / "r")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    (config,) = captured
    assert config.prior == "mog" and config.condition == "label"
    assert {k: getattr(config, k) for k in PRESETS["best"] if k != "prior"} == \
        {k: v for k, v in PRESETS["best"].items() if k != "prior"}
    assert expand_preset("best").prior == "vamp"  # the unconditional best is unchanged


def test_an_explicit_prior_still_wins_over_the_conditional_preset():
    assert expand_preset("best", condition="label", dataset="mnist", prior="normal").prior == "normal"
