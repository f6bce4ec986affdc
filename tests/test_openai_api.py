"""The `openai` generator with the real `openai` client against a loopback OpenAI-compatible server."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mriaug.cli import app
from mriaug.data import pools
from mriaug.data import sources as data
from mriaug.generators import synth
from tests.fake_openai_server import FakeImageAPI

KEY = "sk-test-DoNotLeak-9f8e7d6c5b4a3210"
DATA = ["--data", "phantom", "-o", "n_train=160", "-o", "n_test=80", "-o", "size=32"]
CLASSES = ["--classes", "Mild_Demented,Moderate_Demented", "--max-sources", "3"]
# A generous timeout: 2 shared cores can be slow; the test of the timeout path sets its own.
FAST = ["-s", "timeout_s=8", "-s", "backoff_s=0.05", "-s", "concurrency=3"]
VARIATION = ["-s", "endpoint=variation"]  # the thesis's endpoint, on a server that still serves dall-e-2
# gpt-image-2's token prices, USD per 1M tokens (OpenAI's pricing page, 2026-11), written out here so the
# test checks the generator's table instead of reusing it.
GPT_IMAGE_2_PER_1M = {"input_text": 5.0, "input_image": 8.0, "output_image": 30.0, "output_text": 10.0}


@pytest.fixture
def dataset() -> data.Dataset:
    return data.load(data.DataSpec("phantom", {"n_train": 160, "n_test": 80, "size": 32}))


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return monkeypatch


@pytest.fixture
def delays(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every retry wait the generator chooses, as (attempt, the answer's Retry-After header or None, wait_s):
    the waits are checked as chosen, not timed."""
    from mriaug.generators.openai_api import OpenAIGenerator

    chosen: list = []
    original = OpenAIGenerator._delay

    def recording(self: OpenAIGenerator, attempt: int, headers: object) -> float:
        wait_s = original(self, attempt, headers)
        chosen.append((attempt, None if headers is None else headers.get("retry-after"), wait_s))
        return wait_s

    monkeypatch.setattr(OpenAIGenerator, "_delay", recording)
    return chosen


def _synth(pool: Path, *extra: str) -> object:
    return CliRunner().invoke(app, ["synth", *DATA, "--out", str(pool), "--generator", "openai", *CLASSES, *extra])


def _planned(dataset: data.Dataset) -> set[int]:
    return {s for s, _ in synth.pairs_to_make(dataset, ["Mild_Demented", "Moderate_Demented"], 1, 3, 0, set())}


def _usage_cost(usage: dict) -> float:
    t = {"input_text": usage["input_tokens_details"]["text_tokens"],
         "input_image": usage["input_tokens_details"]["image_tokens"],
         "output_image": usage["output_tokens_details"]["image_tokens"],
         "output_text": usage["output_tokens_details"]["text_tokens"]}
    return sum(t[k] * GPT_IMAGE_2_PER_1M[k] for k in t) / 1e6


def _assert_no_key(pool: Path, *texts: str) -> None:
    for f in pool.rglob("*"):
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f"API key leaked into {f}"
    for t in texts:
        assert KEY not in t


def test_variations_retry_faults_resume_and_cost(tmp_path: Path, dataset: data.Dataset, env: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture, delays: list) -> None:
    caplog.set_level(logging.DEBUG)
    pool = tmp_path / "pool"
    with FakeImageAPI(KEY, faults=["429", "500", "malformed", "slow"], slow_s=4.0) as api:
        env.setenv("OPENAI_BASE_URL", api.base_url)  # the SDK's own variable, as a user would set it
        r = _synth(pool, *VARIATION, *FAST, "-s", "timeout_s=1")
        assert r.exit_code == 0, r.output
        first = list(api.requests)

        # Complete, every source exactly once, only train rows.
        p = pools.load(pool, dataset)
        assert sorted(p.sources.tolist()) == sorted(_planned(dataset))
        assert len(set(p.sources.tolist())) == len(p.sources)
        assert {e["variation"] for e in p.entries} == {0}

        # What was sent: the thesis's request, square PNGs within the limits.
        assert {q["path"] for q in first} == {"/v1/images/variations"}
        ok = [q for q in first if q["status"] == 200]
        for q in ok:
            assert q["fields"]["model"] == "dall-e-2" and q["fields"]["size"] == "256x256"
            assert q["fields"]["n"] == "1" and q["fields"]["response_format"] == "b64_json"
            assert q["upload"]["format"] == "PNG" and q["upload"]["size"] == (256, 256)
            assert q["upload"]["bytes"] < 4 * 1024 * 1024
        assert all(q["auth_ok"] for q in first)
        statuses = [q["status"] for q in first]
        assert statuses.count(429) == 1 and statuses.count(500) == 1
        assert [q["fault"] for q in first][:4] == ["429", "500", "malformed", "slow"]

        # Retry-After: 1 was honoured: the wait before retrying the 429's image was the server's second
        # (the delays chosen are recorded, not timed: a busy machine makes wall-clock checks flaky).
        q429 = next(q for q in first if q["status"] == 429)
        again = [q for q in first if q["sha"] == q429["sha"] and q["t"] > q429["t"]]
        assert again and [(a, w) for a, ra, w in delays if ra == "1"] == [(1, 1.0)]

        # Spend: every 200 the server sent (incl. the malformed and the timed-out one) at $0.016.
        meta = json.loads((pool / "pool.json").read_text())
        assert meta["requests"]["sent"] == len(first)
        assert meta["requests"]["billed"] == api.billed() == len(p.sources) + 2
        # DALL-E reports no usage: the usage-based figure is the estimate.
        assert meta["spend_usd"] == pytest.approx(api.billed() * 0.016) == meta["spend_estimate_usd"]
        assert "usage" not in meta["requests"] and meta["tokens"] == {}
        assert sum(e["params"]["cost_usd"] for e in p.entries) == pytest.approx(meta["spend_usd"])
        assert meta["failures"] == {}
        assert "spend $" in r.output and (pool / "report.png").exists()

        # Grayscale at the dataset's resolution; what lands in the pool is the server's answer (the inverted
        # upload, darkened by 10 k % for the k-th image the server made from it: a request that timed out on the
        # client was still answered), not the source: each image is close to f * (255 - its own source) for one
        # of the server's factors f, and far from the source.
        assert p.images.shape[1:] == (32, 32)
        src = dataset.train_x[p.sources].astype(float)
        img = p.images.astype(float)
        factors = np.array([1 - 0.1 * k for k in range(8)])[:, None, None, None]
        to_inverted = np.abs(img[None] - factors * (255 - src)[None]).mean(axis=(2, 3)).min(axis=0)
        assert (to_inverted < 6).all(), to_inverted
        assert (np.abs(img - src).mean(axis=(1, 2)) > 40).all()
        # image i against every inverted source j (at the factor that fits best): its own source fits best
        others = np.abs(img[:, None, None] - factors[None] * (255 - src)[None, None]).mean(axis=(3, 4)).min(axis=1)
        assert (others.argmin(axis=1) == np.arange(len(img))).all(), "an image is stored under another source"

        # A rerun sends no request.
        r2 = _synth(pool, *VARIATION, *FAST)
        assert r2.exit_code == 0, r2.output
        assert len(api.requests) == len(first)
        assert "(0 new)" in r2.output
    _assert_no_key(pool, r.output, r2.output, caplog.text)


def test_edits_with_prompt_and_a_rejected_source(tmp_path: Path, dataset: data.Dataset, env: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    pool = tmp_path / "pool"
    settings = ["-s", "endpoint=edit", "-s", "model=gpt-image-2", "-s", "prompt=an axial MRI slice, realistic",
                "-s", "base_url=PLACEHOLDER", *FAST]
    # The 400's message quotes the key, as a careless proxy might: it must be redacted.
    with FakeImageAPI(KEY, faults=["400"]) as api:
        settings[settings.index("base_url=PLACEHOLDER")] = f"base_url={api.base_url}"
        r = _synth(pool, *settings)
        assert r.exit_code == 1, r.output
        assert "1 source(s) failed" in r.output and "HTTP 400" in r.output
        meta = json.loads((pool / "pool.json").read_text())
        assert len(meta["failures"]) == 1
        (tag, fail), = meta["failures"].items()
        assert "safety system" in fail["error"] and fail["attempts"] == 1
        first = list(api.requests)
        assert {q["path"] for q in first} == {"/v1/images/edits"}
        for q in first:
            assert q["fields"]["model"] == "gpt-image-2" and q["fields"]["prompt"] == "an axial MRI slice, realistic"
            assert q["fields"]["quality"] == "low" and "response_format" not in q["fields"]
            assert q["fields"]["output_format"] == "png" and q["fields"]["n"] == "1"
        # Spend from the answers' usage; the per-image table is the estimate beside it.
        assert meta["spend_usd"] == pytest.approx(sum(_usage_cost(q["usage"]) for q in first if q["billed"]))
        assert meta["spend_estimate_usd"] == pytest.approx(api.billed() * 0.02)

        # The rerun retries only the failed source and completes the pool.
        r2 = _synth(pool, *settings)
        assert r2.exit_code == 0, r2.output
        assert len(api.requests) == len(first) + 1
        assert api.requests[-1]["sha"] == next(q["sha"] for q in first if q["status"] == 400)
        meta = json.loads((pool / "pool.json").read_text())
        assert meta["failures"] == {} and meta["requests"]["sent"] == len(first) + 1
        p = pools.load(pool, dataset)
        assert sorted(p.sources.tolist()) == sorted(_planned(dataset))
        assert int(tag.split(":")[0]) in p.sources.tolist()
    _assert_no_key(pool, r.output, r2.output, caplog.text)


def test_max_cost_stops_and_a_higher_budget_continues(tmp_path: Path, dataset: data.Dataset,
                                                      env: pytest.MonkeyPatch) -> None:
    pool = tmp_path / "pool"
    n = len(_planned(dataset))
    assert n >= 4
    with FakeImageAPI(KEY) as api:
        env.setenv("OPENAI_BASE_URL", api.base_url)
        r = _synth(pool, *VARIATION, *FAST, "--max-cost", "0.05")  # room for 3 images at $0.016
        assert r.exit_code == 3, r.output
        assert "stopped at the budget" in r.output and "--max-cost" in r.output
        meta = json.loads((pool / "pool.json").read_text())
        assert len(api.requests) == 3 and meta["spend_usd"] == pytest.approx(0.048)
        assert len(pools.load(pool, dataset).entries) == 3

        # The same budget again: nothing more is spent.
        r = _synth(pool, *VARIATION, *FAST, "--max-cost", "0.05")
        assert r.exit_code == 3 and len(api.requests) == 3

        r = _synth(pool, *VARIATION, *FAST, "--max-cost", "1.00")
        assert r.exit_code == 0, r.output
        assert len(api.requests) == n
        meta = json.loads((pool / "pool.json").read_text())
        assert meta["spend_usd"] == pytest.approx(n * 0.016)
        p = pools.load(pool, dataset)
        assert sorted(p.sources.tolist()) == sorted(_planned(dataset))


def test_dry_run_estimates_cost_without_key_or_server(tmp_path: Path, dataset: data.Dataset,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    n = len(_planned(dataset))
    # No settings: gpt-image-2 edits, one request per source here (one variation each).
    r = _synth(tmp_path / "pool", "--dry-run")
    assert r.exit_code == 0, r.output
    assert (f"{n} request(s) for {n} image(s) to /v1/images/edits (gpt-image-2, 1024x1024, quality low, "
            "up to 10 per request) at $0.0200 per image") in r.output
    assert f"about ${n * 0.02:.2f}" in r.output
    assert not (tmp_path / "pool").exists()
    # Three variations per source: still one request per source.
    r = _synth(tmp_path / "pool", "--dry-run", "--per-source", "3")
    assert f"{n} request(s) for {3 * n} image(s)" in r.output and f"about ${3 * n * 0.02:.2f}" in r.output
    r = _synth(tmp_path / "pool", "--dry-run", *VARIATION)
    assert f"{n} request(s) for {n} image(s) to /v1/images/variations (dall-e-2, 256x256, up to" in r.output
    assert f"about ${n * 0.016:.2f}" in r.output

    # Without a key a real run stops with one clear line, before any request.
    r = _synth(tmp_path / "pool")
    assert r.exit_code == 2 and "OPENAI_API_KEY" in r.output

    # A model without a known price needs one.
    r = _synth(tmp_path / "pool", "-s", "endpoint=edit", "-s", "model=my-local-model", "--dry-run")
    assert r.exit_code == 2 and "price_usd" in r.output
    r = _synth(tmp_path / "pool", "-s", "endpoint=edit", "-s", "model=my-local-model", "-s", "price_usd=0.001",
               "--dry-run")
    assert r.exit_code == 0 and "/v1/images/edits (my-local-model, 1024x1024, quality low, up to 10" in r.output
    r = _synth(tmp_path / "pool", "-s", "colour=blue", "--dry-run")
    assert r.exit_code == 2 and "unknown setting(s) ['colour']" in r.output
    r = _synth(tmp_path / "pool", "-s", "n=11", "--dry-run")
    assert r.exit_code == 2 and "n (images per request) must be a whole number" in r.output
    r = _synth(tmp_path / "pool", "-s", 'token_prices={"input_image": -1}', "--dry-run")
    assert r.exit_code == 2 and "token_prices input_image" in r.output
    r = _synth(tmp_path / "pool", "-s", "model=my-local-model", "-s", "price_usd=0.001", "-s",
               'token_prices={"input_image": 1}', "--dry-run")
    assert r.exit_code == 2 and "lacks ['input_text', 'output_image', 'output_text']" in r.output


def test_wrong_key_or_unreachable_server_stops_the_run(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    with FakeImageAPI("sk-the-right-key-0000000000") as api:
        env.setenv("OPENAI_BASE_URL", api.base_url)
        r = _synth(tmp_path / "pool", *FAST)
        assert r.exit_code == 2 and "HTTP 401" in r.output and "OPENAI_API_KEY" in r.output
        assert len(api.requests) <= 3  # at most the requests already in flight, not one per source
        url = api.base_url
    env.setenv("OPENAI_BASE_URL", url)  # the server is gone now
    r = _synth(tmp_path / "pool", *FAST, "-s", "max_attempts=2")
    assert r.exit_code == 2 and "connection error" in r.output
    _assert_no_key(tmp_path / "pool", r.output)


def test_unusable_retry_after_falls_back_to_backoff(tmp_path: Path, dataset: data.Dataset,
                                                    env: pytest.MonkeyPatch, delays: list) -> None:
    pool = tmp_path / "pool"
    with FakeImageAPI(KEY, faults=["429-soon"]) as api:
        env.setenv("OPENAI_BASE_URL", api.base_url)
        r = _synth(pool, *FAST, "-s", "concurrency=1")
        assert r.exit_code == 0, r.output
        assert [q["status"] for q in api.requests].count(429) == 1
        q429 = api.requests[0]
        assert any(q["sha"] == q429["sha"] for q in api.requests[1:])
        # The normal backoff (0.05 s base, jitter 0.5-1.5), not a guess from "soon".
        ((attempt, wait_s),) = [(a, w) for a, ra, w in delays if ra == "soon"]
        assert attempt == 1 and 0.025 <= wait_s <= 0.075
        p = pools.load(pool, dataset)
        assert sorted(p.sources.tolist()) == sorted(_planned(dataset))
        assert json.loads((pool / "pool.json").read_text())["failures"] == {}


@pytest.mark.parametrize(("headers", "lo", "hi"), [
    ({"retry-after": "soon"}, 0.5, 1.5),
    ({"retry-after": "nan"}, 0.5, 1.5),
    ({"retry-after-ms": "later", "retry-after": "soon"}, 0.5, 1.5),
    ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.5, 1.5),  # in the past
    ({"retry-after": "3"}, 3.0, 3.0),
    ({"retry-after-ms": "250"}, 0.25, 0.25),
    ({"retry-after": "inf"}, 0.5, 1.5),
    ({"retry-after": "999"}, 120.0, 120.0),  # capped at max_backoff_s
])
def test_retry_after_values(headers: dict[str, str], lo: float, hi: float) -> None:
    from mriaug.generators.openai_api import OpenAIGenerator

    gen = OpenAIGenerator(backoff_s=1.0)
    assert lo <= gen._delay(1, headers) <= hi


def test_edits_n_per_request_usage_spend_and_provenance(tmp_path: Path, dataset: data.Dataset,
                                                        env: pytest.MonkeyPatch) -> None:
    """The defaults (gpt-image-2 edits) with 3 variations per source: one request per source with n=3,
    the answer's images become the source's lines, and the recorded spend is the usage-based figure."""
    pool = tmp_path / "pool"
    planned = _planned(dataset)
    # The first answer lacks one image: that variation is asked for again, alone.
    with FakeImageAPI(KEY, faults=["short"], answered={"gpt-image-2": "gpt-image-2-2026-04-21"}) as api:
        env.setenv("OPENAI_BASE_URL", api.base_url)
        r = _synth(pool, *FAST, "--per-source", "3")
        assert r.exit_code == 0, r.output
        sent = list(api.requests)
        assert {q["path"] for q in sent} == {"/v1/images/edits"}
        assert len(sent) == len(planned) + 1
        assert sorted(q["fields"]["n"] for q in sent) == ["1"] + ["3"] * len(planned)
        for q in sent:
            f = q["fields"]
            assert f["model"] == "gpt-image-2" and f["size"] == "1024x1024" and f["quality"] == "low"
            assert f["output_format"] == "png" and "response_format" not in f
        assert {q["sha"] for q in sent if q["fields"]["n"] == "1"} == {sent[0]["sha"]}

        p = pools.load(pool, dataset)
        assert sorted(p.sources.tolist()) == sorted(3 * list(planned))
        for src in planned:
            lines = [k for k, e in enumerate(p.entries) if e["source_index"] == src]
            assert sorted(p.entries[k]["variation"] for k in lines) == [0, 1, 2]
            assert len({p.images[k].tobytes() for k in lines}) == 3  # three different images, not one thrice

        # Spend: the usage the server reported, priced per 1M tokens; the estimate at $0.02 per image asked.
        meta = json.loads((pool / "pool.json").read_text())
        usage = sum(_usage_cost(q["usage"]) for q in sent)
        assert meta["spend_usd"] == pytest.approx(usage, abs=1e-6)
        assert meta["spend_estimate_usd"] == pytest.approx(0.02 * sum(int(q["fields"]["n"]) for q in sent))
        assert meta["requests"]["usage"] == meta["requests"]["billed"] == len(sent)
        assert meta["tokens"]["output_image"] == sum(q["usage"]["output_tokens"] for q in sent)
        assert sum(e["params"]["cost_usd"] for e in p.entries) == pytest.approx(usage, abs=1e-5)
        lines_estimate = sum(e["params"]["cost_estimate_usd"] for e in p.entries)
        assert lines_estimate == pytest.approx(meta["spend_estimate_usd"], abs=1e-5)
        assert f"spend ${usage:.4f} (usage-based; estimate ${meta['spend_estimate_usd']:.4f})" in r.output

        # Provenance: the model that answered and the request's settings, per line.
        ids = {q["id"] for q in sent}
        for e in p.entries:
            prm = e["params"]
            assert prm["model_answered"] == "gpt-image-2-2026-04-21" and prm["model"] == "gpt-image-2"
            assert prm["endpoint"] == "edit" and prm["quality"] == "low" and prm["output_format"] == "png"
            assert prm["request"]["id"] in ids and prm["request"]["n"] in (1, 3)
        rep = CliRunner().invoke(app, ["synth", "report", str(pool)])
        assert rep.exit_code == 0, rep.output
        made = next(line for line in rep.output.splitlines() if line.startswith("made: "))
        assert f"{3 * len(planned)} image(s) by openai, endpoint edit" in made
        assert "model gpt-image-2 (answered: gpt-image-2-2026-04-21)" in made
        assert f"{len(sent)} request(s)" in made and "quality low" in made
        assert f"${usage:.4f} usage-based" in rep.output


def test_max_cost_caps_the_larger_running_figure(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    one = ["-s", "concurrency=1", "-s", "timeout_s=8"]
    with FakeImageAPI(KEY) as api:
        env.setenv("OPENAI_BASE_URL", api.base_url)
        # The estimate ($0.02 per image) is the larger: room for 2 requests in $0.05.
        r = _synth(tmp_path / "a", *one, "--max-cost", "0.05")
        assert r.exit_code == 3, r.output
        meta = json.loads((tmp_path / "a" / "pool.json").read_text())
        assert len(api.requests) == 2 and meta["spend_estimate_usd"] == pytest.approx(0.04)
        assert meta["spend_usd"] < meta["spend_estimate_usd"]

        # A tiny estimate: the usage-based figure is the larger and stops the run (each answer costs about
        # $0.0146 by its usage; a request is sent while the larger figure plus its $0.001 estimate fits).
        r = _synth(tmp_path / "b", *one, "-s", "price_usd=0.001", "--max-cost", "0.03")
        assert r.exit_code == 3, r.output
        meta = json.loads((tmp_path / "b" / "pool.json").read_text())
        sent = api.requests[2:]
        assert len(sent) == 3  # not all 5: the estimate alone ($0.005) would have let every request through
        assert meta["spend_usd"] == pytest.approx(sum(_usage_cost(q["usage"]) for q in sent), abs=1e-6)
        assert meta["spend_usd"] > 0.03 > meta["spend_estimate_usd"]


@pytest.mark.parametrize("refuse_as", ["404", "400"])
def test_a_refused_model_names_what_the_server_offers(tmp_path: Path, env: pytest.MonkeyPatch,
                                                     refuse_as: str) -> None:
    with FakeImageAPI(KEY, models=["gpt-image-2", "gpt-image-2.5-flare", "text-embedding-9"],
                      refuse_as=refuse_as) as api:
        env.setenv("OPENAI_BASE_URL", api.base_url)
        r = _synth(tmp_path / "pool", *FAST, "-s", "model=gpt-image-1", "-s", "price_usd=0.01")
        assert r.exit_code == 2, r.output
        line = next(x for x in r.output.splitlines() if "refused model 'gpt-image-1'" in x)
        assert f"HTTP {refuse_as}" in line
        assert "it offers gpt-image-2, gpt-image-2.5-flare." in line  # image models only
        assert "-s model=NAME" in line
        posts = [q for q in api.requests if q["path"] != "/v1/models"]
        assert len(posts) <= 3  # the requests in flight, not one per source
        assert [q["path"] for q in api.requests].count("/v1/models") == 1
        assert not (tmp_path / "pool" / "manifest.jsonl").exists() or not pools.read_manifest(tmp_path / "pool")
    _assert_no_key(tmp_path / "pool", r.output)


def test_a_refused_model_on_a_server_that_lists_no_models(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    with FakeImageAPI(KEY, models=["dall-e-2"], list_models=False) as api:
        env.setenv("OPENAI_BASE_URL", api.base_url)
        r = _synth(tmp_path / "pool", *FAST)  # the default, gpt-image-2, which this server lacks
        assert r.exit_code == 2, r.output
        line = next(x for x in r.output.splitlines() if "refused model 'gpt-image-2'" in x)
        assert "does not list its models" in line
        # The thesis's endpoint on the same server works.
        r = _synth(tmp_path / "pool2", *FAST, *VARIATION)
        assert r.exit_code == 0, r.output


# --- spend and pricing by hand (issue 18) -----------------------------------------------------------------

def _usage(input_tokens: int = 0, output_tokens: int = 0, ind: dict | None = None, outd: dict | None = None) -> object:
    from types import SimpleNamespace

    return SimpleNamespace(input_tokens=input_tokens, output_tokens=output_tokens,
                           input_tokens_details=None if ind is None else SimpleNamespace(**ind),
                           output_tokens_details=None if outd is None else SimpleNamespace(**outd))


def test_usage_priced_with_and_without_token_details() -> None:
    from mriaug.generators.openai_api import token_cost, tokens_of

    # With details: each kind at its price. 50 text + 1000 image tokens in, 4000 image + 20 text out:
    # (50 x 5 + 1000 x 8 + 4000 x 30 + 20 x 10) / 1e6 = 128,450 / 1e6.
    full = _usage(1050, 4020, {"text_tokens": 50, "image_tokens": 1000}, {"image_tokens": 4000, "text_tokens": 20})
    t = tokens_of(full)
    assert t == {"input_text": 50, "input_image": 1000, "output_image": 4000, "output_text": 20}
    assert token_cost(t, GPT_IMAGE_2_PER_1M) == pytest.approx(0.12845)  # type: ignore[arg-type]
    # Without details: all input as image tokens, all output as image tokens (1050 x 8 + 4020 x 30 = 129,000).
    bare = tokens_of(_usage(1050, 4020))
    assert bare == {"input_text": 0, "input_image": 1050, "output_image": 4020, "output_text": 0}
    assert token_cost(bare, GPT_IMAGE_2_PER_1M) == pytest.approx(0.129)  # type: ignore[arg-type]
    # Input details only: the output total is image tokens.
    half = tokens_of(_usage(1050, 4020, {"text_tokens": 50, "image_tokens": 1000}))
    assert half == {"input_text": 50, "input_image": 1000, "output_image": 4020, "output_text": 0}
    # Output details only: the input total is image tokens.
    other = tokens_of(_usage(1050, 4020, None, {"image_tokens": 4000, "text_tokens": 20}))
    assert other == {"input_text": 0, "input_image": 1050, "output_image": 4000, "output_text": 20}
    # No usage at all: nothing to price; odd counts (negative, text, booleans, missing) count as 0.
    assert tokens_of(None) is None
    odd = tokens_of(_usage(-5, True, {"text_tokens": "7", "image_tokens": 3.0}, {}))  # type: ignore[arg-type]
    assert odd == {"input_text": 0, "input_image": 3, "output_image": 0, "output_text": 0}
    # A kind missing from the counts costs nothing; every kind is priced, text output included.
    assert token_cost({"output_text": 1_000_000}, GPT_IMAGE_2_PER_1M) == pytest.approx(10.0)
    assert token_cost({}, GPT_IMAGE_2_PER_1M) == 0.0


def test_ledger_by_hand() -> None:
    from mriaug.generators.openai_api import Ledger

    led = Ledger(before_estimate=0.10, before_usage=0.05, max_cost=0.20)
    assert led.spent() == pytest.approx(0.10)  # the larger running figure: the estimate
    assert led.reserve(0.06) and led.reserved == pytest.approx(0.06)
    assert led.reserve(0.04)  # 0.10 + 0.06 + 0.04 = 0.20 exactly: fits
    assert not led.reserve(0.0001)  # over by a hair: refused, nothing reserved
    assert led.reserved == pytest.approx(0.10) and led.counts == {"sent": 2}
    # A billed answer with usage: the estimate and the usage-based cost both count.
    led.settle("ok", 0.06, 0.06, 0.02, {"input_image": 10, "output_image": 5})
    assert led.reserved == pytest.approx(0.04)
    assert led.run_estimate == pytest.approx(0.06) and led.run_usage == pytest.approx(0.02)
    assert led.spent() == pytest.approx(0.16)  # max(0.10 + 0.06, 0.05 + 0.02)
    # A billed answer without usage: counted at its estimate in the usage-based figure too.
    led.settle("timeout", 0.04, 0.04)
    assert led.run_usage == pytest.approx(0.06) and led.run_estimate == pytest.approx(0.10)
    # At the cap now (0.10 + 0.10): nothing more fits; a higher cap lets a request through.
    assert led.spent() == pytest.approx(0.20) and not led.reserve(0.01)
    led.max_cost = 0.25
    # An unbilled failure: the reservation comes back, nothing is spent.
    assert led.reserve(0.03)
    led.settle("http_500", 0.03, tokens={"input_image": 1})
    assert led.reserved == pytest.approx(0.0) and led.run_estimate == pytest.approx(0.10)
    assert led.counts == {"sent": 3, "ok": 1, "billed": 2, "usage": 1, "timeout": 1, "http_500": 1}
    assert led.run_spend() == {"spend_usd": pytest.approx(0.06), "spend_estimate_usd": pytest.approx(0.10),
                               "tokens": {"input_image": 11, "output_image": 5},
                               "requests": {"sent": 3, "ok": 1, "billed": 2, "usage": 1, "timeout": 1, "http_500": 1}}
    # The usage-based figure can be the larger one; no cap without max_cost.
    big = Ledger(before_estimate=0.01, before_usage=0.5)
    assert big.spent() == pytest.approx(0.5) and big.reserve(1e9)
    capped = Ledger(before_estimate=0.01, before_usage=0.5, max_cost=0.55)
    assert capped.reserve(0.05) and not capped.reserve(0.001)


def test_spend_before_reads_old_and_new_pools() -> None:
    from mriaug.generators.openai_api import spend_before

    assert spend_before({}) == {"spend_usd": 0.0, "spend_estimate_usd": 0.0, "tokens": {}, "requests": {}}
    # A pool from before the usage-based figure: its spend_usd was the estimate.
    assert spend_before({"spend_usd": 0.3}) == {"spend_usd": 0.3, "spend_estimate_usd": 0.3, "tokens": {},
                                                "requests": {}}
    meta = {"spend_usd": 0.2, "spend_estimate_usd": 0.4, "tokens": {"input_image": 3}, "requests": {"ok": 2},
            "tokens_extra": 1}
    got = spend_before(meta)
    assert got == {"spend_usd": 0.2, "spend_estimate_usd": 0.4, "tokens": {"input_image": 3}, "requests": {"ok": 2}}
    got["tokens"]["input_image"] = 99
    assert meta["tokens"] == {"input_image": 3}  # a copy
    assert spend_before({"spend_usd": 0.1, "tokens": None, "requests": None})["tokens"] == {}


def test_prices_per_image_and_per_token_setting() -> None:
    from mriaug.errors import SettingError
    from mriaug.generators.openai_api import OpenAIGenerator

    g = OpenAIGenerator()  # gpt-image-2 edits, 1024x1024, low quality: $0.02 an image, token prices known
    assert (g.model, g.size, g.quality, g.price) == ("gpt-image-2", "1024x1024", "low", 0.02)
    assert g.token_prices == GPT_IMAGE_2_PER_1M
    assert OpenAIGenerator(endpoint="variation").price == 0.016  # dall-e-2 at 256x256
    v = OpenAIGenerator(endpoint="variation", size="1024x1024")
    assert v.price == 0.020 and v.quality is None and v.token_prices is None
    assert OpenAIGenerator(model="gpt-image-1", quality="high").price == 0.167
    assert OpenAIGenerator(price_usd=0.5).price == 0.5 and OpenAIGenerator(price_usd=0).price == 0
    with pytest.raises(SettingError, match="no price known for model 'gpt-image-9'.*price_usd="):
        OpenAIGenerator(model="gpt-image-9")
    # Token prices: single entries overridden, the others kept.
    assert OpenAIGenerator(token_prices={"output_image": 40}).token_prices == {**GPT_IMAGE_2_PER_1M,
                                                                              "output_image": 40.0}
    # A model without a table: all four kinds or an error naming those missing.
    full = {"input_text": 1, "input_image": 2, "output_image": 3, "output_text": 4}
    assert OpenAIGenerator(model="gpt-image-1", token_prices=full).token_prices == full
    with pytest.raises(SettingError, match=r"lacks \['output_image', 'output_text'\]"):
        OpenAIGenerator(model="gpt-image-1", token_prices={"input_text": 1, "input_image": 2})
    with pytest.raises(SettingError, match=r"unknown kind\(s\) \['image'\]"):
        OpenAIGenerator(token_prices={"image": 1})
    with pytest.raises(SettingError, match="must be a table of USD per 1M tokens"):
        OpenAIGenerator(token_prices=5)  # type: ignore[arg-type]
    with pytest.raises(SettingError, match="token_prices output_text"):
        OpenAIGenerator(token_prices={"output_text": -1})
    with pytest.raises(SettingError, match="price_usd"):
        OpenAIGenerator(price_usd=-0.01)


def test_estimate_and_requests_by_hand() -> None:
    from mriaug.generators.openai_api import OpenAIGenerator

    g = OpenAIGenerator(n=3, max_cost_usd=1.5)
    todo = [(7, 0), (7, 1), (7, 2), (7, 3), (9, 0), (7, 4), (9, 1)]
    # Source 7's five variations in requests of at most 3 (3 + 2), source 9's two in one: 3 requests.
    assert g.requests_for(todo) == [(7, [0, 1, 2]), (7, [3, 4]), (9, [0, 1])]
    e = g.estimate(todo, spent=0.25)
    assert e["requests"] == 3 and e["images"] == 7 and e["cost_usd"] == pytest.approx(0.14) and e["price_usd"] == 0.02
    assert e["text"] == ("3 request(s) for 7 image(s) to /v1/images/edits (gpt-image-2, 1024x1024, quality low, "
                         "up to 3 per request) at $0.0200 per image: about $0.14; pool spend so far $0.25; "
                         "--max-cost $1.50")
    v = OpenAIGenerator(endpoint="variation").estimate([(1, 0)])
    assert v["text"].startswith("1 request(s) for 1 image(s) to /v1/images/variations (dall-e-2, 256x256, up to 10")
    assert "--max-cost" not in v["text"] and v["cost_usd"] == pytest.approx(0.016)
    assert OpenAIGenerator().estimate([])["cost_usd"] == 0


def _answer(usage: object, n_images: int, side: int = 8) -> tuple[object, object]:
    import base64
    import io
    from types import SimpleNamespace

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((side, side), 77, np.uint8)).save(buf, format="PNG")
    item = SimpleNamespace(b64_json=base64.b64encode(buf.getvalue()).decode())
    raw = SimpleNamespace(headers={"x-request-id": "req-1", "openai-model": "gpt-image-2"})
    return raw, SimpleNamespace(usage=usage, data=[item] * n_images, model=None)


def test_an_answer_is_booked_at_its_usage_or_its_estimate() -> None:
    from mriaug.generators.openai_api import Ledger, OpenAIGenerator, Outcome

    usage = _usage(1050, 4020, {"text_tokens": 50, "image_tokens": 1000}, {"image_tokens": 4000, "text_tokens": 20})
    g = OpenAIGenerator()
    led, out = Ledger(), Outcome(3, [0, 1])
    assert led.reserve(0.04)
    raw, resp = _answer(usage, 2)
    g._take(out, raw, resp, [0, 1], 1, 8, led, 0.04)
    assert out.cost == pytest.approx(0.12845) and out.cost_estimate == pytest.approx(0.04)
    assert led.run_spend()["spend_usd"] == pytest.approx(0.12845) and led.reserved == pytest.approx(0.0)
    assert [m.variation for m in out.made] == [0, 1] and out.error is None and not out.unpriced_usage
    assert out.made[0].request == {"n": 2, "attempt": 1, "model_answered": "gpt-image-2", "id": "req-1"}
    assert (out.made[0].image == 77).all() and out.made[0].image.shape == (8, 8)
    # Usage without details, priced as image tokens: 1050 x 8 + 4020 x 30 = 129,000 / 1e6.
    led1, out1 = Ledger(), Outcome(5, [0])
    raw, resp = _answer(_usage(1050, 4020), 1)
    g._take(out1, raw, resp, [0], 1, 8, led1, 0.02)
    assert out1.cost == pytest.approx(0.129) and led1.run_spend()["spend_usd"] == pytest.approx(0.129)
    assert led1.run_spend()["tokens"] == {"input_text": 0, "input_image": 1050, "output_image": 4020, "output_text": 0}
    # No price for the tokens (dall-e-2 variations): the estimate is the spend, and the run is told.
    v, led2, out2 = OpenAIGenerator(endpoint="variation"), Ledger(), Outcome(3, [0])
    led2.reserve(0.016)
    raw, resp = _answer(_usage(10, 20), 1, side=16)
    v._take(out2, raw, resp, [0], 2, 8, led2, 0.016)
    assert out2.unpriced_usage and out2.cost == pytest.approx(0.016)
    assert led2.run_spend()["spend_usd"] == pytest.approx(0.016) and led2.counts.get("usage") is None
    assert out2.made[0].image.shape == (8, 8)  # resized to the dataset's side
    # One image short: booked as malformed, the usable one kept.
    led3, out3 = Ledger(), Outcome(4, [0, 1])
    raw, resp = _answer(None, 1)
    g._take(out3, raw, resp, [0, 1], 1, 8, led3, 0.04)
    assert out3.missing == [1] and out3.cost == pytest.approx(0.04) and led3.counts["malformed"] == 1
    assert out3.error == "malformed response: 1 of 2 image(s) usable (0 undecodable)"


@pytest.mark.parametrize(("settings", "message"), [
    ({"endpoint": "generate"}, "endpoint 'generate' must be 'edit' or 'variation'"),
    ({"endpoint": "variation", "size": "1024x1536"}, "size '1024x1536' for variations must be one of"),
    ({"size": "1024x1536"}, "size '1024x1536' must be square"),
    ({"size": "big"}, "size 'big' must be square"),
    ({"output_format": "gif"}, "output_format 'gif' must be one of"),
    ({"n": 0}, "n \\(images per request\\) must be a whole number"),
    ({"n": 11}, "n \\(images per request\\)"),
    ({"concurrency": 0}, "concurrency must be"),
    ({"max_attempts": 0}, "max_attempts must be"),
    ({"timeout_s": -1}, "timeout_s"),
    ({"backoff_s": -1}, "backoff_s"),
    ({"max_backoff_s": -1}, "max_backoff_s"),
    ({"flush_every": 0}, "flush_every must be"),
    ({"price_usd": -1}, "price_usd"),
])
def test_generator_settings_by_hand(settings: dict, message: str) -> None:
    from mriaug.errors import SettingError
    from mriaug.generators.openai_api import OpenAIGenerator

    with pytest.raises(SettingError, match="^openai generator: " + message):
        OpenAIGenerator(**settings)


def test_generator_settings_kept() -> None:
    from mriaug.generators.openai_api import DEFAULT_PROMPT, OpenAIGenerator

    g = OpenAIGenerator(n=4, concurrency=2, timeout_s=30, max_attempts=3, backoff_s=0.5, max_backoff_s=9,
                        max_cost_usd=2, flush_every=5, output_format="webp")
    assert (g.endpoint, g.model, g.size, g.px, g.n, g.quality, g.dalle) == ("edit", "gpt-image-2", "1024x1024", 1024,
                                                                           4, "low", False)
    assert (g.concurrency, g.timeout_s, g.max_attempts, g.backoff_s, g.max_backoff_s) == (2, 30.0, 3, 0.5, 9.0)
    assert g.max_cost_usd == 2.0 and isinstance(g.max_cost_usd, float) and g.flush_every == 5
    assert g.output_format == "webp" and g.prompt == DEFAULT_PROMPT and g.base_url is None
    assert OpenAIGenerator().max_cost_usd is None and OpenAIGenerator().n == 10
    v = OpenAIGenerator(endpoint="variation", size="512x512", quality="hd", price_usd=0.1)
    assert (v.model, v.px, v.dalle, v.quality) == ("dall-e-2", 512, True, "hd")
    assert OpenAIGenerator(model="gpt-image-1", quality="medium").price == 0.042


def test_defaults_and_messages_by_hand() -> None:
    from mriaug.errors import SettingError
    from mriaug.generators.openai_api import Ledger, OpenAIGenerator, Outcome, token_cost, tokens_of

    g = OpenAIGenerator()
    assert (g.concurrency, g.timeout_s, g.max_attempts, g.backoff_s, g.max_backoff_s, g.flush_every) == (
        4, 120.0, 6, 2.0, 120.0, 20)
    assert g.last_summary == {} and OpenAIGenerator(n=1).n == 1
    assert OpenAIGenerator(base_url="http://127.0.0.1:9/v1").base_url == "http://127.0.0.1:9/v1"
    with pytest.raises(SettingError) as err:
        OpenAIGenerator(model="gpt-image-9")
    assert "(known: dall-e-2 256x256, dall-e-2 512x512, dall-e-2 1024x1024, gpt-image-1 1024x1024 low, " in str(
        err.value)
    with pytest.raises(SettingError, match=r"^openai generator: token_prices must be a table of USD per 1M tokens, "
                       r"e\.g\. -s token_prices='\{\"input_text\": 5, \"input_image\": 8, \"output_image\": 30, "):
        OpenAIGenerator(token_prices=[1])  # type: ignore[arg-type]
    with pytest.raises(SettingError, match=r"^openai generator: token_prices: unknown kind\(s\) \['x'\]; known: "
                       r"input_text, input_image, output_image, output_text$"):
        OpenAIGenerator(token_prices={"x": 1})
    with pytest.raises(SettingError, match=r"give all of input_text, input_image, output_image, output_text "
                       r"\(USD per 1M tokens\)$"):
        OpenAIGenerator(model="gpt-image-1", token_prices={"input_text": 1})
    assert g.estimate([(1, 0)])["text"].endswith("pool spend so far $0.00")
    # 1M tokens at $8 per 1M: exactly $8.
    assert token_cost({"input_image": 1_000_000}, {"input_text": 0, "input_image": 8, "output_image": 0,
                                                   "output_text": 0}) == 8.0
    # A usage object without any details attributes at all (not even None).
    from types import SimpleNamespace

    assert tokens_of(SimpleNamespace(input_tokens=5, output_tokens=7)) == {
        "input_text": 0, "input_image": 5, "output_image": 7, "output_text": 0}
    # Counts add up over answers; the usage-based figure of a pool whose usage is the larger one.
    led = Ledger(before_usage=0.5)
    led.settle("ok", 0.0, 0.01, 0.2)
    led.settle("ok", 0.0, 0.01, 0.1)
    assert led.counts == {"ok": 2, "billed": 2, "usage": 2} and led.spent() == pytest.approx(0.8)
    # An answer booked twice on one outcome adds up; an image that cannot be decoded is counted.
    out = Outcome(1, [0, 1, 2])
    raw, resp = _answer(None, 1)
    bad = SimpleNamespace(b64_json="not base64!")
    resp.data = [bad, resp.data[0], SimpleNamespace()]  # type: ignore[attr-defined]
    resp.model = "gpt-image-2-2026-04-21"  # type: ignore[attr-defined]
    g._take(out, raw, resp, [0, 1, 2], 1, 8, Ledger(), 0.06)
    assert out.error == "malformed response: 1 of 3 image(s) usable (2 undecodable)"
    assert out.made[0].request["model_answered"] == "gpt-image-2-2026-04-21"
    g._take(out, raw, resp, [0, 1, 2], 2, 8, Ledger(), 0.06)
    assert out.cost == pytest.approx(0.12) and out.cost_estimate == pytest.approx(0.12)
    # No `data` at all, a model that is not a name: nothing usable, no model recorded.
    empty = Outcome(2, [0])
    g._take(empty, SimpleNamespace(headers={}), SimpleNamespace(model=5), [0], 1, 8, Ledger(), 0.02)
    assert empty.made == [] and empty.error == "malformed response: 0 of 1 image(s) usable (0 undecodable)"
    one = Outcome(3, [0])
    raw, resp = _answer(None, 1)
    resp.model = 5  # type: ignore[attr-defined]
    g._take(one, SimpleNamespace(headers={}), resp, [0], 1, 8, Ledger(), 0.02)
    assert one.made[0].request["model_answered"] is None
    # An answer object without a `model` attribute at all: the header names the model.
    bare = Outcome(4, [0])
    raw, resp = _answer(None, 1)
    g._take(bare, raw, SimpleNamespace(usage=None, data=resp.data), [0], 1, 8, Ledger(), 0.02)  # type: ignore[attr-defined]
    assert bare.made[0].request["model_answered"] == "gpt-image-2"


# Today's models (issue 26): what GET /v1/models listed on 2026-11-26, with the prices OpenAI publishes for them
# written out here by hand (None: not published).
TODAY = {
    "gpt-image-2": GPT_IMAGE_2_PER_1M,
    "gpt-image-2.5-flare": {"input_text": 5.0, "input_image": 8.0, "output_image": 30.0, "output_text": None},
    "gpt-image-2.5-sunburst": {"input_text": 5.0, "input_image": 8.0, "output_image": 30.0, "output_text": None},
    "gpt-image-2.6-flare": {"input_text": 5.0, "input_image": 8.0, "output_image": 30.0, "output_text": None},
    "gpt-image-2.6-sunburst": {"input_text": 5.0, "input_image": 8.0, "output_image": 30.0, "output_text": None},
    "gpt-image-1-mini": {"input_text": 2.0, "input_image": 2.5, "output_image": 8.0, "output_text": None},
    "gpt-image-1.5": None,
}


def test_every_model_listed_today_has_a_price() -> None:
    from mriaug.generators.openai_api import OpenAIGenerator, token_cost

    for model, per_1m in TODAY.items():
        g = OpenAIGenerator(model=model)  # a per-image estimate for the default size and quality, no setting
        assert g.price > 0 and g.token_prices == per_1m, model
    assert OpenAIGenerator(model="gpt-image-2.5-flare").price == 0.02  # gpt-image-2's estimate stands in
    assert OpenAIGenerator(model="gpt-image-1-mini").price == 0.005 and OpenAIGenerator(model="gpt-image-1.5").price
    # Usage of a kind without a published price is not priced (the request counts at the estimate); kinds
    # without tokens do not need one: 1000 text + 1024 image input + 272 output image tokens at 5 / 8 / 30.
    flare = TODAY["gpt-image-2.5-flare"]
    assert token_cost({"input_text": 1000, "input_image": 1024, "output_image": 272}, flare) == pytest.approx(
        (1000 * 5 + 1024 * 8 + 272 * 30) / 1e6)
    assert token_cost({"output_image": 272, "output_text": 5}, flare) is None
    # An override fills an unknown price.
    assert OpenAIGenerator(model="gpt-image-1.5", token_prices={"input_text": 5, "input_image": 8, "output_image": 32,
                                                                 "output_text": 10}).token_prices["output_image"] == 32


def test_a_model_with_a_shutdown_date_is_warned_about(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    import datetime

    from mriaug.generators.openai_api import OpenAIGenerator, shutdown_warning

    listed = ["gpt-image-2", "gpt-image-2.5-flare", "gpt-image-1.5", "gpt-image-1-mini"]
    with FakeImageAPI(KEY, models=listed, shutdown={"gpt-image-1.5": "2026-12-01", "gpt-image-1-mini": "2026-12-01",
                                                    "gpt-image-2": "2027-06-30"}) as api:
        env.setenv("OPENAI_BASE_URL", api.base_url)
        # The server's date: for a model the published table has no date for, too.
        assert OpenAIGenerator(model="gpt-image-2").shutdown_date() == "2027-06-30"
        assert OpenAIGenerator(model="gpt-image-1.5").shutdown_date() == "2026-12-01"
        assert OpenAIGenerator(model="gpt-image-2.5-flare").shutdown_date() is None
        assert "/v1/models/gpt-image-2.5-flare" in [q["path"] for q in api.requests]
        r = _synth(tmp_path / "pool", "-s", "model=gpt-image-1.5", "--dry-run")
        assert r.exit_code == 0, r.output
        assert "warning: OpenAI model 'gpt-image-1.5' shut" in r.output and "2026-12-01" in r.output
        r = _synth(tmp_path / "pool", "-s", "model=gpt-image-2.5-flare", "--dry-run")
        assert r.exit_code == 0 and "shuts down" not in r.output and "$0.0200 per image" in r.output
        assert not [q for q in api.requests if q["path"] != "/v1/models" and not q["path"].startswith("/v1/models/")]
    # Without a key (or a server): the dates OpenAI's deprecations page announced.
    env.delenv("OPENAI_API_KEY")
    assert OpenAIGenerator(model="gpt-image-1-mini").shutdown_date() == "2026-12-01"
    assert OpenAIGenerator(model="gpt-image-2").shutdown_date() is None
    r = _synth(tmp_path / "pool", "-s", "model=gpt-image-1-mini", "--dry-run")
    assert "warning: OpenAI model 'gpt-image-1-mini' shut" in r.output and "2026-12-01" in r.output
    # The text by hand: days left, or past.
    day = datetime.date(2026, 11, 26)
    assert shutdown_warning("m", "2026-12-01", day) == (
        "warning: OpenAI model 'm' shuts down on 2026-12-01 (5 days from now): requests to it fail from then on, and "
        "a pool cannot be extended with it; choose a current model with -s model=NAME (GET /v1/models lists them)")
    assert "'m' shut down on 2026-11-01: requests to it fail, and" in str(shutdown_warning("m", "2026-11-01", day))
    assert shutdown_warning("m", None, day) is None
