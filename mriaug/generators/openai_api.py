"""`openai`: variations of training images from OpenAI's image API (or any OpenAI-compatible server).

Two endpoints, chosen by the `endpoint` setting:
- `variation` (`/v1/images/variations`) with `dall-e-2` at 256x256, one variation per request: the
  thesis's method. OpenAI retired DALL-E 2 in May 2026; a compatible server may still serve it.
- `edit` (`/v1/images/edits`) with a current GPT image model and a `prompt`.

The key and server come from the SDK's own environment variables, `OPENAI_API_KEY` and
`OPENAI_BASE_URL` (the `base_url` setting overrides the latter). The key is never a setting, so it
cannot land in `pool.json`; error texts are redacted before they are stored or printed.

Requests run on `concurrency` threads. The SDK's own retries are off (`max_retries=0`) so that every
HTTP request is counted here: 429 and 5xx (and timeouts, connection drops and malformed 200 bodies)
are retried up to `max_attempts` times with exponential backoff that honours `Retry-After`; any other
error fails that source, which is recorded in `pool.json` under `failures` and reported at the end
(a rerun retries it). Spend is counted per request: every HTTP 200 is billed, and so is every
timed-out request (the server may have generated the image and charged for it), so the recorded
spend is an upper bound on the bill, never below it. `max_cost_usd` caps the pool's total
`spend_usd` (across runs): a request is only sent when its price still fits, so a run stops at the
budget and a rerun with a higher budget continues where it stopped.
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import io
import math
import os
import random
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from .. import checks
from ..errors import GeneratorError, SettingError
from ..pools import PoolWriter

# Price in USD per output image, by (model, size, quality); quality None for DALL-E.
# Sources: openai.com/api/pricing for dall-e-2 (checked 2024-05; unchanged until its retirement in May 2026),
# gpt-image-1 / gpt-image-1-mini (2025-10); gpt-image-1.5 per-image prices as listed by OpenAI-compatible
# resellers (2026-01); gpt-image-2 is token-priced, the figures are fal.ai's per-image estimates (2026-05).
# Edits also bill the input image as tokens, so for GPT image models these are lower bounds.
# They are settings: pass `price_usd` to override (required for a model/size not listed here).
PRICES_USD: dict[tuple[str, str, str | None], float] = {
    ("dall-e-2", "256x256", None): 0.016,
    ("dall-e-2", "512x512", None): 0.018,
    ("dall-e-2", "1024x1024", None): 0.020,
    ("gpt-image-1", "1024x1024", "low"): 0.011,
    ("gpt-image-1", "1024x1024", "medium"): 0.042,
    ("gpt-image-1", "1024x1024", "high"): 0.167,
    ("gpt-image-1-mini", "1024x1024", "low"): 0.005,
    ("gpt-image-1-mini", "1024x1024", "medium"): 0.011,
    ("gpt-image-1-mini", "1024x1024", "high"): 0.036,
    ("gpt-image-1.5", "1024x1024", "low"): 0.009,
    ("gpt-image-1.5", "1024x1024", "medium"): 0.034,
    ("gpt-image-1.5", "1024x1024", "high"): 0.133,
    ("gpt-image-2", "1024x1024", "low"): 0.02,
    ("gpt-image-2", "1024x1024", "medium"): 0.07,
    ("gpt-image-2", "1024x1024", "high"): 0.19,
}

DEFAULT_MODEL = {"variation": "dall-e-2", "edit": "gpt-image-2"}
DEFAULT_SIZE = {"variation": "256x256", "edit": "1024x1024"}
DEFAULT_PROMPT = (
    "A realistic variation of this axial brain MRI slice: the same anatomy, orientation, contrast and "
    "field of view, with natural anatomical variation. Grayscale, no text, labels or annotations."
)
# API limits on the uploaded image: DALL-E 2 takes a square PNG under 4 MB, GPT image models under 50 MB.
UPLOAD_LIMIT_BYTES = {"variation": 4 * 1024 * 1024, "edit": 50 * 1024 * 1024}
VARIATION_SIZES = ("256x256", "512x512", "1024x1024")


def redact(text: str, secret: str | None) -> str:
    """`text` with the API key (and any 'sk-...' token) masked, safe to store or print."""
    if secret:
        text = text.replace(secret, "***")
    import re

    return re.sub(r"sk-[A-Za-z0-9_\-]{8,}", "sk-***", text)


@dataclass
class Ledger:
    """Thread-safe request and spend accounting with budget reservations."""

    price: float
    spent: float = 0.0  # spend before this run plus billed requests of this run
    max_cost: float | None = None
    reserved: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reserve(self) -> bool:
        with self.lock:
            # 1e-9: float sums of prices must not refuse a request that exactly fits.
            if self.max_cost is not None and self.spent + self.reserved + self.price > self.max_cost + 1e-9:
                return False
            self.reserved += self.price
            self.counts["sent"] = self.counts.get("sent", 0) + 1
            return True

    def settle(self, outcome: str, billed: bool) -> None:
        with self.lock:
            self.reserved -= self.price
            if billed:
                self.spent += self.price
                self.counts["billed"] = self.counts.get("billed", 0) + 1
            self.counts[outcome] = self.counts.get(outcome, 0) + 1


@dataclass
class Outcome:
    source_index: int
    variation: int
    image: np.ndarray | None = None
    error: str | None = None
    budget: bool = False
    attempts: int = 0
    cost: float = 0.0
    fatal: bool = False  # the whole run must stop (the key or the model is refused)


class OpenAIGenerator:
    name = "openai"

    def __init__(self, endpoint: str = "variation", model: str | None = None, size: str | None = None,
                 prompt: str = DEFAULT_PROMPT, quality: str | None = None, base_url: str | None = None,
                 concurrency: int = 4, timeout_s: float = 120.0, max_attempts: int = 6,
                 backoff_s: float = 2.0, max_backoff_s: float = 120.0, price_usd: float | None = None,
                 max_cost_usd: float | None = None, flush_every: int = 20):
        if endpoint not in DEFAULT_MODEL:
            raise SettingError(f"openai generator: endpoint {endpoint!r} must be 'variation' or 'edit'")
        self.endpoint = endpoint
        self.model = model or DEFAULT_MODEL[endpoint]
        self.size = size or DEFAULT_SIZE[endpoint]
        if endpoint == "variation" and self.size not in VARIATION_SIZES:
            raise SettingError(f"openai generator: size {self.size!r} for variations must be one of {VARIATION_SIZES}")
        w, _, h = self.size.partition("x")
        if not (w.isdigit() and w == h):
            raise SettingError(f"openai generator: size {self.size!r} must be square, e.g. 1024x1024")
        self.px = int(w)
        self.prompt = prompt
        self.quality = quality if quality is not None else (None if self.model.startswith("dall-e") else "low")
        self.base_url = base_url
        checks.positive_int(concurrency, "openai generator: concurrency")
        checks.positive_int(max_attempts, "openai generator: max_attempts")
        for key, value in (("timeout_s", timeout_s), ("backoff_s", backoff_s), ("max_backoff_s", max_backoff_s)):
            checks.non_negative(value, f"openai generator: {key}")
        self.concurrency, self.timeout_s, self.max_attempts = int(concurrency), float(timeout_s), int(max_attempts)
        self.backoff_s, self.max_backoff_s = float(backoff_s), float(max_backoff_s)
        self.max_cost_usd = None if max_cost_usd is None else float(max_cost_usd)
        checks.positive_int(flush_every, "openai generator: flush_every")
        self.flush_every = flush_every
        if price_usd is not None:
            self.price = float(price_usd)
        elif (self.model, self.size, self.quality) in PRICES_USD:
            self.price = PRICES_USD[(self.model, self.size, self.quality)]
        else:
            known = ", ".join(f"{m} {s} {q or ''}".strip() for m, s, q in PRICES_USD)
            raise SettingError(f"openai generator: no price known for model {self.model!r} at size {self.size} "
                             f"quality {self.quality}; pass the setting price_usd=<USD per image> (known: {known})")
        self.last_summary: dict[str, Any] = {}

    def params(self) -> dict[str, Any]:
        p: dict[str, Any] = {"endpoint": self.endpoint, "model": self.model, "size": self.size,
                             "price_usd": self.price}
        if self.endpoint == "edit":
            p["prompt"] = self.prompt
            p["quality"] = self.quality
        return p

    def estimate(self, todo: list[tuple[int, int]], spent: float = 0.0) -> dict[str, Any]:
        n = len(todo)
        path = "/v1/images/variations" if self.endpoint == "variation" else "/v1/images/edits"
        cost = n * self.price
        text = (f"{n} request(s) to {path} ({self.model}, {self.size}"
                f"{', quality ' + self.quality if self.quality else ''}) at ${self.price:.4f} each: "
                f"about ${cost:.2f}; pool spend so far ${spent:.2f}")
        if self.max_cost_usd is not None:
            text += f"; --max-cost ${self.max_cost_usd:.2f}"
        return {"requests": n, "price_usd": self.price, "cost_usd": cost, "text": text}

    # --- one request ---------------------------------------------------------------------------

    def _client(self) -> Any:
        import openai

        if not os.environ.get("OPENAI_API_KEY"):
            raise SettingError("openai generator: set the environment variable OPENAI_API_KEY (the key is read "
                             "from the environment only)")
        # Our own loop retries (and counts) every request; the timeout bounds a slow answer.
        return openai.OpenAI(base_url=self.base_url, max_retries=0, timeout=self.timeout_s)

    def _upload(self, image: np.ndarray) -> bytes:
        # Square RGBA PNG at the request size: DALL-E 2 accepts RGBA/LA/L, GPT image models any PNG.
        im = Image.fromarray(image).convert("L").resize((self.px, self.px), Image.Resampling.BICUBIC).convert("RGBA")
        buf = io.BytesIO()
        im.save(buf, format="PNG", optimize=True)
        data = buf.getvalue()
        if len(data) > UPLOAD_LIMIT_BYTES[self.endpoint]:
            raise ValueError(f"PNG of {len(data)} bytes exceeds the {self.endpoint} upload limit")
        return data

    def _call(self, client: Any, png: bytes, name: str) -> Any:
        f = (name, png, "image/png")
        if self.endpoint == "variation":
            with warnings.catch_warnings():
                # The SDK marks the endpoint deprecated (DALL-E 2 retired); compatible servers still serve it.
                warnings.simplefilter("ignore", DeprecationWarning)
                return client.images.create_variation(image=f, model=self.model, n=1, size=self.size,
                                                      response_format="b64_json")
        kw: dict[str, Any] = {"image": f, "prompt": self.prompt, "model": self.model, "n": 1, "size": self.size}
        if self.quality:
            kw["quality"] = self.quality
        if self.model.startswith("dall-e"):
            kw["response_format"] = "b64_json"  # GPT image models always answer b64_json and reject this
        return client.images.edit(**kw)

    @staticmethod
    def _decode(resp: Any, resolution: int) -> np.ndarray:
        data = getattr(resp, "data", None)
        if not data or not getattr(data[0], "b64_json", None):
            raise ValueError("response has no data[0].b64_json")
        raw = base64.b64decode(data[0].b64_json, validate=True)
        with Image.open(io.BytesIO(raw)) as decoded:
            im = decoded.convert("L")
            if im.size != (resolution, resolution):
                im = im.resize((resolution, resolution), Image.Resampling.LANCZOS)
            return np.asarray(im, dtype=np.uint8).copy()

    def _delay(self, attempt: int, headers: Any) -> float:
        wait_s = self._retry_after(headers) if headers is not None else None
        # A header we cannot use (absent, unparseable, in the past, NaN) means the normal backoff.
        if wait_s is None or not math.isfinite(wait_s) or wait_s < 0:
            wait_s = self.backoff_s * 2 ** (attempt - 1) * (0.5 + random.random())  # jitter spreads threads
        return min(wait_s, self.max_backoff_s)

    @staticmethod
    def _retry_after(headers: Any) -> float | None:
        """Seconds the server asks to wait: `retry-after-ms`, or `retry-after` as seconds or an HTTP
        date; None when neither is there or usable (a server may send anything, e.g. "soon")."""
        ms = headers.get("retry-after-ms")
        if ms is not None:
            try:
                return float(ms) / 1000
            except ValueError:
                pass
        ra = headers.get("retry-after")
        if not ra:
            return None
        try:
            return float(ra)
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(ra)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT; without this, timestamp() would assume local time
            when = when.replace(tzinfo=datetime.UTC)
        return when.timestamp() - time.time()

    def _one(self, client: Any, ledger: Ledger, image: np.ndarray, src: int, var: int, resolution: int,
             stop: threading.Event, key: str | None) -> Outcome:
        import openai

        out = Outcome(src, var)
        png = self._upload(image)
        unreachable = False
        for attempt in range(1, self.max_attempts + 1):
            unreachable = False
            if stop.is_set():
                out.budget = True
                return out
            if not ledger.reserve():
                out.budget = True
                return out
            out.attempts = attempt
            headers = None
            try:
                resp = self._call(client, png, f"{src:06d}_{var}.png")
            except openai.APITimeoutError:
                ledger.settle("timeout", billed=True)  # the server may have made (and billed) the image
                out.cost += ledger.price
                out.error = f"timed out after {self.timeout_s:g}s"
            except openai.APIStatusError as e:
                code = e.status_code
                retry = code == 429 or code >= 500 or code in (408, 409)
                ledger.settle(f"http_{code}", billed=False)
                out.error = f"HTTP {code}: {e.message}"
                if not retry:
                    out.error = redact(out.error, key)
                    if code in (401, 403, 404):  # same answer for every source: stop instead of failing them all
                        out.fatal = True
                        stop.set()
                    return out
                headers = e.response.headers
            except openai.APIConnectionError as e:
                ledger.settle("connection_error", billed=False)
                out.error = f"connection error: {e}"
                unreachable = True
                if attempt < self.max_attempts:
                    stop.wait(self._delay(attempt, None))
                continue
            except (openai.APIResponseValidationError, ValueError) as e:
                ledger.settle("malformed", billed=True)
                out.cost += ledger.price
                out.error = f"malformed response: {e}"
            else:
                out.cost += ledger.price
                try:
                    out.image = self._decode(resp, resolution)
                except Exception as e:  # noqa: BLE001 - any undecodable body is a malformed answer
                    ledger.settle("malformed", billed=True)
                    out.error = f"malformed response: {type(e).__name__}: {e}"
                else:
                    ledger.settle("ok", billed=True)
                    out.error = None
                    return out
            if attempt < self.max_attempts:
                stop.wait(self._delay(attempt, headers))
        out.error = redact(f"gave up after {self.max_attempts} attempts; last error: {out.error}", key)
        if unreachable:  # the server cannot be reached: every other source would wait just as long
            out.fatal = True
            stop.set()
        return out

    # --- the pool ------------------------------------------------------------------------------

    def run(self, writer: PoolWriter, todo: Iterable[tuple[int, int]],
            progress: Callable[[int], None] = lambda n: None) -> dict[str, Any]:
        todo = list(todo)
        key = os.environ.get("OPENAI_API_KEY")
        client = self._client()
        meta = writer.meta
        spent_before = float(meta.get("spend_usd", 0.0))
        ledger = Ledger(price=self.price, spent=spent_before, max_cost=self.max_cost_usd)
        failures: dict[str, Any] = dict(meta.get("failures", {}))
        stop = threading.Event()
        resolution = writer.dataset.resolution
        generated, budget_hit, since_flush = 0, False, 0
        counts_before = dict(meta.get("requests", {}))

        def record() -> None:
            writer.set_run_spend(ledger.spent - spent_before)  # added to pool.json's spend under the pool lock
            meta["requests"] = {k: counts_before.get(k, 0) + ledger.counts.get(k, 0)
                                for k in sorted(set(counts_before) | set(ledger.counts))}
            meta["failures"] = failures
            writer.flush()

        pending: dict[Future[Outcome], tuple[int, int]] = {}
        it = iter(todo)
        fatal: str | None = None
        try:
            with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="openai") as pool:
                while True:
                    while not budget_hit and fatal is None and len(pending) < self.concurrency:
                        nxt = next(it, None)
                        if nxt is None:
                            break
                        src, var = nxt
                        fut = pool.submit(self._one, client, ledger, writer.dataset.train_x[src], src, var,
                                          resolution, stop, key)
                        pending[fut] = nxt
                    if not pending:
                        break
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        src, var = pending.pop(fut)
                        o = fut.result()
                        tag = f"{src}:{var}"
                        if o.image is not None:
                            params = {**self.params(), "variation": var, "attempts": o.attempts,
                                      "cost_usd": round(o.cost, 6)}
                            writer.add(o.image, src, var, self.name, params)
                            failures.pop(tag, None)
                            generated += 1
                            since_flush += 1
                            progress(1)
                        elif o.fatal:
                            fatal = fatal or o.error
                        elif o.budget:
                            budget_hit = True
                            if o.cost:
                                failures[tag] = {"error": "stopped at the budget", "cost_usd": round(o.cost, 6)}
                        else:
                            failures[tag] = {"error": o.error, "attempts": o.attempts, "cost_usd": round(o.cost, 6)}
                            progress(1)
                    if since_flush >= self.flush_every:
                        record()
                        since_flush = 0
        except BaseException:
            stop.set()  # wakes retry sleeps; in-flight requests end within their timeout
            raise
        finally:
            record()  # after the pool has shut down, so the spend of in-flight requests is counted
        if fatal is not None:
            base = self.base_url or os.environ.get("OPENAI_BASE_URL") or "api.openai.com"
            raise GeneratorError(f"openai generator: stopped, the server at {base} would fail every request the same "
                             f"way ({fatal}); check OPENAI_API_KEY, OPENAI_BASE_URL / base_url and the model "
                             f"({self.model}). {generated} image(s) made before it; a rerun continues.")
        left = len(todo) - generated - sum(1 for t in todo if f"{t[0]}:{t[1]}" in failures)
        summary: dict[str, Any] = {
            "generated": generated,
            "failed": {k: v["error"] for k, v in failures.items()},
            "spend_usd": meta["spend_usd"],
            "requests": meta["requests"],
            "stopped_at_budget": budget_hit,
        }
        if budget_hit:
            summary["message"] = (
                f"stopped at the budget: pool spend ${ledger.spent:.4f} of --max-cost ${self.max_cost_usd:.4f} "
                f"(the next request costs ${self.price:.4f}); {max(left, 0)} image(s) not made. "
                "Rerun with a higher --max-cost to continue where this run stopped."
            )
        self.last_summary = summary
        return summary
