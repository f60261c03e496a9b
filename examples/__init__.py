"""Examples shipped with Treadle; `treadle serve --example` loads the quick start."""
