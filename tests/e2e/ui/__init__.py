"""Browser tests of the dashboard served at /ui."""
