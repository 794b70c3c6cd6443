"""`sscard readers` and `sscard card ...`: read a card through PC/SC or a serial reader."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.status import Status
from rich.table import Table

from cardlib import readers
from cardlib.card import SocialSecurityCard
from cardlib.errors import CardError, PinBlocked, PinWrong
from cardlib.readers.base import DEFAULT_TIMEOUT, Reader
from cardlib.security import SecurityModule
from cardlib.trace import TraceWriter, TracingReader
from sscard.options import HsmCredentialOption

app = typer.Typer(help="Read and use a social security card.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

READER_HELP = "PC/SC reader name (or a unique part of it), or serial:URL (e.g. serial:socket://127.0.0.1:7816)."
TIMEOUT_HELP = "Seconds the card may take to answer one command before the read fails (CardTimeout)."
TRACE_HELP = ("Write every APDU to FILE as JSON lines, with timings (PIN, cryptograms and MACs masked): "
              "a trace sim's replay card can play back.")
TimeoutOption = typer.Option(DEFAULT_TIMEOUT, "--timeout", min=0.05, max=120.0, help=TIMEOUT_HELP)
TraceOption = typer.Option(None, "--trace", dir_okay=False, writable=True, help=TRACE_HELP)


@contextmanager
def card_errors() -> Iterator[None]:
    """Print a card error as one readable line and exit 2 (1 is left for 'wrong PIN')."""
    try:
        yield
    except (PinWrong, PinBlocked):
        raise
    except CardError as e:
        err.print(f"[red]error:[/red] {type(e).__name__}: {e}")
        raise typer.Exit(2) from None


@contextmanager
def card_reader(spec: str | None, timeout: float, trace: Path | None, tool: str) -> Iterator[Reader]:
    """The reader for --reader, closed afterwards; with --trace, every APDU also goes to that file."""
    with ExitStack() as stack:
        r: Reader = readers.open_reader(spec, resolve=True, timeout=timeout)
        stack.callback(_close, r)
        if trace is not None:
            out = stack.enter_context(open(trace, "w", encoding="utf-8"))
            r = TracingReader(r, TraceWriter(out, reader=r.name, tool=tool))
        yield r


@contextmanager
def slow_card_spinner(console: Console = err, after: float = 0.3,
                      message: str = "waiting for the card...") -> Iterator[None]:
    """A spinner on `console` once the card has taken `after` seconds (nothing at all on a quick read)."""
    status = Status(message, console=console)
    shown = threading.Event()

    def show() -> None:
        shown.set()
        status.start()

    timer = threading.Timer(after, show)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()
        if shown.is_set():
            status.stop()


def list_readers() -> None:
    """List PC/SC readers, whether a card is in each, and its ATR."""
    from cardlib.readers.pcsc import reader_states

    with card_errors():
        states = reader_states()
    if not states:
        console.print("no readers")
        return
    t = Table("reader", "card", "ATR")
    for s in states:
        t.add_row(s.reader, "yes" if s.present else "-", s.atr.hex(" ").upper() if s.present else "")
    console.print(t)


@contextmanager
def security_module(psam: str | None, hsm: str | None, hsm_prefix: str, hsm_timeout: float,
                    hsm_credential: Path | None = None) -> Iterator[SecurityModule | None]:
    """The security module of --psam READER or --hsm HOST:PORT (at most one), closed afterwards."""
    if psam and hsm:
        raise typer.BadParameter("give --psam or --hsm, not both")
    if psam:
        from cardlib.psam import Psam, PsamSecurity

        r = readers.open_reader(psam, resolve=True)
        try:
            psam_card = Psam(r)
            terminal_number = psam_card.terminal_number()  # a PSAM that cannot answer fails here, clearly
            err.print(f"PSAM terminal number {terminal_number}")
            yield PsamSecurity(psam_card)
        finally:
            _close(r)
    elif hsm:
        from sscard.options import hsm_client
        from terminal.security import HsmSecurity

        client = hsm_client(hsm, hsm_credential, hsm_timeout)
        try:
            yield HsmSecurity(client, hsm_prefix)
        finally:
            client.close()
    else:
        yield None


@app.command("read")
def read(
    reader: str = typer.Option(None, "--reader", "-r", help=READER_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the basic data as JSON."),
    national: bool = typer.Option(False, "--national", help="Print the national reader-interface string."),
    terminal_number: str = typer.Option("", help="12-digit terminal number for --national (from the PSAM)."),
    device_number: str = typer.Option("", help="Reader device number for --national."),
    psam: str = typer.Option(None, "--psam", metavar="READER",
                             help="PSAM reader (as --reader): authenticates the terminal to cards that ask for it "
                                  "(third-generation cards answering 6982 on EF06)."),
    hsm: str = typer.Option(None, "--hsm", metavar="HOST:PORT",
                            help="The centre's HSM instead of a PSAM, e.g. 127.0.0.1:1500."),
    hsm_prefix: str = typer.Option("SSSE", help="Label prefix of the issuer's keys in the HSM."),
    hsm_timeout: float = typer.Option(2.0, min=0.1, help="Seconds per HSM command."),
    hsm_credential: Path = HsmCredentialOption,
    timeout: float = TimeoutOption,
    trace: Path = TraceOption,
) -> None:
    """Read the holder's basic data (EF05 + EF06); no PIN needed. Odd items are read anyway and listed as
    warnings (on stderr, or under "warnings" with --json)."""
    with (card_errors(), security_module(psam, hsm, hsm_prefix, hsm_timeout, hsm_credential) as sm,
          card_reader(reader, timeout, trace, "sscard card read") as r, slow_card_spinner()):
        info = SocialSecurityCard(r, security=sm).read_basic()
    if as_json:
        sys.stdout.write(json.dumps(info.to_dict(), ensure_ascii=False, indent=2) + "\n")
        return
    for w in info.warnings:
        err.print(f"[yellow]warning:[/yellow] {w.code}: {w.message}")
    if national:
        sys.stdout.write(info.national(terminal_number, device_number) + "\n")
    else:
        t = Table("item", "value", show_header=False)
        for k, v in info.to_dict().items():
            if k != "warnings":
                t.add_row(k, "" if v is None else str(v))
        console.print(t)


@app.command("dump")
def dump(
    reader: str = typer.Option(None, "--reader", "-r", help=READER_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the dump as JSON."),
    probe: bool = typer.Option(False, "--probe", help="Also try every SFI the file map does not name."),
    psam: str = typer.Option(None, "--psam", metavar="READER", help="PSAM reader, for files that need an "
                             "authenticated terminal (third-generation cards' EF06)."),
    hsm: str = typer.Option(None, "--hsm", metavar="HOST:PORT", help="The centre's HSM instead of a PSAM."),
    hsm_prefix: str = typer.Option("SSSE", help="Label prefix of the issuer's keys in the HSM."),
    hsm_timeout: float = typer.Option(2.0, min=0.1, help="Seconds per HSM command."),
    hsm_credential: Path = HsmCredentialOption,
    timeout: float = TimeoutOption,
    trace: Path = TraceOption,
) -> None:
    """Every file and record the card lets this terminal read, raw and decoded (no PIN is asked for)."""
    from cardlib.dump import dump_card

    with (card_errors(), security_module(psam, hsm, hsm_prefix, hsm_timeout, hsm_credential) as sm,
          card_reader(reader, timeout, trace, "sscard card dump") as r, slow_card_spinner()):
        result = dump_card(SocialSecurityCard(r), security=sm, probe=probe)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), ensure_ascii=False, indent=2) + "\n")
        return
    console.print(f"reader {result.reader}  ATR {result.atr.hex(' ').upper()}")
    for f in result.files:
        t = Table("n", "tag", "item", "value", "raw", title=f"{f.path}" + ("" if f.known else " (not in the map)"),
                  caption=f.end, title_justify="left", caption_justify="left")
        for rec in f.records:
            value = rec.to_dict()["value"]
            value = "" if value is None else str(value)
            if rec.warning:
                value += f" [yellow]({rec.warning})[/yellow]"
            t.add_row(str(rec.number), "" if rec.tag is None else f"{rec.tag:02X}",
                      rec.label or rec.item or "", value, rec.raw.hex().upper())
        if f.binary is not None:
            t.add_row("", "", f"{len(f.binary)} bytes", "", f.binary[:32].hex().upper() + ("..." if len(f.binary) > 32
                                                                                          else ""))
        console.print(t)


def _close(r: Reader) -> None:
    close = getattr(r, "close", None)
    try:
        close() if close else r.disconnect()
    except CardError:
        pass


def _read_pin(prompt: str, from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().strip()
    return typer.prompt(prompt, hide_input=True)


@contextmanager
def pin_session(reader: str | None, timeout: float = DEFAULT_TIMEOUT, trace: Path | None = None,
                tool: str = "sscard card") -> Iterator[SocialSecurityCard]:
    """The card in `reader` for a PIN command: wrong/blocked PIN exit 1 with the tries left, other errors 2."""
    with card_errors(), card_reader(reader, timeout, trace, tool) as r, slow_card_spinner():
        try:
            yield SocialSecurityCard(r)
        except PinWrong as e:
            err.print(f"[red]wrong PIN[/red]: {e.tries_left} tries left")
            raise typer.Exit(1) from None
        except PinBlocked:
            err.print("[red]PIN blocked[/red]: the card needs unblocking at a service hall")
            raise typer.Exit(1) from None
        except ValueError as e:  # not 4-12 digits: refused before the card sees it
            err.print(f"[red]error:[/red] {e}")
            raise typer.Exit(2) from None


@app.command("verify-pin")
def verify_pin(
    reader: str = typer.Option(None, "--reader", "-r", help=READER_HELP),
    pin_stdin: bool = typer.Option(False, "--pin-stdin", help="Read the PIN from standard input."),
    timeout: float = TimeoutOption,
    trace: Path = TraceOption,
) -> None:
    """Verify the holder's PIN; prints the tries left on a wrong PIN (exit 1)."""
    pin = _read_pin("PIN", pin_stdin)
    with pin_session(reader, timeout, trace, "sscard card verify-pin") as card:
        card.verify_pin(pin)
    console.print("PIN ok")


@app.command("change-pin")
def change_pin(
    reader: str = typer.Option(None, "--reader", "-r", help=READER_HELP),
    pin_stdin: bool = typer.Option(False, "--pin-stdin", help="Read old and new PIN from standard input, one a line."),
    timeout: float = TimeoutOption,
    trace: Path = TraceOption,
) -> None:
    """Change the holder's PIN."""
    old = _read_pin("Old PIN", pin_stdin)
    new = _read_pin("New PIN", pin_stdin)
    with pin_session(reader, timeout, trace, "sscard card change-pin") as card:
        card.change_pin(old, new)
    console.print("PIN changed")
