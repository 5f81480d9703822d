"""Ports handed to processes that bind them later stay clear of outgoing connections."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from havm import ports


def test_free_ports_are_distinct_bindable_and_outside_the_ephemeral_range() -> None:
    low, high = ports.ephemeral_range()
    chosen = ports.free_ports(50)
    assert len(set(chosen)) == 50
    assert all(not low <= p <= high and ports.LOWEST_PORT <= p <= ports.HIGHEST_PORT for p in chosen)
    for port in chosen:
        assert ports.port_is_free(port)


def test_excluded_ports_are_never_chosen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setting = tmp_path / "ip_local_port_range"
    setting.write_text("10010 65535\n")  # ten candidates: 10000-10009
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE_FILE", setting)
    promised = {10000, 10001, 10002, 10003, 10004}
    chosen = ports.free_ports(3, exclude=promised)
    assert len(set(chosen)) == 3 and not set(chosen) & promised


def test_a_port_something_listens_on_is_not_free() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", ports.free_port()))
        listener.listen()
        assert not ports.port_is_free(listener.getsockname()[1])


def test_a_narrowed_range_is_read_from_the_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setting = tmp_path / "ip_local_port_range"
    setting.write_text("10100\t65535\n")
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE_FILE", setting)
    monkeypatch.delenv(ports.PORT_RANGE_ENV, raising=False)  # a test worker's own range
    assert ports.candidate_ports() == [range(10000, 10100)]
    assert all(10000 <= p < 10100 for p in ports.free_ports(5))


def test_with_no_range_left_the_kernel_chooses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setting = tmp_path / "ip_local_port_range"
    setting.write_text("1024 65535\n")
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE_FILE", setting)
    monkeypatch.delenv(ports.PORT_RANGE_ENV, raising=False)
    assert ports.candidate_ports() == []
    assert ports.free_port() > 0


def test_unreadable_setting_means_linux_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE_FILE", tmp_path / "missing")
    assert ports.ephemeral_range() == ports.LINUX_DEFAULT_EPHEMERAL_RANGE


def test_havm_port_range_keeps_every_port_inside_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "ephemeral_range", lambda: (32768, 60999))
    monkeypatch.setenv(ports.PORT_RANGE_ENV, "20000-20099")
    chosen = ports.free_ports(30)
    assert len(set(chosen)) == 30 and all(20000 <= p <= 20099 for p in chosen)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc", "is not a range of ports like 20000-29999"),
        ("20000", "is not a range of ports"),
        ("30000-20000", "must lie within 10000-65535, low end first"),
        ("80-90", "must lie within"),
    ],
)
def test_a_bad_havm_port_range_is_one_sentence(text: str, message: str) -> None:
    with pytest.raises(ports.PortRangeError) as caught:
        ports.configured_range(text)
    assert message in str(caught.value) and str(caught.value).startswith("HAVM_PORT_RANGE: ")
