"""What the cloud side writes and reads, in SQL both backends speak (upserts with ON CONFLICT);
a backend (sqlite.py, postgres.py) supplies the connection, its transactions and its types.
Queries are written with ? placeholders; the PostgreSQL backend turns them into %s."""
import hashlib
import json
import threading

from host_sim.cloud.store import schema
from host_sim.cloud.store.errors import StoreError

ALERT_COLUMNS = ("id, device, rule, severity, alert_key, title, what_to_do, first_time, "
                 "last_time, count, evidence, technique, incident, kind")


class PositionMoved(StoreError):
    """Another consumer wrote a partition's position since this one read it: what this one
    holds for it must not be written (the other has processed those messages)."""


def alert_id(device, rule, key):
    """The alert's identity in every store and process: a hash of (device, rule, key)."""
    return hashlib.sha256(json.dumps([device, rule, key]).encode()).hexdigest()[:32]


def clean_text(value):
    """VALUE (device-supplied text) as both backends store it: no NUL (PostgreSQL refuses it in
    text) and no lone surrogate (not encodable as UTF-8)."""
    if value is None:
        return None
    value = str(value)
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def glob_to_like(pattern):
    """A shell glob (* and ?) as a LIKE pattern with \\ as its escape."""
    out = []
    for ch in pattern:
        if ch in "\\%_":
            out.append("\\" + ch)
        elif ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        else:
            out.append(ch)
    return "".join(out)


class Batch:
    """What one commit writes, all in one transaction."""

    def __init__(self):
        self.devices = []     # (device, source, partition, last_time, last_arrival, messages, skipped, state JSON)
        self.tags = {}        # device -> [tags] (replaces the device's tags)
        self.alerts = []      # Alert objects
        self.hourly = []      # (device, hour, messages, blocks, events, dropped, free blocks) to add
        self.positions = []   # (source, partition, expected next offset or None, new next offset)
        self.incidents = {}   # device -> [incident dicts] (replaces the device's incidents)
        self.memberships = {}  # alert id -> incident id or None, for the devices above
        self.recommendations = {}  # device -> [recommendation dicts] (replaces the device's)

    def __bool__(self):
        return bool(self.devices or self.tags or self.alerts or self.hourly or self.positions
                    or self.incidents or self.recommendations)


class Store:
    """One store connection. Safe to share between threads (calls are serialised)."""

    kind = "?"
    types = {}

    def __init__(self, dsn_shown):
        self.dsn_shown = dsn_shown
        self.lock = threading.RLock()

    # ---- what a backend supplies --------------------------------------------------------------

    def _execute(self, sql, params=()):
        raise NotImplementedError

    def _executemany(self, sql, rows):
        raise NotImplementedError

    def _transaction(self):
        """A context manager: one transaction, holding the schema lock where there is one."""
        raise NotImplementedError

    def _has_table(self, name):
        raise NotImplementedError

    def _errors(self):
        """The backend's exception classes that become StoreError."""
        raise NotImplementedError

    def _message(self, exc):
        return " ".join(str(exc).split())

    def close(self):
        raise NotImplementedError

    def size_bytes(self):
        raise NotImplementedError

    # ---- schema -------------------------------------------------------------------------------

    def migrate(self, target=schema.LATEST):
        """Brings the schema to TARGET (tests stop early to make an old store)."""
        with self._guard("open"), self._transaction():
            version = self.version()
            if version > schema.LATEST:
                raise StoreError("store %s has schema version %d, newer than this microagent "
                                 "knows (%d): upgrade microagent" % (self.dsn_shown, version,
                                                                     schema.LATEST))
            for number in range(version + 1, target + 1):
                for sql in schema.statements(number, self.types):
                    self._execute(sql)
                self._execute("UPDATE schema_version SET version = ?", (number,))

    def version(self):
        if not self._has_table("schema_version"):
            if self._user_tables():
                raise StoreError("store %s has tables but is not a microagent store (no "
                                 "schema_version)" % self.dsn_shown)
            return 0
        rows = self._execute("SELECT version FROM schema_version").fetchall()
        if len(rows) != 1:
            raise StoreError("store %s: schema_version must hold one row" % self.dsn_shown)
        return rows[0][0]

    def _user_tables(self):
        raise NotImplementedError

    # ---- errors -------------------------------------------------------------------------------

    def _guard(self, doing):
        return _Guard(self, doing)

    # ---- writing ------------------------------------------------------------------------------

    def write(self, batch):
        """BATCH (a Batch) in one transaction. PositionMoved when a position is not where the
        batch expects it (nothing is written then)."""
        if not batch:
            return
        with self._guard("write"), self._transaction():
            for source, partition, expected, new in batch.positions:
                if expected is None:
                    moved = self._execute(
                        "INSERT INTO positions (source, partition_no, next_offset) VALUES (?, ?, ?)"
                        " ON CONFLICT (source, partition_no) DO NOTHING",
                        (source, partition, new)).rowcount != 1
                else:
                    moved = self._execute(
                        "UPDATE positions SET next_offset = ? WHERE source = ? AND partition_no = ?"
                        " AND next_offset = ?", (new, source, partition, expected)).rowcount != 1
                if moved:
                    raise PositionMoved("store %s: position of %s partition %d moved (another "
                                        "consumer took it over)" % (self.dsn_shown, source,
                                                                    partition))
            if batch.devices:
                self._executemany(
                    "INSERT INTO devices (device, source, partition_no, last_time, last_arrival,"
                    " messages, skipped, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (device) DO UPDATE SET source = excluded.source,"
                    " partition_no = excluded.partition_no, last_time = excluded.last_time,"
                    " last_arrival = excluded.last_arrival, messages = excluded.messages,"
                    " skipped = excluded.skipped, state = excluded.state",
                    [(clean_text(d[0]),) + tuple(d[1:]) for d in batch.devices])
            for device, tags in batch.tags.items():
                self._execute("DELETE FROM device_tags WHERE device = ?", (clean_text(device),))
                self._executemany("INSERT INTO device_tags (device, tag) VALUES (?, ?)",
                                  [(clean_text(device), clean_text(tag)) for tag in sorted(set(tags))])
            if batch.alerts:
                self._executemany(
                    "INSERT INTO alerts (id, device, rule, severity, alert_key, title, what_to_do,"
                    " first_time, last_time, count, evidence, technique, kind)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (id) DO UPDATE SET severity = excluded.severity,"
                    " title = excluded.title, what_to_do = excluded.what_to_do,"
                    " first_time = excluded.first_time, last_time = excluded.last_time,"
                    " count = excluded.count, evidence = excluded.evidence,"
                    " technique = excluded.technique, kind = excluded.kind",
                    [(alert_id(a.device, a.rule, a.key), clean_text(a.device), a.rule, a.severity,
                      clean_text(a.key), clean_text(a.title), clean_text(a.what_to_do), a.first,
                      a.last, a.count, json.dumps(a.evidence, default=repr),
                      json.dumps(getattr(a, "technique", None) or []),
                      getattr(a, "kind", "alert"))
                     for a in batch.alerts])
            for device, incidents in batch.incidents.items():
                self._execute("DELETE FROM incidents WHERE device = ?", (clean_text(device),))
                self._executemany(
                    "INSERT INTO incidents (id, device, severity, first_time, last_time, title,"
                    " data) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                    " device = excluded.device, severity = excluded.severity,"
                    " first_time = excluded.first_time, last_time = excluded.last_time,"
                    " title = excluded.title, data = excluded.data",
                    [(i["incident"], clean_text(device), i["severity"], i["first_time"],
                      i["last_time"], clean_text(i["title"]), json.dumps(i, default=repr))
                     for i in incidents])
            for device, items in batch.recommendations.items():
                self._execute("DELETE FROM recommendations WHERE device = ?", (clean_text(device),))
                self._executemany(
                    "INSERT INTO recommendations (id, device, severity, first_time, last_time,"
                    " title, data) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                    " severity = excluded.severity, first_time = excluded.first_time,"
                    " last_time = excluded.last_time, title = excluded.title, data = excluded.data",
                    [(alert_id(device, r["rule"], r["key"]), clean_text(device), r["severity"],
                      r["first_time"] or 0.0, r["last_time"] or 0.0, clean_text(r["title"]),
                      json.dumps(r, default=repr)) for r in items])
            if batch.memberships:
                self._executemany("UPDATE alerts SET incident = ? WHERE id = ?",
                                  [(incident, ident) for ident, incident
                                   in sorted(batch.memberships.items())])
            if batch.hourly:
                self._executemany(
                    "INSERT INTO hourly (device, hour, messages, blocks, events, dropped,"
                    " free_blocks) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device, hour) DO"
                    " UPDATE SET messages = hourly.messages + excluded.messages,"
                    " blocks = hourly.blocks + excluded.blocks,"
                    " free_blocks = hourly.free_blocks + excluded.free_blocks,"
                    " events = hourly.events + excluded.events,"
                    " dropped = hourly.dropped + excluded.dropped",
                    [(clean_text(h[0]),) + tuple(h[1:]) for h in batch.hourly])

    # ---- reading ------------------------------------------------------------------------------

    def positions(self, source, partitions):
        """{partition: next offset or None} for SOURCE's PARTITIONS."""
        found = dict.fromkeys(partitions)
        with self._guard("read"):
            for partition, offset in self._execute(
                    "SELECT partition_no, next_offset FROM positions WHERE source = ?",
                    (source,)).fetchall():
                if partition in found:
                    found[partition] = offset
        return found

    def device_row(self, device):
        """DEVICE's row as a dict (state parsed), None when the store has never seen it."""
        with self._guard("read"):
            row = self._execute(
                "SELECT device, source, partition_no, last_time, last_arrival, messages, skipped,"
                " state FROM devices WHERE device = ?", (clean_text(device),)).fetchone()
            if row is None:
                return None
            tags = [t for (t,) in self._execute(
                "SELECT tag FROM device_tags WHERE device = ? ORDER BY tag", (row[0],))]
        info = dict(zip(("device", "source", "partition", "last_time", "last_arrival",
                         "messages", "skipped"), row[:7]))
        info["state"] = json.loads(row[7]) if row[7] else None
        info["tags"] = tags
        return info

    def alerts(self, severity=None, rule=None, device=None, tag=None, since=None, until=None,
               after=None, limit=None, device_id=None):
        """Alert rows (dicts), newest first (by first time, then id). DEVICE is a glob, DEVICE_ID
        one device; SINCE and UNTIL bound the alert's last and first time; AFTER is
        (first_time, id) of the last row of the previous page."""
        where, params = [], []
        if device_id is not None:
            where.append("device = ?")
            params.append(clean_text(device_id))
        if severity:
            where.append("severity = ?")
            params.append(severity)
        if rule:
            where.append("rule = ?")
            params.append(rule)
        if device:
            where.append("device LIKE ? ESCAPE '\\'")
            params.append(glob_to_like(clean_text(device)))
        if tag:
            where.append("device IN (SELECT device FROM device_tags WHERE tag = ?)")
            params.append(tag)
        if since is not None:
            where.append("last_time >= ?")
            params.append(since)
        if until is not None:
            where.append("first_time <= ?")
            params.append(until)
        if after is not None:
            where.append("(first_time < ? OR (first_time = ? AND id < ?))")
            params += [after[0], after[0], after[1]]
        sql = "SELECT %s FROM alerts" % ALERT_COLUMNS
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY first_time DESC, id DESC"
        if limit is not None:
            sql += " LIMIT %d" % int(limit)
        with self._guard("read"):
            rows = self._execute(sql, params).fetchall()
        return [_alert_row(row) for row in rows]

    def devices_page(self, after=None, tag=None, limit=100):
        """Up to LIMIT device rows (dicts with their totals and alert counts) after the device id
        AFTER, in device id order; TAG: only devices with that tag."""
        where, params = [], []
        if after is not None:
            where.append("d.device > ?")
            params.append(after)
        if tag:
            where.append("d.device IN (SELECT device FROM device_tags WHERE tag = ?)")
            params.append(tag)
        sql = ("SELECT d.device, d.last_time, d.last_arrival, d.messages, d.skipped FROM devices d"
               + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY d.device LIMIT %d" % int(limit))
        with self._guard("read"):
            rows = self._execute(sql, params).fetchall()
            devices = [dict(zip(("device", "last_time", "last_arrival", "messages", "skipped"), r))
                       for r in rows]
            if not devices:
                return []
            names = [d["device"] for d in devices]
            marks = ", ".join("?" * len(names))
            totals = {r[0]: r[1:] for r in self._execute(
                "SELECT device, SUM(messages), SUM(blocks), SUM(dropped), MIN(hour), MAX(hour),"
                " SUM(free_blocks) FROM hourly WHERE device IN (%s) GROUP BY device" % marks,
                names)}
            alerts = {}
            for name, severity, n in self._execute(
                    "SELECT device, severity, COUNT(*) FROM alerts WHERE device IN (%s)"
                    " GROUP BY device, severity" % marks, names):
                alerts.setdefault(name, {})[severity] = n
        for d in devices:
            messages, blocks, dropped, first_hour, last_hour, free_blocks = totals.get(
                d["device"], (0, 0, 0, None, None, 0))
            d.update(blocks=int(blocks or 0), free_blocks=int(free_blocks or 0),
                     dropped=int(dropped or 0),
                     hours=(last_hour - first_hour) // 3600 + 1 if first_hour is not None else 0,
                     alerts=alerts.get(d["device"], {}))
        return devices

    def hourly(self, device=None, since_hour=None):
        """[(hour, messages, blocks, events, dropped, free blocks)] of DEVICE (None: the
        fleet's sums)."""
        where, params = [], []
        if device is not None:
            where.append("device = ?")
            params.append(device)
        if since_hour is not None:
            where.append("hour >= ?")
            params.append(since_hour)
        sql = ("SELECT hour, SUM(messages), SUM(blocks), SUM(events), SUM(dropped),"
               " SUM(free_blocks) FROM hourly"
               + (" WHERE " + " AND ".join(where) if where else "")
               + " GROUP BY hour ORDER BY hour")
        with self._guard("read"):
            return [tuple(int(v) for v in row) for row in self._execute(sql, params).fetchall()]

    def fleet_summary(self):
        """Counts for the fleet page: devices, messages, blocks, the hours covered, the newest
        hour, and alerts per severity."""
        with self._guard("read"):
            devices = self._execute("SELECT COUNT(*) FROM devices").fetchone()[0]
            messages, blocks, first_hour, last_hour, free_blocks = self._execute(
                "SELECT SUM(messages), SUM(blocks), MIN(hour), MAX(hour), SUM(free_blocks)"
                " FROM hourly").fetchone()
            severities = dict(self._execute(
                "SELECT severity, COUNT(*) FROM alerts GROUP BY severity").fetchall())
        return {"devices": devices, "messages": int(messages or 0), "blocks": int(blocks or 0),
                "free_blocks": int(free_blocks or 0),
                "hours": (last_hour - first_hour) // 3600 + 1 if first_hour is not None else 0,
                "last_hour": last_hour, "alerts": severities}

    def incidents(self, severity=None, device=None, limit=None):
        """Incident records (dicts as host_sim.cloud.alerts.incidents writes them), by severity
        then the most recent first; DEVICE is a glob."""
        where, params = [], []
        if severity:
            where.append("severity = ?")
            params.append(severity)
        if device:
            where.append("device LIKE ? ESCAPE '\\'")
            params.append(glob_to_like(clean_text(device)))
        sql = ("SELECT data FROM incidents" + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY CASE severity WHEN 'High' THEN 0 WHEN 'Medium' THEN 1 ELSE 2 END,"
               " last_time DESC, id")
        if limit is not None:
            sql += " LIMIT %d" % int(limit)
        with self._guard("read"):
            rows = self._execute(sql, params).fetchall()
        return [json.loads(data) for (data,) in rows]

    def recommendations(self, device=None, limit=None):
        """Recommendation records (dicts with "kind": "recommendation"), by device then rule;
        DEVICE is a glob."""
        where, params = [], []
        if device:
            where.append("device LIKE ? ESCAPE '\\'")
            params.append(glob_to_like(clean_text(device)))
        sql = ("SELECT data FROM recommendations"
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY device, id")
        if limit is not None:
            sql += " LIMIT %d" % int(limit)
        with self._guard("read"):
            rows = self._execute(sql, params).fetchall()
        return [json.loads(data) for (data,) in rows]

    def tags(self):
        with self._guard("read"):
            return [t for (t,) in self._execute("SELECT DISTINCT tag FROM device_tags ORDER BY tag")]

    def rules(self):
        with self._guard("read"):
            return [r for (r,) in self._execute("SELECT DISTINCT rule FROM alerts ORDER BY rule")]


def _alert_row(row):
    d = dict(zip(("id", "device", "rule", "severity", "key", "title", "what_to_do", "first",
                  "last", "count", "evidence", "technique", "incident", "kind"), row))
    d["evidence"] = json.loads(d["evidence"])
    d["technique"] = json.loads(d["technique"]) if d["technique"] else None
    return d


class _Guard:
    """Turns the backend's errors into one-line StoreErrors (and holds the store's lock)."""

    def __init__(self, store, doing):
        self.store = store
        self.doing = doing

    def __enter__(self):
        self.store.lock.acquire()

    def __exit__(self, kind, exc, tb):
        self.store.lock.release()
        if exc is not None and not isinstance(exc, StoreError) and isinstance(
                exc, self.store._errors()):
            raise StoreError("store %s: cannot %s: %s" % (
                self.store.dsn_shown, self.doing, self.store._message(exc))) from None
        return False
