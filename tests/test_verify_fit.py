"""The verify label model's fitting script (``python -m assistant.answering.fit_verify``) in its fast form:
a handful of SciFact train claims over a slice of the corpus, refitted from scratch twice -> the same
bytes, ``--check`` passes on the refit and fails in one line on a changed file."""

from __future__ import annotations

import json
import subprocess
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


def test_default_scifact_is_found_from_a_git_worktree(tmp_path: Path) -> None:
    """The fitting scripts' default is ``shared/scifact`` beside the checkout; from a linked worktree
    (``<x>/wt/name``) it is the one beside the main checkout, found through the worktree's ``.git`` file."""
    from assistant.evaluation.scifact import default_dir

    def git(*args: str, cwd: Path) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                       capture_output=True)

    main = tmp_path / "main"
    main.mkdir()
    git("init", "-q", cwd=main)
    git("commit", "-q", "--allow-empty", "-m", "init", cwd=main)
    (tmp_path / "wt").mkdir()
    git("worktree", "add", "-q", str(tmp_path / "wt" / "x"), cwd=main)
    assert default_dir(tmp_path / "wt" / "x") == tmp_path / "wt" / "shared" / "scifact"  # nowhere: its own, to name
    shared = tmp_path / "shared" / "scifact"
    shared.mkdir(parents=True)
    assert default_dir(main) == shared
    assert default_dir(tmp_path / "wt" / "x") == shared
    (tmp_path / "wt" / "shared" / "scifact").mkdir(parents=True)
    assert default_dir(tmp_path / "wt" / "x") == tmp_path / "wt" / "shared" / "scifact"  # its own comes first


@pytest.mark.parametrize("present", [[], ["corpus.jsonl"]])
def test_a_missing_scifact_is_one_line_naming_the_file(tmp_path: Path, present: list[str]) -> None:
    scifact = tmp_path / "scifact"
    scifact.mkdir()
    for name in present:
        (scifact / name).write_text("", encoding="utf-8")
    out = tmp_path / "verify.json"
    with pytest.raises(SystemExit) as err:
        fit_verify.main(["--scifact", str(scifact), "--cache", str(tmp_path / "cache"), "--out", str(out)])
    missing = scifact / ("claims.jsonl" if present else "corpus.jsonl")
    assert str(err.value) == f"error: SciFact not found: no {missing} (pass --scifact DIR)"
    assert not out.exists() and not (tmp_path / "cache").exists()
