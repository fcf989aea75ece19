"""The shared driving interface of the event-based collectors (process, network, dns, login).

Each event-based collector is an `EventCollector`:

    collector.open()        acquire sockets/files; raises OSError (e.g. PermissionError) when the
                            data source cannot be used at all
    collector.fileno()      a file descriptor that becomes readable when events wait, or None
    collector.read()        drain what is ready on fileno() without blocking; calls emit(event)
    collector.poll()        periodic work (dumps, file reads, /proc scans); call it every
                            `collector.poll_interval` seconds (None: no periodic work)
    collector.close()       release everything
    collector.stats         dict of counters (events, lost, ...) for the operational statistics

Two ways to drive it:
  * asyncio: `collector.open()`; `loop.add_reader(collector.fileno(), collector.read)` when
    fileno() is not None; a task calling `collector.poll()` every poll_interval seconds.
  * a thread: `collector.start(nice=None)` ... `collector.stop()` (select() on fileno() with
    the poll interval as timeout). emit() is then called from that thread.
"""
import logging
import os
import select
import threading
import time

log = logging.getLogger(__name__)


class EventCollector:
    poll_interval = None

    def __init__(self, emit):
        self.emit = emit
        self.stats = {"events": 0}
        self._thread = None
        self._stopping = threading.Event()
        self._logged = set()

    def open(self):
        pass

    def fileno(self):
        return None

    def read(self):
        return 0

    def poll(self):
        return 0

    def close(self):
        pass

    def _emit(self, event):
        self.stats["events"] += 1
        self.emit(event)

    def start(self, nice=None):
        """Open and run in a daemon thread until stop(). `nice` (e.g. -10, root only) raises
        the thread's scheduling priority: under a burst the process collector must read /proc
        before short-lived processes end, and it reads more of them in time when it is not
        queued behind the processes it watches."""
        self.open()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, args=(nice,), name=type(self).__name__,
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout=5.0):
        """Stop the thread, drain what is still pending, close."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.close()

    def _run(self, nice):
        if nice is not None:
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)  # this thread
            except OSError as exc:
                log.warning("%s: cannot set priority %d (%s); running at normal priority",
                            type(self).__name__, nice, exc.strerror)
        fd = self.fileno()
        interval = self.poll_interval
        next_poll = time.monotonic()
        while not self._stopping.is_set():
            wait = 0.2 if interval is None else max(0.0, next_poll - time.monotonic())
            if fd is not None:
                ready, _, _ = select.select([fd], [], [], min(wait, 0.2))
                if ready:
                    self._guarded(self.read)
            elif wait > 0:
                self._stopping.wait(min(wait, 0.2))
            if interval is not None and time.monotonic() >= next_poll:
                self._guarded(self.poll)
                next_poll = time.monotonic() + interval
        if fd is not None:
            self._guarded(self.read)

    def _guarded(self, step):
        """A failing read or poll is counted and logged (once per kind of failure) and the
        thread goes on: a collector thread must not die silently."""
        try:
            step()
        except Exception as exc:              # noqa: BLE001 - logged and counted below
            self.stats["errors"] = self.stats.get("errors", 0) + 1
            key = (type(exc), str(exc))
            if key not in self._logged:
                self._logged.add(key)
                log.error("%s: %s failed: %s", type(self).__name__, step.__name__, exc)
            self._stopping.wait(0.1)
