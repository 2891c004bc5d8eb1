"""``timewait diagram``: pictures that come from the engine's tables rather than from a run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from timewait.errors import UsageError


def register(app: typer.Typer) -> None:
    """Add ``timewait diagram`` to the CLI."""

    @app.command("diagram")
    def diagram_cmd(
        states: Annotated[bool, typer.Option("--states", help="The TCP state machine, from the engine's transition table.")] = False,
        out: Annotated[Path | None, typer.Option("--out", help="Write to FILE.svg or FILE.mmd (default: SVG on stdout).")] = None,
    ) -> None:
        """Draw the TCP state diagram the engine runs on."""
        from timewait.report.outputs import write_atomically
        from timewait.report.statediagram import render_state_mermaid, render_state_svg

        if not states:
            raise UsageError("timewait diagram: say what to draw; allowed: --states")
        if out is None:
            sys.stdout.write(render_state_svg())
            return
        suffix = out.suffix.lower()
        if suffix not in (".svg", ".mmd"):
            raise UsageError(f"--out {str(out)!r}: the file name must end in .svg or .mmd")
        if not (out.parent if str(out.parent) else Path(".")).is_dir():
            raise UsageError(f"--out {str(out)!r}: directory {str(out.parent)!r} does not exist")
        text = render_state_mermaid() if suffix == ".mmd" else render_state_svg()
        write_atomically(out, lambda f: f.write(text.encode("utf-8")))
        print(f"wrote {out} (TCP state diagram)")
