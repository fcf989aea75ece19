"""Waiting for a condition a test needs (never for a fixed time: real machines are busy)."""
import time


def wait_for(condition, seconds=10.0):
    """Polls CONDITION() until it is true or SECONDS have passed; its last answer."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()
