"""Self-tests of the test lab (tests/lab/): it must really build what scanner tests rely on.

Pure parts (DNS/NTP answers, multiport chunks, the link's random holds) are tested
without root; everything else builds namespaces and is marked ``lab``.
"""

from __future__ import annotations

import ipaddress
import random
import shutil
import statistics
import struct
import subprocess
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.lab import Lab, LabError, LabTimeout, lab_available, netns
from tests.lab.core import _multiport_chunks
from tests.lab.link import Impairment
from tests.lab.runner import resolve
from tests.lab.serve import dns_answer, ntp_answer

PROBES = "tests.lab.probes"
SKIP_REASON = lab_available()


def need_lab() -> None:
    if SKIP_REASON:
        pytest.skip(SKIP_REASON)


# --- pure parts ----------------------------------------------------------------------------


def test_multiport_chunks_merge_ranges_and_respect_the_15_slot_limit() -> None:
    assert _multiport_chunks([81, 82, 83, 90]) == ["81:83,90"]
    chunks = _multiport_chunks(range(1, 2000, 2))  # 1000 single ports
    assert all(len(c.split(",")) <= 15 for c in chunks)
    covered = {int(p) for c in chunks for p in c.split(",")}
    assert covered == set(range(1, 2000, 2))
    ranged = _multiport_chunks([*range(10, 20), *range(30, 40), 50])
    assert ranged == ["10:19,30:39,50"]


def _dns_query(name: str, qtype: int, qid: int = 0x1234) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return (
        struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
        + labels
        + b"\0"
        + struct.pack("!HH", qtype, 1)
    )


def test_dns_answer_is_a_valid_response_for_a_and_aaaa() -> None:
    from scapy.layers.dns import DNS

    reply = dns_answer(_dns_query("www.example.test", 1), "192.0.2.10", "2001:db8::10")
    assert reply is not None
    dns = DNS(reply)
    assert (dns.id, dns.qr, dns.rcode, dns.ancount) == (0x1234, 1, 0, 1)
    assert dns.qd[0].qname == b"www.example.test."
    assert dns.an[0].rdata == "192.0.2.10"
    reply6 = dns_answer(_dns_query("x.test", 28), "192.0.2.10", "2001:db8::10")
    assert reply6 is not None
    assert DNS(reply6).an[0].rdata == "2001:db8::10"
    mx = dns_answer(_dns_query("x.test", 15), "192.0.2.10", None)
    assert mx is not None and DNS(mx).ancount == 0 and DNS(mx).rcode == 0


def test_dns_answer_rejects_garbage_and_ignores_responses() -> None:
    assert dns_answer(b"\x00\x01", "192.0.2.10", None) is None
    response = bytearray(_dns_query("a.test", 1))
    response[2] |= 0x80
    assert dns_answer(bytes(response), "192.0.2.10", None) is None
    truncated = _dns_query("a.test", 1)[:-3]
    formerr = dns_answer(truncated, "192.0.2.10", None)
    assert formerr is not None and formerr[3] & 0x0F == 1


def test_ntp_answer_is_a_server_reply_echoing_the_client_time() -> None:
    request = bytearray(48)
    request[0] = (4 << 3) | 3
    request[40:48] = struct.pack("!Q", 0x1122334455667788)
    reply = ntp_answer(bytes(request), now=1_700_000_000.0)
    assert reply is not None and len(reply) == 48
    assert reply[0] & 0x7 == 4 and (reply[0] >> 3) & 0x7 == 4 and reply[1] == 1
    assert struct.unpack_from("!Q", reply, 24)[0] == 0x1122334455667788
    transmit_s = struct.unpack_from("!Q", reply, 40)[0] >> 32
    assert transmit_s == 1_700_000_000 + 2208988800
    request[0] = (4 << 3) | 4  # a server packet is not answered
    assert ntp_answer(bytes(request)) is None


@given(st.binary(max_size=600))
def test_responders_never_raise_on_any_datagram(data: bytes) -> None:
    for reply in (dns_answer(data, "192.0.2.10", "2001:db8::10"), ntp_answer(data)):
        assert reply is None or isinstance(reply, bytes)


@given(st.binary(min_size=12, max_size=12), st.binary(max_size=80))
def test_dns_answers_to_any_query_header_keep_its_id(header: bytes, rest: bytes) -> None:
    query = bytes([header[0], header[1], header[2] & 0x7F, *header[3:]]) + rest  # QR=0
    reply = dns_answer(query, "192.0.2.10", None)
    assert reply is not None and reply[:2] == query[:2] and reply[2] & 0x80


def test_impairment_holds_within_bounds_and_drops_at_the_given_rate() -> None:
    imp = Impairment(0.025, 0.005, 0.3, 0.0, False, random.Random(7))
    holds = [imp.hold() for _ in range(20000)]
    kept = [h for h in holds if h is not None]
    assert 0.27 < 1 - len(kept) / len(holds) < 0.33
    assert min(kept) >= 0.020 and max(kept) <= 0.030
    again = Impairment(0.025, 0.005, 0.3, 0.0, False, random.Random(7))
    assert [again.hold() for _ in range(100)] == holds[:100]  # seeded: repeatable
    reorder = Impairment(0.025, 0.0, 0.0, 0.5, True, random.Random(1))
    assert 0.4 < [reorder.hold() for _ in range(2000)].count(0.0) / 2000 < 0.6


def test_runner_resolves_dotted_names() -> None:
    assert resolve("os.path.join") is __import__("os").path.join
    assert resolve("tests.lab.probes.tcp_connect").__name__ == "tcp_connect"
    with pytest.raises(ModuleNotFoundError):
        resolve("no_such_module_anywhere.f")


# --- one shared lab for the read-only checks ------------------------------------------------


@pytest.fixture(scope="module")
def shared(module_lab: Lab) -> Lab:
    t1 = module_lab.add_host("t1", v4="192.0.2.10", v6="2001:db8::10")
    t1.serve_tcp([22, 80, 443])
    t1.serve_udp({53: "dns", 123: "ntp", 7: "echo"})
    t1.drop([81, 82], proto="tcp")
    t1.reject([83], proto="tcp", with_="icmp-admin-prohibited")
    t1.reject([84], proto="tcp", with_="tcp-reset")
    module_lab.add_host("t2")
    return module_lab


@pytest.mark.lab
@pytest.mark.parametrize("addr", ["192.0.2.10", "2001:db8::10"])
def test_scanner_reaches_served_ports_and_sees_closed_ones(shared: Lab, addr: str) -> None:
    results = [shared.call(f"{PROBES}.tcp_connect", addr, port) for port in (22, 443, 23)]
    assert results == ["open", "open", "ECONNREFUSED"]


@pytest.mark.lab
def test_drop_times_out_and_rejects_give_their_errors(shared: Lab) -> None:
    call = shared.call
    assert call(f"{PROBES}.tcp_connect", "192.0.2.10", 81, 1.0) == "timeout"
    assert call(f"{PROBES}.tcp_connect", "2001:db8::10", 82, 1.0) == "timeout"
    # ICMP admin-prohibited: Linux maps it to EHOSTUNREACH for v4 and EACCES for v6.
    assert call(f"{PROBES}.tcp_connect", "192.0.2.10", 83) == "EHOSTUNREACH"
    assert call(f"{PROBES}.tcp_connect", "2001:db8::10", 83) == "EACCES"
    assert call(f"{PROBES}.tcp_connect", "192.0.2.10", 84) == "ECONNREFUSED"
    assert call(f"{PROBES}.tcp_connect", "2001:db8::10", 84) == "ECONNREFUSED"


@pytest.mark.lab
def test_rules_are_in_both_families(shared: Lab) -> None:
    t1 = shared.hosts["t1"]
    v4 = t1.iptables("-S", "INPUT").stdout
    v6 = t1.ip6tables("-S", "INPUT").stdout
    assert "icmp-admin-prohibited" in v4 and "icmp6-adm-prohibited" in v6
    assert v4.count("--dports 81:82") == 1 and v6.count("--dports 81:82") == 1


@pytest.mark.lab
@pytest.mark.parametrize("addr", ["192.0.2.10", "2001:db8::10"])
def test_dns_responder_answers_real_queries(shared: Lab, addr: str) -> None:
    from scapy.layers.dns import DNS

    raw = shared.call(f"{PROBES}.dns_query", addr, "host.lab.test", 1)
    dns = DNS(raw)
    assert dns.qr == 1 and dns.rcode == 0 and dns.an[0].rdata == "192.0.2.10"
    raw6 = shared.call(f"{PROBES}.dns_query", addr, "host.lab.test", 28)
    assert DNS(raw6).an[0].rdata == "2001:db8::10"


@pytest.mark.lab
@pytest.mark.parametrize("addr", ["192.0.2.10", "2001:db8::10"])
def test_ntp_responder_answers_a_client(shared: Lab, addr: str) -> None:
    before = time.time()
    raw = shared.call(f"{PROBES}.ntp_query", addr)
    assert raw is not None and len(raw) == 48
    assert raw[0] & 0x7 == 4 and raw[1] == 1  # server mode, stratum 1
    server_s = (struct.unpack_from("!Q", raw, 40)[0] >> 32) - 2208988800
    assert before - 5 <= server_s <= time.time() + 5


@pytest.mark.lab
def test_udp_echo_and_closed_udp_port(shared: Lab) -> None:
    assert shared.call(f"{PROBES}.udp_exchange", "192.0.2.10", 7, [b"hi", b"there"]) == [
        b"hi",
        b"there",
    ]
    assert shared.call(f"{PROBES}.udp_exchange", "2001:db8::10", 9, [b"x"], 0.5) == [None]


@pytest.mark.lab
def test_unassigned_address_is_a_down_host(shared: Lab) -> None:
    result = shared.call(f"{PROBES}.tcp_connect", "192.0.2.99", 80, 5.0)
    assert result in {"EHOSTUNREACH", "timeout"}


@pytest.mark.lab
def test_no_default_route_and_nothing_in_the_root_namespace(shared: Lab) -> None:
    nodes = [shared, *shared.hosts.values()]
    for node in nodes:
        for family in ("-4", "-6"):
            out = node.exec(["ip", family, "route", "show", "default"]).stdout
            assert out.strip() == "", f"default route in {node.ns}: {out}"
    root_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "v-t1" not in root_links and "br0" not in root_links.split()


@pytest.mark.lab
def test_sysctl_is_per_namespace(shared: Lab) -> None:
    t2 = shared.hosts["t2"]
    path = "/proc/sys/net/ipv4/icmp_ratelimit"
    t2.sysctl("net.ipv4.icmp_ratelimit", 500)  # ms, a whole number of jiffies
    assert t2.exec(["cat", path]).stdout.strip() == "500"
    assert shared.exec(["cat", path]).stdout.strip() == "1000"  # the kernel default stays
    with pytest.raises(LabError, match="sysctl"):
        t2.sysctl("net.ipv4.no_such_knob", 1)


@pytest.mark.lab
def test_scanner_namespace_has_loopback_up(shared: Lab) -> None:
    assert shared.call(f"{PROBES}.udp_exchange", "127.0.0.1", 9, [b"x"], 0.3) == [None]
    assert "UP" in shared.exec(["ip", "link", "show", "lo"]).stdout


# --- lab.call itself ------------------------------------------------------------------------


@pytest.mark.lab
def test_call_reraises_remote_exceptions_with_the_remote_traceback(shared: Lab) -> None:
    with pytest.raises(ValueError) as info:
        shared.call("ipaddress.ip_address", "not-an-address")
    assert any("scanner namespace" in note for note in info.value.__notes__)


@pytest.mark.lab
def test_call_awaits_coroutines_and_respects_its_timeout(shared: Lab) -> None:
    assert shared.call("asyncio.sleep", 0, "done") == "done"
    assert shared.call(need_lab) is None  # a module-level function, by reference
    with pytest.raises(LabTimeout):
        shared.call("time.sleep", 10, timeout_s=1.0)


# --- impairments ----------------------------------------------------------------------------


@pytest.mark.lab
def test_loss_drops_packets_in_both_directions(lab: Lab) -> None:
    host = lab.add_host("lossy")
    host.serve_udp({7: "echo"})
    host.loss(0.5)
    rtts = lab.call(f"{PROBES}.udp_echo_rtts", str(host.v4), 7, 200, interval=0.002)
    delivered = sum(r is not None for r in rtts) / len(rtts)
    assert 0.10 <= delivered <= 0.45  # 0.5 each way: a quarter survives the round trip
    counters = host.iptables("-L", "INPUT", "-v", "-n", "-x").stdout.splitlines()
    dropped_in = int(next(line for line in counters if "statistic" in line).split()[0])
    assert 60 <= dropped_in <= 140  # about half of the 200 that arrived
    host.loss(0)
    rtts = lab.call(f"{PROBES}.udp_echo_rtts", str(host.v6), 7, 50)
    assert all(r is not None for r in rtts)


@pytest.mark.lab
def test_delay_link_adds_its_delay_v4_and_v6_without_serializing(lab: Lab) -> None:
    host = lab.add_delayed_host("slow", delay=0.05, jitter=0.01, seed=1)
    host.serve_udp({7: "echo"})
    host.serve_tcp([22])
    for addr in (str(host.v4), str(host.v6)):
        rtts = lab.call(f"{PROBES}.udp_echo_rtts", addr, 7, 60, interval=0.005)
        got = [r for r in rtts if r is not None]
        assert len(got) == 60
        assert 0.040 <= statistics.median(got) <= 0.080
        assert statistics.pstdev(got) > 0.001  # the jitter is there
        assert lab.call(f"{PROBES}.tcp_connect", addr, 22) == "open"
    # 200 datagrams sent at once: held concurrently they all return in about one delay;
    # a link that held them one after another would need 200 x 50 ms = 10 s.
    burst = lab.call(f"{PROBES}.udp_echo_rtts", str(host.v4), 7, 200)
    assert all(r is not None and r < 1.0 for r in burst)
    root_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "d-slow" not in root_links and "tun0" not in root_links


@pytest.mark.lab
def test_delay_link_loss(lab: Lab) -> None:
    host = lab.add_delayed_host("lossy", delay=0.002, loss=0.5, seed=3)
    host.serve_udp({7: "echo"})
    rtts = lab.call(f"{PROBES}.udp_echo_rtts", str(host.v4), 7, 200, interval=0.002)
    assert 0.10 <= sum(r is not None for r in rtts) / len(rtts) <= 0.45


# --- life cycle -----------------------------------------------------------------------------


def _lab_namespaces(lab_id: str) -> list[str]:
    return [ns for ns in netns.list_namespaces() if ns.startswith(lab_id + "-")]


@pytest.mark.lab
def test_exit_removes_every_namespace_and_process() -> None:
    need_lab()
    with Lab() as lab:
        host = lab.add_host("a")
        server = host.serve_tcp([22])
        slow = lab.add_delayed_host("b", delay=0.01)
        assert len(_lab_namespaces(lab.lab_id)) == 3
        pids = [h.proc.pid for h in lab._helpers]
        assert server.alive() and all(netns.pid_alive(p) for p in pids)
        assert slow.v4 in ipaddress.ip_network("192.0.2.128/25")
    assert _lab_namespaces(lab.lab_id) == []
    assert not any(netns.pid_alive(p) for p in pids)


@pytest.mark.lab
def test_exit_cleans_up_after_an_error_midway() -> None:
    need_lab()
    with pytest.raises(ValueError), Lab() as lab:
        lab.add_host("ok", v4="192.0.2.10")
        lab.add_host("dup", v4="192.0.2.10")  # the address is taken: ValueError
    assert _lab_namespaces(lab.lab_id) == []


@pytest.mark.lab
def test_bad_input_is_refused_with_a_message() -> None:
    need_lab()
    with Lab() as lab:
        with pytest.raises(ValueError, match="host name"):
            lab.add_host("Bad_Name")
        with pytest.raises(ValueError, match="not a host address"):
            lab.add_host("far", v4="198.51.100.7")
        host = lab.add_host("x")
        with pytest.raises(ValueError, match="unknown reject"):
            host.reject([1], with_="icmp-nonsense")
        with pytest.raises(LabError, match="iptables"):
            host.iptables("-A", "NO_SUCH_CHAIN", "-j", "DROP")


@pytest.mark.lab
def test_stale_cleanup_removes_dead_creators_only() -> None:
    need_lab()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"portlib-{dead.pid}-0badc0-x"
    live = f"portlib-{__import__('os').getpid()}-0badc1-y"
    netns.add_namespace(stale)
    netns.add_namespace(live)
    sleeper = subprocess.Popen(netns.ns_argv(stale, ["sleep", "60"]), start_new_session=True)
    try:
        time.sleep(0.2)
        removed = netns.clean_stale()
        names = netns.list_namespaces()
        assert stale in removed and stale not in names
        assert live in names and live not in removed
        assert sleeper.wait(timeout=5) is not None  # killed with its namespace
    finally:
        sleeper.kill()
        netns.delete_namespace(live)
        netns.delete_namespace(stale)


@pytest.mark.lab
async def test_acall_works_from_async_tests(shared: Lab) -> None:
    assert await shared.acall(f"{PROBES}.tcp_connect", "192.0.2.10", 22) == "open"


@pytest.mark.lab
def test_exec_in_the_scanner_namespace_can_import_this_checkout(shared: Lab) -> None:
    import sys

    out = shared.exec([sys.executable, "-c", "import tests.lab.probes as p; print(p.__file__)"])
    assert out.stdout.strip().endswith("tests/lab/probes.py")


@pytest.mark.lab
def test_keep_leaves_the_lab_for_debugging() -> None:
    need_lab()
    with Lab(keep=True) as lab:
        lab.add_host("kept").serve_tcp([22])
    try:
        assert len(_lab_namespaces(lab.lab_id)) == 2
        assert lab._helpers[0].alive()  # not tied to this process any more
        assert lab.call(f"{PROBES}.tcp_connect", "192.0.2.10", 22) == "open"
    finally:
        for ns in _lab_namespaces(lab.lab_id):
            netns.delete_namespace(ns)
        lab._helpers[0].stop()
        shutil.rmtree(lab.dir, ignore_errors=True)
    assert _lab_namespaces(lab.lab_id) == []
