"""Linux collectors of the host agent: they read the system and produce raw events or payload items.

Event-based (one class each, the EventCollector interface of runner.py; emit(event) receives
raw trace events of docs/spec.md section 1):
    process.ProcessCollector(emit, root="/", mode="Auto", polling_interval=0.1)
    network.NetworkCollector(emit, dump_interval=1.0)
    dns.DnsCollector(emit)
    login.LoginCollector(emit, root="/", method="Auto", from_start=False, poll_interval=1.0)

Trigger-based (a function each, returning the payload items of docs/spec.md section 5):
    sysinfo.collect(root="/")                                  -> [SystemInformation item]
    baseline.collect(root="/", checks_disabled, groups_disabled) -> [Baseline item] (Fail/Error)
    sbom.collect(root="/")                                     -> [SBoM item]

Collectors never format messages or touch the network; every reader takes a root path so
tests run against fixture trees (rootfs.py).
"""
