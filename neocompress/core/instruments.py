"""Instruments: cross-cutting concerns (timing, IR dumps, verification, progress) hooked around every pass.

Why instruments (TVM's PassInstrument): passes stay about their transform; the CLI switches these on with
flags (`--time`, `--dump-ir DIR`, `--verify`, `--progress`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from neocompress.core.pass_base import PassResult
from neocompress.ir.pipeline_ir import PipelineIR


class Instrument:
    """Base with no-op hooks; override what you need."""

    def before_pass(self, index: int, name: str, ir: PipelineIR) -> None: ...

    def after_pass(self, index: int, name: str, result: PassResult, seconds: float, cached: bool) -> None: ...

    def record(self) -> dict[str, Any]:
        return {}


class TimingInstrument(Instrument):
    def __init__(self) -> None:
        self.seconds: list[dict[str, Any]] = []

    def after_pass(self, index: int, name: str, result: PassResult, seconds: float, cached: bool) -> None:
        self.seconds.append({"index": index, "pass": name, "seconds": round(seconds, 4), "cached": cached})

    def record(self) -> dict[str, Any]:
        return {"timing": self.seconds}


class DumpIRInstrument(Instrument):
    """Write the IR summary before and after every pass as JSON."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _dump(self, tag: str, ir: PipelineIR) -> None:
        (self.directory / f"{tag}.json").write_text(json.dumps(ir.summary(), indent=2))

    def before_pass(self, index: int, name: str, ir: PipelineIR) -> None:
        self._dump(f"{index:02d}-{name}-before", ir)

    def after_pass(self, index: int, name: str, result: PassResult, seconds: float, cached: bool) -> None:
        self._dump(f"{index:02d}-{name}-after", result.ir)


class VerifyInstrument(Instrument):
    """Run `PipelineIR.verify()` after every pass (always on in tests)."""

    def before_pass(self, index: int, name: str, ir: PipelineIR) -> None:
        if index == 0:
            ir.verify()

    def after_pass(self, index: int, name: str, result: PassResult, seconds: float, cached: bool) -> None:
        result.ir.verify()


class ProgressInstrument(Instrument):
    """One rich line per pass as it starts and ends."""

    def __init__(self, console: Console | None = None, total: int | None = None):
        self.console = console or Console(stderr=True)
        self.total = total
        self._start = 0.0

    def before_pass(self, index: int, name: str, ir: PipelineIR) -> None:
        of = f"/{self.total}" if self.total else ""
        self.console.print(f"[bold cyan]pass {index + 1}{of}[/] {name} ...")
        self._start = time.perf_counter()

    def after_pass(self, index: int, name: str, result: PassResult, seconds: float, cached: bool) -> None:
        how = "[yellow]from cache[/]" if cached else ("modified" if result.modified else "no change")
        self.console.print(f"  [green]done[/] {name}: {how} in {seconds:.2f} s")
