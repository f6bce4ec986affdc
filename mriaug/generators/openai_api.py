"""`openai`: variations of training images from OpenAI's image API (or any OpenAI-compatible server).

Two endpoints, chosen by the `endpoint` setting:
- `edit` (`/v1/images/edits`, the default) with `gpt-image-2` and a `prompt` (`DEFAULT_PROMPT`, written
  for this study). A source that needs several variations gets them from one request with `n` images
  (up to the `n` setting, 10 at most), so its image is uploaded once; the answer's images become pool
  lines of that source, in order.
- `variation` (`/v1/images/variations`) with `dall-e-2` at 256x256: the thesis's method. OpenAI retired
  DALL-E 2 (and the endpoint) in May 2026; a compatible server may still serve it.

The key and server come from the SDK's own environment variables, `OPENAI_API_KEY` and
`OPENAI_BASE_URL` (the `base_url` setting overrides the latter). The key is never a setting, so it
cannot land in `pool.json`; error texts are redacted before they are stored or printed. A model the
server refuses (404 `model_not_found`, or a 400 about the `model` parameter) stops the run with one
error naming the model and the models the server lists (`GET /v1/models`), when it lists them.

Requests run on `concurrency` threads. The SDK's own retries are off (`max_retries=0`) so that every
HTTP request is counted here: 429 and 5xx (and timeouts, connection drops and malformed 200 bodies)
are retried up to `max_attempts` times with exponential backoff that honours `Retry-After`; any other
error fails that source, which is recorded in `pool.json` under `failures` and reported at the end
(a rerun retries it).

Spend, two figures per request (see `Ledger`):
- the estimate: images asked for times the per-image price (`PRICES_USD`, or the `price_usd` setting).
  It is what `--dry-run` prints and what a request reserves against `--max-cost` before it is sent.
- the usage-based figure: GPT image models answer with token `usage` (input text and image tokens,
  output image tokens), which is what OpenAI bills; it is priced with `TOKEN_PRICES_USD_PER_1M` (or
  the `token_prices` setting). A billed answer without usage (DALL-E, some compatible servers, a cut-off
  body) and a timed-out request (the server may have made and billed the images) count at the estimate.
`pool.json` keeps both: `spend_usd` (usage-based) and `spend_estimate_usd`, with the token totals under
`tokens`; every pool line has its share as `cost_usd` / `cost_estimate_usd`. `max_cost_usd` caps the
larger of the pool's two running totals (across runs): a request is only sent when its estimate still
fits, so a run stops at the budget and a rerun with a higher budget continues where it stopped.

Provenance: each pool line records the request's settings (`params()`, the `n` of its request) and
the model the server answered with (`model_answered`: the body's `model`, else the `openai-model`
header; null when the server says neither), and the request id when the server sends one.
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import io
import math
import os
import random
import re
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
from ..data.pools import PoolWriter
from ..errors import GeneratorError, SettingError

# Price in USD per output image, by (model, size, quality); quality None for DALL-E. The estimate of
# `--dry-run` and the reservation against `--max-cost`; the spend recorded comes from `usage` when the
# server reports it. Sources: openai.com/api/pricing for dall-e-2 (checked 2024-05; unchanged until its
# retirement in May 2026), gpt-image-1 / gpt-image-1-mini (2025-10); gpt-image-1.5 per-image prices as
# listed by OpenAI-compatible resellers (2026-01); gpt-image-2 is token-priced, the figures are fal.ai's
# per-image estimates (2026-05), above what the token prices give for one low-quality 1024x1024 image
# plus its share of an uploaded one, so the estimate errs high. `price_usd` overrides (and is required
# for a model/size not listed here).
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
    # The 2.5 and 2.6 models bill the same token prices as gpt-image-2 and OpenAI publishes no per-image figure
    # for them (their tokens per image differ by quality); gpt-image-2's estimates stand in, which resellers say
    # are above what 2.5 costs per image, so the estimate errs high. `price_usd` overrides.
    **{(f"gpt-image-{v}-{tier}", "1024x1024", q): p for v in ("2.5", "2.6") for tier in ("flare", "sunburst")
       for q, p in (("low", 0.02), ("medium", 0.07), ("high", 0.19))},
}

# USD per 1M tokens of `usage`, by the model asked for; None where OpenAI publishes no price for that kind
# (a request with tokens of that kind then counts at the per-image estimate, and the run says so). Checked
# 2026-11-26 against the models GET /v1/models lists then:
# - gpt-image-2 (and its snapshot): text input $5, image input $8, image output $30, text output $10, as OpenAI's
#   pricing page lists them (quoted by xairouter.com and llmreference.com, 2026-11).
# - gpt-image-2.5-flare / -sunburst (snapshots -2026-09-08): text input $5, image input $8, image output $30,
#   "item for item the same as gpt-image-2" (OpenAI's pricing page as quoted by apifox.com and docs.apiyi.com,
#   2026-09-09); a text output price is not published for them: unknown.
# - gpt-image-2.6-flare / -sunburst (2026-11-05): the same text and image prices as 2.5 (docs.laozhang.ai,
#   "token prices match OpenAI and GPT Image 2.5", 2026-11-05); text output unknown.
# - gpt-image-1-mini: text input $2, image input $2.50, image output $8 (OpenAI's model page,
#   developers.openai.com/api/docs/models/gpt-image-1-mini); text output not listed: unknown.
# - gpt-image-1.5 (and -2025-12-16) and chatgpt-image-latest: no token prices found on OpenAI's pages: unknown
#   (their usage counts at the per-image estimate).
# `-s token_prices='{"input_image": 8, ...}'` overrides single entries (an unknown one too), or gives the prices
# of a model not listed here.
TOKEN_PRICES_DATE = "2026-11-26"
TOKEN_KINDS = ("input_text", "input_image", "output_image", "output_text")
Prices = dict[str, float | None]
_GPT_IMAGE_2: Prices = {"input_text": 5.0, "input_image": 8.0, "output_image": 30.0, "output_text": 10.0}
_GPT_IMAGE_25: Prices = {"input_text": 5.0, "input_image": 8.0, "output_image": 30.0, "output_text": None}
_UNKNOWN: dict[str, float | None] = dict.fromkeys(TOKEN_KINDS)
TOKEN_PRICES_USD_PER_1M: dict[str, dict[str, float | None]] = {
    "gpt-image-2": _GPT_IMAGE_2,
    "gpt-image-2-2026-04-21": _GPT_IMAGE_2,
    **{f"gpt-image-{v}-{tier}{snap}": _GPT_IMAGE_25 for v in ("2.5", "2.6") for tier in ("flare", "sunburst")
       for snap in ("", "-2026-09-08" if v == "2.5" else "")},
    "gpt-image-1-mini": {"input_text": 2.0, "input_image": 2.5, "output_image": 8.0, "output_text": None},
    "gpt-image-1.5": _UNKNOWN,
    "gpt-image-1.5-2025-12-16": _UNKNOWN,
    "chatgpt-image-latest": _UNKNOWN,
}
# Shutdown dates OpenAI's deprecations page announces (developers.openai.com/api/docs/deprecations, checked
# 2026-11-26): warned about by `synth --dry-run` and `mriaug doctor` even without a key. The server's own
# answer (the `shutdown_date` of GET /v1/models/{model}) takes precedence when it can be asked.
SHUTDOWN_DATES = {
    "gpt-image-1-mini": "2026-12-01",
    "gpt-image-1.5": "2026-12-01",
    "gpt-image-1.5-2025-12-16": "2026-12-01",
    "chatgpt-image-latest": "2026-12-01",
}

DEFAULT_ENDPOINT = "edit"
DEFAULT_MODEL = {"variation": "dall-e-2", "edit": "gpt-image-2"}
DEFAULT_SIZE = {"variation": "256x256", "edit": "1024x1024"}
# Written for this study: the variation must stay an axial slice of the same class, so it asks to keep
# what shows the dementia stage (atrophy) and to vary only what differs between patients' scans.
DEFAULT_PROMPT = (
    "Make a realistic variation of this axial brain MRI slice, as if it came from another patient's scan at "
    "the same slice level: keep the orientation, field of view and MRI contrast, and vary the anatomy and "
    "intensities only as much as real patients differ. Keep the degree of atrophy (ventricle size, sulcal "
    "width, hippocampal volume) as in the input, so the slice shows the same dementia stage. Grayscale on a "
    "black background; no text, labels, annotations or colour."
)
MAX_N = 10  # the API's limit on images per request, both endpoints
OUTPUT_FORMATS = ("png", "webp", "jpeg")
# API limits on the uploaded image: DALL-E 2 takes a square PNG under 4 MB, GPT image models under 50 MB.
UPLOAD_LIMIT_BYTES = {"variation": 4 * 1024 * 1024, "edit": 50 * 1024 * 1024}
VARIATION_SIZES = ("256x256", "512x512", "1024x1024")
# Error codes with which OpenAI-compatible servers refuse a model (besides a 400 whose `param` is "model").
MODEL_REFUSED_CODES = {"model_not_found", "invalid_model", "model_not_available"}


def redact(text: str, secret: str | None) -> str:
    """`text` with the API key (and any 'sk-...' token) masked, safe to store or print."""
    if secret:
        text = text.replace(secret, "***")
    return re.sub(r"sk-[A-Za-z0-9_\-]{8,}", "sk-***", text)


def tokens_of(usage: Any) -> dict[str, int] | None:
    """Token counts of an answer's `usage` by kind (`TOKEN_KINDS`); None when it has none. Without the
    input details all input counts as image tokens (the dearer kind); without the output details all
    output counts as image tokens (what the images endpoints produce)."""
    if usage is None:
        return None

    def whole(obj: Any, name: str) -> int:
        v = getattr(obj, name, None) if obj is not None else None
        return int(v) if isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 else 0

    ind, outd = getattr(usage, "input_tokens_details", None), getattr(usage, "output_tokens_details", None)
    t = {"input_text": whole(ind, "text_tokens"), "input_image": whole(ind, "image_tokens"),
         "output_image": whole(outd, "image_tokens"), "output_text": whole(outd, "text_tokens")}
    if ind is None:
        t["input_image"] = whole(usage, "input_tokens")
    if outd is None:
        t["output_image"] = whole(usage, "output_tokens")
    return t


def token_cost(tokens: dict[str, int], prices: dict[str, float | None]) -> float | None:
    """USD of these tokens; None when some kind with tokens has no known price."""
    if any(tokens.get(k, 0) and prices.get(k) is None for k in TOKEN_KINDS):
        return None
    return sum(tokens.get(k, 0) * (prices.get(k) or 0.0) for k in TOKEN_KINDS) / 1e6


def shutdown_date(model: str, base_url: str | None = None, timeout_s: float = 15.0) -> str | None:
    """A model's shutdown date: the server's `shutdown_date` (GET /v1/models/{model}) when a key is set and the
    server answers, else the date OpenAI's deprecations page announced (`SHUTDOWN_DATES`), else None."""
    if os.environ.get("OPENAI_API_KEY"):
        try:
            import openai

            m = openai.OpenAI(base_url=base_url, max_retries=0, timeout=timeout_s).models.retrieve(model)
            extra = m.model_extra or {}
            if "shutdown_date" in extra or getattr(m, "shutdown_date", None):
                date = getattr(m, "shutdown_date", None) or extra.get("shutdown_date")
                return str(date) if date else None
        except Exception:  # noqa: BLE001 - unreachable, refused or unlisted: fall back to the published dates
            pass
    return SHUTDOWN_DATES.get(model)


def shutdown_warning(model: str, date: str | None, today: datetime.date | None = None) -> str | None:
    """The warning for a model with a shutdown date (None without one): how long it is left, or that it is past."""
    if not date:
        return None
    today = today or datetime.date.today()
    try:
        left = (datetime.date.fromisoformat(str(date)[:10]) - today).days
    except ValueError:
        left = None
    when = (f"shut down on {date}: requests to it fail" if left is not None and left < 0 else
            f"shuts down on {date}" + (f" ({left} days from now)" if left is not None else "")
            + ": requests to it fail from then on")
    return (f"warning: OpenAI model {model!r} {when}, and a pool cannot be extended with it; choose a current "
            "model with -s model=NAME (GET /v1/models lists them)")


@dataclass
class Ledger:
    """Thread-safe request and spend accounting with budget reservations.

    `before_*` is the pool's spend before this run; `run_*` what this run spent (the estimate, and the
    usage-based figure), so a writer can add this run's spend to whatever the pool holds."""

    before_estimate: float = 0.0
    before_usage: float = 0.0
    max_cost: float | None = None
    run_estimate: float = 0.0
    run_usage: float = 0.0
    reserved: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def spent(self) -> float:
        """The larger of the pool's two running totals: what `--max-cost` caps."""
        return max(self.before_estimate + self.run_estimate, self.before_usage + self.run_usage)

    def reserve(self, amount: float) -> bool:
        with self.lock:
            # 1e-9: float sums of prices must not refuse a request that exactly fits.
            if self.max_cost is not None and self.spent() + self.reserved + amount > self.max_cost + 1e-9:
                return False
            self.reserved += amount
            self.counts["sent"] = self.counts.get("sent", 0) + 1
            return True

    def settle(self, outcome: str, reserved: float, estimate: float = 0.0, usage: float | None = None,
               tokens: dict[str, int] | None = None) -> None:
        """Release a reservation; a billed request (estimate > 0) adds its estimate and its usage-based
        cost (the estimate when the answer had no usage to price)."""
        with self.lock:
            self.reserved -= reserved
            if estimate > 0:
                self.run_estimate += estimate
                self.run_usage += estimate if usage is None else usage
                self.counts["billed"] = self.counts.get("billed", 0) + 1
                if usage is not None:
                    self.counts["usage"] = self.counts.get("usage", 0) + 1
            for k, v in (tokens or {}).items():
                self.tokens[k] = self.tokens.get(k, 0) + v
            self.counts[outcome] = self.counts.get(outcome, 0) + 1

    def run_spend(self) -> dict[str, Any]:
        """What this run spent: `spend_usd` (usage-based), `spend_estimate_usd`, `tokens`, `requests`."""
        with self.lock:
            return {"spend_usd": self.run_usage, "spend_estimate_usd": self.run_estimate,
                    "tokens": dict(self.tokens), "requests": dict(self.counts)}


def spend_before(meta: dict[str, Any]) -> dict[str, Any]:
    """The spend keys of pool.json as they are; a pool from before the usage-based figure recorded the
    estimate as `spend_usd`."""
    usage = float(meta.get("spend_usd", 0.0))
    return {"spend_usd": usage, "spend_estimate_usd": float(meta.get("spend_estimate_usd", usage)),
            "tokens": dict(meta.get("tokens") or {}), "requests": dict(meta.get("requests") or {})}


@dataclass
class Made:
    variation: int
    image: np.ndarray
    request: dict[str, Any]  # n, attempt, model_answered, id


@dataclass
class Outcome:
    source_index: int
    variations: list[int]
    made: list[Made] = field(default_factory=list)
    error: str | None = None
    budget: bool = False
    attempts: int = 0
    cost: float = 0.0  # usage-based, all attempts
    cost_estimate: float = 0.0
    fatal: bool = False  # the whole run must stop (the key or the model is refused)
    model_refused: bool = False
    unpriced_usage: bool = False

    @property
    def missing(self) -> list[int]:
        done = {m.variation for m in self.made}
        return [v for v in self.variations if v not in done]


@dataclass
class Tally:
    """A run's running count, shared by the loop that sends requests and the booking of their outcomes."""
    failures: dict[str, Any]
    generated: int = 0
    since_flush: int = 0
    budget_hit: bool = False
    unpriced: bool = False
    fatal: Outcome | None = None  # the first outcome that stops the whole run


class OpenAIGenerator:
    name = "openai"

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, model: str | None = None, size: str | None = None,
                 prompt: str = DEFAULT_PROMPT, quality: str | None = None, output_format: str = "png",
                 n: int = MAX_N, base_url: str | None = None, concurrency: int = 4, timeout_s: float = 120.0,
                 max_attempts: int = 6, backoff_s: float = 2.0, max_backoff_s: float = 120.0,
                 price_usd: float | None = None, token_prices: dict[str, float] | None = None,
                 max_cost_usd: float | None = None, flush_every: int = 20):
        if endpoint not in DEFAULT_MODEL:
            raise SettingError(f"openai generator: endpoint {endpoint!r} must be 'edit' or 'variation'")
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
        self.dalle = self.model.startswith("dall-e")
        self.quality = quality if quality is not None else (None if self.dalle else "low")
        if output_format not in OUTPUT_FORMATS:
            raise SettingError(f"openai generator: output_format {output_format!r} must be one of {OUTPUT_FORMATS}")
        self.output_format = output_format
        self.n = checks.whole(n, "openai generator: n (images per request)", lo=1, hi=MAX_N)
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
            self.price = checks.non_negative(price_usd, "openai generator: price_usd")
        elif (self.model, self.size, self.quality) in PRICES_USD:
            self.price = PRICES_USD[(self.model, self.size, self.quality)]
        else:
            known = ", ".join(f"{m} {s} {q or ''}".strip() for m, s, q in PRICES_USD)
            raise SettingError(f"openai generator: no price known for model {self.model!r} at size {self.size} "
                               f"quality {self.quality}; pass the setting price_usd=<USD per image> (known: {known})")
        self.token_prices = self._token_prices(token_prices)
        self.last_summary: dict[str, Any] = {}

    def _token_prices(self, override: Any) -> dict[str, float | None] | None:
        """USD per 1M tokens by kind for this model: the table's, with `override` on top; None when no kind has
        a price, and None for a kind whose price is not published (usage of such a kind is counted at the
        estimate, and the run says so)."""
        base = dict(TOKEN_PRICES_USD_PER_1M.get(self.model, {}))
        if override is not None:
            if not isinstance(override, dict):
                raise SettingError("openai generator: token_prices must be a table of USD per 1M tokens, e.g. "
                                   "-s token_prices='{\"input_text\": 5, \"input_image\": 8, \"output_image\": 30, "
                                   f"\"output_text\": 10}}', got {override!r}")
            unknown = sorted(set(override) - set(TOKEN_KINDS))
            if unknown:
                raise SettingError(f"openai generator: token_prices: unknown kind(s) {unknown}; "
                                   f"known: {', '.join(TOKEN_KINDS)}")
            for k, v in override.items():
                base[k] = checks.non_negative(v, f"openai generator: token_prices {k}")
        if not base or all(v is None for v in base.values()):
            return None
        missing = [k for k in TOKEN_KINDS if k not in base]
        if missing:
            raise SettingError(f"openai generator: token_prices for {self.model!r} lacks {missing}; give all of "
                               f"{', '.join(TOKEN_KINDS)} (USD per 1M tokens)")
        return base

    def params(self) -> dict[str, Any]:
        p: dict[str, Any] = {"endpoint": self.endpoint, "model": self.model, "size": self.size,
                             "price_usd": self.price, "token_prices_usd_per_1m": self.token_prices}
        if self.endpoint == "edit":
            p["prompt"] = self.prompt
        if not self.dalle:
            p["quality"] = self.quality
            p["output_format"] = self.output_format
        return p

    def requests_for(self, todo: Iterable[tuple[int, int]]) -> list[tuple[int, list[int]]]:
        """(source, variations) per request: a source's variations in requests of at most `n` images."""
        by_source: dict[int, list[int]] = {}
        for src, var in todo:
            by_source.setdefault(src, []).append(var)
        return [(src, vs[i:i + self.n]) for src, vs in by_source.items() for i in range(0, len(vs), self.n)]

    def estimate(self, todo: list[tuple[int, int]], spent: float = 0.0) -> dict[str, Any]:
        images, requests = len(todo), len(self.requests_for(todo))
        path = "/v1/images/variations" if self.endpoint == "variation" else "/v1/images/edits"
        cost = images * self.price
        text = (f"{requests} request(s) for {images} image(s) to {path} ({self.model}, {self.size}"
                f"{', quality ' + self.quality if self.quality else ''}, up to {self.n} per request) at "
                f"${self.price:.4f} per image: about ${cost:.2f}; pool spend so far ${spent:.2f}")
        if self.max_cost_usd is not None:
            text += f"; --max-cost ${self.max_cost_usd:.2f}"
        out = {"requests": requests, "images": images, "price_usd": self.price, "cost_usd": cost, "text": text}
        warning = shutdown_warning(self.model, self.shutdown_date())
        if warning:
            out["warning"] = warning
        return out

    def shutdown_date(self) -> str | None:
        """This model's shutdown date (`shutdown_date`)."""
        return shutdown_date(self.model, self.base_url, min(self.timeout_s, 15.0))

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

    def _call(self, client: Any, png: bytes, name: str, n: int) -> Any:
        """The raw answer (headers and body) of one request for `n` images."""
        f = (name, png, "image/png")
        if self.endpoint == "variation":
            with warnings.catch_warnings():
                # The SDK marks the endpoint deprecated (DALL-E 2 retired); compatible servers still serve it.
                warnings.simplefilter("ignore", DeprecationWarning)
                return client.images.with_raw_response.create_variation(
                    image=f, model=self.model, n=n, size=self.size, response_format="b64_json")
        kw: dict[str, Any] = {"image": f, "prompt": self.prompt, "model": self.model, "n": n, "size": self.size}
        if self.dalle:
            kw["response_format"] = "b64_json"  # GPT image models always answer b64_json and reject this
        else:
            kw["quality"] = self.quality
            kw["output_format"] = self.output_format
        return client.images.with_raw_response.edit(**kw)

    @staticmethod
    def _decode(item: Any, resolution: int) -> np.ndarray:
        b64 = getattr(item, "b64_json", None)
        if not b64:
            raise ValueError("an image without b64_json")
        raw = base64.b64decode(b64, validate=True)
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

    @staticmethod
    def _refuses_model(e: Any) -> bool:
        code = getattr(e, "code", None)
        return e.status_code in (400, 404) and (code in MODEL_REFUSED_CODES or getattr(e, "param", None) == "model")

    def _one(self, client: Any, ledger: Ledger, image: np.ndarray, src: int, variations: list[int], resolution: int,
             stop: threading.Event, key: str | None) -> Outcome:
        """The images of `variations` of one source: one request for all of them, again for the ones an
        answer lacked, with retries."""
        import openai

        out = Outcome(src, list(variations))
        png = self._upload(image)
        unreachable = False
        for attempt in range(1, self.max_attempts + 1):
            unreachable = False
            want = out.missing
            if stop.is_set():
                out.budget = True
                return out
            estimate = len(want) * self.price
            if not ledger.reserve(estimate):
                out.budget = True
                return out
            out.attempts = attempt
            headers = None
            try:
                raw = self._call(client, png, f"{src:06d}_{want[0]}.png", len(want))
                resp = raw.parse()
            except openai.APITimeoutError:
                # The server may have made (and billed) the images: count them at the estimate.
                ledger.settle("timeout", estimate, estimate)
                out.cost += estimate
                out.cost_estimate += estimate
                out.error = f"timed out after {self.timeout_s:g}s"
            except openai.APIStatusError as e:
                code = e.status_code
                retry = code == 429 or code >= 500 or code in (408, 409)
                ledger.settle(f"http_{code}", estimate)
                out.error = f"HTTP {code}: {e.message}"
                if not retry:
                    out.error = redact(out.error, key)
                    # The same answer for every source: stop instead of failing them all.
                    if code in (401, 403, 404) or self._refuses_model(e):
                        out.fatal = True
                        out.model_refused = self._refuses_model(e)
                        stop.set()
                    return out
                headers = e.response.headers
            except openai.APIConnectionError as e:
                ledger.settle("connection_error", estimate)
                out.error = f"connection error: {e}"
                unreachable = True
                if attempt < self.max_attempts:
                    stop.wait(self._delay(attempt, None))
                continue
            except (openai.APIResponseValidationError, ValueError) as e:
                ledger.settle("malformed", estimate, estimate)
                out.cost += estimate
                out.cost_estimate += estimate
                out.error = f"malformed response: {e}"
            else:
                self._take(out, raw, resp, want, attempt, resolution, ledger, estimate)
                if not out.missing:
                    out.error = None
                    return out
            if attempt < self.max_attempts:
                stop.wait(self._delay(attempt, headers))
        out.error = redact(f"gave up after {self.max_attempts} attempts; last error: {out.error}", key)
        if unreachable:  # the server cannot be reached: every other source would wait just as long
            out.fatal = True
            stop.set()
        return out

    def _take(self, out: Outcome, raw: Any, resp: Any, want: list[int], attempt: int, resolution: int,
              ledger: Ledger, estimate: float) -> None:
        """Book a 200 answer: its spend, and its decodable images as the variations `want`, in order."""
        tokens = tokens_of(getattr(resp, "usage", None))
        usage = None
        if tokens is not None:
            usage = token_cost(tokens, self.token_prices) if self.token_prices is not None else None
            out.unpriced_usage = usage is None
        images, bad = [], 0
        for item in list(getattr(resp, "data", None) or [])[: len(want)]:
            try:
                images.append(self._decode(item, resolution))
            except Exception:  # noqa: BLE001 - any undecodable image is a malformed part of the answer
                bad += 1
        outcome = "ok" if len(images) == len(want) else "malformed"
        ledger.settle(outcome, estimate, estimate, usage, tokens)
        out.cost += estimate if usage is None else usage
        out.cost_estimate += estimate
        answered = getattr(resp, "model", None) or raw.headers.get("openai-model")
        request = {"n": len(want), "attempt": attempt,
                   "model_answered": answered if isinstance(answered, str) else None,
                   "id": raw.headers.get("x-request-id")}
        for var, im in zip(want, images, strict=False):
            out.made.append(Made(var, im, request))
        if outcome != "ok":
            out.error = f"malformed response: {len(images)} of {len(want)} image(s) usable ({bad} undecodable)"

    # --- the pool ------------------------------------------------------------------------------

    def _offered(self, client: Any) -> str:
        """The models the server lists (image models first, when it names any), for an error text."""
        try:
            ids = sorted(str(m.id) for m in client.models.list())
        except Exception as e:  # noqa: BLE001 - any failure only means we cannot say what it offers
            return f"it does not list its models (GET /models: {type(e).__name__})"
        if not ids:
            return "it lists no models"
        image = [i for i in ids if "image" in i or i.startswith("dall-e")]
        shown = image or ids
        more = f" and {len(shown) - 30} more" if len(shown) > 30 else ""
        return f"it offers {', '.join(shown[:30])}{more}"

    def run(self, writer: PoolWriter, todo: Iterable[tuple[int, int]],
            progress: Callable[[int], None] = lambda n: None) -> dict[str, Any]:
        todo = list(todo)
        key = os.environ.get("OPENAI_API_KEY")
        client = self._client()
        meta = writer.meta
        before = spend_before(meta)
        ledger = Ledger(before_estimate=before["spend_estimate_usd"], before_usage=before["spend_usd"],
                        max_cost=self.max_cost_usd)
        tally = Tally(failures=dict(meta.get("failures", {})))
        stop = threading.Event()

        def record() -> None:
            # This run's spend, added to pool.json's figures as they are on disk, under the pool lock.
            writer.set_run_spend(ledger.run_spend())
            meta["failures"] = tally.failures
            writer.flush()

        try:
            self._request_all(client, ledger, writer, todo, stop, key, tally, record, progress)
        except BaseException:
            stop.set()  # wakes retry sleeps; in-flight requests end within their timeout
            raise
        finally:
            record()  # after the pool has shut down, so the spend of in-flight requests is counted
        if tally.fatal is not None:
            raise self._stopped(tally.fatal, client, key, tally.generated)
        summary = self._summary(writer, todo, ledger, tally)
        self.last_summary = summary
        return summary

    def _request_all(self, client: Any, ledger: Ledger, writer: PoolWriter, todo: list[tuple[int, int]],
                     stop: threading.Event, key: str | None, tally: Tally, record: Callable[[], None],
                     progress: Callable[[int], None]) -> None:
        """Every source's request on `concurrency` threads, booking each outcome as it comes; no new request
        after the budget is hit or a fatal answer."""
        resolution = writer.dataset.resolution
        pending: dict[Future[Outcome], tuple[int, list[int]]] = {}
        it = iter(self.requests_for(todo))
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="openai") as pool:
            while True:
                while not tally.budget_hit and tally.fatal is None and len(pending) < self.concurrency:
                    nxt = next(it, None)
                    if nxt is None:
                        break
                    src, variations = nxt
                    fut = pool.submit(self._one, client, ledger, writer.dataset.train_x[src], src, variations,
                                      resolution, stop, key)
                    pending[fut] = nxt
                if not pending:
                    break
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    src, _vars = pending.pop(fut)
                    self._book(fut.result(), src, writer, tally, progress)
                if tally.since_flush >= self.flush_every:
                    record()
                    tally.since_flush = 0

    def _book(self, o: Outcome, src: int, writer: PoolWriter, tally: Tally, progress: Callable[[int], None]) -> None:
        """One source's outcome into the pool: its made images (each with its share of the cost) and its
        failures."""
        failures = tally.failures
        tally.unpriced = tally.unpriced or o.unpriced_usage
        share = len(o.made) or len(o.missing) or 1
        for m in o.made:
            params = {**self.params(), "variation": m.variation, "attempts": o.attempts,
                      "request": m.request, "model_answered": m.request["model_answered"],
                      "cost_usd": round(o.cost / share, 6),
                      "cost_estimate_usd": round(o.cost_estimate / share, 6)}
            writer.add(m.image, src, m.variation, self.name, params)
            failures.pop(f"{src}:{m.variation}", None)
            tally.generated += 1
            tally.since_flush += 1
            progress(1)
        # Made images carry the cost; a source with none made leaves it on its failures.
        left_cost = 0.0 if o.made else o.cost / share
        for var in o.missing:
            tag = f"{src}:{var}"
            if o.fatal:
                continue
            if o.budget:
                tally.budget_hit = True
                if left_cost:
                    failures[tag] = {"error": "stopped at the budget", "cost_usd": round(left_cost, 6)}
            else:
                failures[tag] = {"error": o.error, "attempts": o.attempts,
                                 "cost_usd": round(left_cost, 6)}
                progress(1)
        if o.fatal and tally.fatal is None:
            tally.fatal = o

    def _stopped(self, fatal: Outcome, client: Any, key: str | None, generated: int) -> GeneratorError:
        """The error that ends a run whose server would fail every request the same way."""
        base = self.base_url or os.environ.get("OPENAI_BASE_URL") or "api.openai.com"
        if fatal.model_refused:
            return GeneratorError(
                f"openai generator: the server at {base} refused model {self.model!r} ({fatal.error}); "
                f"{redact(self._offered(client), key)}. Choose one with -s model=NAME (with -s price_usd=... "
                f"if it has no known price). {generated} image(s) made before it; a rerun continues.")
        return GeneratorError(f"openai generator: stopped, the server at {base} would fail every request the same "
                              f"way ({fatal.error}); check OPENAI_API_KEY, OPENAI_BASE_URL / base_url and the "
                              f"model ({self.model}). {generated} image(s) made before it; a rerun continues.")

    def _summary(self, writer: PoolWriter, todo: list[tuple[int, int]], ledger: Ledger,
                 tally: Tally) -> dict[str, Any]:
        """What the run made, failed and spent, with the budget's message when it stopped there."""
        meta, failures = writer.meta, tally.failures
        done = writer.done()
        left = sum(1 for t in todo if t not in done and f"{t[0]}:{t[1]}" not in failures)
        run = ledger.run_spend()
        summary: dict[str, Any] = {
            "generated": tally.generated,
            "failed": {k: v["error"] for k, v in failures.items()},
            "spend_usd": meta["spend_usd"],
            "spend_estimate_usd": meta["spend_estimate_usd"],
            "run_spend_usd": round(run["spend_usd"], 6),
            "run_spend_estimate_usd": round(run["spend_estimate_usd"], 6),
            "requests": meta["requests"],
            "stopped_at_budget": tally.budget_hit,
        }
        if tally.unpriced:
            summary["warning"] = (f"the server reported token usage, but no token prices are known for {self.model!r} "
                                  "(for every kind it used): "
                                  "those requests count at the per-image estimate; pass -s token_prices='{...}'")
        if tally.budget_hit:
            summary["message"] = (
                f"stopped at the budget: pool spend ${ledger.spent():.4f} (the larger of usage-based "
                f"${meta['spend_usd']:.4f} and estimate ${meta['spend_estimate_usd']:.4f}) of --max-cost "
                f"${self.max_cost_usd:.4f} (the next request reserves up to ${self.n * self.price:.4f}); "
                f"{max(left, 0)} image(s) not made. Rerun with a higher --max-cost to continue where this run stopped."
            )
        return summary
