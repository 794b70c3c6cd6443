"""`sscard centre ...`: operator commands on the centre's own database (--db FILE or --postgres DSN).

    sscard centre card ...      the card registry (sscard/centre_card_cmd.py)
    sscard centre import ...    enrolment from CSV or JSON files (sscard/centre_import_cmd.py)
"""

from __future__ import annotations

import typer

from sscard import centre_card_cmd, centre_import_cmd

app = typer.Typer(help="The centre's operator commands, on its database (--db or --postgres).", no_args_is_help=True)
app.add_typer(centre_card_cmd.app, name="card")
app.command("import", help="Enrol institutions, persons, PIN references or terminals from a CSV or JSON file "
                            "(plan, then --apply).")(centre_import_cmd.import_)
