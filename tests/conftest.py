"""Test-wide settings. Under CI (CI=true) hypothesis is derandomized, so a CI run is
reproducible and cannot fail on a search path no developer ran; locally it explores."""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
