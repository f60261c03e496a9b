"""An example handlers package, built into a worker image by deploy/handlers/Containerfile."""
