"""`assistant --help` must stay instant: no llama-index, chromadb or onnxruntime at import."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("llama_index", "chromadb", "onnxruntime", "tiktoken", "openai", "bm25s")


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "from assistant.cli import app\n"
        "from typer.testing import CliRunner\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "assert 'ingest' in r.output and 'ask' in r.output and 'eval' in r.output\n"
        f"print(','.join(m for m in {HEAVY!r} if any(k == m or k.startswith(m + '.') for k in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported by --help: {out.stdout.strip()}"


def test_console_script_help_runs() -> None:
    out = subprocess.run(["assistant", "--help"], capture_output=True, text=True, check=True)
    assert "Ask questions" in out.stdout
