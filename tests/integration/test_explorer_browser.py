"""The explorer page (``/explore``) in a real browser: Debian's Chromium driven by Playwright.

A member's cross-device journey (login on a phone 3 h ago, a title streamed on the TV 2 h ago, a game
played on a tablet 1 h ago) is written to the live store through the stream's mapping and archived
into a private catalog from which the history is derived. The browser enters the reader token,
searches the member, and the test reads Cytoscape's model (``window.cy``): the account, its devices
and its profile are drawn; a real mouse click on the profile expands it to the title and the game;
moving the time slider to before the TV session makes that edge disappear. A screenshot is kept under
the test's tmp dir.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rdg_platform.history.tables import derive_window
from rdg_platform.kv import GraphStore
from rdg_platform.lakehouse.archive import archive_records
from rdg_platform.lakehouse.catalog import CatalogConfig
from rdg_platform.lakehouse.kafka_window import WindowRecord
from rdg_platform.local_services.credentials import load_or_create
from rdg_platform.serving.app import create_app
from rdg_platform.serving.explore import CYTOSCAPE
from rdg_platform.settings import Settings
from tests.support.kv import isolated_spec, unique_keyspace
from tests.support.oracle import updates
from tests.support.serving import serve_in_thread

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
H = 3_600_000
ACC = f"xp-{uuid.uuid4().hex[:6]}"
NOW = int(time.time() * 1000)
T_PHONE, T_TV, T_GAME = NOW - 3 * H, NOW - 2 * H, NOW - 1 * H
PROFILE, PHONE, TV, TABLET = f"{ACC}-p1", f"{ACC}-phone", f"{ACC}-tv", f"{ACC}-tablet"
TITLE, GAME = f"{ACC}-title", f"{ACC}-game"
# The journey as source events (topic, event); what each means is written in the assertions below.
EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("member.login", {"event_id": f"{ACC}-1", "event_time": T_PHONE, "account_id": ACC, "profile_id": PROFILE,
                      "device_id": PHONE, "device_type": "PHONE", "country": "NL", "app_version": "2.0",
                      "plan": "premium"}),
    ("member.playback", {"event_id": f"{ACC}-2", "event_time": T_TV, "account_id": ACC, "profile_id": PROFILE,
                         "device_id": TV, "device_type": "TV", "title_id": TITLE, "episode_id": None,
                         "action": "START", "position_ms": 0, "is_live": False}),
    ("member.gaming", {"event_id": f"{ACC}-3", "event_time": T_GAME, "account_id": ACC, "profile_id": PROFILE,
                       "device_id": TABLET, "device_type": "TABLET", "game_id": GAME, "action": "LAUNCH",
                       "session_id": "s1"}),
]


@pytest.fixture(scope="module")
def chromium() -> str:
    subprocess.run(["bash", str(ROOT / "tests" / "ui" / "ensure_chromium.sh")], check=True, timeout=900)
    return "/usr/bin/chromium"


@pytest.fixture(scope="module")
def explorer(services: object, cfg: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert CYTOSCAPE.is_file(), "Cytoscape.js is not vendored: run scripts/vendor_js.sh"
    spec = isolated_spec(unique_keyspace("rdg_test_explore"), cfg)
    store = GraphStore.from_spec(spec, cfg.cassandra)
    store.ensure_schema()
    cat_cfg = CatalogConfig.local(tmp_path_factory.mktemp("explore_catalog"))
    catalog = cat_cfg.load()
    start = (T_PHONE // H) * H
    for i, (topic, ev) in enumerate(EVENTS):
        store.write(updates([(topic, ACC, ev)]))  # what the event means (the hand-written oracle)
        rec = WindowRecord(0, i, ev["event_time"], ACC.encode(), json.dumps(ev).encode())
        archive_records(catalog, topic, spec.sources[topic].schema, lambda b: (1, json.loads(b)), [[rec]],
                        start, NOW + 1)
    derive_window(catalog, spec, start, NOW + 1, namespace=cfg.history.namespace)
    s = cfg.model_copy(update={
        "iceberg": cfg.iceberg.model_copy(update={"catalog_uri": cat_cfg.uri, "warehouse": cat_cfg.warehouse}),
        "history": cfg.history.model_copy(update={"cache_s": 0.0})})
    try:
        with serve_in_thread(create_app(spec, store=store, settings=s)) as url:
            yield url
    finally:
        store.kv.drop_keyspaces()
        store.close()


def _model(page: Any) -> dict[str, Any]:
    got: dict[str, Any] = page.evaluate(
        "() => ({nodes: cy.nodes().map(n => n.id()), edges: cy.edges().map(e => e.data('type') + ' ' + "
        "e.source().id() + ' ' + e.target().id())})")
    return got


def _wait_ready(page: Any) -> None:
    page.wait_for_function("() => document.body.dataset.state === 'ready' && window.cy", timeout=30_000)


def test_explorer_shows_the_journey(explorer: str, chromium: str, cfg: Settings, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    token = load_or_create(cfg.state_dir).api_tokens["reader"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{explorer}/explore")
            _wait_ready(page)
            page.fill("#token", token)
            page.click("#token-form button")
            assert page.evaluate("() => sessionStorage.getItem('rdg.token')") == token
            page.select_option("#node-type", "account")
            page.fill("#node-id", ACC)
            page.click("#search button")
            page.wait_for_function("() => cy.nodes().length >= 4", timeout=30_000)
            _wait_ready(page)
            m = _model(page)
            for n in (f"account/{ACC}", f"device/{PHONE}", f"device/{TV}", f"profile/{PROFILE}"):
                assert n in m["nodes"], (n, m)
            assert f"streamed_from account/{ACC} device/{TV}" in m["edges"]
            assert f"game/{GAME}" not in m["nodes"]  # two hops away: account -> profile -> game

            # a real click on the profile node expands it
            pos = page.evaluate(f"() => cy.getElementById('profile/{PROFILE}').renderedPosition()")
            box = page.locator("#graph").bounding_box()
            assert box is not None
            page.mouse.click(box["x"] + pos["x"], box["y"] + pos["y"])
            page.wait_for_function(f"() => cy.getElementById('game/{GAME}').nonempty()", timeout=30_000)
            _wait_ready(page)
            m = _model(page)
            assert f"title/{TITLE}" in m["nodes"] and f"plays profile/{PROFILE} game/{GAME}" in m["edges"]
            # the journey, in time order: phone login, TV stream, game on the tablet
            journey = [t.split(" ", 2)[2] for t in page.locator("#journey li").all_inner_texts()]
            steps = [j for j in journey if j.split(" ", 1)[0] in (ACC, PROFILE)]
            assert f"{ACC} logged_in_from {PHONE} (PHONE)" in steps[0], journey
            assert any(f"{ACC} streamed_from {TV} (TV)" in j for j in steps[1:3]), journey
            assert steps[-1] == f"{PROFILE} plays {GAME} on {TABLET}", journey
            page.screenshot(path=str(tmp_path / "explorer_journey.png"))

            # the slider, moved to between the phone login and the TV session: the TV edge is gone
            target = (T_PHONE + T_TV) // 2
            page.evaluate("""(t) => { const s = document.getElementById('slider');
                const hi = Date.now(), lo = Math.min(rdgExplorer.state.minTs - 60000, hi - 3600000);
                s.value = String(Math.floor((t - lo) * 1000 / (hi - lo)));
                s.dispatchEvent(new Event('change')); }""", target)
            page.wait_for_function(
                f"() => document.body.dataset.state === 'ready' && cy.getElementById('device/{PHONE}').nonempty() "
                f"&& cy.getElementById('device/{TV}').empty()", timeout=30_000)
            m = _model(page)
            assert f"streamed_from account/{ACC} device/{TV}" not in m["edges"]
            assert f"logged_in_from account/{ACC} device/{PHONE}" in m["edges"]
            assert "history" in page.inner_text("#status")
            page.screenshot(path=str(tmp_path / "explorer_before_tv.png"))
        finally:
            browser.close()
    assert (tmp_path / "explorer_journey.png").stat().st_size > 0
