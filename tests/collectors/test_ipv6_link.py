"""IPv6 over a real link, not loopback: the test's namespace and a peer's (a child process in a
network namespace of its own) joined by a veth pair with unique local addresses. The DNS
collector reads the AAAA answer as it arrives on the Ethernet-framed link, the network collector
reports the TCP connection to the peer."""
import os
import socket
import subprocess
import sys

from host_sim.collectors.dns import DnsCollector
from host_sim.collectors.network import NetworkCollector
from ipv6_net import resolve
from polling import wait_for

OURS, PEER = "fd00:21::1", "fd00:21:0:0:0:0:0:2"
HOST = "peer6.contoso.com"

PEER_SCRIPT = """
import socket, subprocess, sys
sys.path.insert(0, %(tests)r)
from ipv6_net import ResolverStub
print("up", flush=True)
sys.stdin.readline()                      # the test has moved our end of the veth pair here
for command in (["ip", "link", "set", "lo", "up"],
                ["ip", "-6", "addr", "add", "%(peer)s/64", "dev", "v1", "nodad"],
                ["ip", "link", "set", "v1", "up"]):
    subprocess.run(command, check=True)
stub = ResolverStub("%(peer)s", ["%(peer)s"])
server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
server.bind(("%(peer)s", 0))
server.listen(1)
server.settimeout(60)                     # the test failed before connecting: end anyway
print(server.getsockname()[1], flush=True)
conn, _ = server.accept()
while conn.recv(65536):
    pass
conn.sendall(b"p" * 90)
conn.close()
sys.stdin.readline()
stub.close()
"""


def ip(*args):
    subprocess.run(["ip"] + list(args), check=True, capture_output=True)


def link_up(name):
    out = subprocess.run(["ip", "-o", "link", "show", name], capture_output=True, text=True).stdout
    return "LOWER_UP" in out


def test_aaaa_answer_and_tcp_connection_over_a_veth_link(events, private_network):
    script = PEER_SCRIPT % {"tests": os.path.dirname(os.path.abspath(__file__)), "peer": PEER}
    peer = subprocess.Popen(["unshare", "--net", sys.executable, "-c", script], text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    network = NetworkCollector(events.append, dump_interval=3600)
    dns = DnsCollector(events.append)
    try:
        assert peer.stdout.readline() == "up\n"
        ip("link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", str(peer.pid))
        ip("-6", "addr", "add", OURS + "/64", "dev", "v0", "nodad")
        ip("link", "set", "v0", "up")
        peer.stdin.write("go\n")
        peer.stdin.flush()
        port = int(peer.stdout.readline())
        assert wait_for(lambda: link_up("v0"), 10), "the veth link never came up"
        network.open()
        dns.start()
        answer = resolve(PEER, HOST)
        assert answer[3] & 0x0F == 0
        with socket.create_connection((PEER, port), timeout=10) as client:
            client.sendall(b"c" * 1500)
            client.shutdown(socket.SHUT_WR)
            while client.recv(65536):
                pass
            client_port = client.getsockname()[1]
        assert wait_for(lambda: network.read() is not None and any(
            e.get("local_port") == client_port for e in events) and any(
            e["kind"] == "dns" for e in events), 10), events
    finally:
        dns.stop()
        network.close()
        peer.stdin.close()
        try:
            peer.wait(90)
        except subprocess.TimeoutExpired:
            peer.kill()
            peer.wait()
    assert [(e["hostname"], e["address"]) for e in events if e["kind"] == "dns"] == \
        [(HOST, "fd00:21::2")]
    (flow,) = [e for e in events if e.get("local_port") == client_port]
    assert (flow["protocol"], flow["local_address"], flow["remote_address"], flow["remote_port"],
            flow["direction"], flow["bytes_out"], flow["bytes_in"]) == \
        ("TCP", "fd00:21::1", "fd00:21::2", port, "out", 1500 + 2, 90 + 1)
