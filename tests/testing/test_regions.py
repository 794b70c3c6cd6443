"""`sscard load region` (testing/regions.py): regional centres, each on its own PostgreSQL database, the
terminals of every region settling their own insured at home and a person insured elsewhere at that
person's centre; clearing netted between the regions; each centre reconciles clean. One seed gives the same
day whatever the store: the PostgreSQL run's journals equal an SQLite run's, byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from settlement.ledger.store.postgres import PostgresStore
from settlement.schemes.engine import Engine
from sscard.cli import app
from testing import load
from testing.pgtemp import TempCluster

REGIONS = ("110000", "990100")
DAY = ["--day", "2026-03-02", "--visits", "120", "--persons-per-region", "12"]


@pytest.mark.postgres
def test_a_day_of_two_regions_each_on_its_own_database_reconciles_clean(postgres: TempCluster, tmp_path: Path,
                                                                        seed: int) -> None:
    dsns = {r: postgres.new_database(f"region_{r}") for r in REGIONS}
    pg = CliRunner().invoke(app, ["load", "region", *[f"--postgres={r}={d}" for r, d in dsns.items()],
                                  "--seed", str(seed), *DAY, "--out", str(tmp_path / "pg")])
    assert pg.exit_code == 0, pg.output
    assert "across regions" in pg.output and pg.output.rstrip().endswith("clean")
    lite = CliRunner().invoke(app, ["load", "region", "--db-dir", str(tmp_path / "db"),
                                    *[f"--region={r}" for r in REGIONS], "--seed", str(seed), *DAY,
                                    "--out", str(tmp_path / "lite")])
    assert lite.exit_code == 0, lite.output
    pop = load.population(seed, regions=REGIONS, persons_per_region=12)
    insts = {i.code: i.region for i in pop.institutions}
    crossed = 0
    for r, dsn in dsns.items():
        journal = (tmp_path / "pg" / r / "journal.csv").read_bytes()
        assert journal == (tmp_path / "lite" / r / "journal.csv").read_bytes()
        store = PostgresStore(dsn, max_size=2)
        try:
            Engine(store).ledger.check_invariants()
            persons = store.read(lambda tx: {reg for (reg,) in tx.rows("SELECT region FROM reg_persons")})
            assert persons == {r}  # a centre holds its own insured only
            treated = store.read(lambda tx: [i for (i,) in tx.rows(
                "SELECT v.institution FROM med_settlements s JOIN med_visits v USING (mdtrt_id)")])
            crossed += sum(insts[i] != r for i in treated)  # settled here for another region's hospital
        finally:
            store.close()
    assert crossed > 0


def test_a_region_day_refuses_options_that_do_not_name_two_known_regions(tmp_path: Path) -> None:
    for args, words in [(["--db-dir", str(tmp_path), "--region", "110000"], "two or more"),
                        (["--db-dir", str(tmp_path), "--region", "110000", "--region", "XX"], "two or more"),
                        (["--postgres", "110000"], "REGION=DSN"),
                        (["--postgres", "110000=a", "--postgres", "110000=b"], "once per region"),
                        (["--postgres", "110000=a", "--postgres", "990100=b", "--region", "110000"], "--db-dir"),
                        ([], "--db-dir DIR")]:
        result = CliRunner().invoke(app, ["load", "region", *args])
        assert result.exit_code == 2 and words in result.output, (args, result.output)
    assert not list(tmp_path.iterdir())  # nothing created
