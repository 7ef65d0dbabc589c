"""Prometheus text rendering of the metric kinds the node exposes."""

from __future__ import annotations

from runtime.metrics import Counter, CounterView, Registry


def test_a_counter_view_renders_what_it_reads_at_scrape_time():
    tallies = {"retransmit": 3}
    reg = Registry()
    reg.add(CounterView("x_events_total", "events", "event", lambda: dict(tallies)))
    first = reg.render()
    assert "# TYPE x_events_total counter" in first and 'x_events_total{event="retransmit"} 3' in first
    tallies.update(retransmit=5, delivered=2)
    second = reg.render()
    assert 'x_events_total{event="retransmit"} 5' in second and 'x_events_total{event="delivered"} 2' in second
    assert second.index('event="delivered"') < second.index('event="retransmit"')  # sorted, stable


def test_label_values_are_escaped():
    reg = Registry()
    reg.add(CounterView("y_total", "y", "what", lambda: {'a"b\\c': 1}))
    c = reg.add(Counter("z_total", "z", ("why",)))
    c.inc('new\nline')
    text = reg.render()
    assert 'y_total{what="a\\"b\\\\c"} 1' in text and 'z_total{why="new\\nline"} 1' in text


def test_the_memory_report_names_pythons_blocks_and_glibcs_heap():
    import platform
    import re
    from types import SimpleNamespace

    from runtime.node_metrics import memory_report

    node = SimpleNamespace(pool=None, verifier=SimpleNamespace(replay=[]), store=None, transport=None, replica=None)
    report = memory_report(node)
    assert re.search(r"python blocks \d+", report)
    if platform.libc_ver()[0] == "glibc":
        heap = re.search(r"malloc heap (\d+) MiB \(in use (\d+), free (\d+)\), mapped (\d+) MiB", report)
        assert heap and int(heap.group(1)) >= int(heap.group(2)), report


def test_peers_connected_counts_validators_and_observers_apart():
    from types import SimpleNamespace

    from runtime.node_metrics import register

    links = {"v1", "v3", "obs"}
    node = SimpleNamespace(registry=Registry(), validators=SimpleNamespace(names=("v1", "v2", "v3", "v4")),
                           transport=SimpleNamespace(connected=lambda: set(links),
                                                     stats=SimpleNamespace(dropped={"queue_full": 3})),
                           store=None, replica=None, pool=[])
    register(node)
    text = node.registry.render()
    assert "\nevledger_peers_connected 2\n" in text and "\nevledger_observers_connected 1\n" in text
    assert "# TYPE evledger_peer_frames_dropped_total counter" in text
    assert 'evledger_peer_frames_dropped_total{reason="queue_full"} 3' in text
    links.discard("v3")
    assert "\nevledger_peers_connected 1\n" in node.registry.render()


def test_json_logs_carry_utc_milliseconds_and_the_exception(capsys):
    import json
    import logging
    import re

    from runtime.node_metrics import configure_logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("info", as_json=True)
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("evledger.test").exception("it failed")
        line = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    doc = json.loads(line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", doc["time"])
    assert doc["level"] == "error" and doc["message"] == "it failed"
    assert "ValueError: boom" in doc["exception"] and "Traceback" in doc["exception"]


def test_rate_limited_warnings_are_summarised(caplog):
    import logging

    from runtime.connection import RateLimitedLog

    logger = logging.getLogger("evledger.test.peer")
    warn = RateLimitedLog(burst=3, window=10.0, logger=logger, what="peer")
    with caplog.at_level(logging.WARNING, logger="evledger.test.peer"):
        for i in range(50):
            warn.warning(100.0 + i * 0.01, "malformed frame from %s: %s", "v2", "bad")
        warn.warning(200.0, "malformed frame from %s: %s", "v2", "bad")
    messages = [r.getMessage() for r in caplog.records if r.name == "evledger.test.peer"]
    assert messages.count("malformed frame from v2: bad") == 4
    assert "47 similar peer warnings were suppressed" in messages
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="evledger.test.peer"):
        for i in range(5):
            warn.warning(300.0 + i * 0.01, "malformed frame from %s: %s", "v2", "bad")
        warn.flush(305.0)  # inside the window: nothing yet
        assert [r.getMessage() for r in caplog.records].count("2 similar peer warnings were suppressed") == 0
        warn.flush(311.0)  # the peer fell silent; the timer still reports what was held back
        warn.flush(330.0)  # and only once
    assert [r.getMessage() for r in caplog.records].count("2 similar peer warnings were suppressed") == 1
