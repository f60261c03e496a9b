"""Examples shipped inside Treadle: `treadle serve --example` loads the quick start
(`treadle.examples.quickstart` and its `quickstart.yaml`) from any folder."""
