"""IPv6 from the Linux collectors to the messages (issue 20): live connections over a unique local
address and ::1, joined with AAAA answers of a resolver stub on ::1, aggregated by the host
engine; and `microagent run --once` reporting a TCP connection over ::1 with canonical addresses."""
import os
import sys

from agent_process import AgentProcess
from host_sim import schema
from host_sim.collectors.dns import DnsCollector
from host_sim.collectors.network import NetworkCollector
from polling import wait_for
from test_engine_contract import Window
from ipv6_net import ULA_CLIENT, ULA_SERVER, ResolverStub, listener, resolve, tcp_exchange

MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")
HOST = "hub6.contoso.com"


def test_aaaa_answer_names_the_ipv6_connection_in_connection_create(ula):
    events = []
    network = NetworkCollector(events.append, dump_interval=3600)
    dns = DnsCollector(events.append)
    stub = ResolverStub("::1", ["FD00:20:0:0:1:0:0:1"])
    server = listener(ULA_SERVER)
    network.open()
    dns.start()
    try:
        resolve("::1", HOST)
        client_port, server_port = tcp_exchange(server, ULA_CLIENT, b"u" * 3000, 40)
        assert wait_for(lambda: network.read() is not None
                        and sum(e["kind"] == "connection" for e in events) >= 2
                        and any(e["kind"] == "dns" for e in events), 10), events
    finally:
        dns.stop()
        network.close()
        stub.close()
        server.close()
    window = Window()
    window.record(events)
    window.flush()
    flows = {c["local_port"]: c for c in window.payload("ConnectionCreate")}
    client, inbound = flows[client_port], flows[server_port]
    assert (client["local_address"], client["remote_address"], client["remote_port"],
            client["bytes_out"], client["direction"]) == \
        ("fd00:20::2", "fd00:20::1:0:0:1", server_port, 3000 + 2, "out")
    assert client["extended_properties"] == {"host_name": HOST}
    assert (inbound["local_address"], inbound["remote_address"], inbound["direction"]) == \
        ("fd00:20::1:0:0:1", "fd00:20::2", "in")
    assert not [d for d in window.payload("DroppedEvents") if d.get("unsupported")]


def test_run_once_reports_a_tcp_connection_over_ipv6_loopback(private_network):
    """The issue's acceptance line: the agent itself, in the test's namespace (its child inherits
    it), sees a connection over ::1 and writes canonical addresses."""
    server = listener("0:0:0:0:0:0:0:1")
    agent = AgentProcess([MICROAGENT, "run", "--once", "--output", "-", "--seconds", "3",
                          "--collectors", "NetworkActivity"])
    try:
        agent.wait_ready()
        client_port, server_port = tcp_exchange(server, "::1", b"v" * 2500, 70)
    finally:
        server.close()
    code, out, err = agent.finish(120)
    assert code == 0, err
    flows = [item for line in out.splitlines() for event in schema.check(line)["Events"]
             if event["Name"] == "ConnectionCreate" for item in event["Payload"]]
    by_port = {f["local_port"]: f for f in flows}
    assert client_port in by_port and server_port in by_port, flows
    client, inbound = by_port[client_port], by_port[server_port]
    assert (client["transport_protocol"], client["local_address"], client["remote_address"],
            client["remote_port"], client["bytes_out"], client["bytes_in"], client["direction"]) == \
        ("TCP", "::1", "::1", server_port, 2500 + 2, 70 + 1, "out")
    assert (inbound["local_address"], inbound["remote_address"], inbound["remote_port"],
            inbound["bytes_in"], inbound["direction"]) == ("::1", "::1", client_port, 2500 + 1, "in")
