"""An OpenAI-compatible image API on 127.0.0.1 for tests: `/v1/images/variations` and `/v1/images/edits`.

It parses the multipart upload, answers `{"created": ..., "data": [{"b64_json": ...}]}` with a PNG of
the requested size made from the uploaded image, and plays a script of injected faults, one per
request in arrival order: "429" (with Retry-After), "429-soon" (a 429 whose Retry-After is neither
seconds nor a date: "soon"), "500", "400", "malformed" (a 200 with a cut-off
JSON body) and "slow" (a 200 after `slow_s` seconds). Every request is logged, with the status the
server chose and whether it would have billed it (every answer it meant as a 200).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import time
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image, ImageOps


class FakeImageAPI:
    def __init__(self, key: str, faults: list[str] | None = None, slow_s: float = 2.0, retry_after: str = "1"):
        self.key = key
        self.faults = list(faults or [])
        self.slow_s = slow_s
        self.retry_after = retry_after
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeImageAPI:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def billed(self) -> int:
        return sum(r["billed"] for r in self.requests)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                ctype = self.headers.get("Content-Type", "")
                msg = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + body)
                fields: dict[str, Any] = {}
                upload = None
                for part in msg.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    if part.get_filename():
                        upload = part.get_payload(decode=True)
                        fields[name] = part.get_filename()
                    else:
                        fields[name] = part.get_payload(decode=True).decode()
                with api.lock:
                    fault = api.faults.pop(0) if api.faults else None
                    rec: dict[str, Any] = {"path": self.path, "fields": fields, "fault": fault, "t": time.monotonic(),
                                           "sha": hashlib.sha256(upload or b"").hexdigest(),
                                           "auth_ok": self.headers.get("Authorization") == f"Bearer {api.key}"}
                    api.requests.append(rec)
                endpoint = self.path.rstrip("/").rsplit("/", 1)[-1]
                if not rec["auth_ok"]:
                    rec.update(status=401, billed=False)
                    return self._send(401, json.dumps({"error": {"message": "bad key", "type": "auth"}}).encode())
                if endpoint not in ("variations", "edits") or upload is None:
                    rec.update(status=404, billed=False)
                    return self._send(404, b'{"error": {"message": "no such endpoint or no image"}}')
                if fault == "429":
                    rec.update(status=429, billed=False)
                    return self._send(429, b'{"error": {"message": "Rate limit reached", "type": "requests"}}',
                                      {"Retry-After": api.retry_after})
                if fault == "429-soon":
                    rec.update(status=429, billed=False)
                    return self._send(429, b'{"error": {"message": "Rate limit reached", "type": "requests"}}',
                                      {"Retry-After": "soon"})
                if fault == "500":
                    rec.update(status=500, billed=False)
                    return self._send(500, b'{"error": {"message": "The server had an error"}}')
                if fault == "400":
                    rec.update(status=400, billed=False)
                    return self._send(400, json.dumps({"error": {
                        "message": f"Your request was rejected by the safety system (key {api.key})",
                        "type": "invalid_request_error"}}).encode())
                with Image.open(io.BytesIO(upload)) as im:
                    rec["upload"] = {"format": im.format, "size": im.size, "mode": im.mode, "bytes": len(upload)}
                    out = ImageOps.invert(im.convert("L")).convert("RGB")
                side = int(fields.get("size", "1024x1024").split("x")[0])
                out = out.resize((side, side))
                buf = io.BytesIO()
                out.save(buf, format="PNG")
                payload = json.dumps({"created": int(time.time()),
                                      "data": [{"b64_json": base64.b64encode(buf.getvalue()).decode()}]}).encode()
                rec.update(status=200, billed=True)
                if fault == "malformed":
                    return self._send(200, payload[: len(payload) // 2])
                if fault == "slow":
                    time.sleep(api.slow_s)
                self._send(200, payload)

        return Handler
