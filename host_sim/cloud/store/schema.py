"""The store's schema as numbered migrations. A store records its version in schema_version;
opening runs the migrations it lacks in one transaction, and refuses a store newer than this
code. Types are written {real} and {bigint}: each backend fills in its own."""

MIGRATIONS = {
    1: [  # alerts, what the rules learned per device, hourly aggregates, source positions
        "CREATE TABLE schema_version (version INTEGER NOT NULL)",
        "INSERT INTO schema_version (version) VALUES (0)",
        "CREATE TABLE alerts (id TEXT PRIMARY KEY, device TEXT NOT NULL, rule TEXT NOT NULL,"
        " severity TEXT NOT NULL, alert_key TEXT NOT NULL, title TEXT NOT NULL,"
        " what_to_do TEXT NOT NULL, first_time {real} NOT NULL, last_time {real} NOT NULL,"
        " count {bigint} NOT NULL, evidence TEXT NOT NULL)",
        "CREATE INDEX alerts_by_first ON alerts (first_time, id)",
        "CREATE INDEX alerts_by_device ON alerts (device, first_time)",
        "CREATE TABLE devices (device TEXT PRIMARY KEY, source TEXT, partition_no INTEGER,"
        " last_time {real}, last_arrival {real}, messages {bigint} NOT NULL DEFAULT 0,"
        " skipped {bigint} NOT NULL DEFAULT 0, state TEXT)",
        "CREATE TABLE device_tags (device TEXT NOT NULL, tag TEXT NOT NULL,"
        " PRIMARY KEY (device, tag))",
        "CREATE INDEX device_tags_by_tag ON device_tags (tag, device)",
        "CREATE TABLE hourly (device TEXT NOT NULL, hour {bigint} NOT NULL,"
        " messages {bigint} NOT NULL, blocks {bigint} NOT NULL, events {bigint} NOT NULL,"
        " dropped {bigint} NOT NULL, PRIMARY KEY (device, hour))",
        "CREATE INDEX hourly_by_hour ON hourly (hour)",
        "CREATE TABLE positions (source TEXT NOT NULL, partition_no INTEGER NOT NULL,"
        " next_offset {bigint} NOT NULL, PRIMARY KEY (source, partition_no))",
    ],
    2: [  # what issue 18 fills: an alert's techniques, incident and kind; incidents, recommendations
        "ALTER TABLE alerts ADD COLUMN technique TEXT",
        "ALTER TABLE alerts ADD COLUMN incident TEXT",
        "ALTER TABLE alerts ADD COLUMN kind TEXT NOT NULL DEFAULT 'alert'",
        "CREATE TABLE incidents (id TEXT PRIMARY KEY, device TEXT NOT NULL,"
        " severity TEXT NOT NULL, first_time {real} NOT NULL, last_time {real} NOT NULL,"
        " title TEXT NOT NULL, data TEXT NOT NULL)",
        "CREATE TABLE recommendations (id TEXT PRIMARY KEY, device TEXT NOT NULL,"
        " severity TEXT NOT NULL, first_time {real} NOT NULL, last_time {real} NOT NULL,"
        " title TEXT NOT NULL, data TEXT NOT NULL)",
    ],
    3: [  # the console's alert filters page by first time within a severity or a rule
        "CREATE INDEX alerts_by_severity ON alerts (severity, first_time, id)",
        "CREATE INDEX alerts_by_rule ON alerts (rule, first_time, id)",
    ],
    4: [  # the Free tier meters in 0.5 KB blocks (host_sim/metering.py); hours stored before
          # this version count 0 of them
        "ALTER TABLE hourly ADD COLUMN free_blocks {bigint} NOT NULL DEFAULT 0",
    ],
}

LATEST = max(MIGRATIONS)


def statements(version, types):
    """Migration VERSION's SQL with TYPES ({"real": ..., "bigint": ...}) filled in."""
    return [sql.format(**types) for sql in MIGRATIONS[version]]
