"""`flowline completion SHELL`: the shell completion script for every command and option.

The script is generated from the parser itself (shtab), so it never lists a command or option
the command line does not have; completing needs no Python at TAB time.
"""

from __future__ import annotations

import argparse

SHELLS = ("bash", "zsh", "tcsh")


def add_parser(commands) -> None:
    completion = commands.add_parser(
        "completion", help="print the shell completion script",
        description="Print the completion script for SHELL. bash: `flowline completion bash > "
                    "~/.local/share/bash-completion/completions/flowline`; zsh: `flowline completion zsh > "
                    "\"${fpath[1]}/_flowline\"`.")
    completion.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    completion.set_defaults(handler=_completion)


def _completion(args: argparse.Namespace) -> int:
    import shtab

    print(shtab.complete(args.root_parser, shell=args.shell))
    return 0
