"""The people who run the gateway: named operators with roles, and the audit log of their changes."""
