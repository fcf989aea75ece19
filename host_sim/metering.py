"""IoT Hub's meter for device-to-cloud messages, the one place the project computes it: each
message counts as whole blocks, 4 KB on the paid tiers and 0.5 KB on the Free tier, against a
daily quota per unit of the hub's tier.

Sources (Microsoft Learn): "IoT Hub quotas and throttling" (iot-hub-devguide-quotas-throttling):
"The message size used to calculate the daily quota is 0.5 KB for a free tier hub and 4 KB for
all other tiers"; the daily messages per unit of each tier from Azure IoT Hub pricing (also in
../shared/reference/anchors.md): F1 8,000 (one unit only), B1 and S1 400,000, B2 and S2
6,000,000, B3 and S3 300,000,000.
"""
BLOCK = 4096
FREE_BLOCK = 512

# tier -> (messages, in its blocks, per unit per day; block size in bytes)
TIERS = {"F1": (8000, FREE_BLOCK), "B1": (400000, BLOCK), "S1": (400000, BLOCK),
         "B2": (6000000, BLOCK), "S2": (6000000, BLOCK), "B3": (300000000, BLOCK),
         "S3": (300000000, BLOCK)}
FREE_TIERS = frozenset(tier for tier, (_, block) in TIERS.items() if block == FREE_BLOCK)


def blocks(size, block=BLOCK):
    """The blocks a message of SIZE bytes counts as (an empty one counts as one)."""
    return max(1, -(-size // block))


def block_size(tier):
    return TIERS[tier][1]


def daily_quota(tier, units=1):
    """Blocks a hub of TIER with UNITS units may receive per day."""
    return TIERS[tier][0] * units
