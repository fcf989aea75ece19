#!/usr/bin/env python3
"""Writes the files flash.py would put on a board into a directory, laid out as on the board:

    tools/build_bundle.py --board esp32 --out build/bundle/esp32

microagent/*.mpy (compiled by mpy-cross for the board's arch), main.py and boot.py when present,
and the board profile (microagent_board.json). Never credentials. CMake's mpy_bundle targets call
this; copying the directory onto a board's filesystem by any means is a deploy.
"""
import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import board_profiles  # noqa: E402
import firmware_bundle  # noqa: E402
from microagent.profile import ProfileError  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(prog="build_bundle.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--board", required=True)
    parser.add_argument("--out", required=True, help="directory to (re)create")
    parser.add_argument("--firmware", default=firmware_bundle.FIRMWARE_DIR)
    parser.add_argument("--boards-dir", default=board_profiles.BOARDS_DIR)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        profile = board_profiles.load(args.board, args.boards_dir)
        files = firmware_bundle.build(profile, args.firmware)
    except (ProfileError, firmware_bundle.BundleError) as exc:
        print("build_bundle.py: %s" % exc, file=sys.stderr)
        return 2
    if os.path.isdir(args.out):
        shutil.rmtree(args.out)
    for f in files:
        path = os.path.join(args.out, f.remote)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        # the credentials file holds the device key: 0600 from its creation, whatever the umask
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if f.secret else 0o644)
        with os.fdopen(fd, "wb") as out:
            out.write(f.data)
    print("%s: %d files, %d bytes for board %s" % (args.out, len(files),
                                                    sum(len(f.data) for f in files), args.board))
    return 0


if __name__ == "__main__":
    sys.exit(main())
