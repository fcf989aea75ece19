"""The console's routes over the cloud store (`console --store`): the query parsed and checked,
then a page of store_pages; nothing is read before a request asks for it."""
from host_sim.cloud.alerts.messages import parse_time
from host_sim.cloud.alerts.rules import SEVERITIES
from host_sim.cloud.console import pages, store_pages
from host_sim.cloud.console.server import BAD_TIER, tier_and_units
from host_sim.cloud.store import StoreError

MAX_FILTER = 256


class BadQuery(ValueError):
    pass


def _filters(query):
    text = {k: query.get(k) or None for k in ("severity", "rule", "tag", "device", "since",
                                              "until")}
    for name, value in text.items():
        if value is not None and len(value) > MAX_FILTER:
            raise BadQuery("%s is longer than %d characters" % (name, MAX_FILTER))
    if text["severity"] is not None and text["severity"] not in SEVERITIES:
        raise BadQuery("severity must be one of %s" % ", ".join(SEVERITIES))
    filters = dict(text, text=text)
    for name in ("since", "until"):
        if text[name] is not None:
            filters[name] = parse_time(text[name])
            if filters[name] is None:
                raise BadQuery("%s must be an ISO 8601 time such as 2026-01-01T00:00:00Z" % name)
    return filters


def _after(text):
    """The alerts page's keyset: FIRST:ID."""
    if not text:
        return None
    first, sep, ident = text.partition(":")
    try:
        return float(first), ident
    except ValueError:
        raise BadQuery("after must be FIRST:ID") from None


class StoreSite:
    def __init__(self, store):
        self.store = store

    def get(self, path, query):
        try:
            if path == "/":
                chosen = tier_and_units(query)
                if chosen is None:
                    return 400, BAD_TIER
                return 200, store_pages.fleet_page(self.store, *chosen, tag=query.get("tag"),
                                                   after=query.get("after"))
            if path == "/alerts":
                return 200, store_pages.alerts_page(self.store, _filters(query),
                                                    _after(query.get("after")))
            if path == "/device":
                device = query.get("id", "")
                row = self.store.device_row(device) if device else None
                if row is None:
                    return 404, pages.not_found("no device %r in the store" % device)
                return 200, store_pages.device_page(self.store, row, _after(query.get("after")))
            return 404, pages.not_found("no page %s" % path)
        except BadQuery as exc:
            return 400, pages.page("bad request", "<p>%s</p>" % pages.esc(exc))
        except StoreError as exc:
            return 503, pages.page("store unavailable", "<p>%s</p>" % pages.esc(exc))
