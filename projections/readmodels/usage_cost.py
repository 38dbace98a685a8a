"""Token cost summed in integers, exactly as summing ``domain.pricing.token_cost`` would.

``token_cost(p, c, I, O) = (p * I + c * O) / 10**6`` in ``Decimal``. With ``e`` the smaller
exponent of the two prices and ``N = p * I' + c * O'`` the numerator's integer coefficient at
``e``, the quotient is exact: ``N * 10**(e - 6)``, written by ``Decimal`` at the exponent
``e - 6 + min(trailing zeros of N, 6)`` (``e`` when ``N`` is 0), as close to the ideal
exponent ``e`` as the value allows. A sum of such costs, started at ``Decimal(0)``, is exact
and has the smallest of the exponents, and 0. So a bucket keeps an integer count of 10**-12 EUR
(prices have at most 6 decimals: ``e - 6 >= -12``) and that smallest exponent, and turns them
into the same ``Decimal`` once, when it is written: no ``Decimal`` operation per record.
Prices finer than micro-euros (none are accepted today) are summed as ``Decimal`` beside.
"""

from __future__ import annotations

import functools
from decimal import Decimal
from typing import Any

from domain.pricing import token_cost

COST_EXP = -12  # the integer sum counts units of 10**COST_EXP EUR
ZERO = Decimal(0)
# A bucket's sums, a list indexed by these names: the counts (the usage tables' columns, in
# their order), then the cost as above: integer units of 10**COST_EXP EUR, the smallest
# exponent, and the Decimal sum of finer-priced records; then the detail counts.
(
    REQUESTS,
    SUCCESSES,
    FAILURES,
    PROMPT_TOKENS,
    COMPLETION_TOKENS,
    CACHED_TOKENS,
    LATENCY_MS,
    COST,
    EXPONENT,
    FINER,
    CANCELLED,
    STREAMED,
    ESTIMATED,
    CACHE_HITS,
    TTFT_MS,
    TTFT_COUNT,
) = range(16)
COUNTS = range(REQUESTS, COST)  # the counts' indexes, in the tables' column order
# How the requests went (``domain.usage.StoredDetail``): counts of cancelled, streamed,
# estimated and cached answers, and the sum and count of times to first token.
DETAIL_COUNTS = range(CANCELLED, TTFT_COUNT + 1)
Sums = list[Any]
# A rate as the fold uses it: model, input and output coefficients at their common exponent,
# factor to units, that exponent minus 6 (None: finer than micro-euros), the prices themselves.
Rate = tuple[str, int, int, int, int | None, Decimal, Decimal]


def zero() -> Sums:
    return [0, 0, 0, 0, 0, 0, 0, 0, 0, ZERO, 0, 0, 0, 0, 0, 0]


def _coefficient(price: Decimal, exponent: int) -> int:
    sign, digits, exp = price.as_tuple()
    value = int("".join(map(str, digits)) or "0") * 10 ** (int(exp) - exponent)
    return -value if sign else value


@functools.lru_cache(maxsize=4096)
def rate(model: str, input_price: str, output_price: str) -> Rate:
    """A stored rate ``[model, input EUR/Mtok, output EUR/Mtok]`` ready for ``add_cost``."""
    i, o = Decimal(input_price), Decimal(output_price)
    if not (i.is_finite() and o.is_finite()):
        return (model, 0, 0, 0, None, i, o)
    e = min(int(i.as_tuple().exponent), int(o.as_tuple().exponent))
    if e - 6 < COST_EXP:
        return (model, 0, 0, 0, None, i, o)
    return (model, _coefficient(i, e), _coefficient(o, e), 10 ** (e - 6 - COST_EXP), e - 6, i, o)


def add_cost(sums: Sums, prompt: int, completion: int, r: Rate) -> None:
    """Add one record's ``token_cost`` to a bucket (the fold inlines this; tests use it)."""
    _, ci, co, factor, floor, input_price, output_price = r
    if floor is None:
        sums[FINER] += token_cost(prompt, completion, input_price, output_price)
        return
    n = prompt * ci + completion * co
    sums[COST] += n * factor
    if sums[EXPONENT] > floor:
        sums[EXPONENT] = min(sums[EXPONENT], exponent_of(n, floor))


def exponent_of(n: int, floor: int) -> int:
    """The exponent ``Decimal`` gives ``N * 10**floor`` divided as ``token_cost`` divides."""
    if n == 0:
        return floor + 6
    zeros = 0
    while zeros < 6 and n % 10 == 0:
        n //= 10
        zeros += 1
    return floor + zeros


def cost_of(sums: Sums) -> Decimal:
    """The bucket's cost, the very ``Decimal`` that summing ``token_cost`` gives."""
    exponent = sums[EXPONENT]
    units = sums[COST] // 10 ** (exponent - COST_EXP)  # exact: every term is a multiple
    return Decimal(f"{units}E{exponent}") + sums[FINER]


def merge(into: Sums, sums: Sums) -> None:
    """Add one bucket's sums to another's (two spellings of one key)."""
    for i in (*COUNTS, COST, *DETAIL_COUNTS):
        into[i] += sums[i]
    into[EXPONENT] = min(into[EXPONENT], sums[EXPONENT])
    into[FINER] += sums[FINER]
