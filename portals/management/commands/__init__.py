"""`manage.py connect_portal`, `refresh_tokens`, `reencrypt_secrets`, `ensure_admin`."""
