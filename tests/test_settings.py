from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.errors import AssistantError
from assistant.settings import SECTIONS, Settings, SettingsError
from tests.conftest import cli_env

REPO = Path(__file__).resolve().parents[1]


def test_env_prefix_aliases_and_types(tmp_path: Path) -> None:
    env = {"ASSISTANT_HOME": str(tmp_path), "ASSISTANT_TOP_K": "7", "ASSISTANT_LLM": "openai",
           "OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "sk-secret", "CHROMA_HOST": "db.local",
           "CHROMA_PORT": "9000", "ASSISTANT_CHUNK_SIZE": "128", "ASSISTANT_CHUNK_OVERLAP": "16"}
    s = Settings.load(env=env)
    assert s.home == tmp_path and s.retrieval.top_k == 7 and s.llm.backend == "openai"
    assert s.llm.base_url.endswith(":9/v1") and s.server_mode and s.index.chroma_port == 9000
    assert (s.index.chunk_size, s.index.chunk_overlap) == (128, 16)
    assert s.llm.api_key.get_secret_value() == "sk-secret"
    public = s.public_dict()
    assert public["llm"]["api_key"] == "***"
    assert "sk-secret" not in json.dumps(public) and "sk-secret" not in repr(s)


def test_nested_env_names_and_sections(tmp_path: Path) -> None:
    env = {"ASSISTANT_RETRIEVAL__TOP_K": "5", "ASSISTANT_EXTRACTIVE__MIN_COVERAGE": "0.3",
           "ASSISTANT_JUDGE__THRESHOLD_LEXICAL": "0.5", "ASSISTANT_SERVE__PORT": "8123"}
    s = Settings.load(env=env, home=tmp_path)
    assert s.retrieval.top_k == 5 and s.extractive.min_coverage == 0.3
    assert s.judge.threshold_lexical == 0.5 and s.serve.port == 8123


def test_toml_file_then_env_then_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[assistant]\ntop_k = 4\nllm_model = "local-model"\nchunk_size = 300\n')
    s = Settings.load(config_file=cfg, env={"ASSISTANT_TOP_K": "6"}, chunk_size=256)
    assert s.retrieval.top_k == 6  # env beats file
    assert s.llm.model == "local-model"  # file beats default
    assert s.index.chunk_size == 256  # keyword beats everything
    assert s.config_file == cfg


def test_toml_sections(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[retrieval]\ntop_k = 3\nfusion = "rrf"\n[extractive]\nmax_papers = 7\n'
                   '[llm]\nbackend = "openai"\nmodel = "qwen"\n')
    s = Settings.load(config_file=cfg, env={})
    assert (s.retrieval.top_k, s.retrieval.fusion, s.extractive.max_papers) == (3, "rrf", 7)
    assert (s.llm.backend, s.llm.model) == ("openai", "qwen")


def test_with_keeps_the_rest_and_validates(tmp_path: Path) -> None:
    s = Settings.load(env={"OPENAI_API_KEY": "sk-x"}, home=tmp_path, top_k=4)
    t = s.with_(llm_model="m2", retrieval={"candidates": 99})
    assert (t.retrieval.top_k, t.retrieval.candidates, t.llm.model) == (4, 99, "m2")
    assert t.llm.api_key.get_secret_value() == "sk-x" and s.llm.model == "gpt-4o-mini"
    with pytest.raises(SettingsError, match="^top_k: "):
        s.with_(top_k=0)


@pytest.mark.parametrize(
    ("env", "needle"),
    [({"ASSISTANT_TOP_K": "many"}, "ASSISTANT_TOP_K: input should be a valid integer"),
     ({"ASSISTANT_TOP_K": "-1"}, "ASSISTANT_TOP_K: input should be greater than or equal to 1"),
     ({"ASSISTANT_CHUNK_SIZE": "0"}, "ASSISTANT_CHUNK_SIZE: "),
     ({"ASSISTANT_LLM": "gpt5"}, "ASSISTANT_LLM: 'gpt5' is not a known answer backend"),
     ({"ASSISTANT_EMBEDDING": "torch"}, "ASSISTANT_EMBEDDING: 'torch' is not a known embedding backend"),
     ({"ASSISTANT_CHUNK_OVERLAP": "500"}, "ASSISTANT_CHUNK_OVERLAP: chunk_overlap must be smaller"),
     ({"ASSISTANT_FUSION": "max"}, "ASSISTANT_FUSION: "),
     ({"ASSISTANT_RETRIEVAL__CANDIDATES": "x"}, "ASSISTANT_RETRIEVAL__CANDIDATES: "),
     ({"ASSISTANT_BOGUS__X": "1"}, "ASSISTANT_BOGUS__X: unknown settings section"),
     ({"ASSISTANT_RETRIEVAL__NOPE": "1"}, "ASSISTANT_RETRIEVAL__NOPE: unknown setting"),
     ({"CHROMA_PORT": "70000"}, "CHROMA_PORT: "),
     # A URL gave "Could not connect" without saying why.
     ({"CHROMA_HOST": "http://127.0.0.1"}, "CHROMA_HOST: a host name is wanted, not a URL (e.g. 127.0.0.1, with "
                                           "the port in CHROMA_PORT), got 'http://127.0.0.1'")],
)
def test_bad_values_name_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.load(env={"ASSISTANT_CONFIG": "", **env})
    assert str(info.value).startswith(needle) and "\n" not in str(info.value)
    assert isinstance(info.value, AssistantError)  # so the CLI prints it as one line


def test_bad_config_file_is_one_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("top_k = [\n")
    with pytest.raises(SettingsError, match="bad.toml: not valid TOML"):
        Settings.load(config_file=cfg, env={})
    cfg.write_text("no_such_setting = 1\n")
    with pytest.raises(SettingsError, match="unknown setting 'no_such_setting'"):
        Settings.load(config_file=cfg, env={})
    cfg.write_text("[retrieval]\ntop_k = 'x'\n")
    with pytest.raises(SettingsError, match=r"bad.toml: \[retrieval\] top_k: input should be a valid integer"):
        Settings.load(config_file=cfg, env={})
    cfg.write_bytes(b"top_k = 3 # caf\xe9\n")
    with pytest.raises(SettingsError, match="bad.toml: config file is not UTF-8"):
        Settings.load(config_file=cfg, env={})
    with pytest.raises(SettingsError, match="not found"):
        Settings.load(env={"ASSISTANT_CONFIG": str(tmp_path / "missing.toml")})
    with pytest.raises(SettingsError, match="cannot read config file"):
        Settings.load(env={"ASSISTANT_CONFIG": str(tmp_path)})  # a directory


@pytest.mark.parametrize(
    ("extra", "needle"),
    [({"ASSISTANT_TOP_K": "abc"}, "error: ASSISTANT_TOP_K: "),
     ({"ASSISTANT_LLM": "foo"}, "error: ASSISTANT_LLM: 'foo' is not a known answer backend"),
     ({"ASSISTANT_CHUNK_SIZE": "0"}, "error: ASSISTANT_CHUNK_SIZE: ")],
)
def test_cli_settings_errors_are_one_line(tmp_path: Path, extra: dict[str, str], needle: str) -> None:
    """Every command that loads settings: one line on stderr, exit 1, no traceback."""
    env = cli_env(tmp_path, **extra)
    for args in (["status"], ["ask", "what is DPO?"], ["config", "show"]):
        proc = subprocess.run([sys.executable, "-m", "assistant", *args], env=env, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 1, (args, proc.stderr)
        assert proc.stderr.startswith(needle) and proc.stderr.count("\n") == 1, (args, proc.stderr)


def test_config_show_lists_every_knob(tmp_path: Path) -> None:
    env = cli_env(tmp_path, OPENAI_API_KEY="sk-topsecret", ASSISTANT_TOP_K="3")
    out = subprocess.run([sys.executable, "-m", "assistant", "config", "show", "--json"], env=env,
                         capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    assert data["retrieval"]["top_k"] == 3 and data["llm"]["api_key"] == "***" and data["home"] == str(tmp_path)
    assert "sk-topsecret" not in out
    s = Settings.load(env={"ASSISTANT_CONFIG": ""})
    for section in SECTIONS:
        assert set(data[section]) == set(type(getattr(s, section)).model_fields), section
    # Every calibrated knob of the extractive answerer and the judge is visible.
    assert {"min_coverage", "w_dense", "min_anchor_idf"} <= set(data["extractive"])
    assert {"threshold_lexical", "threshold_semantic", "cosine_weight"} <= set(data["judge"])
    table = subprocess.run([sys.executable, "-m", "assistant", "config", "show"], env=env, capture_output=True,
                           text=True, check=True).stdout
    assert "retrieval.top_k" in table and "ASSISTANT_TOP_K" in table and "extractive.min_dense" in table


def test_misspelled_short_variables_name_the_likely_one(tmp_path: Path) -> None:
    """`ASSISTANT_TOPK` and friends were silently ignored: one warning line each, naming the variable
    meant; the names the project's tests, CI and scripts use are never reported."""
    from assistant.settings import misspelled_env

    env = {"ASSISTANT_TOPK": "3", "ASSISTANT_LLM_BACKEND": "openai", "ASSISTANT_EMBEDING": "local",
           "ASSISTANT_CHROMA_TIMOUT": "5", "ASSISTANT_TOP_K": "4"}
    assert misspelled_env(env) == [("ASSISTANT_CHROMA_TIMOUT", "ASSISTANT_CHROMA_TIMEOUT"),
                                   ("ASSISTANT_EMBEDING", "ASSISTANT_EMBEDDING"),
                                   ("ASSISTANT_LLM_BACKEND", "ASSISTANT_LLM"),
                                   ("ASSISTANT_TOPK", "ASSISTANT_TOP_K")]
    proc = subprocess.run([sys.executable, "-m", "assistant", "config", "show", "--json"],
                          env=cli_env(tmp_path, **env), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["retrieval"]["top_k"] == 4  # the misspelled ones change nothing
    lines = proc.stderr.splitlines()
    assert "warning: ASSISTANT_TOPK is not a setting and is ignored; did you mean ASSISTANT_TOP_K?" in lines
    assert "warning: ASSISTANT_LLM_BACKEND is not a setting and is ignored; did you mean ASSISTANT_LLM?" in lines
    assert "warning: ASSISTANT_EMBEDING is not a setting and is ignored; did you mean ASSISTANT_EMBEDDING?" in lines
    assert len(lines) == 4, proc.stderr  # one line each, once


def test_no_warning_for_the_variables_the_project_uses() -> None:
    """Every ``ASSISTANT_*`` name written anywhere in the repository (code, tests, CI, docs) but the
    deliberate misspellings (this file, the README's example warning) is a setting or one of the
    allowed non-settings."""
    import re

    from assistant.settings import misspelled_env

    names: set[str] = set()
    files = [REPO / "README.md", REPO / "pyproject.toml"]
    for top in ("assistant", "tests", "benchmarks", "docs", ".ci", ".github"):
        files += [f for f in (REPO / top).rglob("*") if f.is_file() and "out" not in f.relative_to(REPO).parts
                  and f.suffix in {".py", ".md", ".toml", ".yml", ".yaml", ".sh", ".cfg", ".txt", ""}]
    for path in files:
        if path.name != "test_settings.py" and path.is_file():
            for line in path.read_text(errors="replace").splitlines():
                if "is not a setting" not in line:  # the README's example of the warning itself
                    names.update(re.findall(r"\bASSISTANT_[A-Z0-9_]*[A-Z0-9]", line))
    assert {"ASSISTANT_TEST_GGUF", "ASSISTANT_CI_CACHE", "ASSISTANT_REQUIRE_BROWSER", "ASSISTANT_ARTIFACTS",
            "ASSISTANT_SCIFACT_DIR", "ASSISTANT_TOP_K"} <= names
    assert misspelled_env(dict.fromkeys(names, "1")) == []


@pytest.mark.parametrize(
    ("toml", "needle"),
    [("[retrieval]\ntop_k = true\n", r"\[retrieval\] top_k: input should be a number, not true"),
     ("[llm]\nmax_retries = false\n", r"\[llm\] max_retries: input should be a number, not false"),
     ("home = ['a']\n", r"home: input should be a path \(text\), not list"),
     ("home = 5\n", r"home: input should be a path \(text\), not int"),
     ("[assistant]\ntop_k = 3\n[llm]\nbackend = 'nope'\n",
      r"settings go either under \[assistant\] or at the top level, not both \(move llm under"),
     ],
)
def test_config_values_of_the_wrong_kind_are_refused(tmp_path: Path, toml: str, needle: str) -> None:
    """A bool read as a number (top_k = true was 1), a list or number read as a folder name, and
    top-level tables beside [assistant] (silently ignored) are one-line errors naming the file."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    with pytest.raises(SettingsError, match=needle) as info:
        Settings.load(config_file=cfg, env={})
    assert str(info.value).startswith(str(cfg)) and "\n" not in str(info.value)


def test_a_rule_across_two_keys_of_one_file_names_the_file_once(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[index]\nchunk_size = 100\nchunk_overlap = 200\n")
    with pytest.raises(SettingsError) as info:
        Settings.load(config_file=cfg, env={})
    assert str(info.value) == (f"{cfg}: [index] chunk_size / [index] chunk_overlap: chunk_overlap must be smaller "
                               "than chunk_size")


def test_any_path_like_object_is_a_path(tmp_path: Path) -> None:
    class Where:  # py.path.local and friends: os.PathLike, not pathlib
        def __fspath__(self) -> str:
            return str(tmp_path / "home")

    assert Settings.load(env={"ASSISTANT_CONFIG": ""}, home=Where()).home == tmp_path / "home"


def test_config_file_with_a_bom_and_an_assistant_table(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_bytes(b"\xef\xbb\xbf[retrieval]\ntop_k = 8\n")
    assert Settings.load(config_file=cfg, env={}).retrieval.top_k == 8
    cfg.write_text("[assistant]\ntop_k = 3\n[assistant.retrieval]\nfusion = 'rrf'\n")
    s = Settings.load(config_file=cfg, env={})
    assert (s.retrieval.top_k, s.retrieval.fusion) == (3, "rrf")


def test_a_fields_bare_name_as_a_variable_names_the_section_it_left_out() -> None:
    """ASSISTANT_PORT and friends were ignored without a word: no spelling is close, but the field is."""
    from assistant.settings import misspelled_env

    env = dict.fromkeys(["ASSISTANT_PORT", "ASSISTANT_HOST", "ASSISTANT_MODEL", "ASSISTANT_ALLOWED_HOSTS",
                         "ASSISTANT_MIN_COVERAGE", "ASSISTANT_NOTHING_LIKE_IT"], "1")
    assert dict(misspelled_env(env)) == {
        "ASSISTANT_PORT": "ASSISTANT_SERVE__PORT", "ASSISTANT_HOST": "ASSISTANT_SERVE__HOST",
        "ASSISTANT_MODEL": "ASSISTANT_LLM_MODEL", "ASSISTANT_ALLOWED_HOSTS": "ASSISTANT_SERVE__ALLOWED_HOSTS",
        "ASSISTANT_MIN_COVERAGE": "ASSISTANT_EXTRACTIVE__MIN_COVERAGE"}
