"""report.html: one page that works offline (nothing from a CDN, no script) with the run's summary, the
model and preprocessing, its figures (beside it in the same folder) and the top outliers with
thumbnails (embedded, so the page needs no other files than the figures)."""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image

THUMBNAIL_SIDE = 112
STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; } td, th { padding: .3rem .6rem; border-bottom: 1px solid #eee; text-align: left;
  vertical-align: top; }
th { background: #f5f5f5; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.2rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
.thumb { width: 112px; height: 112px; object-fit: contain; background: #f5f5f5; }
.reason { color: #a33; white-space: nowrap; } code { font-size: .9em; word-break: break-all; }
"""


class FigureFile(NamedTuple):
    name: str  # file name beside the report
    caption: str


@dataclass
class OutlierEntry:
    """One row of the outliers table, with its image as a data URI ('' when it cannot be shown)."""

    image: str
    caption: str
    similarity: str
    best_other_caption: str
    best_other_score: str
    reason: str
    thumbnail: str = ""


def thumbnail_uri(image: Image.Image, side: int = THUMBNAIL_SIDE) -> str:
    """A small JPEG of the image as a data: URI."""
    small = image.copy()
    small.thumbnail((side, side))
    buffer = io.BytesIO()
    small.convert("RGB").save(buffer, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _rows(pairs: list[tuple[str, Any]]) -> str:
    return "\n".join(f"<tr><th>{escape(name)}</th><td>{escape(str(value))}</td></tr>" for name, value in pairs)


def _summary_rows(summary: dict[str, Any]) -> str:
    memory = f"{summary['peak_memory_mib']:,.0f} MiB (decode workers {summary['workers_peak_memory_mib']:,.0f} MiB)"
    return _rows([
        ("input", summary["input"]), ("rows", f"{summary['rows']:,}"), ("scored", f"{summary['scored']:,}"),
        ("errors (no image, unreadable image or no caption)", f"{summary['errors']:,}"),
        ("distinct images", f"{summary['distinct_images']:,}"),
        ("distinct captions", f"{summary['distinct_captions']:,}"),
        ("rows whose caption fits better than any caption of another image", f"{summary['own_caption_best']:,}"),
        ("median similarity, robust spread", f"{summary['median_similarity']:.4f}, {summary['robust_spread']:.4f}"),
        ("outlier cut-offs", summary["cutoff_rule"]), ("outliers written", f"{summary['outliers']:,}"),
        ("wall time", f"{summary['wall_time_s']:.1f} s"), ("peak memory", memory),
    ])


def _model_rows(summary: dict[str, Any]) -> str:
    model, prep = summary["model"], summary["preprocessing"]
    return _rows([(f"model {key}", value) for key, value in model.items()] +
                 [(f"preprocessing {key}", value) for key, value in prep.items()])


def _outlier_rows(outliers: list[OutlierEntry]) -> str:
    cells = []
    for entry in outliers:
        image = (f'<img class="thumb" src="{entry.thumbnail}" alt="{escape(entry.image)}">' if entry.thumbnail
                 else "not available")
        cells.append(f"<tr><td>{image}<br><code>{escape(entry.image)}</code></td><td>{escape(entry.caption)}</td>"
                     f'<td class="n">{escape(entry.similarity)}</td><td>{escape(entry.best_other_caption)}</td>'
                     f'<td class="n">{escape(entry.best_other_score)}</td>'
                     f'<td class="reason">{escape(entry.reason)}</td></tr>')
    return "\n".join(cells)


def write_report(path: Path, summary: dict[str, Any], figures: list[FigureFile],
                 outliers: list[OutlierEntry]) -> None:
    shown = "".join(f'<figure><img src="{escape(name)}" alt="{escape(text)}"><figcaption>{escape(text)}'
                    f"</figcaption></figure>" for name, text in figures)
    table = (f"<table id=\"outliers\"><tr><th>image</th><th>caption</th><th>similarity</th><th>best other caption"
             f"</th><th>its score</th><th>reason</th></tr>{_outlier_rows(outliers)}</table>" if outliers
             else "<p>No row is past the cut-offs.</p>")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Caption scores: {escape(summary['input'])}</title><style>{STYLE}</style></head>
<body><h1>Caption scores</h1>
<h2>Summary</h2><table id="summary">{_summary_rows(summary)}</table>
<h2>Model and preprocessing</h2><table id="model">{_model_rows(summary)}</table>
<h2>Figures</h2>{shown}
<h2>Top outliers</h2><p>The {len(outliers)} rows most likely mismatched, worst first (all of them in
<code>outliers.csv</code>; every row in <code>output.csv</code>).</p>{table}
</body></html>
"""
    staging = path.with_name(path.name + ".partial")
    staging.write_text(page, encoding="utf-8")
    staging.replace(path)
