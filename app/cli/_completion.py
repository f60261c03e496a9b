"""`treadle completion bash|zsh|fish`: shell completion by argcomplete.

argcomplete completes from the parser itself, so every command and option is always
offered as the parser has it: the script the shell sources calls `treadle` back with
`_ARGCOMPLETE` set, and `complete_if_asked` answers. argcomplete is imported only then (or
to print the script), so a plain `treadle ...` never pays for it.
"""

from __future__ import annotations

import argparse
import os
from typing import TextIO

from treadle.cli._console import EXIT_OK

SHELLS = ("bash", "zsh", "fish")


def complete_if_asked(parser: argparse.ArgumentParser) -> None:
    """When the shell asks for completions, print them and exit; otherwise nothing."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    import argcomplete  # noqa: PLC0415 -- only on a tab press

    argcomplete.autocomplete(parser)


def completion_command(shell: str, out: TextIO) -> int:
    """Print the script that makes `shell` complete `treadle`."""
    from argcomplete.shell_integration import shellcode  # noqa: PLC0415

    print(shellcode(["treadle"], shell=shell), file=out)
    return EXIT_OK
