from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.settings import Settings, SettingsError


def test_env_prefix_aliases_and_types(tmp_path: Path) -> None:
    env = {"ASSISTANT_HOME": str(tmp_path), "ASSISTANT_TOP_K": "7", "ASSISTANT_LLM": "openai",
           "OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "sk-secret", "CHROMA_HOST": "db.local",
           "CHROMA_PORT": "9000", "ASSISTANT_CHUNK_SIZE": "128", "ASSISTANT_CHUNK_OVERLAP": "16"}
    s = Settings.load(env=env)
    assert s.home == tmp_path and s.top_k == 7 and s.llm == "openai"
    assert s.openai_base_url.endswith(":9/v1") and s.server_mode and s.chroma_port == 9000
    assert (s.chunk_size, s.chunk_overlap) == (128, 16)
    public = s.public_dict()
    assert public["openai_api_key"] == "***"
    assert "sk-secret" not in json.dumps(public)


def test_toml_file_then_env_then_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[assistant]\ntop_k = 4\nllm_model = "local-model"\nchunk_size = 300\n')
    s = Settings.load(config_file=cfg, env={"ASSISTANT_TOP_K": "6"}, chunk_size=256)
    assert s.top_k == 6  # env beats file
    assert s.llm_model == "local-model"  # file beats default
    assert s.chunk_size == 256  # keyword beats everything
    assert s.config_file == cfg


@pytest.mark.parametrize(
    ("env", "needle"),
    [({"ASSISTANT_TOP_K": "many"}, "ASSISTANT_TOP_K"), ({"ASSISTANT_LLM": "gpt5"}, "ASSISTANT_LLM"),
     ({"ASSISTANT_EMBEDDING": "torch"}, "ASSISTANT_EMBEDDING"),
     ({"ASSISTANT_CHUNK_OVERLAP": "500"}, "ASSISTANT_CHUNK_OVERLAP")],
)
def test_bad_values_name_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError, match=needle):
        Settings.load(env=env)


def test_bad_config_file_is_one_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("top_k = [\n")
    with pytest.raises(SettingsError, match="bad.toml"):
        Settings.load(config_file=cfg, env={})
    cfg.write_text("no_such_setting = 1\n")
    with pytest.raises(SettingsError, match="unknown setting 'no_such_setting'"):
        Settings.load(config_file=cfg, env={})
    with pytest.raises(SettingsError, match="not found"):
        Settings.load(env={"ASSISTANT_CONFIG": str(tmp_path / "missing.toml")})


def test_config_show_cli_masks_secrets(tmp_path: Path) -> None:
    from tests.conftest import cli_env

    env = cli_env(tmp_path, OPENAI_API_KEY="sk-topsecret", ASSISTANT_TOP_K="3")
    out = subprocess.run([sys.executable, "-m", "assistant", "config", "show", "--json"], env=env,
                         capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    assert data["top_k"] == 3 and data["openai_api_key"] == "***" and data["home"] == str(tmp_path)
    assert "sk-topsecret" not in out
