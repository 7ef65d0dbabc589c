"""``evledger demo`` without a cluster: the page it prints, and SIGTERM/SIGHUP taking Ctrl-C's clean-up path."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest

from runtime import demo


def test_sigterm_raises_keyboard_interrupt_and_the_old_handler_comes_back():
    def previous(signum, frame):
        raise AssertionError("the demo's handler should be the one called")

    old = signal.signal(signal.SIGTERM, previous)
    try:
        with demo._StopSignals() as signals:
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGTERM)  # the handler runs at the next bytecode, in this thread
            assert signals.received == signal.SIGTERM
            os.kill(os.getpid(), signal.SIGHUP)  # a second signal while stopping: ignored
        assert signal.getsignal(signal.SIGTERM) is previous
    finally:
        signal.signal(signal.SIGTERM, old)


def test_signals_are_ignored_once_clean_up_has_begun():
    with demo._StopSignals() as signals:
        signals.stopping()
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C during clean-up
        assert signals.received is None
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL


class FakeCluster:
    """Records what ``run`` asks of ``runtime.cluster``; no process is started."""

    StartError = demo.cluster.StartError
    ClusterError = demo.cluster.ClusterError

    def __init__(self):
        self.downs: list[Path] = []

    def free_base_port(self):
        return 7300

    def init(self, directory, **kw):
        Path(directory).mkdir(parents=True)
        return SimpleNamespace(dir=Path(directory))

    def up(self, directory, **kw):
        nodes = [SimpleNamespace(name=name, role=role, api="http://127.0.0.1:%d" % port) for name, role, port in
                 (("court-node", "validator", 7401), ("observer-1", "observer", 7405))]
        return SimpleNamespace(dir=Path(directory), nodes=nodes)

    def down(self, directory, **kw):
        self.downs.append(Path(directory))
        return SimpleNamespace(stopped=["court-node", "observer-1"], killed=[])


@pytest.fixture
def fake(monkeypatch, tmp_path):
    cluster = FakeCluster()
    monkeypatch.setattr(demo, "cluster", cluster)
    evidence = tmp_path / "order.json"
    evidence.write_text("{}")
    deposit = {"code": "EV-WNBP2-FZTMH-2N1TE-T79FT-Q1XWA", "category": "general", "file": evidence, "height": 1}
    monkeypatch.setattr(demo, "_deposit_samples", lambda consortium, folder: [deposit])
    monkeypatch.setattr(demo, "_retrieve", lambda consortium, deposits, folder: True)
    monkeypatch.setattr(demo, "_receipt", lambda consortium, deposit, root: True)
    return cluster


def test_the_tour_prints_the_verification_page(fake, capsys):
    assert demo.run(once=True) == 0
    out = capsys.readouterr().out
    assert "  verification page: http://127.0.0.1:7405/  (open it in a browser; every node serves it at /)" in out
    assert "open the verification page http://127.0.0.1:7405/, enter EV-WNBP2-FZTMH-2N1TE-T79FT-Q1XWA" in out
    assert len(fake.downs) == 1


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_while_serving_stops_every_node_and_removes_the_folder(fake, capsys, monkeypatch, signum):
    def serving(seconds):
        os.kill(os.getpid(), signum)

    monkeypatch.setattr(demo, "time", SimpleNamespace(sleep=serving))
    before = signal.getsignal(signum)
    assert demo.run(once=False) == 0
    out = capsys.readouterr().out
    root = Path(re.search(r"a local consortium in (\S+)", out).group(1))
    assert "serving until Ctrl-C" in out and "stopping (%s)" % signal.Signals(signum).name in out
    assert "stopped 2 node processes" in out
    assert fake.downs == [root / "consortium"]
    assert not root.exists()
    assert signal.getsignal(signum) is before


def test_a_signal_ignored_on_purpose_stays_ignored():
    """``nohup`` ignores SIGHUP, a background job SIGINT: the demo keeps that."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with demo._StopSignals():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGHUP)  # nothing happens
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
