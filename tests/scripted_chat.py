"""A scripted OpenAI-compatible /chat/completions endpoint for protocol edge cases a real local
model cannot be made to produce on demand (malformed JSON, a rejected json_schema): the judge and
generative-backend tests share it. Everything else runs against the real llama.cpp server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: One scripted reply: its content (finished with "stop"), (content, finish_reason), or (HTTP status, error body).
Reply = str | tuple[str, str] | tuple[int, dict[str, Any]]


class ScriptedChat:
    """/chat/completions answering queued replies (then "{}"), streamed when asked; rejects a json_schema
    response_format with 400 when told to."""

    def __init__(self, replies: list[Reply], *, reject_schema: bool = False) -> None:
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                outer.requests.append(body)
                if reject_schema and (body.get("response_format") or {}).get("type") == "json_schema":
                    self._send(400, "application/json",
                               json.dumps({"error": {"message": "response_format is not supported"}}).encode())
                    return
                reply = outer.replies.pop(0) if outer.replies else "{}"
                first, second = (reply, "stop") if isinstance(reply, str) else reply
                if isinstance(first, int):
                    self._send(first, "application/json", json.dumps(second).encode())
                elif body.get("stream"):
                    events = [{"choices": [{"index": 0, "delta": {"content": first}, "finish_reason": None}]},
                              {"choices": [{"index": 0, "delta": {}, "finish_reason": second}]}]
                    data = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
                    self._send(200, "text/event-stream", data.encode())
                else:
                    self._send(200, "application/json", json.dumps({
                        "id": "x", "object": "chat.completion", "created": 0, "model": "m",
                        "choices": [{"index": 0, "finish_reason": second,
                                     "message": {"role": "assistant", "content": first}}],
                        "usage": {"prompt_tokens": 321, "completion_tokens": 12, "total_tokens": 333}}).encode())

            def _send(self, status: int, kind: str, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def prompt(self, i: int) -> str:
        """Every message of request ``i``, joined."""
        return "\n".join(m["content"] for m in self.requests[i]["messages"])

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
