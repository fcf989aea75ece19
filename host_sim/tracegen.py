"""Seeded generators of raw-event traces (docs/spec.md section 1) for samples, tests and benchmarks.

Profiles:
  quiet   an idle sensor: its MQTT uplink, NTP, a few cron jobs, an occasional login
  busy    a busy gateway: dozens of devices and services, DNS, logins, failed logins
  storm   a cache storm: background traffic plus a scan of 10,000 distinct flows
  random  arbitrary mixes with key collisions, for property tests
"""
import json
import random

START = 1767225600.0  # 2026-01-01T00:00:00Z

_HOSTS = ["hub.azure-devices.net", "time.google.com", "api.example.com", "updates.vendor.io",
          "logs.example.org", "cdn.example.net", "ota.vendor.io", "metrics.example.com"]
_COMMANDS = ["/usr/sbin/cron -f", "/bin/sh -c /usr/local/bin/poll-sensors", "sshd: root [priv]",
             "/usr/bin/python3 /opt/gateway/bridge.py", "/sbin/dhclient -4 eth0",
             "/usr/bin/logrotate /etc/logrotate.conf", "/bin/ls -la /var/log", "/usr/bin/curl -s "
             "https://updates.vendor.io/check", "/usr/sbin/ntpd -g", "/bin/cat /proc/meminfo"]


def _address(rng, prefix="10.0"):
    return "%s.%d.%d" % (prefix, rng.randint(0, 3), rng.randint(1, 254))


def _public(rng):
    return "%d.%d.%d.%d" % (rng.choice((13, 20, 40, 52, 93, 104, 151)), rng.randint(0, 255),
                            rng.randint(0, 255), rng.randint(1, 254))


def quiet(seed=1, duration=4 * 3600.0, start=START):
    rng = random.Random(seed)
    hub = "52.166.2.10"
    t = start
    while t < start + duration:
        t += rng.uniform(20, 40)
        yield {"kind": "connection", "t": round(t, 3), "protocol": "TCP",
               "local_address": "192.168.1.20", "local_port": 50312, "remote_address": hub,
               "remote_port": 8883, "bytes_in": rng.randint(40, 90),
               "bytes_out": rng.randint(200, 600), "direction": "out"}
        if rng.random() < 0.05:
            yield {"kind": "dns", "t": round(t + 0.001, 3), "hostname": "time.google.com",
                   "address": "216.239.35.0"}
            yield {"kind": "connection", "t": round(t + 0.002, 3), "protocol": "UDP",
                   "local_address": "192.168.1.20", "local_port": 123,
                   "remote_address": "216.239.35.0", "remote_port": 123, "bytes_in": 48,
                   "bytes_out": 48, "direction": "out"}
        if rng.random() < 0.03:
            yield {"kind": "process", "t": round(t + 0.003, 3), "type": "exec",
                   "pid": rng.randint(300, 32000), "ppid": 1, "uid": 0,
                   "commandline": "/bin/sh -c /usr/local/bin/poll-sensors"}
        if rng.random() < 0.004:
            yield {"kind": "login", "t": round(t + 0.004, 3), "operation": "Login",
                   "pid": rng.randint(300, 32000), "user_name": "admin", "executable": "pts/0",
                   "remote_address": "192.168.1.5"}


def busy(seed=2, duration=2 * 3600.0, start=START, rate=20.0):
    rng = random.Random(seed)
    devices = ["10.0.%d.%d" % (rng.randint(0, 3), rng.randint(2, 250)) for _ in range(60)]
    resolved = {h: _public(rng) for h in _HOSTS}
    services = [(h, a, rng.choice((443, 8883, 80, 123, 53))) for h, a in resolved.items()]
    t = start
    while t < start + duration:
        t += rng.expovariate(rate)
        roll = rng.random()
        stamp = round(t, 3)
        if roll < 0.55:
            host, address, port = rng.choice(services)
            if rng.random() < 0.2:
                yield {"kind": "dns", "t": stamp, "hostname": host, "address": address}
            yield {"kind": "connection", "t": stamp, "protocol": "UDP" if port in (53, 123)
                   else "TCP", "local_address": "10.0.0.1", "local_port": rng.randint(40000, 40150),
                   "remote_address": address, "remote_port": port,
                   "bytes_in": rng.randint(0, 20000), "bytes_out": rng.randint(0, 4000),
                   "direction": "out"}
        elif roll < 0.8:
            yield {"kind": "connection", "t": stamp, "protocol": rng.choice(("TCP", "TCP", "UDP")),
                   "local_address": "10.0.0.1", "local_port": rng.choice((1883, 8883, 502, 22)),
                   "remote_address": rng.choice(devices), "remote_port": rng.randint(50000, 50003),
                   "bytes_in": rng.randint(10, 3000), "bytes_out": rng.randint(10, 500),
                   "direction": "in"}
        elif roll < 0.97:
            yield {"kind": "process", "t": stamp, "type": rng.choice(("fork", "exec", "exec")),
                   "pid": rng.randint(300, 60000), "ppid": rng.randint(1, 300),
                   "uid": rng.choice((0, 0, 1000, 33)), "commandline": rng.choice(_COMMANDS),
                   "user_name": "root"}
        else:
            yield {"kind": "login", "t": stamp,
                   "operation": rng.choice(("Login", "Logout", "LoginFailed", "LoginFailed")),
                   "pid": rng.randint(300, 60000), "user_name": rng.choice(("root", "admin", "pi")),
                   "executable": "sshd", "remote_address": _public(rng)}


def storm(seed=3, flows=10000, start=START):
    """Background traffic for 10 minutes with a burst of FLOWS distinct flows in the middle."""
    rng = random.Random(seed)
    background = busy(seed, duration=600.0, start=start, rate=5.0)
    scan_start = start + 300.0
    scanned = 0
    for event in background:
        while scanned < flows and scan_start + scanned * 0.01 <= event["t"]:
            yield {"kind": "connection", "t": round(scan_start + scanned * 0.01, 3),
                   "protocol": "TCP", "local_address": "10.0.0.1",
                   "local_port": 1024 + scanned % 60000,
                   "remote_address": "198.51.%d.%d" % (scanned // 250 % 256, scanned % 250 + 1),
                   "remote_port": rng.choice((22, 23, 80, 443, 8080)), "bytes_in": 0,
                   "bytes_out": 60, "direction": "out"}
            scanned += 1
        yield event


def spelled(groups, rng):
    """IPv6 GROUPS (eight ints) written one of the many valid ways: upper or lower case, leading
    zeros or not, "::" over some run of zeros or none, an IPv4-mapped one dotted or not."""
    texts = [("%x" % g).zfill(rng.choice((1, 1, 4))) for g in groups]
    if groups[:6] == [0, 0, 0, 0, 0, 0xFFFF] and rng.random() < 0.5:
        texts[6:] = ["%d.%d.%d.%d" % (groups[6] >> 8, groups[6] & 0xFF, groups[7] >> 8,
                                      groups[7] & 0xFF)]
    runs = [i for i in range(len(texts) if len(texts) == 8 else 6) if groups[i] == 0]
    if runs and rng.random() < 0.7:
        start = rng.choice(runs)
        end = start + 1
        while end < (len(texts) if len(texts) == 8 else 6) and groups[end] == 0:
            end += 1
        text = ":".join(texts[:start]) + "::" + ":".join(texts[end:])
    else:
        text = ":".join(texts)
    return text.upper() if rng.random() < 0.3 else text


def _ipv4_groups(text):
    a, b, c, d = (int(part) for part in text.split("."))
    return [0, 0, 0, 0, 0, 0xFFFF, a << 8 | b, c << 8 | d]


def _ipv6_address(k, rng):
    """One of a few IPv6 destinations (key K), spelled at random."""
    return spelled([0x2001, 0xDB8, k % 7, 0, 0, 0, 0, k % 5 + 1], rng)


def random_trace(seed, events=500, distinct=50, start=START, span=3600.0, ipv6=0.0):
    """Arbitrary events drawn from DISTINCT keys per kind (collisions on purpose). IPV6: the
    share of connections, DNS answers and logins over IPv6 (addresses in random spellings,
    IPv4 ones sometimes written IPv4-mapped); 0 gives the same trace as before IPv6 was in."""
    rng = random.Random(seed)
    times = sorted(rng.uniform(start, start + span) for _ in range(events))
    for t in times:
        k = rng.randrange(distinct)
        kind = rng.choice(("process", "connection", "connection", "dns", "login"))
        stamp = round(t, 3)
        if kind == "process":
            yield {"kind": "process", "t": stamp, "type": rng.choice(("fork", "exec")),
                   "pid": rng.randint(1, 99999), "ppid": rng.randint(0, 99),
                   "uid": k % 3, "commandline": "cmd-%d" % (k // 3)}
        elif kind == "connection":
            local = "10.0.0.1"
            remote = "10.1.%d.%d" % (k % 7, k % 5 + 1)
            if rng.random() < ipv6:
                local = spelled([0x2001, 0xDB8, 0, 0, 0, 0, 0, 0x10], rng)
                remote = _ipv6_address(k, rng)
            elif ipv6 and rng.random() < ipv6:
                remote = spelled(_ipv4_groups(remote), rng)
            yield {"kind": "connection", "t": stamp, "protocol": ("TCP", "UDP", "ICMP")[k % 3],
                   "local_address": local, "local_port": 40000 + k % 11,
                   "remote_address": remote, "remote_port": (443, 53, 8883, 22)[k % 4],
                   "bytes_in": rng.randint(0, 5000), "bytes_out": rng.randint(0, 5000),
                   "direction": rng.choice(("in", "out"))}
        elif kind == "dns":
            address = "10.1.%d.%d" % (k % 7, k % 5 + 1)
            if ipv6 and rng.random() < ipv6:
                address = _ipv6_address(k, rng)
            yield {"kind": "dns", "t": stamp, "hostname": "host-%d.example" % (k % 13),
                   "address": address}
        else:
            remote = "192.0.2.%d" % (k % 9 + 1)
            if ipv6 and rng.random() < ipv6:
                remote = _ipv6_address(k, rng)
            yield {"kind": "login", "t": stamp,
                   "operation": ("Login", "Logout", "LoginFailed")[k % 3],
                   "pid": rng.randint(1, 99999), "user_name": "user%d" % (k % 4),
                   "executable": "pts/%d" % (k % 3), "remote_address": remote}


PROFILES = {"quiet": quiet, "busy": busy, "storm": storm}


def write(events, path):
    with open(path, "w") as f:
        for event in events:
            f.write(json.dumps(event, separators=(",", ":")) + "\n")
