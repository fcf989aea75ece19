"""The board agent as a MicroPython package (firmware/package.json): the checkout's firmware
folder served over HTTP, `mip.install()` on the real unix port and `mpremote mip install` onto
the virtual board install it, and the agent then starts from what was installed (MicroPython's
path holds only the install folder and its own frozen modules) and sends to the local hub."""
import http.server
import json
import os
import subprocess
import sys
import threading
import tomllib

import pytest

from agent_helpers import events, security_messages, write_device_settings
from board_helpers import REPO
from hub_emulator.process import HubProcess
from polling import wait_for

from host_sim.runtime import micropython_binary

FIRMWARE = os.path.join(REPO, "firmware")
DEVICE = "mip-board"
WINDOW_MS = 3000
# The entry point an engineer copies beside the installed package (README, "The agent on a
# board"), run after noting where the agent was imported from.
START = ("import microagent\n"
         "print('agent from ' + microagent.__file__)\n"
         "exec(open('main.py').read())\n")


def board_modules():
    """What a board runs: every module of the package but the host-only ones (host_only.txt, the
    list firmware/manifest.py and tools/flash.py leave out)."""
    with open(os.path.join(FIRMWARE, "host_only.txt")) as f:
        host_only = {line.strip() for line in f if line.strip() and not line.startswith("#")}
    found = set()
    for folder, dirs, names in os.walk(os.path.join(FIRMWARE, "microagent")):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in names:
            relative = os.path.relpath(os.path.join(folder, name), FIRMWARE)
            if name.endswith(".py") and relative not in host_only:
                found.add(relative)
    return found


def package_json():
    with open(os.path.join(FIRMWARE, "package.json")) as f:
        return json.load(f)


class Served:
    """FIRMWARE over HTTP on 127.0.0.1, a port the kernel picks; the paths asked for."""

    def __init__(self):
        requested = self.requested = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=FIRMWARE, **kwargs)

            def log_message(self, *args):
                requested.append(self.path)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/package.json" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def served():
    server = Served()
    yield server
    server.close()


def micropython(cwd, code, timeout=120):
    """CODE run by the unix port in CWD with only ./lib and its frozen modules on its path."""
    env = dict(os.environ, MICROPYPATH="lib:.frozen", HOME=str(cwd))
    return subprocess.run([micropython_binary(), "-X", "heapsize=1M", "-c", code], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def installed_files(lib):
    return {os.path.relpath(os.path.join(folder, name), lib)
            for folder, _, names in os.walk(lib) for name in names}


def test_package_json_lists_exactly_the_board_modules_in_mips_format():
    package = package_json()
    assert set(package) == {"urls", "deps", "version"}
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        assert package["version"] == tomllib.load(f)["project"]["version"]
    assert package["deps"] == []
    destinations = [dest for dest, _ in package["urls"]]
    assert all(dest == source for dest, source in package["urls"]), package["urls"]
    assert len(destinations) == len(set(destinations))
    assert set(destinations) == board_modules()


def test_mip_install_on_the_unix_port_then_the_agent_starts_and_sends(served, tmp_path):
    proc = micropython(tmp_path, "import mip\nmip.install(%r, target='lib')\n" % served.url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert installed_files(tmp_path / "lib") == board_modules()
    for relative in board_modules():
        with open(os.path.join(FIRMWARE, relative), "rb") as f:
            assert (tmp_path / "lib" / relative).read_bytes() == f.read(), relative
    assert sorted(served.requested) == sorted(["/package.json"] + ["/" + m for m in board_modules()])

    # What an engineer puts beside the package: the entry point, the board profile (flash.py
    # writes boards/unix.json), the device settings and the hub's CA.
    with open(os.path.join(FIRMWARE, "main.py")) as f:
        (tmp_path / "main.py").write_text(f.read())
    with open(os.path.join(REPO, "boards", "unix.json")) as f:
        profile = json.load(f)
    (tmp_path / "microagent_board.json").write_text(json.dumps(profile))
    hub = HubProcess(str(tmp_path / "hub"), port=0, plain_port=None)
    connection_string = hub.add_device(DEVICE)
    env = dict(os.environ, MICROPYPATH="lib:.frozen", HOME=str(tmp_path))
    lines = []
    with hub:
        write_device_settings(tmp_path / "microagent_device.json", connection_string, hub.port, WINDOW_MS)
        with open(hub.ca_der, "rb") as f:
            (tmp_path / "microagent_ca.der").write_bytes(f.read())
        board = subprocess.Popen([micropython_binary(), "-X", "heapsize=%d" % profile["heap_bytes"],
                                  "-c", START], cwd=tmp_path,
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        reader = threading.Thread(target=lambda: lines.extend(board.stdout), daemon=True)
        reader.start()
        try:
            sent = wait_for(lambda: board.poll() is not None
                            or events(security_messages(hub, DEVICE), "SystemInformation"), 60)
        finally:
            board.kill()
            board.wait()
            reader.join(timeout=10)
        assert sent and board.returncode == -9, "".join(lines)
        messages = security_messages(hub, DEVICE)
    assert lines[0].strip() == "agent from lib/microagent/__init__.py", "".join(lines)
    assert any(line.startswith("microagent: started") for line in lines), "".join(lines)
    assert "Traceback" not in "".join(lines)
    sysinfo = events(messages, "SystemInformation")[0]["Payload"][0]
    assert sysinfo["os_dist"].startswith("micropython"), sysinfo


def test_mpremote_mip_install_onto_the_virtual_board(served, virtual_board):
    # resume: no soft reset first (the virtual board's unix port would end instead of rebooting).
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "mpremote"), "connect",
                           virtual_board.port, "resume", "mip", "install", "--target", "lib", served.url],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lib = os.path.join(virtual_board.flash, "lib")
    assert installed_files(lib) == board_modules()
    for relative in board_modules():
        with open(os.path.join(FIRMWARE, relative), "rb") as f, open(os.path.join(lib, relative), "rb") as g:
            assert g.read() == f.read(), relative
