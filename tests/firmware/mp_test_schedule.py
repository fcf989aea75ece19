# The window scheduler against window boundaries worked out by hand from docs/spec.md section 2:
# window k covers [t0 + k*W, t0 + (k+1)*W). Runs on CPython, MicroPython and micropython32.
import gc

from microagent.schedule import Schedule
from mp_assert import NotOnThisRuntime, only_on_micropython

try:
    import time
    ticks_add = time.ticks_add
    ticks_diff = time.ticks_diff
except AttributeError:  # CPython: no ticks
    ticks_add = ticks_diff = None

MINUTE = 60000
PERIOD_32 = 1 << 30  # ticks_ms wraps here on a 32-bit port (31-bit small ints)


def wrapping_diff(end, start):
    # MicroPython's documented ticks_diff for a 2**30 period, spelled out here as the oracle.
    return ((end - start + PERIOD_32 // 2) & (PERIOD_32 - 1)) - PERIOD_32 // 2


def wrapping_add(ticks, delta):
    return (ticks + delta) & (PERIOD_32 - 1)


NOT_STARTED, AT_START = False, True


def minus(end, start):
    return end - start


def _epoch(now, lengths, first=None):
    return Schedule(now, lengths, first, minus)


def start(s, slot, add=None):
    # Where the open period started, on the schedule's own clock.
    if add is None:
        return s.now - s.elapsed[slot]
    return add(s.now, -s.elapsed[slot])


def end(s, slot, add=None):
    if add is None:
        return start(s, slot) + s.length[slot]
    return add(start(s, slot, add), s.length[slot])


def test_a_window_is_due_at_its_end_and_not_a_ms_before():
    s = _epoch(1000, (MINUTE,))
    s.advance(60999)
    assert not s.due(0)
    s.advance(61000)
    assert s.due(0)
    assert (start(s, 0), end(s, 0)) == (1000, 61000)
    assert s.close(0, MINUTE) == 0
    assert (start(s, 0), end(s, 0)) == (61000, 121000)


def test_a_late_close_keeps_the_grid():
    # Noticed 700 ms late: the closed window is still [1000, 61000), the next [61000, 121000).
    s = _epoch(1000, (MINUTE,))
    s.advance(61700)
    assert s.due(0)
    assert (start(s, 0), end(s, 0)) == (1000, 61000)
    s.close(0, MINUTE)
    assert (start(s, 0), end(s, 0)) == (61000, 121000)
    assert s.elapsed[0] == 700
    s.advance(120999)
    assert not s.due(0)
    s.advance(121000)
    assert s.due(0)


def test_a_stall_over_several_windows_closes_once_and_skips_the_empty_ones():
    # W = 60 s from 0, nothing seen until 250 s: window [0, 60 s) closes; [60, 120), [120, 180)
    # and [180, 240) are skipped (3); the open window is [240 s, 300 s).
    s = _epoch(0, (MINUTE,))
    s.advance(250000)
    assert s.due(0)
    assert (start(s, 0), end(s, 0)) == (0, 60000)
    assert s.close(0, MINUTE) == 3
    assert not s.due(0)
    assert (start(s, 0), end(s, 0)) == (240000, 300000)
    assert s.elapsed[0] == 10000


def test_a_new_interval_takes_effect_at_the_window_end():
    # 30 min windows from 0; the twin sets 120 min: the open window stays [0, 30 min), the next
    # is [30 min, 150 min).
    s = _epoch(0, (30 * MINUTE,))
    s.advance(30 * MINUTE + 5)
    assert s.close(0, 120 * MINUTE) == 0
    assert (start(s, 0), end(s, 0)) == (30 * MINUTE, 150 * MINUTE)
    s.advance(150 * MINUTE - 1)
    assert not s.due(0)
    s.advance(150 * MINUTE)
    assert s.due(0)
    # And shorter again: 120 -> 30 min, noticed 65 min late: [150, 180), [180, 210) skipped (2),
    # the open one [210, 240).
    s.advance(215 * MINUTE)
    assert s.close(0, 30 * MINUTE) == 2
    assert (start(s, 0), end(s, 0)) == (210 * MINUTE, 240 * MINUTE)


def test_a_new_interval_noticed_after_a_stall_starts_its_grid_at_the_old_end():
    # Old window [0, 1.8e6); new W 7.2e6 from 1.8e6: [1.8e6, 9e6), [9e6, 16.2e6),
    # [16.2e6, 23.4e6) holds 2e7: 2 skipped.
    s = _epoch(0, (1800000,))
    s.advance(20000000)
    assert s.close(0, 7200000) == 2
    assert (start(s, 0), end(s, 0)) == (16200000, 23400000)


def test_periodic_slots_are_due_at_start_then_once_per_interval():
    s = _epoch(500, (MINUTE, 1440 * MINUTE, 1440 * MINUTE), (NOT_STARTED, AT_START, AT_START))
    assert (s.due(0), s.due(1), s.due(2)) == (False, True, True)
    assert s.close(1, 1440 * MINUTE) == 0
    assert (start(s, 1), end(s, 1)) == (500, 500 + 1440 * MINUTE)
    assert s.due(2)  # slots are independent
    s.close(2, 60 * MINUTE)  # a shorter interval from now on for this one
    s.advance(500 + 60 * MINUTE)
    assert (s.due(0), s.due(1), s.due(2)) == (True, False, True)
    # A whole day asleep: slot 1 fires once, not once per missed day.
    s.advance(500 + 3 * 1440 * MINUTE + 7)
    assert s.due(1)
    assert s.close(1, 1440 * MINUTE) == 2
    assert s.elapsed[1] == 7
    assert not s.due(1)


def test_a_clock_that_goes_back_counts_as_no_time():
    # W = 10 s from 0; readings 5 s, 3 s (back 2 s), 4 s, 8 s: elapsed 5, 5, 6, 10 s.
    s = _epoch(0, (10000,))
    s.advance(5000)
    s.advance(3000)
    assert s.elapsed[0] == 5000
    s.advance(4000)
    assert s.elapsed[0] == 6000
    s.advance(7999)
    assert not s.due(0)
    s.advance(8000)
    assert s.due(0)


def test_an_early_close_restarts_the_grid_now():
    s = _epoch(0, (10000,))
    s.advance(2500)
    assert s.close(0, 10000) == 0
    assert (start(s, 0), end(s, 0)) == (2500, 12500)


def _across_the_wrap(diff, add, period):
    # t0 3 s before the wrap, W = 10 s: the window ends at t0 + 10 s = 7000 ticks after it.
    t0 = period - 3000
    s = Schedule(t0, (10000,), None, diff)
    s.advance(period - 1)
    s.advance(6999)
    assert not s.due(0)
    assert s.elapsed[0] == 9999
    s.advance(7000)
    assert s.due(0)
    assert (start(s, 0, add), end(s, 0, add)) == (t0, 7000)
    s.close(0, 10000)
    assert (start(s, 0, add), end(s, 0, add)) == (7000, 17000)


def test_windows_across_a_32bit_ticks_wrap():
    _across_the_wrap(wrapping_diff, wrapping_add, PERIOD_32)


def test_windows_across_this_ports_ticks_wrap():
    if ticks_diff is None:
        raise NotOnThisRuntime("this port's own ticks: MicroPython's time module only")
    period = ticks_add(0, -1) + 1
    _across_the_wrap(ticks_diff, ticks_add, period)


def test_a_week_long_interval_on_32bit_ticks():
    # 10080 min = 604,800,000 ms is more than ticks_diff reaches (2**29 ms): counted step by step
    # (100,000,000 ms steps), due after 6 steps and 4,800,000 ms more, and not a ms before.
    week = 10080 * MINUTE
    now = PERIOD_32 - 5
    s = Schedule(now, (MINUTE, week), (NOT_STARTED, NOT_STARTED), wrapping_diff)
    for _ in range(6):
        now = wrapping_add(now, 100000000)
        s.advance(now)
    now = wrapping_add(now, 4799999)
    s.advance(now)
    assert not s.due(1)
    s.advance(wrapping_add(now, 1))
    assert s.due(1)
    assert s.close(1, week) == 0
    assert s.elapsed[1] == 0
    assert s.close(0, MINUTE) == 604800000 // MINUTE - 1


def test_advancing_allocates_nothing():
    only_on_micropython("the schedule's heap allocation")
    s = Schedule(ticks_add(0, -500), (MINUTE, 1440 * MINUTE, 1440 * MINUTE),
                 (NOT_STARTED, AT_START, AT_START), ticks_diff)
    now = ticks_add(0, -500)
    s.advance(now)
    s.due(0)
    gc.collect()
    before = gc.mem_alloc()
    for _ in range(200):
        now = ticks_add(now, 100)
        s.advance(now)
        s.due(0)
        s.due(1)
    assert gc.mem_alloc() - before == 0
