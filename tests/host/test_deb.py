"""The Debian package (`make deb`, packaging/build-deb.sh): built here, then installed, run,
upgraded, removed and purged with dpkg -- not on this machine, which colleagues share, but in a
throw-away copy of it (tests/throwaway_root.py) with the real dpkg database, python3, adduser
and kernel. Needs root (mounts, chroot, dpkg)."""
import os
import re
import subprocess
import sys

import pytest

import throwaway_root
from message_rows import without_ids

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CAPS = "+audit_control,+audit_read,+net_raw,+dac_read_search"

# Runs in the throw-away root $R: $1 is the dir holding v1.deb and v2.deb. Each step prints a "== step" line, then what the test checks.
SCRIPT = r"""
PKG=$1
mount --rbind /sys "$R/sys"
mkdir -p "$R/pkg" && mount --bind "$PKG" "$R/pkg"
in_root() { chroot "$R" "$@"; }

echo "== install"
in_root dpkg -i /pkg/v1.deb 2>&1
echo "== installed"
in_root dpkg-query -W -f '${Status} ${Version}\n' microagent
in_root sh -c 'command -v microagent'
in_root getent passwd microagent | cut -d: -f1,6,7
in_root stat -c '%n %U %a' /var/lib/microagent /etc/microagent/microagent.env \
    /etc/microagent/microagent.json /lib/systemd/system/microagent.service
in_root dpkg --verify microagent && echo "verify ok"
RUN="microagent run --once --seconds 2 --output - --config /etc/microagent/microagent.json
     --collectors Process,SystemInformation,SBoM"
AS_USER="setpriv --reuid=microagent --regid=microagent --init-groups --no-new-privs
         --inh-caps=-all,@CAPS@ --ambient-caps=-all,@CAPS@ --bounding-set=-all,@CAPS@"
NAMES='import sys, json; print(sorted({e["Name"] for l in sys.stdin for e in json.loads(l)["Events"]}))'
# Processes for the Process collector to see, whatever else the machine is doing (a quiet one may
# start none in the 2 s of a run).
( while :; do in_root /bin/true; sleep 0.05; done ) &
EXECS=$!
echo "== run as root"
in_root $RUN 2>"$T/run-root.err" | in_root python3 -c "$NAMES"
cat "$T/run-root.err"
echo "== run as microagent"
in_root $AS_USER $RUN 2>"$T/run-user.err" | in_root python3 -c "$NAMES"
cat "$T/run-user.err"
kill $EXECS
SAMPLE=/usr/lib/microagent/host_sim/data/quiet-device.jsonl
echo "== replay from another folder"
in_root sh -c "cd /var/tmp && exec microagent replay $SAMPLE --window 600"
echo "== crosscheck from another folder"
in_root sh -c "cd /var/tmp && exec microagent crosscheck $SAMPLE --window 600" | tail -n 1
echo "== upgrade"
printf '{\n  "Process_Mode": "Netlink"\n}\n' > "$R/etc/microagent/microagent.json"
in_root dpkg -i /pkg/v2.deb 2>&1
in_root dpkg-query -W -f '${Status} ${Version}\n' microagent
cat "$R/etc/microagent/microagent.json"
echo "== remove"
in_root dpkg -r microagent 2>&1
in_root dpkg-query -W -f '${Status}\n' microagent
ls "$R/etc/microagent" "$R/usr/lib/microagent" 2>&1 || true
echo "== purge"
in_root dpkg --purge microagent 2>&1
in_root dpkg-query -W -f '${Status}\n' microagent 2>&1 || true
for p in /etc/microagent /var/lib/microagent /usr/lib/microagent /usr/bin/microagent \
         /lib/systemd/system/microagent.service; do
    [ -e "$R$p" ] && echo "left: $p"
done
in_root getent passwd microagent || echo "no user microagent"
in_root getent group microagent || echo "no group microagent"
echo "== end"
""".replace("@CAPS@", CAPS)


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """v1: `make deb`'s package; v2: the same with a higher version (an upgrade)."""
    assert os.geteuid() == 0, "needs root: dpkg, mounts and chroot in a throw-away overlay"
    build = subprocess.run([os.path.join(REPO, "packaging", "build-deb.sh")], cwd=REPO,
                           env=dict(os.environ, PYTHON=sys.executable), capture_output=True,
                           text=True, timeout=1200)
    assert build.returncode == 0, build.stderr
    built = re.search(r"microagent deb: (build/microagent_[^ ]+\.deb)", build.stdout).group(1)
    assert re.fullmatch(r"build/microagent_0\.1\.0_[a-z0-9]+\.deb", built), built
    out = tmp_path_factory.mktemp("debs")
    v1 = out / "v1.deb"
    os.link(os.path.join(REPO, built), v1)
    tree = out / "tree"
    subprocess.run(["dpkg-deb", "-R", str(v1), str(tree)], check=True)
    control = (tree / "DEBIAN" / "control").read_text()
    (tree / "DEBIAN" / "control").write_text(control.replace("Version: 0.1.0\n",
                                                             "Version: 0.1.0+upgrade1\n"))
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(out / "v2.deb")],
                   check=True, capture_output=True)
    return out


def steps(output):
    parts = re.split(r"^== (.+)$", output, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def test_install_run_upgrade_remove_purge_in_a_throwaway_copy_of_this_system(packages, tmp_path):
    work = tmp_path / "root"
    work.mkdir()
    result = subprocess.run(throwaway_root.command(SCRIPT, work, packages),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    step = steps(result.stdout)
    assert "end" in step, result.stdout
    installed = step["installed"].split("\n")
    assert installed[1] == "install ok installed 0.1.0"
    assert installed[2] == "/usr/bin/microagent"
    assert installed[3] == "microagent:/var/lib/microagent:/usr/sbin/nologin"
    assert installed[4:9] == [
        "/var/lib/microagent microagent 700", "/etc/microagent/microagent.env root 600",
        "/etc/microagent/microagent.json root 644",
        "/lib/systemd/system/microagent.service root 644", "verify ok"], step["installed"]
    for who in ("run as root", "run as microagent"):
        lines = step[who].strip().split("\n")
        assert lines[0] == "['ProcessCreate', 'SBoM', 'SystemInformation']", step[who]
        assert "collecting: Process (Audit:" in step[who], step[who]
        assert "Traceback" not in step[who]
    # replay's firmware engine runs from the package (its sources, the bundled sample, the
    # MicroPython unix port and mpy-cross in /usr/lib/microagent) as it runs from the checkout.
    checkout = subprocess.run([os.path.join(os.path.dirname(sys.executable), "microagent"), "replay",
                               os.path.join(REPO, "tests", "fixtures", "traces", "quiet-device.jsonl"),
                               "--window", "600"], capture_output=True, text=True, timeout=300)
    assert checkout.returncode == 0, checkout.stderr
    assert without_ids(step["replay from another folder"].strip()) == without_ids(checkout.stdout)
    assert step["crosscheck from another folder"].strip() == \
        "crosscheck passed: every difference is one the spec allows"
    assert "install ok installed 0.1.0+upgrade1" in step["upgrade"]
    assert '"Process_Mode": "Netlink"' in step["upgrade"]          # the admin's conffile kept
    assert "deinstall ok config-files" in step["remove"]
    assert "microagent.json" in step["remove"]                      # conffiles stay until purge
    assert "usr/lib/microagent': No such file or directory" in step["remove"]
    assert "left:" not in step["purge"], step["purge"]
    assert "no user microagent" in step["purge"] and "no group microagent" in step["purge"]
    assert "install ok installed" not in step["purge"]
    # and this machine saw none of it
    assert not os.path.exists("/usr/lib/microagent") and not os.path.exists("/usr/bin/microagent")
    host = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", "microagent"],
                          capture_output=True, text=True)
    assert "installed" not in host.stdout.replace("not-installed", "")


def test_lintian_finds_no_error_and_only_the_documented_warnings(packages):
    """docs/packaging.md lists lintian's warnings and why each stays; a new one fails here."""
    result = subprocess.run(["lintian", "--tag-display-limit", "0", str(packages / "v1.deb")],
                            capture_output=True, text=True, timeout=600)
    tags = set(re.findall(r"^([EWIX]): microagent: ([a-z0-9-]+)", result.stdout, flags=re.M))
    assert not [t for t in tags if t[0] == "E"], result.stdout
    with open(os.path.join(REPO, "docs", "packaging.md")) as f:
        documented = set(re.findall(r"W `([a-z0-9-]+)", f.read()))
    assert {tag for level, tag in tags if level == "W"} <= documented, result.stdout


def test_the_man_page_is_installed_names_every_command_and_renders_cleanly(packages, tmp_path):
    tree = tmp_path / "tree"
    subprocess.run(["dpkg-deb", "-x", str(packages / "v1.deb"), str(tree)], check=True)
    page = tree / "usr" / "share" / "man" / "man1" / "microagent.1.gz"
    source = subprocess.run(["gzip", "-dc", str(page)], capture_output=True, text=True,
                            check=True).stdout
    assert '"microagent 0.1.0"' in source  # the package's version, filled in by the build
    # Every command the CLI has (its own help, parsed) has an entry in COMMANDS.
    helped = subprocess.run([sys.executable, "-m", "host_sim.cli", "--help"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout
    commands = set(re.findall(r"^    ([a-z]+)\b", helped, flags=re.M))
    listed = set(re.findall(r"^\.TP\n\.B ([a-z]+)$", source, flags=re.M))
    assert len(commands) >= 13 and commands <= listed, (commands, listed)
    # groff in warning mode: no complaint about the page's markup.
    rendered = subprocess.run(["groff", "-man", "-ww", "-z"], input=source, capture_output=True,
                              text=True)
    assert rendered.returncode == 0 and rendered.stderr == "", rendered.stderr
