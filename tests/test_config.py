"""The run config: defaults, validation and the config.json round trip."""

import json

import pytest

from tfvae.config import Config, load_config, save_config
from tfvae.errors import ConfigError


def test_defaults_are_the_classic_setup():
    config = Config()
    assert (config.architecture, config.hidden_units, config.latent_dim) == ("mlp", 500, 20)
    assert (config.batch_size, config.epochs, config.learning_rate) == (128, 40, 1e-3)
    assert config.dataset == "binarized_mnist"


def test_round_trip(tmp_path):
    config = Config(latent_dim=2, epochs=3, limit=100, data_dir="/data", seed=7)
    save_config(config, str(tmp_path / "config.json"))
    assert load_config(str(tmp_path / "config.json")) == config


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"epochs": 0}, "--epochs must be a positive integer"),
        ({"batch_size": -1}, "--batch-size must be a positive integer"),
        ({"latent_dim": 0}, "--latent-dim must be a positive integer"),
        ({"limit": 0}, "--limit must be a positive integer"),
        ({"learning_rate": 0.0}, "--learning-rate must be a positive number"),
        ({"dataset": "cifar10"}, "unknown --dataset 'cifar10'"),
        ({"architecture": "resnet"}, "unknown --architecture 'resnet'"),
        ({"strategy": "tpu"}, "unknown --strategy 'tpu'"),
        ({"epochs": True}, "--epochs must be a positive integer"),
    ],
)
def test_bad_values_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        Config(**changes)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"epochs": 3}', "no 'version' field"),
        ('{"version": 1, "epochs": 3, "gpu_ports": 5}', "unknown fields"),
        ('{"version": 99}', "config version 99 is not supported"),
        ('{"version": 1, "latent_dim": "20"}', "--latent-dim must be a positive integer"),
    ],
)
def test_bad_config_files_are_refused(tmp_path, content, message):
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_config(str(path))


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="missing"):
        load_config(str(tmp_path / "config.json"))


def test_saved_json_is_plain_data(tmp_path):
    save_config(Config(), str(tmp_path / "c.json"))
    values = json.loads((tmp_path / "c.json").read_text())
    assert values["latent_dim"] == 20 and values["version"] == 1


def test_decoder_bias_defaults_to_data_old_runs_load_as_zero_and_it_is_not_a_run_difference():
    from tfvae.config import Config

    assert Config().decoder_bias == "data"
    old = {k: v for k, v in Config().to_dict().items() if k != "decoder_bias"}
    assert Config.from_dict(old).decoder_bias == "zero"  # written before the option: started at zero
    assert Config.from_dict(Config(decoder_bias="data").to_dict()).decoder_bias == "data"
    assert Config(decoder_bias="zero").run_differences(Config(decoder_bias="data")) == []


def test_a_flow_run_written_before_flow_context_reads_as_params(tmp_path):
    """config.json files from before the field: a flow posterior keeps the context its checkpoints were trained with
    (the encoder's params); a Gaussian run, which has no flow, reads like a new one."""
    old_flow = {"version": 1, "posterior": "iaf", "flow_steps": 2, "latent_dim": 2}
    assert Config.from_dict(old_flow).flow_context == "params"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(old_flow))
    assert load_config(str(path)).flow_context == "params"
    old_gaussian = {"version": 1, "latent_dim": 2}
    assert Config.from_dict(old_gaussian) == Config(latent_dim=2, decoder_bias="zero")
    assert Config.from_dict({**old_gaussian, "posterior": "gaussian"}).run_differences(Config(latent_dim=2)) == []
    # New runs condition on the features, and a value written down is kept.
    assert Config(posterior="iaf").flow_context == "features"
    assert Config.from_dict({**old_flow, "flow_context": "features"}).flow_context == "features"
    with pytest.raises(ConfigError, match="unknown --flow-context 'loc'; choose one of: features, params"):
        Config(posterior="iaf", flow_context="loc")
    # ... and their flows were as wide as the encoder: --flow-hidden-units unset.
    assert Config.from_dict(old_flow).flow_hidden_units is None


@pytest.mark.parametrize("value", [0, -3, True, 2.5])
def test_a_flow_width_that_is_not_a_positive_integer_is_refused(value):
    with pytest.raises(ConfigError, match=r"^--flow-hidden-units must be a positive integer, got "):
        Config(posterior="iaf", flow_hidden_units=value)
