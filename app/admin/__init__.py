"""The admin API: operators manage accounts, keys, models, channels and read usage (the edge)."""
