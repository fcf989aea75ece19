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
