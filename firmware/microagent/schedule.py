# When windows close and periodic collectors are due (docs/spec.md section 2): the one scheduler
# of replay (a trace's clock), the board agent (ticks_ms) and the host agent (a monotonic clock).
# I/O-free: the caller reads its clock and hands the time in; MicroPython-compatible. It imports
# nothing, so a board's replay, which reads no ticks, does not load microagent.clock for it.
#
# Each slot (the event collectors' window, one periodic collector) runs periods of its length on
# a grid from where its current length took effect. Time is counted as ms elapsed in each slot's
# open period, one clock step at a time, never as a difference across a whole period: a 32-bit
# board's ticks_diff only reaches 2**29 ms (6.2 days) while a priority interval may be a week.
# Allocates nothing once built: advance() and due() run on every tick of the board's loop.


class Schedule:
    """Slots 0..n-1 with periods of LENGTHS[i] ms from NOW; FIRST[i] true for a slot due at once
    (None: none). DIFF(end, start) is the clock's difference: ticks_diff on ticks (wrap-around
    safe), plain subtraction on a clock that never wraps (a trace's epoch ms). A slot's open
    period started elapsed[slot] ms before the clock's last reading, `now`.

    Rules (each a test in tests/firmware/mp_test_schedule.py and test_schedule_properties.py):
    - A slot is due once the open period's length has elapsed; close() ends that period at its
      nominal end, so periods keep to their grid however late the caller notices.
    - A length given to close() takes effect at that end: the grid restarts there with it (a
      change of CollectorsCore_PriorityIntervals never cuts or stretches an open period).
    - A stall or a forward jump spanning several periods: one close, its return value the number
      of whole periods skipped (nothing was collected in them: they send nothing), and the next
      period is the one of the grid that holds the current time.
    - A clock that goes back counts as no time passing: the clock re-anchors at the new reading.
    - close() before the period is over (a forced flush, a shutdown) ends it now; the grid
      restarts now.
    - On ticks, a single step longer than half the ticks period (2**29 ms on a 32-bit port) is
      ambiguous to ticks_diff: such a stall is seen as shorter, or as a step back.
    """

    def __init__(self, now, lengths, first, diff):
        self._diff = diff
        self.now = now
        self.length = list(lengths)
        self.elapsed = [0] * len(self.length)  # ms from each open period's start to self.now
        if first is not None:
            for i in range(len(first)):
                if first[i]:
                    self.elapsed[i] = self.length[i]

    def advance(self, now):
        """Moves the clock to NOW."""
        step = self._diff(now, self.now)
        self.now = now
        if step > 0:
            elapsed = self.elapsed
            for i in range(len(elapsed)):
                elapsed[i] += step

    def due(self, slot):
        """True when SLOT's open period is over."""
        return self.elapsed[slot] >= self.length[slot]

    def close(self, slot, length):
        """Ends SLOT's open period (at its nominal end when it is over, else now); the next ones
        are LENGTH ms long. Returns the number of whole periods skipped."""
        elapsed = self.elapsed[slot]
        over = elapsed - self.length[slot]
        self.length[slot] = length
        if over < 0:
            self.elapsed[slot] = 0
            return 0
        skipped = over // length
        self.elapsed[slot] = over - skipped * length
        return skipped
