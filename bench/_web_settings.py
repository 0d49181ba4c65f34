"""token_access.py's web settings: the app's own, with two baseline views added to its URLs
(bench/_web_urls.py). Nothing here is used outside the benchmark."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "_web_urls"
