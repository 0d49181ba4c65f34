"""Date formats per language (FORMAT_MODULE_PATH): every page shows dates one way."""
