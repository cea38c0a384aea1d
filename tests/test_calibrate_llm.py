"""`assistant eval calibrate-llm` against the real SmolLM2 on llama.cpp: a profile is fitted on one
question split, chosen on another, written where `ask` finds it, and reproduced from the stored
replies without asking the model again. Six questions a split would be too few to trust the figures;
they are enough to prove every step runs on real replies (about a minute on 2 cores)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.answering.calibration import DECISION_FEATURES, find_profile
from assistant.api import Assistant
from assistant.evaluation.calibrate_llm import COPY_RULES, THRESHOLDS, ReplayClient, calibrate
from tests.conftest import cli_env, make_settings
from tests.llm_server import ServerHandle, require_llama_server, start_llama_server

pytestmark = [pytest.mark.llm_server, pytest.mark.slow]

QUESTIONS = Path(__file__).resolve().parents[1] / "evals" / "questions"
FIT = ("s26-lk-001", "s26-lk-002", "s26-lk-005", "s26-un-003", "s26-un-010", "s26-un-011")
VALIDATION = ("s26-lk-003", "s26-lk-004")


def _pick(path: Path, qids: tuple[str, ...], unanswerable: int = 0) -> list[str]:
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    out = [r for r in rows if r["qid"] in qids]
    out += [r for r in rows if r["type"] == "unanswerable"][:unanswerable]
    return [json.dumps(r) for r in out]


@pytest.fixture(scope="module")
def smol(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    gguf = require_llama_server("smollm2")
    server = start_llama_server(gguf, tmp_path_factory.mktemp("smol"), n_ctx=4096, threads=1)
    yield server
    server.stop()


def test_calibrate_llm_fits_chooses_writes_and_replays(smol: ServerHandle, copied_sample_home: Path,
                                                       embed_cache: Path, tmp_path: Path) -> None:
    fit = tmp_path / "fit.jsonl"
    fit.write_text("\n".join(_pick(QUESTIONS / "fit.jsonl", FIT)) + "\n")
    val = tmp_path / "validation.jsonl"
    val.write_text("\n".join(_pick(QUESTIONS / "validation.jsonl", VALIDATION, unanswerable=3)) + "\n")
    env = cli_env(copied_sample_home, embed_cache, OPENAI_BASE_URL=smol.base_url,
                  ASSISTANT_LLM_MODEL="SmolLM2-135M-Instruct", ASSISTANT_REQUEST_TIMEOUT="300",
                  ASSISTANT_MAX_RETRIES="0")
    run = subprocess.run([sys.executable, "-m", "assistant", "eval", "calibrate-llm", str(fit), str(val),
                          "--json"], env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    path = Path(out["path"])
    # Written where ask looks for this model, with the replies beside it.
    assert path == copied_sample_home / "profiles" / "smollm2-135m-instruct.json"
    assert path.with_name(path.stem + ".replies.jsonl").is_file()
    prof = out["profile"]
    assert prof["model"] == "SmolLM2-135M-Instruct" and prof["decision"]["features"] == list(DECISION_FEATURES)
    assert prof["threshold"] in THRESHOLDS and prof["copy_numbers"] in COPY_RULES
    assert prof["meta"]["fit"]["file"] == "fit.jsonl" and prof["meta"]["chosen_on"] == "validation"
    assert out["asked"] >= 1 and "false_refusal_rate" in out["validation"]

    # ask loads it by model name.
    a = Assistant(make_settings(copied_sample_home, embed_cache, llm="openai", openai_base_url=smol.base_url,
                                llm_model="SmolLM2-135M-Instruct", request_timeout=300, max_retries=0))
    a.auto_sample = False
    loaded = find_profile("SmolLM2-135M-Instruct", "", copied_sample_home)
    assert loaded.matched and loaded.threshold == prof["threshold"]
    ans = a.ask(json.loads(fit.read_text().splitlines()[0])["question"])
    assert ans.checks["profile"] == "SmolLM2-135M-Instruct"
    assert ans.checks["evidence_budget"]["context_tokens"] == 4096  # llama.cpp states its window

    # The same inputs again (the same replies file beside the profile): nothing is asked, the same
    # profile comes out.
    again = calibrate(a, fit, val, out=path)
    assert again.asked == 0 and again.replayed > 0
    assert again.profile.to_dict()["decision"] == prof["decision"]
    assert again.profile.threshold == prof["threshold"] and again.profile.copy_numbers == prof["copy_numbers"]
    a.index.close()


def test_replay_client_rejects_a_damaged_store(tmp_path: Path) -> None:
    bad = tmp_path / "r.jsonl"
    bad.write_text('{"key": "k", "text": "x"}\nnot json\n')
    with pytest.raises(Exception, match=r"r\.jsonl:2: not a stored reply"):
        ReplayClient(object(), bad)
