"""The host agent: live Linux collectors → host engine → messages (stdout or IoT Hub).

The event-based collectors run in their own threads and hand raw events (docs/spec.md section 1) to a
queue; one loop owns the engine, records the queued events into their collector's current window
(on the wall clock, integer ms) and flushes each window when it closes. Process, NetworkActivity
(with DNS) and Login each have windows of their own priority's length; windows that close on the
same tick go out together, in the same messages. Trigger-based collectors (system information,
baseline, SBoM) run at start and then every interval of their priority. When is
decided by the firmware core's Schedule (microagent.schedule; docs/spec.md section 2) on a
monotonic clock that counts a suspend (CLOCK_BOOTTIME): setting the wall clock moves no window;
the wall clock only stamps the messages.
"""
import queue
import time

from microagent import events as ev
from microagent.clock import ticks_diff
from microagent.config import Config
from microagent.decode import message_line
from microagent.engine import make_encoder
from microagent.schedule import Schedule
from microagent.trace import TraceError, record_event

from host_sim.collectors import baseline, sbom, sysinfo
from host_sim.collectors.dns import DnsCollector
from host_sim.collectors.login import LoginCollector
from host_sim.collectors.network import NetworkCollector
from host_sim.collectors.process import ProcessCollector
from host_sim.engine import build_host_engine

EVENT_COLLECTORS = {
    "Process": lambda emit, o: ProcessCollector(emit, root=o.root, mode=o.process_mode,
                                                polling_interval=o.polling_interval_s),
    "NetworkActivity": lambda emit, o: NetworkCollector(emit),
    "DNS": lambda emit, o: DnsCollector(emit),
    "Login": lambda emit, o: LoginCollector(emit, root=o.root),
}
TRIGGERED = {
    "SystemInformation": lambda o: sysinfo.collect(o.root),
    "Baseline": lambda o: baseline.collect(o.root, o.checks_disabled, o.groups_disabled),
    "SBoM": lambda o: sbom.collect(o.root),
}
# The config collector whose <name>_Disabled covers each kind of raw event.
_COLLECTOR_OF_KIND = {"process": "Process", "connection": "NetworkActivity",
                      "dns": "NetworkActivity", "login": "Login"}
# Which DroppedEvents collector a data source's own losses (netlink overruns) are charged to.
_LOSSES_TO = {"Process": ev.PROCESS, "NetworkActivity": ev.CONNECTION, "DNS": ev.DNS,
              "Login": ev.LOGIN}
# The collectors with event windows, each its own length (docs/spec.md section 2): the
# schedule's slots 0..2; slot len(WINDOWED) + i is the i-th of TRIGGERED. DNS answers join the
# connections, so they live in NetworkActivity's window.
WINDOWED = ("Process", "NetworkActivity", "Login")
_CACHES_OF = {"Process": (ev.PROCESS,), "NetworkActivity": (ev.CONNECTION, ev.DNS),
              "Login": (ev.LOGIN,)}


class Options:
    """What the agent runs with (filled from the CLI; defaults are the spec's)."""

    def __init__(self, **values):
        self.root = "/"
        self.process_mode = "Auto"
        self.polling_interval_s = 0.1  # Process_PollingInterval, in seconds
        self.window_s = None  # None: each event collector's from the configuration
        self.triggered_interval_s = None  # None: each one's priority interval (configuration)
        self.cache_size = 256
        self.collectors = list(EVENT_COLLECTORS) + list(TRIGGERED)
        self.checks_disabled = ""
        self.groups_disabled = ""
        self.max_message_size = 4096
        self.__dict__.update(values)


class HostAgent:
    """Runs the collectors named in OPTIONS; SEND(text) gets each message, LOG(text) status."""

    def __init__(self, options, agent_id, send, log, config=None):
        self.options = options
        self.send = send
        self.log = log
        self.config = config or Config()
        self.queue = queue.SimpleQueue()
        # TimestampLocal carries this machine's offset from UTC (replays stay in UTC).
        self.agent_id = agent_id
        self.engine = build_host_engine(options.cache_size, self._sink, log, agent_id,
                                        options.max_message_size,
                                        time.localtime().tm_gmtoff // 60,
                                        encoding=self.config.encoding())
        self.config_changed = False
        self.collectors = {}
        self.messages = 0
        self.rejected = 0
        self._halves = [0, 0]
        self._lost_seen = {}
        self.schedule = None
        self.window_starts = {}  # WINDOWED name: its open window's start, epoch ms

    def _sink(self, buffer, length):
        self.messages += 1
        self.send(message_line(buffer, length))

    def start(self):
        """Starts the event collectors; one that cannot run here is logged and left out."""
        for name in EVENT_COLLECTORS:
            if name in self.options.collectors:
                self._start_collector(name)
        # Events from here on are caught: the data sources are open (scripts wait for this line).
        self.log("collecting: %s" % (", ".join(self._describe(name) for name in self.collectors)
                                     or "no event collectors"))

    def _describe(self, name):
        mode = getattr(self.collectors[name], "mode", None)
        if mode == "Audit":
            return "%s (Audit: %s)" % (name, self.collectors[name].source)
        if mode == "Polling":
            return "%s (Polling every %g s)" % (name, self.options.polling_interval_s)
        return "%s (%s)" % (name, mode) if mode else name

    def _start_collector(self, name):
        collector = EVENT_COLLECTORS[name](self.queue.put, self.options)
        try:
            collector.start()
        except OSError as exc:
            self.log("%s collector not started: %s" % (name, exc))
            return
        self.collectors[name] = collector

    def stop(self):
        for collector in self.collectors.values():
            collector.stop()

    def on_config(self, applied):
        """The module twin changed the configuration (called from the transport's thread): it
        takes effect when the current window closes."""
        self.log("configuration changed: %s" % ", ".join(sorted(applied)))
        self.config_changed = True

    def apply_config(self):
        """Cache sizes and the Baseline settings from the configuration; the window length is
        read by run() for the next window."""
        self.config_changed = False
        config = self.config
        self.engine.process.capacity = config["Process_CacheSize"]
        self.engine.network.capacity = config["NetworkActivity_CacheSize"]
        self.engine.dns.capacity = config["NetworkActivity_CacheSize"]
        self.engine.login.resize(config["Login_CacheSize"])
        if config.encoding() != self.engine.encoder.ENCODING:
            old = self.engine.encoder
            self.engine.encoder = make_encoder(config.encoding(), self.agent_id, self._sink,
                                               old.max_size, old.utc_offset_minutes)
            self.log("messages now encoded as %s" % config.encoding())
        process = (config["Process_Mode"], config["Process_PollingInterval"] / 1e6)
        if process != (self.options.process_mode, self.options.polling_interval_s):
            self.options.process_mode, self.options.polling_interval_s = process
            running = self.collectors.pop("Process", None)
            if running is not None:
                # What the old collector still holds goes to the queue, so to the next window.
                running.stop()
                self._start_collector("Process")
                if "Process" in self.collectors:
                    self.log("Process collector restarted: %s" % self._describe("Process"))
        self.options.checks_disabled = config["Baseline_ChecksDisabled"]
        self.options.groups_disabled = config["Baseline_GroupsDisabled"]

    def window_ms(self, name):
        """The window length of event collector NAME (one of WINDOWED), in ms."""
        if self.options.window_s is not None:
            return int(self.options.window_s * 1000)
        return self.config.window_ms(name)

    def triggered_ms(self, name):
        if self.options.triggered_interval_s is not None:
            return int(self.options.triggered_interval_s * 1000)
        return self.config.window_ms(name)

    def run_triggered(self, now_ms, names=TRIGGERED):
        for name in names:
            if name not in self.options.collectors or not self.config.enabled(name):
                continue
            collect = TRIGGERED[name]
            try:
                items = collect(self.options)
            except OSError as exc:
                self.log("%s collector failed: %s" % (name, exc))
                continue
            self.engine.send_periodic(name, items, now_ms)

    def drain(self):
        """Records every queued raw event into its collector's open window."""
        while True:
            try:
                event = self.queue.get_nowait()
            except queue.Empty:
                return
            collector = _COLLECTOR_OF_KIND[event["kind"]]
            if not self.config.enabled(collector):
                continue
            offset = max(0, int(event["t"] * 1000) - self.window_starts[collector])
            try:
                record_event(self.engine, event, offset, event["kind"] + " collector",
                             self._halves)
            except TraceError as exc:
                self.rejected += 1
                self.log("ignored a malformed event: %s" % exc)

    def _charge_losses(self):
        # Events the data source itself lost (netlink ENOBUFS) count as dropped in the window.
        for name, collector in self.collectors.items():
            lost = collector.stats.get("lost", 0)
            new = lost - self._lost_seen.get(name, 0)
            if new > 0:
                self._lost_seen[name] = lost
                self.engine.cache_of(_LOSSES_TO[name]).dropped += new
                self.log("%s: the data source lost %d events (reported as dropped)"
                         % (name, new))

    def close_windows(self, names, now_ms):
        """Flushes the open windows of the event collectors NAMES; those that started together
        share their messages. Returns the messages sent."""
        self.drain()
        self._charge_losses()
        sent = 0
        for start in sorted({self.window_starts[name] for name in names}):
            caches = tuple(c for name in names if self.window_starts[name] == start
                           for c in _CACHES_OF[name])
            sent += self.engine.flush(start, now_ms, caches)
        if self.config_changed:
            self.apply_config()
        return sent

    def begin(self, mono_ms, wall_ms):
        """Opens the first windows at MONO_MS on the monotonic clock, WALL_MS epoch ms; the
        trigger-based collectors are due at once."""
        self.schedule = Schedule(mono_ms, [self.window_ms(name) for name in WINDOWED]
                                 + [self.triggered_ms(name) for name in TRIGGERED],
                                 [False] * len(WINDOWED) + [True] * len(TRIGGERED), ticks_diff)
        self.window_starts = dict.fromkeys(WINDOWED, wall_ms)

    def tick(self, mono_ms, wall_ms):
        """One turn of the loop: closes the windows that are over (a new window length or
        interval takes effect there) and records the queued events; runs the trigger-based
        collectors that are due."""
        schedule = self.schedule
        schedule.advance(mono_ms)
        due = [(i, name) for i, name in enumerate(WINDOWED) if schedule.due(i)]
        if due:
            self.close_windows([name for _, name in due], wall_ms)
            skipped = {}
            for i, name in due:
                skipped.setdefault(schedule.close(i, self.window_ms(name)), []).append(name)
                self.window_starts[name] = wall_ms - schedule.elapsed[i]
            for count, names in sorted(skipped.items()):
                if count:
                    self.log("%d windows skipped (%s): the agent did not run through them (a "
                             "suspend or a stall)" % (count, ", ".join(names)))
        else:
            self.drain()
        for i, name in enumerate(TRIGGERED):
            if schedule.due(len(WINDOWED) + i):
                schedule.close(len(WINDOWED) + i, self.triggered_ms(name))
                self.run_triggered(wall_ms, (name,))

    def run(self, once_s=None):
        """Collects until interrupted (or ONCE_S seconds, then one window and the triggered
        collectors once). Interrupted (KeyboardInterrupt: Ctrl-C, or SIGTERM through `run`), it
        sends the window collected so far before it re-raises: stopping loses nothing."""
        self.apply_config()
        self.begin(_monotonic_ms(), _now_ms())
        self.start()
        try:
            if once_s is not None:
                time.sleep(once_s)
                self.stop()
                self.close_windows(WINDOWED, _now_ms())
                self.run_triggered(_now_ms())
                return
            while True:
                self.tick(_monotonic_ms(), _now_ms())
                time.sleep(0.2)
        except KeyboardInterrupt:
            self.stop()  # the collectors hand over what they still hold
            self.log("stopping: sending the current window")
            self.close_windows(WINDOWED, _now_ms())
            raise
        finally:
            self.stop()


def _now_ms():
    return int(time.time() * 1000)


def _monotonic_ms():
    # CLOCK_BOOTTIME goes on through a suspend (CLOCK_MONOTONIC stops): windows a suspend spans
    # are skipped, not stretched.
    clock = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)
    return time.clock_gettime_ns(clock) // 1000000
