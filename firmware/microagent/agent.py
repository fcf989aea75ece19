# The agent on a board: board profile + device settings -> caches sized by the profile -> windows
# on the board's tick clock -> encoder -> bounded outbox -> IoT Hub session, as asyncio tasks
# beside the user's application. MicroPython-compatible.
#
# Two tasks share the outbox: the window task closes windows and sends the periodic collectors,
# one payload item at a time with an await between items; the delivery task keeps the hub session
# going (connect, publish, acknowledgements), every wait of which yields. Neither ever holds the
# application's loop for longer than one item's encoding.
#
# It never takes the board down: an exception in the agent is logged and the agent starts again
# with backoff (1 s doubling to 60 s); the application keeps running meanwhile.
import gc
import sys

import asyncio

from microagent import profile as board_profile
from microagent.cache import DnsTable, NetworkCache, NoCache
from microagent.clock import ticks_add, ticks_diff, ticks_ms
from microagent.collectors import netsock
from microagent.config import Config
from microagent.encode import guid
from microagent.engine import Engine, make_encoder
from microagent.hub import HubSession
from microagent.schedule import Schedule
from microagent.sas import ConnectionString, unix_time

PREFIX = "microagent: "
STEP_MS = 100            # how often the agent's tasks wake up
SINK_WAIT_MS = 2000      # longest a full outbox may hold up a window's flush while connected
RESTART_MIN_MS = 1000
RESTART_MAX_MS = 60000
_CACHE_KEY = "NetworkActivity_CacheSize"
_CACHE6_KEY = "NetworkActivity_IPv6_CacheSize"
_PERIODIC = ("SystemInformation", "SBoM")  # the schedule's slots 1, 2; slot 0: the window
_YEAR_2020_S = 1577836800  # a clock before this was never set (no NTP yet)


def log(text):
    print(PREFIX + text)


def agent_id(cs):
    """A GUID stable per device (docs/spec.md section 5): derived from the hub and device (and module) id."""
    import hashlib
    return guid(hashlib.sha256((cs.host + "/" + cs.client_id()).encode()).digest()[:16], 5)


class Agent:
    """One run of the agent. OUTBOX (allocated at boot) and TRACKER (the socket tracker
    installed at boot) outlive restarts, so queued messages survive an agent restart; OPENER is
    passed to HubSession (tests)."""

    def __init__(self, settings, outbox, tracker, opener=None):
        self.settings = settings
        self.tracker = tracker
        board = settings.board
        self.config = settings.config(Config)
        self.collectors = board["collectors"]
        self.heap_peak = 0
        self.windows = 0
        self._link_error = None
        self._gave_up_at = -1  # self.messages when _room() last waited in vain
        self.messages = 0
        self._config_changed = False
        cs = ConnectionString(settings.connection_string)
        self.outbox = outbox
        outbox.requeue()  # what an earlier run sent but saw no acknowledgement for goes again
        kwargs = {} if opener is None else {"opener": opener}
        # an X.509 board provisioned through DPS (dps.provision_board) connects with its certificate
        self.session = HubSession(cs, self.outbox, self.config, ca_der=settings.ca_der(),
                                  port=settings.port, log=log, on_config=self._on_config,
                                  client_cert=getattr(settings, "client_cert", None), **kwargs)
        # The caches' arrays are allocated before anything else grows the heap: they need
        # contiguous room.
        gc.collect()
        size = self._cache_size()
        self._agent_id = agent_id(cs)
        encoder = self._encoder()
        network6, dns6 = self._ipv6_caches(size)
        self.engine = Engine(NoCache(), NetworkCache(size), NoCache(), DnsTable(size), encoder,
                             self._warn, network6, dns6)
        self._message_bytes = board["max_message_bytes"]
        now = ticks_ms()
        self._window_epoch_ms = unix_time() * 1000
        # The periodic collectors are due now: sent right after start.
        self._schedule = Schedule(
            now, [self._window_length(name) for name in ("NetworkActivity",) + _PERIODIC],
            [False] + [True] * len(_PERIODIC), ticks_diff)
        tracker.attach(self.engine if size else None, now)
        self.sample_heap()

    # ---- configuration ----------------------------------------------------------------------

    def _cache_size(self):
        if "NetworkActivity" not in self.collectors or not self.config.enabled("NetworkActivity"):
            return 0
        return self.config[_CACHE_KEY]

    def _ipv6_caches(self, size):
        """The IPv6 cache and DNS table, or (None, None) where the profile gives IPv6 no room
        (its NetworkActivity_IPv6_CacheSize absent or 0): IPv6 peers are then unsupported."""
        if not size or self.settings.board["config"].get(_CACHE6_KEY, 0) < 1:
            return None, None
        from microagent.cache6 import DnsTable6, NetworkCache6
        size6 = self.config[_CACHE6_KEY]
        return NetworkCache6(size6), DnsTable6(size6)

    def _encoder(self):
        return make_encoder(self.config.encoding(), self._agent_id, self._sink,
                            self.settings.board["max_message_bytes"])

    def _window_length(self, collector):
        return self.settings.window_ms or self.config.window_ms(collector)

    def _on_config(self, applied):
        self._config_changed = True
        log("config from the module twin: %s (takes effect at the next window)"
            % ", ".join(sorted(applied)))

    def _apply_config(self):
        # Window lengths and cache sizes change at a window boundary, never inside a window.
        self._config_changed = False
        size = self._cache_size()
        start = ticks_add(self._schedule.now, -self._schedule.elapsed[0])
        if size != self.engine.network.capacity:
            self.tracker.attach(None, start)
            self.engine.network = None
            self.engine.dns = None
            gc.collect()
            self.engine.network = NetworkCache(size)
            self.engine.dns = DnsTable(size)
            log("network cache resized to %d entries" % size)
        if self.config.encoding() != self.engine.encoder.ENCODING:
            self.engine.encoder = None
            gc.collect()
            self.engine.encoder = self._encoder()
            log("messages now encoded as %s" % self.config.encoding())
        self.tracker.attach(self.engine if size else None, start)

    # ---- output -----------------------------------------------------------------------------

    def _sink(self, buffer, length):
        # _room() made room for this message when the hub was reachable; otherwise the outbox
        # drops its oldest messages and counts them.
        self.sample_heap()
        self.session.send(memoryview(buffer)[:length])
        self.messages += 1

    async def _room(self):
        # Awaited before each payload item of a flush. A full window can be larger than the
        # outbox (64 connections are ~23 KB of messages): while the hub is reachable the delivery
        # task frees room, so wait for it rather than drop older messages -- at most SINK_WAIT_MS
        # per message: after a wait in vain, the items of the same message do not wait again.
        if (not self.outbox.fits(self._message_bytes) and self.session.connected()
                and self._gave_up_at != self.messages):
            start = ticks_ms()
            while not self.outbox.fits(self._message_bytes):
                if not self.session.connected() or ticks_diff(ticks_ms(), start) >= SINK_WAIT_MS:
                    self._gave_up_at = self.messages
                    return
                await asyncio.sleep_ms(10)
        else:
            await asyncio.sleep_ms(0)

    def _warn(self, text):
        log("warning: " + text)

    def sample_heap(self):
        """The live heap now (after a collection), remembered when it is the highest so far.
        Called where the agent holds the most: a full message, a window's close, a connect."""
        gc.collect()
        used = gc.mem_alloc()
        if used > self.heap_peak:
            self.heap_peak = used
        return used

    # ---- windows ----------------------------------------------------------------------------

    async def close_window(self, now):
        """Reports the open sockets' activity, flushes the window into the outbox, starts the
        next window (with any new configuration). Called before the window is over, it ends the
        window NOW (docs/spec.md section 2)."""
        schedule = self._schedule
        schedule.advance(now)
        wall_ms = unix_time() * 1000
        self.tracker.sweep()
        connections = self.engine.network.count
        lost = self.engine.network.dropped + self.engine.dns.dropped
        # While the flush awaits, the application's socket activity waits on its sockets and
        # its lookups in the tracker: it belongs to the next window, not to the caches being sent.
        self.tracker.pause()
        for _ in self.engine.flush_steps(self._window_epoch_ms, wall_ms):
            await self._room()
        sent = self.engine.sent
        self.windows += 1
        if self._config_changed:
            self._apply_config()
        # A new window length takes effect here, at the end of the window it was set in.
        skipped = schedule.close(0, self._window_length("NetworkActivity"))
        self._window_epoch_ms = wall_ms - schedule.elapsed[0]
        self.tracker.new_window(ticks_add(schedule.now, -schedule.elapsed[0]))
        self.tracker.resume()
        if skipped:
            log("%d windows skipped: the agent's loop did not run through them" % skipped)
        box = self.outbox  # its counters read directly: no stats() dict in the heap sample
        log("window %d: %d messages, %d connections, %d lost to a full cache, heap %d peak %d "
            "bytes, outbox queued %d delivered %d dropped %d expired %d too_large %d "
            "unconfirmed %d"
            % (self.windows, sent, connections, lost, self.sample_heap(), self.heap_peak,
               box.count, box.delivered, box.dropped, box.expired, box.too_large,
               box.unconfirmed))

    async def send_periodic(self, now):
        schedule = self._schedule
        schedule.advance(now)
        for i in range(len(_PERIODIC)):
            name = _PERIODIC[i]
            if not schedule.due(1 + i):
                continue
            schedule.close(1 + i, self._window_length(name))
            if name not in self.collectors or not self.config.enabled(name):
                continue
            items = self._collect(name)
            for _ in self.engine.periodic_steps(name, items, unix_time() * 1000):
                await self._room()
            sent = self.engine.sent
            log("%s: %d items in %d messages" % (name, len(items), sent))
            del items
            gc.collect()

    def _collect(self, name):
        # The periodic collectors run once a Low window: their code is loaded for the run and
        # unloaded after, so it does not sit in the heap between runs.
        if name == "SystemInformation":
            from microagent.collectors import sysinfo
            items = sysinfo.collect()
            address = sysinfo.board_address(items)
            if address:
                self.tracker.set_local_address(address)
            _unload("microagent.collectors", "sysinfo")
            return items
        from microagent.collectors import sbom
        root = self.settings.board["fs_root"].rstrip("/")
        items = sbom.collect((root + "/lib" if root else "lib",))
        _unload("microagent.collectors", "sbom")
        return items

    async def step(self):
        now = ticks_ms()
        schedule = self._schedule
        schedule.advance(now)
        if schedule.due(0):
            await self.close_window(now)
        for i in range(len(_PERIODIC)):
            if schedule.due(1 + i):  # checked first: a coroutine per tick would be garbage
                await self.send_periodic(now)
                return

    async def _deliver(self):
        # The delivery task. An exception that is not the hub's (those the session handles and
        # retries) ends it; run() raises it, so supervise() restarts the agent.
        try:
            while True:
                connects = self.session.connects
                connected = await self.session.step(poll_ms=STEP_MS)
                if self.session.connects != connects:
                    _unload("microagent", "resolve")  # only needed while connecting
                    self.sample_heap()
                if not connected:
                    await asyncio.sleep_ms(STEP_MS)
        except Exception as exc:  # noqa: BLE001 - handed to run()
            self._link_error = exc

    async def run(self):
        link = asyncio.create_task(self._deliver())
        try:
            while self._link_error is None:
                await self.step()
                await asyncio.sleep_ms(STEP_MS)
            raise self._link_error
        finally:
            link.cancel()


def _unload(package, name):
    sys.modules.pop(package + "." + name, None)
    parent = sys.modules.get(package)
    if parent is not None and name in dir(parent):
        delattr(parent, name)


def _set_clock():
    # IoT Hub refuses SAS tokens from a clock that was never set; boards set it by NTP.
    if unix_time() >= _YEAR_2020_S:
        return
    try:
        import ntptime
        ntptime.settime()
        log("clock set by NTP")
    except (ImportError, OSError) as exc:
        log("warning: the clock is not set and NTP failed (%s): the hub will refuse the SAS "
            "token until it is" % exc)


async def supervise(settings, outbox, tracker, started=None, opener=None):
    """Runs the agent; after an exception logs it and starts it again with backoff."""
    delay = RESTART_MIN_MS
    while True:
        agent = None
        try:
            agent = Agent(settings, outbox, tracker, opener)
            if started is not None:
                started(agent)
                started = None
            await agent.run()
        except Exception as exc:  # noqa: BLE001 - the agent must never take the board down
            if agent is not None and agent.windows:
                delay = RESTART_MIN_MS  # it ran for a window: a fresh failure, not a loop
            log("error: %s: %s; restarting in %d ms" % (type(exc).__name__, exc, delay))
            if hasattr(sys, "print_exception"):
                sys.print_exception(exc)
            if agent is not None:
                try:
                    agent.session.close()
                except Exception:  # noqa: BLE001 - best effort on the way down
                    pass
            agent = None
            tracker.attach(None, ticks_ms())
            tracker.resume()  # a flush the exception cut short left it paused
            gc.collect()
            await asyncio.sleep_ms(delay)
            delay = min(delay * 2, RESTART_MAX_MS)


def _application():
    # The user's application: app.py next to main.py, with main() (a coroutine function or a
    # plain function). None when there is none.
    try:
        import app
    except ImportError as exc:
        if "app" not in str(exc):
            raise  # app.py exists but one of its imports fails: that is the application's error
        return None
    return getattr(app, "main", None)


async def _run(settings, outbox, tracker, application):
    def started(agent):  # the line flash.py waits for
        board = settings.board
        print("%s board=%s collectors=%s windows=%dms outbox=%dx%d heap=%d" % (
            board_profile.STARTED_LINE, board["name"], ",".join(agent.collectors),
            agent._schedule.length[0], board["outbox"]["max_messages"],
            board["outbox"]["max_bytes"], agent.sample_heap()))

    task = asyncio.create_task(supervise(settings, outbox, tracker, started))
    if application is None:
        await task
        return
    result = application()
    if hasattr(result, "send"):  # a coroutine: the application runs as a task beside the agent
        await result
    await task


def main(settings, outbox):
    """Entry point of main.py, after microagent.settings.boot(); SETTINGS None: the board is
    not set up for the agent (boot() said why), so only the application runs."""
    if settings is None:
        application = _application()
        if application is not None:
            result = application()
            if hasattr(result, "send"):
                asyncio.run(result)
        return
    size = settings.board["config"].get(_CACHE_KEY, 0)
    tracker = netsock.install(size) if "NetworkActivity" in settings.board["collectors"] \
        else netsock.Tracker(0)
    _set_clock()
    asyncio.run(_run(settings, outbox, tracker, _application()))
