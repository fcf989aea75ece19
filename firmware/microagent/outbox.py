# Bounded outbox for the firmware: messages wait here until the hub acknowledges them.
# MicroPython-compatible.
#
# Storage is allocated once: one bytearray for message bytes, used as a ring in which each message
# is contiguous (so it can be published from a memoryview without a copy), plus small per-slot
# arrays. When a new message does not fit (too many messages or too few bytes), the OLDEST
# messages are dropped and counted: on a board the newest security events matter most. Every
# message keeps its sequence number across retries, so a resend after a reconnect carries the
# same message id and the cloud can drop the duplicate.
#
# A message removed after it was sent but before its PUBACK came is counted apart (unconfirmed):
# the hub may have stored it, so counting it as dropped would overstate the loss, and counting it
# as delivered would hide one.
from array import array

UNSENT = 0
SENT = 1
ACKED = 2
RESEND = 3  # sent on a connection that was lost before its PUBACK: to be sent again


class Outbox:
    """At most MAX_MESSAGES messages and MAX_BYTES bytes (board profile). When to retry after a
    failed connection is the session policy's business (microagent.session)."""

    def __init__(self, max_messages, max_bytes, first_seq=1):
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("outbox needs room for at least one message and one byte")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._data = bytearray(max_bytes)
        self._view = memoryview(self._data)
        self._offset = array("i", [0] * max_messages)
        self._length = array("i", [0] * max_messages)
        self._seq = array("i", [0] * max_messages)
        self._born = array("i", [0] * max_messages)
        self._pid = array("H", [0] * max_messages)
        self._state = bytearray(max_messages)
        self._head = 0
        self.count = 0
        self.bytes_used = 0
        self._next_seq = first_seq
        self.dropped = 0        # oldest messages dropped to make room, never sent
        self.too_large = 0      # messages larger than the whole outbox, refused
        self.expired = 0        # messages older than the message timeout, never sent
        self.unconfirmed = 0    # dropped or expired after a send, before its acknowledgement
        self.delivered = 0

    def __len__(self):
        return self.count

    # ---- queueing ---------------------------------------------------------------------------

    def put(self, data, now_s=0):
        """Queues DATA (bytes-like), dropping the oldest messages if needed; returns its sequence
        number, or -1 when DATA is larger than the whole outbox (counted in too_large).
        NOW_S (seconds) dates the message for expire()."""
        size = len(data)
        if size > self.max_bytes:
            self.too_large += 1
            return -1
        while True:
            offset = self._place(size) if self.count < self.max_messages else -1
            if offset >= 0:
                break
            if self._drop_head():
                self.unconfirmed += 1
            else:
                self.dropped += 1
            self._pop_acked()  # acknowledged out of order behind it: delivered, not dropped
        slot = (self._head + self.count) % self.max_messages
        self._view[offset:offset + size] = data
        self._offset[slot] = offset
        self._length[slot] = size
        self._seq[slot] = self._next_seq
        self._born[slot] = now_s
        self._state[slot] = UNSENT
        self._pid[slot] = 0
        self.count += 1
        self.bytes_used += size
        self._next_seq = self._next_seq + 1 if self._next_seq < 0x3FFFFFFF else 1
        return self._seq[slot]

    def fits(self, size):
        """True when a message of SIZE bytes can be queued now without dropping another."""
        return size <= self.max_bytes and self.count < self.max_messages and self._place(size) >= 0

    def _place(self, size):
        # Offset where SIZE contiguous free bytes start, or -1.
        if self.count == 0:
            return 0
        oldest = self._offset[self._head]
        tail = (self._head + self.count - 1) % self.max_messages
        end = self._offset[tail] + self._length[tail]
        if self._offset[tail] >= oldest:   # not wrapped: free space after end and before oldest
            if self.max_bytes - end >= size:
                return end
            return 0 if oldest >= size else -1
        return end if oldest - end >= size else -1

    def _drop_head(self):
        # Frees the oldest message; True when it had been sent (the hub may have it).
        was_sent = self._state[self._head] != UNSENT
        self.bytes_used -= self._length[self._head]
        self._state[self._head] = UNSENT
        self._head = (self._head + 1) % self.max_messages
        self.count -= 1
        return was_sent

    def _pop_acked(self):
        while self.count and self._state[self._head] == ACKED:
            self._drop_head()
            self.delivered += 1

    def expire(self, now_s, timeout_s):
        """Drops messages queued more than TIMEOUT_S seconds before NOW_S; returns how many
        (those already sent are counted in unconfirmed, the others in expired)."""
        gone = 0
        while self.count and now_s - self._born[self._head] > timeout_s:
            if self._drop_head():
                self.unconfirmed += 1
            else:
                self.expired += 1
            gone += 1
            self._pop_acked()
        return gone

    # ---- sending ----------------------------------------------------------------------------

    def next_unsent(self):
        """Slot of the oldest message not yet handed to the transport, or -1."""
        for i in range(self.count):
            slot = (self._head + i) % self.max_messages
            state = self._state[slot]
            if state == UNSENT or state == RESEND:
                return slot
        return -1

    def payload(self, slot):
        offset = self._offset[slot]
        return self._view[offset:offset + self._length[slot]]

    def seq(self, slot):
        return self._seq[slot]

    def mark_sent(self, slot, pid):
        """The message in SLOT was published with packet id PID (0 for QoS 0: delivered as sent)."""
        if pid:
            self._state[slot] = SENT
            self._pid[slot] = pid
        else:
            self._state[slot] = ACKED
            self._pop_acked()

    def settle(self, pending):
        """Frees every sent message whose packet id PENDING(pid) no longer reports as awaiting
        its acknowledgement (e.g. MQTTClient.pending); returns how many were acknowledged."""
        done = 0
        for i in range(self.count):
            slot = (self._head + i) % self.max_messages
            if self._state[slot] == SENT and not pending(self._pid[slot]):
                self._state[slot] = ACKED
                done += 1
        self._pop_acked()
        return done

    def requeue(self):
        """After a lost connection: every sent but unacknowledged message is sent again."""
        for i in range(self.count):
            slot = (self._head + i) % self.max_messages
            if self._state[slot] == SENT:
                self._state[slot] = RESEND
                self._pid[slot] = 0

    def stats(self):
        return {"queued": self.count, "bytes": self.bytes_used, "dropped": self.dropped,
                "too_large": self.too_large, "expired": self.expired,
                "unconfirmed": self.unconfirmed, "delivered": self.delivered}
