"""Units without a server: configuration, blob store, manifest facts, campaign decisions,
metrics format, nonces and cookies."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suitkit.format.envelope import Envelope
from suitkit.server.campaigns import (
    CampaignError,
    Decision,
    WaveStats,
    assign_waves,
    check_waves,
    evaluate,
    wave_cuts,
)
from suitkit.server.config import ConfigError, Settings, load_settings, parse_size
from suitkit.server.facts import manifest_facts
from suitkit.server.metrics import Counter, Histogram, Metrics
from suitkit.server.models import CampaignState
from suitkit.server.security import (
    check_nonce,
    check_session_cookie,
    issue_nonce,
    session_cookie,
)
from suitkit.server.storage import BlobStore, TooLarge, check_sha256

from .conftest import VECTORS

# --- configuration ---------------------------------------------------------------------------


def test_settings_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "server.toml"
    cfg.write_text(
        '[server]\nport = 9000\nworkers = 3\ndata = "d"\ntrust = ["a.pem"]\nmax-payload = "64M"\n'
    )
    s = load_settings({}, env={}, config_file=cfg)
    assert (s.port, s.workers, s.max_payload) == (9000, 3, 64 << 20)
    assert s.data == tmp_path / "d" and s.trust == (tmp_path / "a.pem",)
    s = load_settings({}, env={"SUITKIT_PORT": "9100", "SUITKIT_CONFIG": str(cfg)})
    assert (s.port, s.workers) == (9100, 3)
    s = load_settings({"port": 9200, "host": None}, env={"SUITKIT_PORT": "9100"}, config_file=cfg)
    assert s.port == 9200 and s.host == "127.0.0.1"
    assert s.db_url == f"sqlite:///{(tmp_path / 'd' / 'suitkit.db').resolve()}"
    assert load_settings({}, env={"SUITKIT_DB": "postgresql+psycopg://x/y"}).db_url.startswith(
        "postgresql"
    )
    # env() hands the same settings to worker processes
    assert load_settings({}, env=s.env()) == s


def test_settings_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings({"nope": 1}, env={})
    with pytest.raises(ConfigError, match="port"):
        load_settings({}, env={"SUITKIT_PORT": "70000"})
    with pytest.raises(ConfigError, match="not an integer"):
        load_settings({}, env={"SUITKIT_WORKERS": "many"})
    with pytest.raises(ConfigError, match="public-url"):
        load_settings({"public_url": "ftp://x"}, env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("port = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({}, env={}, config_file=bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings({}, env={}, config_file=tmp_path / "missing.toml")
    assert load_settings({}, env={"SUITKIT_UNRELATED_THING": "x"}) == Settings()


@pytest.mark.parametrize(
    ("text", "n"), [("10", 10), ("1K", 1024), ("2M", 2 << 20), ("1GiB", 1 << 30), (5, 5)]
)
def test_parse_size(text: object, n: int) -> None:
    assert parse_size(text) == n


@pytest.mark.parametrize("text", ["", "K", "-1", "1T", "x", True, 0])
def test_parse_size_errors(text: object) -> None:
    with pytest.raises(ConfigError):
        parse_size(text)


# --- blob store ------------------------------------------------------------------------------


def test_blob_store(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    blob = store.put(b"hello")
    assert store.path(blob.sha256).read_bytes() == b"hello"
    assert store.put(b"hello") == blob  # content-addressed: stored once
    staged = store.stage([b"a" * 10, b"b" * 10], limit=20)
    assert staged.size == 20 and not store.exists(staged.sha256)
    staged.discard()
    assert list(store.tmp.iterdir()) == []
    with pytest.raises(TooLarge):
        store.stage([b"a" * 10, b"b" * 11], limit=20)
    assert list(store.tmp.iterdir()) == []
    for bad in ("../x", "A" * 64, "0" * 63, "0" * 64 + "/"):
        with pytest.raises(ValueError):
            store.path(bad)
    assert check_sha256("0" * 64) == "0" * 64


def test_sweep_removes_only_old_temporaries(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    old = store.tmp / "upload-old"
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    new = store.tmp / "upload-new"
    new.write_bytes(b"x")
    assert store.sweep() == 1
    assert not old.exists() and new.exists()


# --- manifest facts --------------------------------------------------------------------------


def test_facts_follow_try_each_paths() -> None:
    """Example 3 (A/B): slot 0's digest goes with file1.bin, slot 1's with file2.bin."""
    env = Envelope.decode((VECTORS / "example3.suit").read_bytes())
    facts = manifest_facts(env.manifest)
    pairs = {(im.file_name, im.size) for im in facts.images}
    assert pairs == {("file1.bin", 34768), ("file2.bin", 76834)}
    assert facts.accepts(
        "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe", "1492af14-2569-5e48-bf42-9b2d51f2ab45"
    )
    assert not facts.accepts(
        "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe", "00000000-0000-0000-0000-000000000000"
    )


def test_facts_of_a_staged_manifest() -> None:
    """Example 4: the payload is fetched into component 1 (the staging area)."""
    env = Envelope.decode((VECTORS / "example4.suit").read_bytes())
    facts = manifest_facts(env.manifest)
    assert [(im.component_index, im.file_name) for im in facts.images] == [(1, "file.bin")]


def test_facts_need_the_severed_members() -> None:
    env = Envelope.decode((VECTORS / "example2.severed.suit").read_bytes())
    assert manifest_facts(env.manifest).images == ()


# --- campaign decisions ----------------------------------------------------------------------


def stats(total: int, **counts: int) -> WaveStats:
    return WaveStats(total, dict(counts))


def decide(current: int, waves: dict[int, WaveStats], n: int = 3, **kw: float) -> Decision:
    args = {"failure_threshold": 0.2, "min_reports": 3, "advance_at": 1.0, **kw}
    return evaluate(CampaignState.RUNNING, current, n, waves, **args)  # type: ignore[arg-type]


def test_evaluate() -> None:
    d = decide(0, {0: stats(2, installed=1, offered=1), 1: stats(8)})
    assert (d.state, d.current_wave) == ("running", 0)
    d = decide(0, {0: stats(2, installed=2), 1: stats(8), 2: stats(10)})
    assert d.current_wave == 1
    d = decide(0, {0: stats(2, installed=2), 1: stats(0), 2: stats(10)})
    assert d.current_wave == 2  # an empty wave opens the next one at once
    d = decide(2, {0: stats(2, installed=2), 1: stats(8, installed=8), 2: stats(10, installed=10)})
    assert d.state == "completed"
    d = decide(0, {0: stats(10, failed=1, installed=1)})
    assert d.state == "running"  # 2 finished < min_reports 3
    d = decide(0, {0: stats(10, failed=1, installed=2)})
    assert d.state == "paused"  # 1/3 > 20%
    d = decide(0, {0: stats(2, failed=1)})
    assert d.state == "running"  # 1 finished: the whole wave (2) is the minimum here
    d = decide(0, {0: stats(2, failed=1, installed=1)})
    assert d.state == "paused"  # the whole wave is smaller than min_reports
    d = decide(0, {0: stats(10, installed=8, pending=2), 1: stats(1)}, advance_at=0.8)
    assert d.current_wave == 1
    paused = evaluate(
        CampaignState.PAUSED,
        0,
        1,
        {0: stats(1, installed=1)},
        failure_threshold=0,
        min_reports=1,
        advance_at=1,
    )
    assert paused.state == "paused"


@pytest.mark.parametrize("waves", [[], [50], [0, 100], [10, 10, 100], [50, 20, 100], [101]])
def test_bad_waves(waves: list[float]) -> None:
    with pytest.raises(CampaignError):
        check_waves(waves)


@given(
    n=st.integers(0, 300),
    waves=st.lists(st.floats(0.01, 99.99), max_size=4, unique=True).map(
        lambda w: [*sorted(w), 100.0]
    ),
)
def test_assign_waves_properties(n: int, waves: list[float]) -> None:
    ids = [f"dev-{i}" for i in range(n)]
    out = assign_waves(ids, waves, "k")
    assert set(out) == set(ids)
    cuts = wave_cuts(n, waves)
    for i, cut in enumerate(cuts):
        assert sum(1 for w in out.values() if w <= i) == cut
    assert out == assign_waves(list(reversed(ids)), waves, "k")  # order-independent


# --- metrics ---------------------------------------------------------------------------------


def test_metrics_text_format() -> None:
    c = Counter("x_total", "things", ("kind",))
    c.inc('a"b\\c\n')
    c.inc("plain", amount=2)
    assert c.render() == (
        "# HELP x_total things\n# TYPE x_total counter\n"
        'x_total{kind="a\\"b\\\\c\\n"} 1\nx_total{kind="plain"} 2\n'
    )
    h = Histogram("lat", "latency", (), buckets=(0.1, 1))
    h.observe(0.05)
    h.observe(0.5)
    h.observe(5)
    text = h.render()
    assert 'lat_bucket{le="0.1"} 1\nlat_bucket{le="1"} 2\nlat_bucket{le="+Inf"} 3\n' in text
    assert "lat_count 3\n" in text
    m = Metrics()
    m.checkins.inc("offer")
    assert f'suitkit_device_checkins_total{{answer="offer",worker="{m.worker}"}} 1' in m.render()


# --- secrets ---------------------------------------------------------------------------------


def test_nonces() -> None:
    secret = b"s" * 32
    n = issue_nonce(secret, 7, now=1000)
    assert len(n) == 32
    assert check_nonce(secret, 7, n, ttl=60, now=1030) is None
    assert "expired" in (check_nonce(secret, 7, n, ttl=60, now=1061) or "")
    assert check_nonce(secret, 8, n, ttl=60, now=1030) is not None
    assert check_nonce(b"t" * 32, 7, n, ttl=60, now=1030) is not None
    assert check_nonce(secret, 7, n[:-1] + bytes([n[-1] ^ 1]), ttl=60, now=1030) is not None
    assert issue_nonce(secret, 7, now=1000) != n


def test_session_cookies() -> None:
    secret = b"c" * 32
    v = session_cookie(secret, 5, expires=2000)
    assert check_session_cookie(secret, v, now=1000) == 5
    assert check_session_cookie(secret, v, now=2001) is None
    assert check_session_cookie(b"d" * 32, v, now=1000) is None
    assert check_session_cookie(secret, v.replace("5.", "6.", 1), now=1000) is None
    for junk in ("", "a.b.c", "1.2", "1.2.3.4"):
        assert check_session_cookie(secret, junk, now=1000) is None


# --- download planning (RFC 9110 ranges) -----------------------------------------------------


@pytest.mark.parametrize(
    ("rng", "if_range", "inm", "expected"),
    [
        (None, None, None, (200, 0, 100)),
        ("bytes=10-19", None, None, (206, 10, 20)),
        ("bytes=90-", None, None, (206, 90, 100)),
        ("bytes=90-1000", None, None, (206, 90, 100)),
        ("bytes=-10", None, None, (206, 90, 100)),
        ("bytes=-1000", None, None, (206, 0, 100)),
        ("bytes=100-", None, None, (416, 0, 0)),
        ("bytes=-0", None, None, (416, 0, 0)),
        ("bytes=20-10", None, None, (200, 0, 100)),  # invalid: ignored
        ("bytes=0-1,5-6", None, None, (200, 0, 100)),  # several ranges: the whole file
        ("items=0-1", None, None, (200, 0, 100)),
        ("bytes=a-b", None, None, (200, 0, 100)),
        ("bytes=10-19", '"t"', None, (206, 10, 20)),
        ("bytes=10-19", '"old"', None, (200, 0, 100)),
        (None, None, '"t"', (304, 0, 0)),
        (None, None, '"x", "t"', (304, 0, 0)),
        (None, None, "*", (304, 0, 0)),
        ("bytes=10-19", None, '"x"', (206, 10, 20)),
    ],
)
def test_download_plan(
    rng: str | None, if_range: str | None, inm: str | None, expected: tuple[int, int, int]
) -> None:
    from suitkit.server.http import plan

    p = plan(100, '"t"', rng, if_range, inm)
    assert (p.status, p.start, p.end) == expected
