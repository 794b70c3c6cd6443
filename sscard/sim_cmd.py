"""`sscard sim ...`: issue simulated cards (personalised and enrolled at the centre in one step), run them
behind pcscd (vpcd) or as a serial reader."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import typer
from rich.console import Console

from cardlib.errors import CardError
from sim.personalize import HolderError, issue_card, load_holder, sample_holders, save_holder
from sim.replay import ReplayCard
from sscard.ops_cmd import ACTOR, DB, POSTGRES

app = typer.Typer(help="Simulated social security cards.", no_args_is_help=True)
console = Console()


def resolve_holder(holder: str) -> Path:
    """A holder file path, or the name of a sample holder shipped in sim/holders/."""
    p = Path(holder)
    if p.exists():
        return p
    samples = sample_holders()
    if holder in samples:
        return samples[holder]
    raise typer.BadParameter(f"no file {holder!r} and no sample of that name (samples: {', '.join(sorted(samples))})")


@app.command("holders")
def holders() -> None:
    """List the sample holders shipped with sscard."""
    for stem, path in sorted(sample_holders().items()):
        h = load_holder(path)
        console.print(f"{stem:16} {h.name}  spec {h.card.get('spec_version')}  {path}")


@app.command("issue")
def issue(
    holder: str = typer.Option(..., "--holder", help="Holder file (TOML/JSON) or a sample name, e.g. zhang_san."),
    replace: bool = typer.Option(False, "--replace", help="Enrol it as the replacement of the person's card."),
    card_no: str = typer.Option(None, "--card-no", help="A new card number (with --card-id): a new card for the "
                                                         "same holder, e.g. a replacement."),
    card_id: str = typer.Option(None, "--card-id", help="The new card's identification code (32 hex digits)."),
    out: Path = typer.Option(None, "--out", dir_okay=False, help="Write the issued card's holder file (JSON), "
                                                                  "for `sscard sim run --holder`."),
    db: Path = DB, postgres: str = POSTGRES, actor: str = ACTOR,
) -> None:
    """The simulated issuer in one step: personalise the holder's card and enrol it at the centre, as the
    person's card (`--replace`: as the replacement of their card). Nothing is enrolled when the card cannot
    be personalised; a refusal by the centre (typed error) exits 2."""
    from settlement.errors import SettlementError
    from sscard.centre_card_cmd import _table
    from sscard.ops_cmd import _actor, _book, _engine, _fail
    from sscard.world import issue_and_enrol, new_card

    if (card_no is None) != (card_id is None):
        raise typer.BadParameter("give both --card-no and --card-id, or neither")
    try:
        h = load_holder(resolve_holder(holder))
        if card_no is not None:
            h = new_card(h, card_no, card_id.upper())
        with _engine(db, postgres, _book(None)) as eng:
            try:
                issue_and_enrol(eng, h, replace=replace, actor=_actor(actor))
                cards = eng.cards.cards_of(str(h.holder["social_security_number"]))
            except SettlementError as e:
                raise _fail(e) from None
        if out is not None:
            save_holder(h, out)
    except (HolderError, CardError, ValueError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    console.print(_table(cards, f"card {h.card['card_number']} of {h.name} personalised and enrolled"))
    if out is not None:
        console.print(f"holder file: {out} (sscard sim run --holder {out})")


@app.command("run")
def run(
    holder: str = typer.Option(None, "--holder", help="Holder file (TOML/JSON) or a sample name, e.g. zhang_san."),
    image: Path = typer.Option(None, "--image", help="A card image instead (raw records, e.g. tests/cards/*.toml)."),
    ef06_auth: bool = typer.Option(None, "--ef06-auth/--no-ef06-auth",
                                   help="Refuse EF06 (6982) until EXTERNAL AUTHENTICATE, as third-generation "
                                        "cards do. Default: the holder file's."),
    replay: Path = typer.Option(None, "--replay", exists=True, dir_okay=False,
                                help="Or play back an APDU trace (sscard card read --trace FILE)."),
    port: int = typer.Option(35963, "--port", help="vpcd port: 35963 = slot 0, 35964 = slot 1."),
    host: str = typer.Option("127.0.0.1", "--host", help="Where pcscd with the vpcd driver listens."),
    t0: bool = typer.Option(None, "--t0/--t1", help="Answer with T=0 rules (61xx/6Cxx). Default: the holder file's."),
    serial_port: int = typer.Option(None, "--serial", help="Serve as a serial reader on this TCP port instead."),
) -> None:
    """Put a simulated card on a vpcd slot (or a simulated serial reader) until interrupted."""
    if sum(x is not None for x in (holder, image, replay)) != 1:
        raise typer.BadParameter("give one of --holder, --image, --replay")
    try:
        if image is not None:
            from sim.images import issue_image, load_image

            card = issue_image(load_image(image), t0=t0)
        elif replay is not None:
            card = ReplayCard.load(replay)
        else:
            card = issue_card(load_holder(resolve_holder(holder)), t0=t0, ef06_requires_auth=ef06_auth)
    except (HolderError, CardError, ValueError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if serial_port is not None:
        from sim.serial_reader import SerialReaderServer

        srv = SerialReaderServer(card, host, serial_port).start()
        console.print(f"card of {card.label} in a serial reader at {srv.url} (Ctrl-C to stop)")
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        srv.stop()
        return
    from sim.vicc import VirtualCardLink

    link = VirtualCardLink(card, port, host)
    try:
        link.insert(retry=30.0)
    except OSError as e:
        console.print(f"[red]error:[/red] cannot reach vpcd at {host}:{port}: {e} (is pcscd with vpcd running?)")
        raise typer.Exit(2) from None
    console.print(f"card of {card.label} inserted on vpcd {host}:{port} (Ctrl-C to remove)")
    try:
        while link.inserted and not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    link.remove()
    console.print(f"card removed after {link.apdus} APDUs")
