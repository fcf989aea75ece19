"""mpy-cross builds for each board's arch, and the checks that keep a wrong .mpy off a board."""
import json
import os
import shutil

import pytest

import board_profiles
import firmware_bundle
from board_helpers import REPO, file_tree, run_tool
from firmware_bundle import HOST_ONLY  # noqa: E402 (tools/ is on the path now)
from firmware_bundle import BundleError, check_compiled, compile_mpy, decode_mpy_word, mpy_header

NATIVE = "@micropython.native\ndef inc(x):\n    return x + 1\n"
BYTECODE = "def inc(x):\n    return x + 1\n"
ARCH_BOARDS = [n for n in board_profiles.names()
               if board_profiles.load(n)["mpy"] and board_profiles.load(n)["mpy"]["arch"]]


def _source(tmp_path, text, name="mod.py"):
    (tmp_path / "src").mkdir(exist_ok=True)
    path = tmp_path / "src" / name
    path.write_text(text)
    return str(path)


def _unix_mpy_word(micropython, tmp_path):
    script = _source(tmp_path, "import sys\nprint(sys.implementation._mpy)\n", "word.py")
    return int(micropython(script).stdout.strip())


def test_pinned_mpy_cross_matches_every_profile():
    emitted = firmware_bundle.mpy_cross_version()
    for name in board_profiles.names():
        mpy = board_profiles.load(name)["mpy"]
        if mpy is not None:
            assert (mpy["version"], mpy["sub_version"]) == emitted, name


def test_unix_port_mpy_word_decodes_to_the_profile_version(micropython, tmp_path):
    version, sub_version, _arch = decode_mpy_word(_unix_mpy_word(micropython, tmp_path))
    unix = board_profiles.load("unix")["mpy"]
    assert (version, sub_version) == (unix["version"], unix["sub_version"])


@pytest.mark.parametrize("board", ARCH_BOARDS)
def test_native_code_is_compiled_for_the_board_arch(tmp_path, board):
    profile = board_profiles.load(board)
    data = compile_mpy(_source(tmp_path, NATIVE), profile["mpy"]["arch"], "mod.py")
    assert mpy_header(data) == (6, 3, profile["mpy"]["arch"])
    check_compiled(data, profile, "mod.py")


def test_bytecode_carries_no_arch(tmp_path):
    data = compile_mpy(_source(tmp_path, BYTECODE), "armv6m", "mod.py")
    assert mpy_header(data)[2] is None
    check_compiled(data, board_profiles.load("esp32"), "mod.py")  # bytecode runs on any arch


def test_native_code_for_another_arch_is_refused(tmp_path):
    data = compile_mpy(_source(tmp_path, NATIVE), "armv6m", "mod.py")
    with pytest.raises(BundleError, match="mod.py holds native code for armv6m but board esp32 is xtensawin"):
        check_compiled(data, board_profiles.load("esp32"), "mod.py")


def test_wrong_arch_really_fails_on_a_board(tmp_path, micropython):
    """Why the check exists: the unix port refuses native code built for an MCU."""
    arch = decode_mpy_word(_unix_mpy_word(micropython, tmp_path))[2]
    if arch is None:
        pytest.skip("this unix port has no native emitter (its _mpy names no arch)")
    foreign = "armv6m" if arch != "armv6m" else "xtensawin"
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "mod.mpy").write_bytes(compile_mpy(_source(tmp_path, NATIVE), foreign, "mod.py"))
    script = tmp_path / "imp.py"
    script.write_text("try:\n    import mod\n    print('IMPORTED')\nexcept ValueError as e:\n    print('REFUSED', e)\n")
    assert "incompatible .mpy arch" in micropython(str(script), path=[str(lib)]).stdout
    (lib / "mod.mpy").write_bytes(compile_mpy(_source(tmp_path, NATIVE), arch, "mod.py"))
    assert "IMPORTED" in micropython(str(script), path=[str(lib)]).stdout


def test_version_mismatch_is_refused_before_touching_a_board(tmp_path):
    boards = tmp_path / "boards"
    shutil.copytree(os.path.join(REPO, "boards"), boards)
    data = json.loads((boards / "esp32.json").read_text())
    data["mpy"]["version"] = 5
    (boards / "esp32.json").write_text(json.dumps(data))
    proc = run_tool("flash.py", "--board", "esp32", "--dry-run", "--boards-dir", boards)
    assert proc.returncode == 2
    assert "mpy-cross emits .mpy v6.3 but board esp32 imports v5.3" in proc.stderr


def test_bundle_imports_on_the_unix_port(tmp_path, micropython):
    """Every module of the compiled firmware package loads from its .mpy file on the unix port
    (scripts named *_main run on import, so they are only checked to be there)."""
    out = tmp_path / "bundle"
    proc = run_tool("build_bundle.py", "--board", "unix", "--out", out)
    assert proc.returncode == 0, proc.stderr
    compiled = file_tree(str(out / "microagent"), ".mpy")
    sources = [f for f in file_tree(os.path.join(REPO, "firmware", "microagent"), ".py")
               if "microagent/" + f not in HOST_ONLY]
    assert compiled == [f[:-3] + ".mpy" for f in sources]
    modules = [f[:-4].replace("/", ".") for f in compiled
               if not f.endswith("__init__.mpy") and not f.endswith("_main.mpy")]
    script = _source(tmp_path, "for name in %r:\n"
                     "    module = __import__('microagent.' + name, None, None, [name.split('.')[-1]])\n"
                     "    print(name, module.__file__)\n"
                     "from microagent import profile\n"
                     "print('loaded-board', profile.load_profile(%r)['name'])\n"
                     % (modules, str(out / "microagent_board.json")), "use.py")
    # The bundle comes first on the path, so its .mpy files shadow the firmware/ sources.
    lines = micropython(script, path=[str(out)], heap="256K").stdout.splitlines()
    loaded = dict(line.split(" ", 1) for line in lines)
    assert loaded.pop("loaded-board") == "unix"
    assert sorted(loaded) == sorted(modules)
    assert all(path.endswith("microagent/%s.mpy" % name.replace(".", "/")) for name, path in loaded.items())


# sys.implementation._mpy words as boards report them: version | sub_version << 8 | arch << 10.
def _facts(platform, version, mpy_word):
    return {"platform": platform, "version": version, "mpy": mpy_word, "hashlib": True, "free": None, "sizes": []}


def test_board_checks_on_reported_mpy_words():
    import flash
    esp32 = board_profiles.load("esp32")
    flash.check_board(esp32, _facts("esp32", (1, 24, 1), 6 | 3 << 8 | 10 << 10), "PORT", True)
    # Like MicroPython's loader: the sub-version only matters to native code, so bytecode from
    # mpy-cross v6.3 loads on 1.19 (v6.0).
    flash.check_board(esp32, _facts("esp32", (1, 19, 1), 6 | 10 << 10), "PORT", True)
    with pytest.raises(flash.FlashError, match=r"\.mpy version mismatch: the board at PORT \(MicroPython 1\.12\.0\) "
                                               r"imports v5\.0, the firmware is compiled to v6\.3 for profile esp32"):
        flash.check_board(esp32, _facts("esp32", (1, 12, 0), 5 | 10 << 10), "PORT", True)
    with pytest.raises(flash.FlashError, match=r"cannot import \.mpy files, but profile esp32 says it imports v6"):
        flash.check_board(esp32, _facts("esp32", (1, 9, 2), None), "PORT", True)
    with pytest.raises(flash.FlashError, match=r"runs native code for xtensa, profile esp32 compiles for xtensawin"):
        flash.check_board(esp32, _facts("esp32", (1, 24, 1), 6 | 3 << 8 | 9 << 10), "PORT", True)
    # A port built without the native emitter reports no arch: bytecode still loads.
    flash.check_board(esp32, _facts("esp32", (1, 24, 1), 6 | 3 << 8), "PORT", True)
