"""Refresh the Swagger UI files the API's docs page serves itself (no CDN: it works offline).

From the repository root, `python -m tools.vendor_swagger_ui 5.35.0` takes that version of
the `swagger-ui-dist` package from the npm registry (with the ordinary `npm pack`) and
rewrites app/modules/api/swagger_ui/: the three files the page loads, their licences and a
VERSION file. Only those few files are kept (about 1.8 MB of the package's 12 MB).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

TARGET = Path(__file__).resolve().parents[1] / "app" / "modules" / "api" / "swagger_ui"
FILES = (
    "swagger-ui-bundle.js",
    "swagger-ui-standalone-preset.js",
    "swagger-ui.css",
    "swagger-ui-bundle.js.LICENSE.txt",
    "swagger-ui-standalone-preset.js.LICENSE.txt",
    "LICENSE",
    "NOTICE",
)


def vendor(version: str, target: Path = TARGET) -> None:
    """Replace `target`'s files with those of swagger-ui-dist `version`."""
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(  # noqa: S603 -- npm from PATH, the version checked by npm itself
            [  # noqa: S607
                "npm",
                "pack",
                "--silent",
                f"swagger-ui-dist@{version}",
                "--pack-destination",
                scratch,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        [tarball] = Path(scratch).glob("*.tgz")
        with tarfile.open(tarball) as archive:
            archive.extractall(scratch, members=_members(archive), filter="data")
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for name in FILES:
            shutil.copy(Path(scratch) / "package" / name, target / name)
    (target / "VERSION").write_text(f"swagger-ui-dist {version}\n")


def _members(archive: tarfile.TarFile) -> list[tarfile.TarInfo]:
    wanted = {f"package/{name}" for name in FILES}
    return [member for member in archive.getmembers() if member.name in wanted]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tools.vendor_swagger_ui VERSION")
    vendor(sys.argv[1])
