"""Browser tests of the web client (headless Chromium driven by Playwright) and how login serves it."""
