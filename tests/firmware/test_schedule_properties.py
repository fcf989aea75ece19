"""Property tests of the window scheduler (CPython, hypothesis). The oracle walks the grid of
docs/spec.md section 2 one boundary at a time: window k of a length covers
[anchor + k*W, anchor + (k+1)*W), a new length starts a grid of its own at the end of the window
it was set in, and a periodic collector fires at each boundary of its grid from the start."""
from hypothesis import given, settings
from hypothesis import strategies as st

from microagent.schedule import Schedule

PERIOD_32 = 1 << 30  # ticks_ms wraps here on a 32-bit MicroPython
NOT_STARTED, AT_START = False, True


def minus(end, start):
    return end - start


def plus(time, delta):
    return time + delta


def wrapping_diff(end, start):
    # MicroPython's documented ticks_diff for a 2**30 period.
    return ((end - start + PERIOD_32 // 2) & (PERIOD_32 - 1)) - PERIOD_32 // 2


def wrapping_add(ticks, delta):
    return (ticks + delta) & (PERIOD_32 - 1)


class GridOracle:
    """Where windows fall, boundary by boundary, on a clock that never wraps."""

    def __init__(self, t0, window, period):
        self.start, self.window = t0, window  # the open window
        self.fire, self.period = t0, period   # the periodic collector's next snapshot

    def window_due(self, now):
        return now >= self.start + self.window

    def close_window(self, now, new_window):
        end = self.start + self.window
        if now < end:  # an early close: the grid restarts now
            self.start, self.window = now, new_window
            return 0
        self.start, self.window, skipped = end, new_window, 0
        while self.start + self.window <= now:
            self.start += self.window
            skipped += 1
        return skipped

    def fire_due(self, now):
        return now >= self.fire

    def fired(self, now):
        skipped = -1
        while self.fire <= now:
            self.fire += self.period
            skipped += 1
        return skipped


lengths = st.integers(min_value=1000, max_value=3600000)
steps = st.lists(st.tuples(st.integers(min_value=0, max_value=8000000), lengths,
                           st.booleans()), min_size=1, max_size=60)


def _run(t0, window, period, moves, diff, add, wrap):
    s = Schedule(wrap(t0), (window, period), (NOT_STARTED, AT_START), diff)

    def start(slot):
        return add(s.now, -s.elapsed[slot])

    def end(slot):
        return add(start(slot), s.length[slot])

    oracle = GridOracle(t0, window, period)
    now = t0
    for step, new_window, force in moves:
        now += step
        s.advance(wrap(now))
        assert s.due(0) == oracle.window_due(now)
        if s.due(0) or force:
            assert start(0) == wrap(oracle.start)
            assert end(0) == wrap(oracle.start + oracle.window)
            assert s.close(0, new_window) == oracle.close_window(now, new_window)
            assert start(0) == wrap(oracle.start)
            assert not s.due(0)
        assert s.due(1) == oracle.fire_due(now)
        if s.due(1):
            assert s.close(1, period) == oracle.fired(now)
            assert end(1) == wrap(oracle.fire)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=1 << 42), lengths, lengths, steps)
def test_windows_follow_the_grid_on_a_clock_that_never_wraps(t0, window, period, moves):
    _run(t0, window, period, moves, minus, plus, lambda t: t)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=PERIOD_32 - 20000000, max_value=PERIOD_32 - 1), lengths, lengths,
       steps)
def test_windows_follow_the_grid_across_32bit_ticks_wraps(t0, window, period, moves):
    # Steps stay below half the ticks period, as the board's 100 ms loop does.
    _run(t0, window, period, moves, wrapping_diff, wrapping_add, lambda t: t % PERIOD_32)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=PERIOD_32 - 1),
       st.lists(st.integers(min_value=-5000, max_value=(1 << 29) - 1), min_size=1, max_size=40))
def test_a_week_long_interval_on_32bit_ticks_counts_only_forward_steps(t0, moves):
    # A step back (only a broken clock does that) counts as no time; forward steps add up,
    # past 2**29 ms that a single ticks_diff cannot reach.
    week = 10080 * 60000
    s = Schedule(t0, (week,), None, wrapping_diff)
    ticks, counted = t0, 0
    for step in moves:
        ticks = (ticks + step) % PERIOD_32
        s.advance(ticks)
        counted += max(step, 0)
        assert s.due(0) == (counted >= week)
        if s.due(0):
            assert s.close(0, week) == (counted - week) // week
            counted = (counted - week) % week
        assert s.elapsed[0] == counted
