"""One scrape: a Prometheus ``/metrics`` page fetched over HTTP and parsed by prometheus_client's
own parsers (the text format; OpenMetrics when a server answers with it), every sample kept as
it was served, with its family's type and its labels."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import NamedTuple

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

# The text format every exporter serves; prometheus_client's own servers would otherwise answer
# an OpenMetrics request with it, and Triton serves only the text format.
ACCEPT = "text/plain;version=0.0.4"
OPENMETRICS = "application/openmetrics-text"


class Sample(NamedTuple):
    """One sample as served: its name (a family's, or with _bucket, _sum, _count...; a
    counter's always ends in _total, as prometheus_client's parser names it after OpenMetrics,
    whether the page wrote it — Triton's ``nv_inference_count`` is ``nv_inference_count_total``),
    its family's type (counter, gauge, histogram, summary, unknown...), its labels as a JSON
    object with sorted keys, and its value."""

    metric: str
    kind: str
    labels: str
    value: float


class ScrapeError(RuntimeError):
    """A page that could not be fetched or parsed; the message says why, in one line."""


def scrape(url: str, timeout_s: float) -> list[Sample]:
    """Every sample ``url`` serves now."""
    request = urllib.request.Request(url, headers={"Accept": ACCEPT})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            content_type = response.headers.get("Content-Type", "")
            text = response.read().decode("utf-8")
        parse = parse_openmetrics if content_type.startswith(OPENMETRICS) else parse_text
        return [Sample(sample.name, family.type, labels_text(sample.labels), sample.value)
                for family in parse(text) for sample in family.samples]
    except urllib.error.HTTPError as exc:
        raise ScrapeError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise ScrapeError(_reason(exc.reason)) from None
    except OSError as exc:  # TimeoutError among them
        raise ScrapeError(_reason(exc)) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ScrapeError(f"not a Prometheus metrics page ({exc})") from None


def labels_text(labels: dict[str, str]) -> str:
    """Labels as one JSON object, keys sorted: the same labels always read the same."""
    return json.dumps(labels, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _reason(reason: object) -> str:
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__
