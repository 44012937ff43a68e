import argparse
import json
from pathlib import Path

import pytest

from lib.settings import REPO_ROOT, Settings, SettingsError, add_settings_arguments, load_settings, settings_from_args


def test_defaults_are_documented_and_used():
    settings = load_settings(environ={})
    assert settings == Settings()
    assert settings.port == 5020 and settings.model == "demo" and settings.index_type == "auto"
    assert settings.indexes_dir == REPO_ROOT / "indexes"


def test_file_then_environment_then_flags(tmp_path: Path):
    config = tmp_path / "settings.toml"
    config.write_text('port = 6000\nmodel = "ViT-B/32"\nbatch_size = 8\n')
    env = {"CLIPSEARCH_PORT": "7000", "CLIPSEARCH_BATCH_SIZE": "16", "UNRELATED": "x"}
    settings = load_settings(config, environ=env, overrides={"port": "8000", "model": None})
    assert settings.port == 8000  # flag beats environment and file
    assert settings.batch_size == 16  # environment beats file
    assert settings.model == "ViT-B/32"  # file beats default; an unset flag overrides nothing


def test_config_file_from_environment_and_json(tmp_path: Path):
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"dataset_name": "photos", "workspace": str(tmp_path)}))
    settings = load_settings(environ={"CLIPSEARCH_CONFIG": str(config)})
    assert settings.dataset_name == "photos"
    assert settings.resolve("data/x") == tmp_path / "data" / "x"
    assert settings.resolve("/abs") == Path("/abs")


@pytest.mark.parametrize("values, message", [
    ({"port": "eighty"}, "not a valid int"),
    ({"index_type": "kdtree"}, "not one of auto, flat, hnsw, ivfpq"),
    ({"colour": "red"}, "unknown setting"),
])
def test_bad_values_are_named(values, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(environ={}, overrides=values)


def test_broken_config_file_is_a_clear_error(tmp_path: Path):
    config = tmp_path / "bad.toml"
    config.write_text("port = = 3")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(config, environ={})
    with pytest.raises(SettingsError, match="cannot read config file"):
        load_settings(tmp_path / "missing.toml", environ={})


def test_cli_flags(monkeypatch):
    monkeypatch.setenv("CLIPSEARCH_PORT", "7000")
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser, ["port", "model", "index_type"])
    settings = settings_from_args(parser.parse_args(["--model", "ViT-B/16", "--index-type", "hnsw"]))
    assert (settings.port, settings.model, settings.index_type) == (7000, "ViT-B/16", "hnsw")
    with pytest.raises(SystemExit):
        parser.parse_args(["--index-type", "nope"])


def test_relative_paths_on_a_command_line_are_from_the_current_folder(tmp_path, monkeypatch):
    """`build_image_index.py demo data/demo` with CLIPSEARCH_WORKSPACE set reads ./data/demo, as any command would;
    the same path in the environment or a config file stays under the workspace, as documented."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLIPSEARCH_WORKSPACE", str(tmp_path / "ws"))
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser, ["workspace"])
    settings = settings_from_args(parser.parse_args([]), {"dataset_path": "data/demo", "vocab_source": "words.txt"})
    assert settings.resolve(settings.dataset_path) == tmp_path / "data" / "demo"
    assert settings.resolve(settings.vocab_source) == tmp_path / "words.txt"
    assert settings_from_args(parser.parse_args(["--workspace", "other"])).workspace == tmp_path / "other"
    url = settings_from_args(parser.parse_args([]), {"vocab_source": "https://example.org/words.txt"}).vocab_source
    assert url == "https://example.org/words.txt"
    monkeypatch.setenv("CLIPSEARCH_DATASET_PATH", "data/demo")
    from_env = settings_from_args(parser.parse_args([]))
    assert from_env.resolve(from_env.dataset_path) == tmp_path / "ws" / "data" / "demo"


def test_a_switch_is_a_flag_and_true_or_false_elsewhere(monkeypatch):
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser, ["follow_links"])
    assert settings_from_args(parser.parse_args([])).follow_links is False
    assert settings_from_args(parser.parse_args(["--follow-links"])).follow_links is True
    monkeypatch.setenv("CLIPSEARCH_FOLLOW_LINKS", "yes")
    assert settings_from_args(parser.parse_args([])).follow_links is True
    with pytest.raises(SettingsError, match="'maybe' is not true or false"):
        load_settings(environ={"CLIPSEARCH_FOLLOW_LINKS": "maybe"})
