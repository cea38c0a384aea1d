"""The verify label model's fitting script (``python -m assistant.answering.fit_verify``) in its fast form:
a handful of SciFact train claims over a slice of the corpus, refitted from scratch twice -> the same
bytes, ``--check`` passes on the refit and fails in one line on a changed file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.answering import fit_verify
from assistant.answering.stance import VerifyModel
from tests.conftest import SCIFACT


@pytest.mark.skipif(not (SCIFACT / "claims.jsonl").exists(), reason="../shared/scifact not present")
def test_refit_is_byte_identical_and_check_catches_a_change(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "verify.json"
    args = ["--scifact", str(SCIFACT), "--limit", "24", "--slice", "24", "--cache", str(tmp_path / "cache"),
            "--out", str(out)]
    assert fit_verify.main(args) == 0
    first = out.read_bytes()
    model = VerifyModel.from_dict(json.loads(first))
    assert model.meta["scifact_train_claims"] == 24 and model.meta["folds"] == 4
    assert fit_verify.main([*args, "--check"]) == 0
    assert "reproduced byte for byte" in capsys.readouterr().out
    d = json.loads(first)
    d["contradict"]["coef"][0] += 0.5
    out.write_text(json.dumps(d, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    assert fit_verify.main([*args, "--check"]) == 1
    line = capsys.readouterr().out.strip()
    assert "differs from a refit in 1 of" in line and "contradict.coef[0]" in line and "\n" not in line
