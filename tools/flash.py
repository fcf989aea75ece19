#!/usr/bin/env python3
"""Flash the microagent firmware onto a MicroPython board.

    tools/flash.py --board NAME --port PORT [--connection-string CS] [--ca FILE] [--hub-port N]
                   [--dry-run]
    tools/flash.py --board NAME --port PORT --dps [--registration-id ID] --ca FILE [--hub-port N]
    tools/flash.py --board NAME --port PORT --dps --dps-ca FILE [--dps-ca-key FILE] --ca FILE ...

Compiles firmware/microagent to .mpy for the board's arch, writes it with the board profile and
the device credentials over the raw REPL (mpremote), verifies every file on the board, then resets
the board (or, when it cannot reset, starts main.py through the REPL) and tails its output until
the agent prints `microagent: started`. `--files LOCAL[:REMOTE]...` copies and verifies only
those files. Exit status: 0 done, 1 the board or port failed, 2 bad arguments or profile.
See docs/flashing.md.
"""
import argparse
import json
import os
import sys

import serial
from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                           TransferSpeedColumn)
from rich.table import Table

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import board_profiles  # noqa: E402
import firmware_bundle  # noqa: E402
from board_link import BoardLink, LinkError  # noqa: E402
from firmware_bundle import BundleError, decode_mpy_word, on_board  # noqa: E402
from microagent.profile import CREDENTIALS_FILE, STARTED_LINE, ProfileError  # noqa: E402

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
CREDENTIALS_ENV = "MICROAGENT_CONNECTION_STRING"
DPS_GROUP_ENV = "MICROAGENT_DPS_GROUP"  # GlobalEndpoint=HOST[:PORT];IdScope=...;SymmetricKey=<group key>
DPS_CA_KEY_ENV = "MICROAGENT_DPS_CA_KEY"  # the enrollment CA's private key (PEM), without --dps-ca-key
BOARD_CERT = "microagent_cert.der"  # a board's own certificate and key (DER: the port's TLS takes DER)
BOARD_KEY = "microagent_key.der"
UNIQUE_ID = "import machine\nprint(repr(machine.unique_id().hex()))"
VERIFY_ATTEMPTS = 3  # writes of one file before its verification failure is final


class FlashError(Exception):
    """The flash cannot go on; one line, never holding a secret."""


class Report:
    """Human output (rich, on stderr for progress) or JSON lines on stdout (--json)."""

    def __init__(self, as_json):
        self.as_json = as_json
        # Wide enough for the file table when stderr is a file or a pipe (CI logs).
        self.console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 120)

    def event(self, kind, text, **fields):
        if self.as_json:
            print(json.dumps(dict(event=kind, **fields)), flush=True)
        else:
            self.console.print(text, markup=False, soft_wrap=True)

    def plan(self, files, fs_root):
        if self.as_json:
            for f in files:
                self.event("plan", "", path=on_board(fs_root, f.remote), bytes=len(f.data),
                           sha256=None if f.secret else f.sha256, origin=f.origin)
            return
        table = Table(title="files for the board", title_justify="left")
        for column, justify in (("path on board", "left"), ("bytes", "right"),
                                ("sha256", "left"), ("from", "left")):
            table.add_column(column, justify=justify)
        for f in files:
            digest = "(secret)" if f.secret else f.sha256[:16]
            table.add_row(on_board(fs_root, f.remote), str(len(f.data)), digest, f.origin)
        self.console.print(table)

    def progress(self):
        return Progress(TextColumn("{task.description:<28}"), BarColumn(), DownloadColumn(),
                        TransferSpeedColumn(), TimeRemainingColumn(), console=self.console,
                        disable=self.as_json, transient=False)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="flash.py", description="Flash the microagent firmware onto a MicroPython board.")
    parser.add_argument("--board", required=True, help="board profile name (boards/NAME.json)")
    parser.add_argument("--port", help="serial port or pyserial URL: /dev/ttyUSB0, /dev/pts/N, "
                        "socket://host:port, rfc2217://host:port (not needed with --dry-run)")
    parser.add_argument("--connection-string", help="IoT Hub device connection string written "
                        "to the board (default: $%s; none: credentials on the board stay as "
                        "they are)" % CREDENTIALS_ENV)
    parser.add_argument("--ca", metavar="FILE",
                        help="the CA certificate (PEM or DER) the hub's TLS certificate chains "
                        "to, written as microagent_ca.der (Azure IoT Hub: DigiCert Global Root G2)")
    parser.add_argument("--hub-port", type=int, metavar="N",
                        help="the hub's MQTT/TLS port, when not 8883 (kept with the connection "
                        "string)")
    parser.add_argument("--dps", action="store_true",
                        help="write DPS enrollment settings instead of a connection string: the "
                        "group from $%s (GlobalEndpoint=HOST[:PORT];IdScope=...;SymmetricKey="
                        "<group key>), the board's registration id and the key derived from it on "
                        "this machine (the group key never goes onto the board)" % DPS_GROUP_ENV)
    parser.add_argument("--dps-ca", metavar="FILE",
                        help="with --dps: issue the board its own certificate (CN = its registration "
                        "id) signed by this CA (PEM: the CA of the X.509 enrollment group) instead of "
                        "deriving a key; $%s then names only GlobalEndpoint and IdScope"
                        % DPS_GROUP_ENV)
    parser.add_argument("--dps-ca-key", metavar="FILE",
                        help="the --dps-ca CA's private key (PEM), a file only its owner may read "
                        "(default: the PEM text in $%s); it never goes onto the board"
                        % DPS_CA_KEY_ENV)
    parser.add_argument("--registration-id", metavar="ID",
                        help="the board's DPS registration id (default: mcu-<machine.unique_id() "
                        "in hex>, read from the board)")
    parser.add_argument("--dry-run", action="store_true",
                        help="build and show what would be written; do not touch the board")
    parser.add_argument("--files", nargs="+", metavar="LOCAL[:REMOTE]",
                        help="copy and verify only these files (byte for byte, no compiling, "
                        "no reset)")
    parser.add_argument("--frozen", action="store_true",
                        help="the agent package is frozen into the board's MicroPython build "
                        "(firmware/manifest.py): write only main.py/boot.py, profile, credentials")
    parser.add_argument("--firmware", default=firmware_bundle.FIRMWARE_DIR,
                        help="firmware directory holding microagent/ (default: %(default)s)")
    parser.add_argument("--boards-dir", default=board_profiles.BOARDS_DIR,
                        help="directory of board profiles (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for the board's REPL to answer (default 10)")
    parser.add_argument("--log-seconds", type=float, default=5.0,
                        help="seconds to tail the board's output after start (default 5)")
    parser.add_argument("--json", action="store_true", help="JSON lines on stdout")
    args = parser.parse_args(argv)
    if not args.dry_run and not args.port:
        parser.error("--port is required unless --dry-run")
    if args.dps:
        if args.connection_string is not None:
            parser.error("give --dps or --connection-string, not both")
        if args.dry_run and not args.registration_id:
            parser.error("--dps --dry-run needs --registration-id (the board is not read)")
        args.dps_group = os.environ.get(DPS_GROUP_ENV)
        if not args.dps_group:
            parser.error("--dps needs $%s (GlobalEndpoint=HOST[:PORT];IdScope=...;SymmetricKey=...)"
                         % DPS_GROUP_ENV)
        if args.dps_ca_key and not args.dps_ca:
            parser.error("--dps-ca-key goes with --dps-ca")
    elif args.dps_ca or args.dps_ca_key:
        parser.error("--dps-ca and --dps-ca-key go with --dps")
    elif args.registration_id:
        parser.error("--registration-id goes with --dps")
    elif args.connection_string is None:
        args.connection_string = os.environ.get(CREDENTIALS_ENV)
    return args


def dps_device_file(group_text, registration_id, hub_port=None):
    """microagent_device.json for a DPS board: the group's endpoint and scope, REGISTRATION_ID and
    the key derived from the group key here. The group key is read, used, and not written."""
    from microagent import dps
    from microagent.sas import b64encode
    try:
        group = dps.DpsSettings(group_text + ";RegistrationId=" + registration_id)
    except dps.DpsError as exc:
        raise BundleError("$%s or --registration-id: %s" % (DPS_GROUP_ENV, exc)) from None
    key = b64encode(dps.derive_key(group.key, registration_id))
    device = {"dps": "GlobalEndpoint=%s:%d;IdScope=%s;RegistrationId=%s;SymmetricKey=%s"
                     % (group.host, group.port, group.scope, registration_id, key)}
    if hub_port is not None:
        device["port"] = hub_port
    data = (json.dumps(device, separators=(",", ":"), sort_keys=True) + "\n").encode()
    return firmware_bundle.DeployFile(
        CREDENTIALS_FILE, data, "DPS IdScope=%s, RegistrationId=%s, derived key not shown"
        % (group.scope, registration_id), secret=True)


def read_ca_key(path):
    """The enrollment CA's private key (PEM bytes): from PATH, which only its owner may read, or
    else from $MICROAGENT_DPS_CA_KEY."""
    if path is None:
        text = os.environ.get(DPS_CA_KEY_ENV)
        if not text:
            raise BundleError("--dps-ca needs the CA's key: --dps-ca-key FILE or $%s" % DPS_CA_KEY_ENV)
        return text.encode()
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise BundleError("--dps-ca-key %s: %s" % (path, exc.strerror)) from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if mode & 0o077:
            raise BundleError("--dps-ca-key %s: others may read it (mode %03o): chmod 600 it"
                              % (path, mode & 0o777))
        return f.read()


def dps_x509_files(group_text, registration_id, ca_file, ca_key_pem, hub_port=None):
    """The board's certificate (CN = REGISTRATION_ID, signed by the CA of CA_FILE with the key
    CA_KEY_PEM, issued here for a key made here), its key, and microagent_device.json naming them
    with the group's endpoint and scope. The CA key is used and not written."""
    from hub_emulator import certs
    from microagent import dps
    try:
        group = dps.DpsSettings("%s;RegistrationId=%s;CertFile=%s;KeyFile=%s"
                                % (group_text, registration_id, BOARD_CERT, BOARD_KEY))
    except dps.DpsError as exc:
        raise BundleError("$%s or --registration-id: %s" % (DPS_GROUP_ENV, exc)) from None
    try:
        with open(ca_file, "rb") as f:
            ca_pem = f.read()
    except OSError as exc:
        raise BundleError("--dps-ca %s: %s" % (ca_file, exc.strerror)) from None
    try:
        ca, ca_key = certs.load_issuer(ca_pem, ca_key_pem)
    except certs.CertificateError as exc:
        raise BundleError("--dps-ca %s: %s" % (ca_file, exc)) from None
    cert_der, key_der = certs.issue_device_cert(ca, ca_key, registration_id)
    device = {"dps": "GlobalEndpoint=%s:%d;IdScope=%s;RegistrationId=%s;CertFile=%s;KeyFile=%s"
                     % (group.host, group.port, group.scope, registration_id, BOARD_CERT, BOARD_KEY)}
    if hub_port is not None:
        device["port"] = hub_port
    data = (json.dumps(device, separators=(",", ":"), sort_keys=True) + "\n").encode()
    return [firmware_bundle.DeployFile(BOARD_CERT, cert_der, "certificate CN=%s issued by %s"
                                       % (registration_id, ca.subject.rfc4514_string())),
            firmware_bundle.DeployFile(BOARD_KEY, key_der, "the certificate's key, made here",
                                       secret=True),
            firmware_bundle.DeployFile(CREDENTIALS_FILE, data, "DPS IdScope=%s, RegistrationId=%s, "
                                       "X.509" % (group.scope, registration_id))]


def board_registration_id(args):
    """mcu-<machine.unique_id() in hex> of the board at --port."""
    with BoardLink(args.port, timeout=args.timeout) as link:
        link.enter_raw_repl()
        unique = link._literal(UNIQUE_ID)
    if not isinstance(unique, str) or not unique:
        raise FlashError("the board at %s has no machine.unique_id(): give --registration-id" % args.port)
    return "mcu-" + unique


def check_board(profile, facts, port, needs_mpy):
    """The board at PORT is the one PROFILE describes, and imports the .mpy files we compiled."""
    version = ".".join(str(v) for v in facts["version"])
    if facts["platform"] != profile["platform"]:
        raise FlashError("wrong board: profile %s expects sys.platform '%s' but the board at %s "
                         "reports '%s' (MicroPython %s)" % (profile["name"], profile["platform"],
                                                            port, facts["platform"], version))
    if not needs_mpy:
        return
    want = profile["mpy"]
    if facts["mpy"] is None:
        raise FlashError("the board at %s (MicroPython %s) cannot import .mpy files, but profile "
                         "%s says it imports v%d" % (port, version, profile["name"], want["version"]))
    got_version, got_sub, got_arch = decode_mpy_word(facts["mpy"])
    if got_version != want["version"]:
        raise FlashError(".mpy version mismatch: the board at %s (MicroPython %s) imports v%d.%d, "
                         "the firmware is compiled to v%d.%d for profile %s"
                         % (port, version, got_version, got_sub, want["version"],
                            want["sub_version"], profile["name"]))
    if want["arch"] is not None and got_arch is not None and got_arch != want["arch"]:
        raise FlashError(".mpy arch mismatch: the board at %s runs native code for %s, profile %s "
                         "compiles for %s" % (port, got_arch, profile["name"], want["arch"]))


def check_space(facts, files, port):
    """Enough free flash for FILES, counting the bytes of the files they replace."""
    if facts["free"] is None:
        return  # no statvfs (micro:bit): a full flash shows up as ENOSPC while writing
    replaced = sum(size for size in facts["sizes"] if size > 0)
    needed = sum(len(f.data) for f in files) - replaced
    if needed > facts["free"]:
        raise FlashError("no space left on the board at %s: the files need %d more bytes, %d are "
                         "free" % (port, needed, facts["free"]))


def remove_stale(link, profile, files, folders, report):
    """Removes files in FOLDERS the bundle does not have: a stale x.py would shadow a new x.mpy,
    and any package file would shadow the frozen package."""
    for folder in folders:
        keep = {os.path.basename(f.remote) for f in files if os.path.dirname(f.remote) == folder}
        for name in link.listdir(on_board(profile["fs_root"], folder)):
            if name not in keep:
                path = on_board(profile["fs_root"], folder + "/" + name)
                link.remove(path)
                report.event("removed", "removed stale %s" % path, path=path)


def package_folders(files, frozen):
    """The agent package's folders on the board, which flash.py owns (and cleans)."""
    package = firmware_bundle.PACKAGE
    folders = {os.path.dirname(f.remote) for f in files if f.remote.startswith(package + "/")}
    return sorted(folders | ({package} if frozen else set()))


def write_and_verify(link, profile, files, stale_folders, by_hash, report):
    root = profile["fs_root"]
    folders = sorted({os.path.dirname(f.remote) for f in files if "/" in f.remote})
    link.makedirs([on_board(root, d) for d in folders])
    remove_stale(link, profile, files, stale_folders, report)
    with report.progress() as progress:
        total = progress.add_task("writing", total=sum(len(f.data) for f in files))
        done = 0
        for f in files:
            path = on_board(root, f.remote)
            progress.update(total, description="writing " + os.path.basename(f.remote)[:20])
            link.write(path, f.data,
                       progress=lambda n, _size, start=done: progress.update(total, completed=start + n))
            done += len(f.data)
            progress.update(total, completed=done)
    method = "sha256 on the board" if by_hash else "read back byte for byte"
    for f in files:
        path = on_board(root, f.remote)
        # A lost byte can still slip past the per-chunk checks (or mangle the check itself):
        # the file is written again, and only a file that never verifies is an error.
        for attempt in range(1, VERIFY_ATTEMPTS + 1):
            if link.verify(path, f.data, by_hash):
                break
            if attempt == VERIFY_ATTEMPTS:
                raise FlashError("verification failed: %s on the board differs from what was written "
                                 "(%s, %d attempts)" % (path, method, VERIFY_ATTEMPTS))
            report.event("rewrite", "%s did not verify (%s): writing it again" % (path, method),
                         path=path, attempt=attempt)
            link.resent += 1
            link.write(path, f.data)
        report.event("verified", "verified %-32s %s" % (path, method), path=path, method=method,
                     bytes=len(f.data))


def start_agent(link, profile, files, seconds, report):
    """Resets the board (or runs boot.py and main.py through the REPL) and waits for STARTED_LINE."""
    names = {f.remote for f in files}
    if "main.py" not in names:
        report.event("not_started", "no main.py in the firmware: nothing to start (the agent "
                     "entry point is not there yet)", reason="no main.py")
        return
    root = profile["fs_root"]
    if profile["can_reset"]:
        report.event("reset", "soft reset: the board reruns boot.py and main.py", method="reset")
        link.soft_reset()
    else:
        scripts = [on_board(root, n) for n in ("boot.py", "main.py") if n in names]
        code = "".join("exec(open(%r).read(), {'__name__': '__main__'})\n" % s for s in scripts)
        report.event("reset", "board %s cannot reset: starting %s through the REPL"
                     % (profile["name"], " and ".join(scripts)), method="repl")
        link.start_raw(code)
    lines = []

    def show(line):
        lines.append(line)
        report.event("log", "  board| " + line, line=line)

    started = link.tail(seconds, STARTED_LINE, show)
    if not started:
        said = [line for line in lines if line.strip("> ")]  # not the bare REPL prompt
        if any(line.startswith("Traceback") for line in said):
            why = "it crashed: " + said[-1]
        else:
            why = "last line: %r" % (said[-1:] or [""])[0]
        raise FlashError("the agent did not print '%s' within %gs (%s)" % (STARTED_LINE, seconds, why))
    report.event("started", "agent started", line=lines[-1])


def flash(args, report):
    profile = board_profiles.load(args.board, args.boards_dir)
    if args.files:
        files = firmware_bundle.plain_files(args.files)
        needs_mpy = False
    else:
        if not profile["runs_agent"]:
            raise BundleError("board %s does not run the agent (boards/%s.json: runs_agent is "
                              "false); use --files to copy files onto it"
                              % (profile["name"], profile["name"]))
        files = firmware_bundle.build(profile, args.firmware, args.connection_string, args.frozen,
                                      args.ca, None if args.dps else args.hub_port)
        if args.dps:
            registration_id = args.registration_id or board_registration_id(args)
            if args.dps_ca:
                enrollment = dps_x509_files(args.dps_group, registration_id, args.dps_ca,
                                            read_ca_key(args.dps_ca_key), args.hub_port)
            else:
                enrollment = [dps_device_file(args.dps_group, registration_id, args.hub_port)]
            at = len(files) - 1 if args.ca else len(files)
            files[at:at] = enrollment
        needs_mpy = profile["mpy"] is not None and not args.frozen
    report.event("board", "board %s: %s" % (profile["name"], profile["description"]),
                 board=profile["name"], files=len(files))
    if not args.files and args.connection_string is None and not args.dps:
        report.event("credentials", "no --connection-string: credentials on the board stay as "
                     "they are", written=False)
    report.plan(files, profile["fs_root"])
    if args.dry_run:
        report.event("dry_run", "dry run: nothing written", written=False)
        return 0
    paths = [on_board(profile["fs_root"], f.remote) for f in files]
    with BoardLink(args.port, timeout=args.timeout) as link:
        link.enter_raw_repl()
        facts = link.probe(profile["fs_root"], paths)
        report.event("probe", "board at %s: %s, MicroPython %s, free %s bytes"
                     % (args.port, facts["platform"], ".".join(map(str, facts["version"])),
                        facts["free"] if facts["free"] is not None else "unknown"),
                     platform=facts["platform"], version=list(facts["version"]), mpy=facts["mpy"],
                     hashlib=facts["hashlib"], free=facts["free"])
        check_board(profile, facts, args.port, needs_mpy)
        check_space(facts, files, args.port)
        by_hash = profile["hashlib"] and facts["hashlib"]
        stale_folders = [] if args.files else package_folders(files, args.frozen)
        write_and_verify(link, profile, files, stale_folders, by_hash, report)
        if link.resent:
            report.event("resent", "the link lost bytes: %d commands were sent again (check the "
                         "cable or lower the baud rate if this grows)" % link.resent, commands=link.resent)
        if not args.files:
            start_agent(link, profile, files, args.log_seconds, report)
    report.event("done", "done: %d files written and verified" % len(files), files=len(files))
    return 0


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    report = Report(args.json)
    try:
        return flash(args, report)
    except (ProfileError, BundleError) as exc:
        report.event("error", "flash.py: " + str(exc), error=str(exc))
        return EXIT_USAGE
    except (FlashError, LinkError) as exc:
        report.event("error", "flash.py: " + str(exc), error=str(exc))
        return EXIT_FAILED
    except (serial.SerialException, OSError) as exc:  # the board went away mid-flash
        message = "lost the connection to %s: %s" % (args.port, exc)
        report.event("error", "flash.py: " + message, error=message)
        return EXIT_FAILED
    except KeyboardInterrupt:
        report.event("error", "flash.py: interrupted; the board may hold a partial file: flash again",
                     error="interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
