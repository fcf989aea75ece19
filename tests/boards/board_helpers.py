"""Paths and the tool runner shared by the board tests."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(REPO, "tools")
sys.path.insert(0, TOOLS)


def run_tool(name, *args, timeout=120, env=None):
    """Runs tools/NAME with ARGS; CompletedProcess with text output."""
    return subprocess.run([sys.executable, os.path.join(TOOLS, name)] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def file_tree(root, suffix):
    """Paths relative to ROOT of the files ending in SUFFIX, subpackages included, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        found += [os.path.relpath(os.path.join(dirpath, f), root) for f in filenames if f.endswith(suffix)]
    return sorted(found)
