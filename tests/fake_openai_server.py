"""An OpenAI-compatible image API on 127.0.0.1 for tests: `/v1/images/edits`, `/v1/images/variations`
and `/v1/models`.

It parses the multipart upload and answers `{"created": ..., "data": [{"b64_json": ...}, ...]}` with `n`
PNGs of the requested size made from the uploaded image (the inverted upload, darkened by 10 k % for
the k-th image made from that upload, so that no two are the same), plus token `usage` for edits with
a GPT image model, as OpenAI does (none for DALL-E): input text tokens = words of the prompt, input
image tokens = (side / 32)^2, output image tokens = n times `OUTPUT_TOKENS[quality]`. The answer's
header `openai-model` names the model that answered (`answered` maps a model asked for to another
name, e.g. a dated snapshot), `x-request-id` the request.

`models` (None: any) is what it serves and lists; `shutdown` gives a model's `shutdown_date` (YYYY-MM-DD) in
`/v1/models` and `/v1/models/{model}`, as OpenAI reports a deprecated model (null for the others). A model not
among `models` is refused as OpenAI does:
404 `model_not_found`, or with `refuse_as="400"` a 400 invalid value of `model`. `list_models=False`
makes `/v1/models` a 404, like a server that does not list its models.

It plays a script of injected faults, one per request in arrival order: "429" (with Retry-After),
"429-soon" (a 429 whose Retry-After is neither seconds nor a date: "soon"), "500", "400",
"malformed" (a 200 with a cut-off JSON body), "slow" (a 200 after `slow_s` seconds) and "short" (a
200 with one image fewer than asked for, usage as for the images sent). Every request is logged, with
the status the server chose, whether it would have billed it (every answer it meant as a 200), and
the usage it reported.
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

OUTPUT_TOKENS = {"low": 196, "medium": 1056, "high": 4160, "auto": 1056}


class FakeImageAPI:
    def __init__(self, key: str, faults: list[str] | None = None, slow_s: float = 2.0, retry_after: str = "1",
                 models: list[str] | None = None, refuse_as: str = "404", answered: dict[str, str] | None = None,
                 list_models: bool = True, shutdown: dict[str, str] | None = None):
        self.key = key
        self.faults = list(faults or [])
        self.slow_s = slow_s
        self.retry_after = retry_after
        self.models = models
        self.refuse_as = refuse_as
        self.answered = dict(answered or {})
        self.list_models = list_models
        self.shutdown = dict(shutdown or {})
        self.requests: list[dict[str, Any]] = []
        self.made: dict[str, int] = {}  # images made per upload (by its sha256)
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
        return sum(r.get("billed", False) for r in self.requests)

    def images_sent(self) -> int:
        return sum(r.get("images", 0) for r in self.requests)

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

            def _error(self, rec: dict[str, Any], status: int, message: str, headers: dict[str, str] | None = None,
                       **extra: Any) -> None:
                rec.update(status=status, billed=False)
                err = {"message": message, "type": "invalid_request_error", "param": None, "code": None, **extra}
                self._send(status, json.dumps({"error": err}).encode(), headers)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                rec: dict[str, Any] = {"path": self.path, "fields": {}, "fault": None, "t": time.monotonic(),
                                       "auth_ok": self.headers.get("Authorization") == f"Bearer {api.key}"}
                with api.lock:
                    api.requests.append(rec)
                if not rec["auth_ok"]:
                    return self._error(rec, 401, "bad key")
                path = self.path.rstrip("/")
                if not path.startswith("/v1/models") or not api.list_models:
                    return self._error(rec, 404, "no such endpoint")
                ids = api.models if api.models is not None else ["gpt-image-2", "dall-e-2"]

                def model(m: str) -> dict[str, Any]:
                    return {"id": m, "object": "model", "created": 0, "owned_by": "fake",
                            "shutdown_date": api.shutdown.get(m)}

                if path != "/v1/models":  # GET /v1/models/{model}
                    name = path.removeprefix("/v1/models/")
                    if name not in ids:
                        return self._error(rec, 404, f"The model `{name}` does not exist", code="model_not_found")
                    rec.update(status=200, billed=False)
                    return self._send(200, json.dumps(model(name)).encode())
                rec.update(status=200, billed=False)
                self._send(200, json.dumps({"object": "list", "data": [model(m) for m in ids]}).encode())

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
                    rec["id"] = f"req_{len(api.requests):04d}"
                    api.requests.append(rec)
                endpoint = self.path.rstrip("/").rsplit("/", 1)[-1]
                if not rec["auth_ok"]:
                    return self._error(rec, 401, "bad key")
                if endpoint not in ("variations", "edits") or upload is None:
                    return self._error(rec, 404, "no such endpoint or no image")
                model = fields.get("model", "dall-e-2")
                if api.models is not None and model not in api.models:
                    if api.refuse_as == "400":
                        return self._error(rec, 400, f"Invalid value: '{model}'. Supported values are: "
                                           + ", ".join(f"'{m}'" for m in api.models) + ".",
                                           param="model", code="invalid_value")
                    return self._error(rec, 404, f"The model `{model}` does not exist or you do not have access to it.",
                                       code="model_not_found")
                if fault in ("429", "429-soon"):
                    return self._error(rec, 429, "Rate limit reached",
                                       {"Retry-After": api.retry_after if fault == "429" else "soon"})
                if fault == "500":
                    return self._error(rec, 500, "The server had an error")
                if fault == "400":
                    return self._error(rec, 400, f"Your request was rejected by the safety system (key {api.key})")
                with Image.open(io.BytesIO(upload)) as im:
                    rec["upload"] = {"format": im.format, "size": im.size, "mode": im.mode, "bytes": len(upload)}
                    base = ImageOps.invert(im.convert("L"))
                side = int(fields.get("size", "1024x1024").split("x")[0])
                n = int(fields.get("n", "1")) - (1 if fault == "short" and int(fields.get("n", "1")) > 1 else 0)
                data = []
                with api.lock:  # the k-th image made from an upload is darkened by 10 k % (so all differ)
                    first = api.made.get(rec["sha"], 0)
                    api.made[rec["sha"]] = first + n
                for i in range(n):
                    f = 1 - 0.1 * ((first + i) % 8)
                    out = base.point(lambda v, f=f: int(v * f)).convert("RGB").resize((side, side))
                    buf = io.BytesIO()
                    out.save(buf, format="PNG")
                    data.append({"b64_json": base64.b64encode(buf.getvalue()).decode()})
                answer: dict[str, Any] = {"created": int(time.time()), "data": data}
                if endpoint == "edits" and not model.startswith("dall-e"):
                    quality = fields.get("quality", "auto")
                    text, image_in = len(fields.get("prompt", "").split()), (side // 32) ** 2
                    out_tokens = n * OUTPUT_TOKENS.get(quality, 1056)
                    answer["usage"] = {"input_tokens": text + image_in, "output_tokens": out_tokens,
                                       "total_tokens": text + image_in + out_tokens,
                                       "input_tokens_details": {"text_tokens": text, "image_tokens": image_in},
                                       "output_tokens_details": {"image_tokens": out_tokens, "text_tokens": 0}}
                    answer["output_format"] = fields.get("output_format", "png")
                payload = json.dumps(answer).encode()
                rec.update(status=200, billed=True, images=n, usage=answer.get("usage"))
                headers = {"openai-model": api.answered.get(model, model), "x-request-id": rec["id"]}
                if fault == "malformed":
                    rec["usage"] = None  # the client cannot read it
                    return self._send(200, payload[: len(payload) // 2], headers)
                if fault == "slow":
                    rec["usage"] = None  # the client gave up before it
                    time.sleep(api.slow_s)
                self._send(200, payload, headers)

        return Handler
