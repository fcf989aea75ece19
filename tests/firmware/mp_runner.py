# Runs the test_* functions of one MicroPython-compatible test module inside MicroPython.
# Usage: micropython mp_runner.py MODULE. Exit 1 if any test fails, naming it.
import sys

from mp_assert import NotOnThisRuntime

name = sys.argv[1]
module = __import__(name)
failed = 0
ran = 0
skipped = 0
for attr in sorted(dir(module)):
    if not attr.startswith("test_"):
        continue
    ran += 1
    try:
        getattr(module, attr)()
        print("PASS", attr)
    except NotOnThisRuntime as exc:
        skipped += 1
        print("SKIP", attr, exc.args[0] if exc.args else "")
    except Exception as exc:
        failed += 1
        print("FAIL", attr, repr(exc))
        sys.print_exception(exc)
print("%d ran, %d failed, %d skipped" % (ran, failed, skipped))
if failed or not ran:
    sys.exit(1)
