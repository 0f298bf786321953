"""The proxy's ``/metrics``, scraped and parsed as Prometheus would."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.proxies import Proxy

#: Each sample's value by its name and sorted labels.
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(proxy: Proxy) -> Samples:
    async with aiohttp.ClientSession() as client, client.get(f"{proxy.url}/metrics") as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(metrics: Samples, name: str, **labels: str) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)
