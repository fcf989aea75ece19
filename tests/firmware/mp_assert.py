# Assertion helper shared by the MicroPython-compatible test modules (no pytest there).


def raises(exc_type, fn, *args):
    """Calls FN(*ARGS), which must raise EXC_TYPE (a coroutine it returns is run to its end);
    returns the exception."""
    try:
        result = fn(*args)
        if hasattr(result, "send"):
            import asyncio
            asyncio.run(result)
    except exc_type as exc:
        return exc
    raise AssertionError("expected %s" % exc_type.__name__)


class NotOnThisRuntime(Exception):
    """Raised by a test that cannot run on this runtime (a heap counter CPython lacks): the
    runners report it skipped with its reason, never passed."""


def only_on_micropython(what):
    """Ends the calling test as skipped, naming WHAT it measures, unless on MicroPython."""
    import sys
    if sys.implementation.name != "micropython":
        raise NotOnThisRuntime("%s: measured on MicroPython only" % what)
