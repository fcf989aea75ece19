# Assertion helper shared by the MicroPython-compatible test modules (no pytest there).


def raises(exc_type, fn, *args):
    """Calls FN(*ARGS), which must raise EXC_TYPE; returns the exception."""
    try:
        fn(*args)
    except exc_type as exc:
        return exc
    raise AssertionError("expected %s" % exc_type.__name__)
