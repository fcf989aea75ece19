# Millisecond ticks that work on MicroPython (time.ticks_ms, wraps around) and on CPython.
# Code that measures intervals uses ticks_diff, never plain subtraction, so wrap-around is safe.
import time

try:
    ticks_ms = time.ticks_ms
    ticks_diff = time.ticks_diff
    ticks_add = time.ticks_add
    sleep_ms = time.sleep_ms
except AttributeError:  # CPython
    def ticks_ms():
        return time.monotonic_ns() // 1000000

    def ticks_diff(end, start):
        return end - start

    def ticks_add(ticks, delta):
        return ticks + delta

    def sleep_ms(ms):
        time.sleep(ms / 1000)
