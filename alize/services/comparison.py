"""The self-hosting saving: what a period's metered tokens would have cost at other
providers' list prices (registry's PriceComparison), model by model, beside their cost here."""

from dataclasses import dataclass
from decimal import Decimal

from alize.registry import PriceComparison, ProviderPrice

THOUSAND = Decimal(1000)


@dataclass(frozen=True)
class Offer:
    provider: str
    model: str
    input_eur_per_1k: Decimal
    output_eur_per_1k: Decimal

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        return (prompt_tokens * self.input_eur_per_1k + completion_tokens * self.output_eur_per_1k) / THOUSAND


@dataclass(frozen=True)
class ComparedModel:
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_here: Decimal
    elsewhere: list[Decimal]  # one per offer, in the offers' order


@dataclass(frozen=True)
class Comparison:
    as_of: str
    source: str
    currency: str
    eur_per_unit: Decimal
    offers: list[Offer]
    rows: list[ComparedModel]

    @property
    def total(self) -> ComparedModel:
        return ComparedModel("total", sum(r.prompt_tokens for r in self.rows),
                             sum(r.completion_tokens for r in self.rows),
                             sum((r.cost_here for r in self.rows), Decimal(0)),
                             [sum((r.elsewhere[i] for r in self.rows), Decimal(0)) for i in range(len(self.offers))])

    def savings(self) -> list[Decimal]:
        """Per offer, what running here saved over the period (negative: it cost more)."""
        total = self.total
        return [other - total.cost_here for other in total.elsewhere]


def _offer(price: ProviderPrice, rate: Decimal) -> Offer:
    return Offer(price.provider, price.model, Decimal(str(price.input_per_1k)) * rate,
                 Decimal(str(price.output_per_1k)) * rate)


def compare(prices: PriceComparison, by_model: list[dict[str, object]]) -> Comparison:
    """by_model: usage report rows grouped by model (prompt_tokens, completion_tokens, cost_eur)."""
    rate = Decimal(str(prices.eur_per_unit))
    offers = [_offer(p, rate) for p in prices.prices]
    rows = []
    for row in by_model:
        prompt, completion = int(row["prompt_tokens"]), int(row["completion_tokens"])  # type: ignore[call-overload]
        rows.append(ComparedModel(str(row["group"]) or "(none)", prompt, completion, Decimal(str(row["cost_eur"])),
                                  [offer.cost(prompt, completion) for offer in offers]))
    return Comparison(prices.as_of, prices.source, prices.currency, rate, offers, rows)
