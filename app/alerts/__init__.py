"""Alerts for operators and finance: signed webhook events (low balance, budget thresholds, a
channel disabled automatically), queued in the transaction that noticed them and delivered once."""
