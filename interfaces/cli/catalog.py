"""``hostplane catalog import``: a LiteLLM or OpenRouter price list into the price book."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path

from application.auth import Principal
from application.catalog_import import CatalogFormatError, read_price_list
from application.errors import ConcurrentModificationError
from domain.base import Actor
from interfaces.bootstrap import Container
from interfaces.cli.progress import Progress
from interfaces.settings import Settings


def parse_rate(value: str) -> Decimal | None:
    try:
        rate = Decimal(value)
    except InvalidOperation:
        return None
    return rate if rate.is_finite() and rate > 0 else None


def run_import(path: str, eur_per_usd: str) -> int:
    """Import the price list at ``path``; print what was added, repriced, unchanged, skipped."""
    rate = parse_rate(eur_per_usd)
    if rate is None:
        print(f"--eur-per-usd must be a positive number, e.g. 0.92; got {eur_per_usd!r}")
        return 2
    try:
        text = Path(path).read_bytes()
    except OSError as e:
        print(f"cannot read {path}: {e.strerror}")
        return 2
    try:
        prices = read_price_list(text, rate)
    except CatalogFormatError as e:
        print(f"{path}: {e}")
        return 2
    container = Container.open(Settings.from_env().for_operator())
    try:
        operator = Principal("admin", Actor(id="cli", ip=None))
        try:
            with Progress("importing models", len(prices.entries), "models") as progress:
                summary = container.pricing.import_prices(
                    operator, prices.entries, on_entry=progress.advance
                )
        except ConcurrentModificationError:
            print("the price book changed while importing; nothing was imported, run it again")
            return 1
    finally:
        container.close()
    skipped = prices.skipped + summary.skipped
    rounded = [
        e.slug for e in prices.entries if e.rounded and e.slug in summary.added + summary.repriced
    ]
    print(f"{path}: {prices.format} format, {len(prices.entries) + len(prices.skipped)} entries,")
    print(f"converted at {rate} EUR per USD to EUR per million tokens")
    for label, slugs in (
        ("added", summary.added),
        ("repriced", summary.repriced),
        ("unchanged", summary.unchanged),
    ):
        print(f"{label}: {len(slugs)}" + (f"  ({', '.join(slugs)})" if slugs else ""))
    print(f"skipped: {len(skipped)}")
    for s in skipped:
        print(f"  {s.name}: {s.why}")
    if rounded:
        print(f"rounded to 6 decimal places: {', '.join(rounded)}")
    return 0
