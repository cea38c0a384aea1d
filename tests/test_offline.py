"""Offline is a promise: the default path makes zero network attempts (telemetry included)
and works with the network cut."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import SAMPLE_DIR, cli_env

# Every socket connect / DNS lookup from Python code (chromadb, posthog, openai, hub clients ...)
# is recorded by an audit hook; unix sockets are local IPC and allowed.
AUDIT = textwrap.dedent("""
    import socket, sys, json
    attempts = []
    def hook(event, args):
        if event == "socket.connect":
            sock, addr = args[0], args[1]
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                attempts.append(f"connect {addr}")
        elif event == "socket.getaddrinfo":
            attempts.append(f"getaddrinfo {args[0]}")
    sys.addaudithook(hook)
    from assistant.api import Assistant
    from assistant.settings import Settings
    from pathlib import Path
    a = Assistant(Settings.load(env={"ASSISTANT_CONFIG": ""}, home=Path(sys.argv[1]), cache_dir=Path(sys.argv[3])))
    a.ingest([sys.argv[2]])
    ans = a.ask("What does ARRA align LLM hidden states with?")
    a.search("token-level DPO", since="2024", until="2024-06")
    print(json.dumps({"attempts": attempts, "refused": ans.refused, "papers": a.status()["papers"]}))
""")


def test_ingest_and_ask_make_no_network_attempt(tmp_path: Path, embed_cache: Path) -> None:
    script = tmp_path / "audit.py"
    script.write_text(AUDIT)
    r = subprocess.run([sys.executable, str(script), str(tmp_path / "home"), str(SAMPLE_DIR), str(embed_cache)],
                       capture_output=True, text=True, env=cli_env(tmp_path / "home"), timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["attempts"] == [], out["attempts"]
    assert out["papers"] == 247 and not out["refused"]


def test_cli_ask_works_with_the_network_cut(sample_home: Path, embed_cache: Path, tmp_path: Path) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("unshare not available")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {probe.stderr.strip()}")
    home = tmp_path / "home"
    shutil.copytree(sample_home, home)
    r = subprocess.run(["unshare", "-n", "assistant", "ask", "--json", "What does ARRA align LLM hidden states with?"],
                       capture_output=True, text=True, env=cli_env(home, embed_cache), timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["citations"]
