# Bounded outbox (microagent.outbox): caps, oldest dropped on overflow, acknowledgement, requeue
# with the same sequence number, expiry, backoff. Runs on CPython and MicroPython.
from microagent.outbox import Outbox


def _contents(box):
    # (seq, payload) of every queued message, oldest first, without consuming them (they are
    # left as sent and requeued, so call it last).
    out = []
    slots = []
    while True:
        slot = box.next_unsent()
        if slot < 0:
            break
        out.append((box.seq(slot), bytes(box.payload(slot))))
        slots.append(slot)
        box.mark_sent(slot, 1000 + len(slots))
    box.requeue()
    return out


def test_put_and_deliver_in_order():
    box = Outbox(4, 100)
    assert box.put(b"one") == 1 and box.put(b"two") == 2
    assert len(box) == 2 and box.bytes_used == 6
    slot = box.next_unsent()
    assert bytes(box.payload(slot)) == b"one"
    box.mark_sent(slot, 7)
    slot2 = box.next_unsent()
    assert bytes(box.payload(slot2)) == b"two"
    box.mark_sent(slot2, 8)
    assert box.next_unsent() == -1
    assert box.settle(lambda pid: pid == 7) == 1
    # "two" was acknowledged first, but space is freed from the oldest message on.
    assert len(box) == 2
    assert box.settle(lambda pid: False) == 1
    assert len(box) == 0 and box.bytes_used == 0 and box.delivered == 2


def test_message_cap_drops_oldest_and_counts():
    box = Outbox(3, 1000)
    for i in range(5):
        box.put(b"m%d" % i)
    assert box.dropped == 2
    assert _contents(box) == [(3, b"m2"), (4, b"m3"), (5, b"m4")]


def test_byte_cap_drops_oldest_and_keeps_messages_contiguous():
    box = Outbox(10, 10)
    box.put(b"aaaa")
    box.put(b"bbbb")
    box.put(b"ccc")  # needs 3 bytes: only 2 left at the end, so "aaaa" goes and it wraps to 0
    assert box.dropped == 1 and len(box) == 2 and box.bytes_used == 7
    box.put(b"d")     # fits between "ccc" (0..3) and "bbbb" (4..8)
    assert box.dropped == 1
    box.put(b"eeeeeeee")  # 8 bytes: everything else must go
    assert box.dropped == 4
    assert _contents(box) == [(5, b"eeeeeeee")]
    assert box.bytes_used == 8


def test_too_large_refused():
    box = Outbox(2, 8)
    box.put(b"keep")
    assert box.put(b"123456789") == -1
    assert box.too_large == 1 and box.dropped == 0 and _contents(box) == [(1, b"keep")]
    assert box.put(b"12345678") == 2  # exactly the capacity fits (after dropping "keep")


def test_requeue_keeps_sequence_numbers():
    box = Outbox(4, 100)
    box.put(b"x")
    box.put(b"y")
    first = box.next_unsent()
    box.mark_sent(first, 1)
    box.mark_sent(box.next_unsent(), 2)
    box.requeue()  # connection lost before any PUBACK
    slot = box.next_unsent()
    assert slot == first and box.seq(slot) == 1 and bytes(box.payload(slot)) == b"x"


def test_qos0_send_counts_as_delivered():
    box = Outbox(2, 10)
    box.put(b"z")
    box.mark_sent(box.next_unsent(), 0)
    assert len(box) == 0 and box.delivered == 1


def test_expire_old_messages():
    box = Outbox(5, 100)
    box.put(b"old", now_s=100)
    box.put(b"new", now_s=200)
    assert box.expire(now_s=250, timeout_s=120) == 1
    assert box.expired == 1 and _contents(box) == [(2, b"new")]
    assert box.expire(now_s=320, timeout_s=120) == 0


def test_wraparound_many_messages():
    # Many rounds through a small ring: every message comes out intact, in order.
    box = Outbox(4, 20)
    expected = []
    seq = 0
    for i in range(200):
        data = b"%d:" % i + b"x" * (i % 7)
        seq = box.put(data)
        expected.append((seq, data))
        if i % 3 == 2:
            slot = box.next_unsent()
            assert (box.seq(slot), bytes(box.payload(slot))) == expected[-len(box)]
            box.mark_sent(slot, 0)
    queued = _contents(box)
    assert queued == expected[-len(queued):]
    assert box.dropped + box.unconfirmed + box.delivered + len(box) == 200


def test_stats():
    box = Outbox(1, 4)
    box.put(b"ab")
    box.put(b"cd")
    assert box.stats() == {"queued": 1, "bytes": 2, "dropped": 1, "too_large": 0,
                           "expired": 0, "unconfirmed": 0, "delivered": 0}


def test_sent_but_unacknowledged_messages_dropped_count_as_unconfirmed():
    box = Outbox(2, 100)
    box.put(b"a")
    box.put(b"b")
    box.mark_sent(box.next_unsent(), 11)   # "a" awaits its PUBACK
    box.put(b"c")                          # "a" goes: the hub may have it
    assert (box.dropped, box.unconfirmed) == (0, 1)
    box.put(b"d")                          # "b" goes: never sent
    assert (box.dropped, box.unconfirmed) == (1, 1)
    assert _contents(box) == [(3, b"c"), (4, b"d")]


def test_a_message_sent_before_a_reconnect_still_counts_as_unconfirmed():
    box = Outbox(1, 100)
    box.put(b"a")
    box.mark_sent(box.next_unsent(), 5)
    box.requeue()                          # connection lost: "a" goes again, same sequence
    slot = box.next_unsent()
    assert box.seq(slot) == 1
    box.put(b"b")
    assert (box.dropped, box.unconfirmed) == (0, 1)


def test_acknowledged_out_of_order_behind_a_dropped_head_counts_as_delivered():
    box = Outbox(3, 100)
    for data in (b"a", b"b", b"c"):
        box.put(data)
    box.mark_sent(box.next_unsent(), 1)
    box.mark_sent(box.next_unsent(), 2)
    box.settle(lambda pid: pid == 1)       # "b" acknowledged, "a" still waits
    box.put(b"d")                          # "a" goes to make room, then "b" is freed as delivered
    assert (box.unconfirmed, box.delivered, box.dropped, len(box)) == (1, 1, 0, 2)
    assert _contents(box) == [(3, b"c"), (4, b"d")]


def test_expiry_of_a_sent_message_counts_as_unconfirmed():
    box = Outbox(4, 100)
    box.put(b"sent", now_s=0)
    box.put(b"unsent", now_s=0)
    box.mark_sent(box.next_unsent(), 3)
    assert box.expire(now_s=500, timeout_s=100) == 2
    assert (box.expired, box.unconfirmed, len(box)) == (1, 1, 0)


def test_fits_says_when_put_would_drop():
    box = Outbox(2, 10)
    assert box.fits(10) and not box.fits(11)
    box.put(b"aaaa")
    assert box.fits(6) and not box.fits(7)
    box.put(b"bb")
    assert not box.fits(1)  # two messages already
    assert box.dropped == 0
