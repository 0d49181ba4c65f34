"""Secrets at rest, shared by every app: Fernet keys from ENCRYPTION_KEYS (crypto), a model
field that stores text encrypted (fields) and key rotation over raw ciphertext (rotation).

Kept outside portals/ and notifications/ so both can use it without depending on each other.
"""
