"""What a board imports against what its firmware image freezes.

The frozen list is what MicroPython's own manifest tool (tools/manifestfile.py of the vendored
v1.28.0 source, the one the build runs) makes of firmware/manifest.py with each 32-bit target's
settings from tools/build_firmware.py, and it is checked against the frozen_content.c of a real
build. The imports are read statically (tests/import_graph.py) from what a board boots: boot.py
and main.py, and the emulated board's frozen _boot.py. Every one of our modules a board reaches,
with its parent packages, must be frozen; no host-only module (firmware/host_only.txt) may be."""
import fcntl
import importlib.util
import os
import re

import pytest

import build_firmware
import firmware_bundle
from board_helpers import REPO
from import_graph import graph, reachable

FIRMWARE = os.path.join(REPO, "firmware")
STARTS = ("boot", "main", "_boot")
# Imports a board never runs, each with the reason. The test fails when one is no longer there.
NEVER_ON_A_BOARD = {
    ("microagent.mqtt", "microagent.cpython_stream"):
        "open_connection wraps a CPython socket, which lacks readinto; a board's socket has it",
}


def module_of(target_path):
    """'microagent/collectors/__init__.py' -> 'microagent.collectors'."""
    parts = target_path[:-3].split("/")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def host_only_modules():
    return {module_of(path) for path in firmware_bundle.HOST_ONLY}


def board_imports(edges, starts=STARTS, never=NEVER_ON_A_BOARD):
    """Our modules a board imports from STARTS, with the packages that hold them."""
    pruned = {m: {t for t in targets if (m, t) not in never} for m, targets in edges.items()}
    found = reachable(pruned, [s for s in starts if s in edges])
    for module in list(found):
        parts = module.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return found


def missing_from_image(edges, frozen, board_dir=None, starts=STARTS, never=NEVER_ON_A_BOARD):
    """The modules a board imports that are neither frozen nor on its filesystem (the entry
    points boot.py and main.py, which flash.py writes)."""
    on_filesystem = {name[:-3] for name in firmware_bundle.ENTRY_POINTS}
    ours = set(edges)
    return sorted(m for m in board_imports(edges, starts, never)
                  if m in ours and m not in frozen and m not in on_filesystem)


@pytest.fixture(scope="module")
def micropython_tree():
    """The vendored MicroPython source the build uses (unpacked under build/ if not yet)."""
    os.makedirs(build_firmware.BUILD, exist_ok=True)
    with open(os.path.join(build_firmware.BUILD, ".firmware.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as build_firmware.ensure: a build may be unpacking it
        top, _identity = build_firmware.prepare_source(build_firmware.source_setting())
    return top


def frozen_by_manifest(top, target, monkeypatch):
    """The target paths ('microagent/agent.py', 'asyncio/core.py', ...) MicroPython's manifest tool
    freezes into TARGET's image from firmware/manifest.py."""
    spec = importlib.util.spec_from_file_location("manifestfile", os.path.join(top, "tools", "manifestfile.py"))
    manifestfile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(manifestfile)
    board_dir = build_firmware.BOARD_DIRS[target]
    path_vars = {"MPY_DIR": top, "MPY_LIB_DIR": os.path.join(top, "lib", "micropython-lib"),
                 "PORT_DIR": os.path.join(top, build_firmware.PORTS[target]), "BOARD_DIR": board_dir}
    monkeypatch.setenv("MICROAGENT_PORT_MANIFEST", build_firmware.PORT_MANIFESTS[target])
    manifest = manifestfile.ManifestFile(manifestfile.MODE_FREEZE, path_vars)
    manifest.execute(os.path.join(FIRMWARE, "manifest.py"))
    return sorted(f.target_path for f in manifest.files())


def _edges(target):
    roots = [(FIRMWARE, None)]
    board_dir = build_firmware.BOARD_DIRS[target]
    if board_dir:  # the board's own frozen modules (_boot, its socket module)
        roots.append((board_dir, None))
    return graph(roots)


@pytest.mark.parametrize("target", build_firmware.TARGETS)
def test_every_module_a_board_imports_is_frozen(micropython_tree, monkeypatch, target):
    frozen = {module_of(p) for p in frozen_by_manifest(micropython_tree, target, monkeypatch)}
    edges = _edges(target)
    assert missing_from_image(edges, frozen) == []
    reached = board_imports(edges)
    assert {"microagent.agent", "microagent.mqtt", "microagent.mqtt_codec",
            "microagent.collectors"} <= reached  # the walk went through the agent
    assert "asyncio" in frozen and "ssl" in frozen  # the port's manifest was included
    if target == "qemu-cortex-m3":
        assert {"_boot", "socket"} <= reached & frozen


@pytest.mark.parametrize("target", build_firmware.TARGETS)
def test_no_host_only_module_is_frozen_or_reached(micropython_tree, monkeypatch, target):
    frozen = {module_of(p) for p in frozen_by_manifest(micropython_tree, target, monkeypatch)}
    host_only = host_only_modules()
    assert {"microagent.replay_main", "microagent.cpython_stream", "microagent.trace"} <= host_only
    assert sorted(frozen & host_only) == []
    assert sorted(board_imports(_edges(target)) & host_only) == []


def test_the_exempted_imports_are_still_there():
    edges = _edges("micropython32")
    for (module, target), reason in NEVER_ON_A_BOARD.items():
        assert target in edges[module], "%s no longer imports %s: drop the exemption (%s)" % (
            module, target, reason)


def test_the_manifest_reading_matches_the_built_image(micropython_tree, monkeypatch, firmware_targets):
    """The names compiled into the micropython32 image (its frozen_content.c) are the ones read
    from the manifest above, so the checks above see what a board gets."""
    assert os.path.exists(firmware_targets["micropython32"])
    generated = os.path.join(build_firmware.BUILD, "micropython32", "obj", "frozen_content.c")
    with open(generated) as f:
        text = f.read()
    table = text[text.index("mp_frozen_names[] = {"):]
    table = table[:table.index("};")]
    built = sorted(name for name in re.findall(r'"([^"\\]+\.py)\\0"', table))
    assert built == frozen_by_manifest(micropython_tree, "micropython32", monkeypatch)


def test_the_flashed_bundle_holds_every_module_a_board_imports():
    """Boards without the agent frozen get the package from tools/flash.py as .mpy files."""
    files = firmware_bundle.firmware_files({"mpy": None})
    bundled = {module_of(f.remote) for f in files if f.remote.endswith(".py")}
    assert missing_from_image(_edges("micropython32"), bundled) == []
    assert sorted(bundled & host_only_modules()) == []


# ---- the checks can fail ------------------------------------------------------------------------

def test_a_module_left_out_of_the_image_is_named(micropython_tree, monkeypatch):
    frozen = {module_of(p) for p in frozen_by_manifest(micropython_tree, "micropython32", monkeypatch)}
    edges = _edges("micropython32")
    assert missing_from_image(edges, frozen - {"microagent.mqtt_codec", "microagent.collectors"}) \
        == ["microagent.collectors", "microagent.mqtt_codec"]


def test_a_host_only_import_on_the_board_path_is_found(tmp_path):
    (tmp_path / "microagent").mkdir()
    (tmp_path / "microagent" / "__init__.py").write_text("")
    (tmp_path / "microagent" / "agent.py").write_text("def run():\n    from microagent import trace\n")
    (tmp_path / "microagent" / "trace.py").write_text("")
    (tmp_path / "main.py").write_text("from microagent import agent\n")
    edges = graph([(str(tmp_path), None)])
    assert board_imports(edges) & host_only_modules() == {"microagent.trace"}
    assert missing_from_image(edges, {"microagent", "microagent.agent"}) == ["microagent.trace"]
