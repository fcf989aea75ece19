# IPv6 addresses in text (docs/spec.md section 3), for microagent.events' parse_address,
# format_address and canonical_address, and the firmware engine's IPv6 paths. A module of its
# own, loaded on the first IPv6 address or IPv6 cache, so a board without IPv6 keeps its heap.
# It imports nothing of ours: microagent.events imports it.


def _hex_digit(c):
    if "0" <= c <= "9":
        return ord(c) - 48
    if "a" <= c <= "f":
        return ord(c) - 87
    if "A" <= c <= "F":
        return ord(c) - 55
    return -1


def parse_text(text, halves, at):
    """microagent.events.parse_address for TEXT with a colon."""
    # One pass over TEXT, no slicing (allocation): groups go to HALVES[at..at + 7] as they come,
    # then the ones after "::" move to the end. STATE: 0 start, 1 after a hex digit, 2 after ":",
    # 3 after "::", 4 after a leading ":", 5 in the embedded IPv4 tail, 6 in the zone.
    n = 0
    gap = -1
    state = 0
    value = 0
    digits = 0
    decimal = 0  # the group read as a decimal octet, -1 when it cannot be one
    octet = 0
    dots = 0
    high = 0
    zone = 0
    for c in text:
        if state == 6:
            if c == "%":
                return 0
            zone += 1
        elif c == "%":
            if state == 5:
                if digits == 0 or octet > 255:
                    return 0
            elif state == 1:
                if n == 8:
                    return 0
                halves[at + n] = value
                n += 1
            elif state != 3:
                return 0
            state = 6
        elif state == 5:
            if c == ".":
                if digits == 0 or octet > 255 or dots == 3:
                    return 0
                if dots == 1:
                    high |= octet
                else:
                    halves[at + n + 1] = octet << 8
                dots += 1
                octet = 0
                digits = 0
            elif "0" <= c <= "9" and digits < 3 and not (digits == 1 and octet == 0):
                octet = octet * 10 + ord(c) - 48
                digits += 1
            else:
                return 0
        elif c == ":":
            if state == 1:
                if n == 8:
                    return 0
                halves[at + n] = value
                n += 1
                state = 2
            elif state == 0:
                state = 4
            elif state == 2 or state == 4:
                if gap >= 0:
                    return 0
                gap = n
                state = 3
            else:
                return 0
            value = 0
            digits = 0
            decimal = 0
        elif c == ".":
            # The group read so far was the IPv4 tail's first octet.
            if state != 1 or decimal < 0 or decimal > 255 or n > 6:
                return 0
            high = decimal << 8
            dots = 1
            octet = 0
            digits = 0
            state = 5
        else:
            d = _hex_digit(c)
            if d < 0 or digits == 4 or state == 4:
                return 0
            value = (value << 4) | d
            if d > 9 or decimal < 0 or (digits == 1 and decimal == 0):
                decimal = -1
            else:
                decimal = decimal * 10 + d
            digits += 1
            state = 1
    if state == 6:
        if zone == 0:
            return 0
    elif state == 5:
        if digits == 0 or octet > 255:
            return 0
    elif state == 1:
        if n == 8:
            return 0
        halves[at + n] = value
        n += 1
    elif state != 3:
        return 0
    if dots:
        if dots != 3:
            return 0
        halves[at + n] = high
        halves[at + n + 1] |= octet
        n += 2
    if gap < 0:
        if n != 8:
            return 0
    else:
        if n > 7:
            return 0
        # The groups after "::" move to the end; zeros fill the gap.
        shift = 8 - n
        i = n - 1
        while i >= gap:
            halves[at + i + shift] = halves[at + i]
            i -= 1
        for i in range(gap, gap + shift):
            halves[at + i] = 0
    if (halves[at] == 0 and halves[at + 1] == 0 and halves[at + 2] == 0 and halves[at + 3] == 0
            and halves[at + 4] == 0 and halves[at + 5] == 0xFFFF):
        # IPv4-mapped: reported as the IPv4 address it carries.
        halves[at] = halves[at + 6]
        halves[at + 1] = halves[at + 7]
        return 2
    return 8


def format_groups(halves, at):
    """microagent.events.format_address for eight groups."""
    if (halves[at] == 0 and halves[at + 1] == 0 and halves[at + 2] == 0 and halves[at + 3] == 0
            and halves[at + 4] == 0 and halves[at + 5] == 0xFFFF):
        high = halves[at + 6]
        low = halves[at + 7]
        return "%d.%d.%d.%d" % (high >> 8, high & 0xFF, low >> 8, low & 0xFF)
    best = -1
    best_length = 1
    i = 0
    while i < 8:
        if halves[at + i] == 0:
            j = i + 1
            while j < 8 and halves[at + j] == 0:
                j += 1
            if j - i > best_length:
                best = i
                best_length = j - i
            i = j
        else:
            i += 1
    if best < 0:
        return ":".join(["%x" % halves[at + i] for i in range(8)])
    return (":".join(["%x" % halves[at + i] for i in range(best)]) + "::"
            + ":".join(["%x" % halves[at + i] for i in range(best + best_length, 8)]))
