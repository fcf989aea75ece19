"""The import graph of firmware/, host_sim/ and tools/, read statically (tests/import_graph.py):
no import cycles, and the layering. A layer imports only from its own and lower layers:

  0 core          firmware/: the microagent package and the board's main.py and boot.py
  1 hub emulator  tools/hub_emulator: a separate program (the local IoT Hub)
  2 tools         tools/*.py: flashing, virtual and emulated boards, the firmware build
  3 host          host_sim/: the Linux agent and the `microagent` command, which runs the hub
                  emulator and builds the 32-bit targets for replay

So the core imports nothing of ours outside itself (a board has only it), and tools never import
the host agent."""
import os

import pytest

from import_graph import cycles, graph, module_names
from mpy import REPO

LAYERS = ("core", "hub emulator", "tools", "host")


def _roots(repo):
    return {"firmware": (os.path.join(repo, "firmware"), None), "host": (repo, "host_sim"),
            "tools": (os.path.join(repo, "tools"), None)}


def layers_of(repo):
    """{module: layer} of every module of REPO's firmware/, host_sim/ and tools/."""
    roots = _roots(repo)
    found = {}
    for origin, root in roots.items():
        for name in module_names([root]):
            assert name not in found, "%s is both in %s and in %s" % (name, found[name], origin)
            if origin == "firmware":
                found[name] = "core"
            elif origin == "host":
                found[name] = "host"
            else:
                found[name] = "hub emulator" if name.split(".")[0] == "hub_emulator" else "tools"
    return found


def import_graph(repo):
    return graph(list(_roots(repo).values()))


def layering_breaks(edges, layers):
    """'a (layer) imports b (higher layer)' for every import that goes up."""
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    return sorted("%s (%s) imports %s (%s)" % (module, layers[module], target, layers[target])
                  for module, targets in edges.items() for target in targets
                  if rank[layers[target]] > rank[layers[module]])


@pytest.fixture(scope="module")
def edges():
    return import_graph(REPO)


def test_the_graph_sees_the_modules_and_their_imports(edges):
    # The walk finds what it must before its silence about cycles means anything.
    assert {"microagent.mqtt", "microagent.mqtt_codec", "host_sim.replay", "virtual_board",
            "hub_emulator.wire", "main"} <= set(edges)
    assert "microagent.mqtt_codec" in edges["microagent.mqtt"]
    assert "microagent.cpython_stream" in edges["microagent.mqtt"]  # imported inside a function
    assert "build_firmware" in edges["host_sim.targets"]  # loaded by file name
    assert "microagent.engine" in edges["host_sim.replay"]


def test_no_import_cycles(edges):
    assert cycles(edges) == []


def test_layering(edges):
    assert layering_breaks(edges, layers_of(REPO)) == []


def test_firmware_imports_nothing_but_itself(edges):
    layers = layers_of(REPO)
    outside = sorted("%s imports %s" % (m, t) for m, targets in edges.items() if layers[m] == "core"
                     for t in targets if layers[t] != "core")
    assert outside == []


def test_replay_does_not_import_the_firmware_command_line(edges):
    assert "microagent.replay_main" not in edges["host_sim.replay"]


# ---- the checks can fail ------------------------------------------------------------------------

def _write(root, files):
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_cycle_is_found_even_through_a_lazy_or_relative_import(tmp_path):
    _write(tmp_path, {"pkg/__init__.py": "",
                      "pkg/a.py": "from pkg import b\n",
                      "pkg/b.py": "def later():\n    from . import c\n",
                      "pkg/c.py": "try:\n    import pkg.a\nexcept ImportError:\n    pass\n",
                      "pkg/d.py": "import pkg.a\n"})
    assert cycles(graph([(str(tmp_path), None)])) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_a_layering_break_and_a_cycle_across_folders_are_found(tmp_path):
    _write(tmp_path, {"firmware/microagent/__init__.py": "",
                      "firmware/microagent/core.py": "def f():\n    from host_sim import runtime\n",
                      "host_sim/__init__.py": "",
                      "host_sim/runtime.py": "from microagent import core\n",
                      "tools/board.py": "from host_sim.runtime import x\n",
                      "tools/hub_emulator/__init__.py": "",
                      "tools/hub_emulator/wire.py": "import board\n"})
    edges = import_graph(str(tmp_path))
    assert cycles(edges) == [["host_sim.runtime", "microagent.core"]]
    assert layering_breaks(edges, layers_of(str(tmp_path))) == [
        "board (tools) imports host_sim.runtime (host)",
        "hub_emulator.wire (hub emulator) imports board (tools)",
        "microagent.core (core) imports host_sim.runtime (host)"]
