"""Reading a gateway's `/metrics` the way Prometheus does (its own text parser)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Scrape:
    """One scrape: every sample as (name, labels, value)."""

    samples: list[tuple[str, dict[str, str], float]]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples called `name` whose labels include `labels`."""
        return sum(
            value
            for sample, sample_labels, value in self.samples
            if sample == name and labels.items() <= sample_labels.items()
        )

    def label_values(self, name: str, label: str) -> set[str]:
        return {labels[label] for sample, labels, _ in self.samples if sample == name}

    def names(self) -> set[str]:
        return {name for name, _, _ in self.samples}


def parse(text: str) -> Scrape:
    samples = [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]
    return Scrape(samples)


async def scrape(client: httpx.AsyncClient, base_url: str = "") -> Scrape:
    response = await client.get(base_url + "/metrics")
    assert response.status_code == 200, response.text
    return parse(response.text)
