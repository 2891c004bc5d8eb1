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
        from timewait.report.outputs import DIAGRAM_SUFFIXES, prepare_outputs, write_atomically
        from timewait.report.statediagram import render_state_mermaid, render_state_svg

        if not states:
            raise UsageError("timewait diagram: say what to draw; allowed: --states")
        if out is None:
            sys.stdout.write(render_state_svg())
            return
        prepare_outputs([("--out", out, DIAGRAM_SUFFIXES)])
        suffix = out.suffix.lower()
        text = render_state_mermaid() if suffix == ".mmd" else render_state_svg()
        write_atomically(out, lambda f: f.write(text.encode("utf-8")))
        print(f"wrote {out} (TCP state diagram)")
