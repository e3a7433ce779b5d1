"""The report as text: the table of each round, report.md, a self-contained report.html and
report.json."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from curate.evaluation.compare import PER_QUESTION
from curate.report.model import Report, Row, Run
from curate.report.plots import curve_images, pool_map_image


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _cells(row: Row) -> list[str]:
    cells = [row.group, str(len(row.seeds)), _fmt(row.n, 0)]
    for metric in PER_QUESTION:
        stats = row.metrics.get(metric)
        cells.append(
            "–" if stats is None
            else f"{stats['mean']:.3f} [{stats['ci_low']:.3f}, {stats['ci_high']:.3f}]"
        )  # fmt: skip
        delta = row.delta.get(metric)
        cells.append(
            "–" if delta is None
            else f"{delta['diff']:+.3f} [{delta['ci_low']:+.3f}, {delta['ci_high']:+.3f}]"
        )  # fmt: skip
        cells.append("–" if delta is None else f"{delta['p_below_zero']:.2f}")
    cells += [_fmt(row.vendi), _fmt(row.coverage_radius)]
    return cells


def table_header(report: Report) -> list[str]:
    header = ["group", "seeds", "n"]
    for metric in PER_QUESTION:
        name = "NLL" if metric == "nll" else "judge"
        header += [f"{name} (95% CI)", f"Δ {name} vs {report.baseline}", "P(Δ<0)"]
    return [*header, "Vendi", "coverage radius"]


def _used_columns(report: Report) -> list[int]:
    """Drop the judge columns when no run was judged."""
    judged = any("judge_score" in r.metrics for rows in report.rounds.values() for r in rows)
    columns = list(range(len(table_header(report))))
    return columns if judged else [c for c in columns if not 6 <= c <= 8]


def table_rows(report: Report, round_name: str) -> tuple[list[str], list[list[str]]]:
    used = _used_columns(report)
    header = table_header(report)
    return [header[c] for c in used], [
        [_cells(row)[c] for c in used] for row in report.rounds[round_name]
    ]


def _markdown(report: Report, images: list[Path]) -> str:
    lines = [f"# curate report: strategies vs {report.baseline}", ""]
    lines.append(
        f"{len(report.experiments)} revisions read (the workspace and every experiment); "
        f"intervals: 95% percentile bootstrap over seeds and questions ({report.n_boot:,} draws)."
    )
    lines.append("")
    for warning in report.warnings:
        lines.append(f"> **warning:** {warning}")
    if report.warnings:
        lines.append("")
    for round_name in report.rounds:
        header, rows = table_rows(report, round_name)
        lines += [f"## {round_name}", "", "| " + " | ".join(header) + " |"]
        lines.append("|" + "|".join("---" for _ in header) + "|")
        lines += ["| " + " | ".join(cells) + " |" for cells in rows]
        lines.append("")
    for image in images:
        lines += [f"![{image.stem}]({image.name})", ""]
    return "\n".join(lines)


def _html(report: Report, images: list[Path]) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>curate report: strategies vs {html.escape(report.baseline)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #bbb;"
        "padding:4px 8px;text-align:right}th{background:#eee}td:first-child{text-align:left}"
        ".warn{background:#fff3cd;padding:6px 10px;border-left:4px solid #e0a800}"
        "img{max-width:100%;display:block;margin:1em 0}</style></head><body>",
        f"<h1>curate report: strategies vs {html.escape(report.baseline)}</h1>",
        f"<p>{len(report.experiments)} revisions read; intervals: 95% percentile bootstrap "
        f"over seeds and questions ({report.n_boot:,} draws).</p>",
    ]
    parts += [f"<p class='warn'>warning: {html.escape(w)}</p>" for w in report.warnings]
    for image in images:
        data = base64.b64encode(image.read_bytes()).decode("ascii")
        parts.append(f"<img alt='{html.escape(image.stem)}' src='data:image/png;base64,{data}'>")
    for round_name in report.rounds:
        header, rows = table_rows(report, round_name)
        parts.append(f"<h2>{html.escape(round_name)}</h2><table id='{round_name}'><tr>")
        parts += [f"<th>{html.escape(h)}</th>" for h in header]
        parts.append("</tr>")
        for cells in rows:
            parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(
    report: Report,
    out_dir: str | Path,
    root: str | Path = ".",
    runs: list[Run] | None = None,
    strategy: str | None = None,
    db: str | Path | None = None,
) -> list[Path]:
    """report.md, report.html (self-contained), report.json and the PNGs; the files written."""
    from curate.evaluation.results import write_json
    from curate.files import atomic_write_text

    out_dir, root = Path(out_dir), Path(root).resolve()
    images = curve_images(report, out_dir)
    if runs and strategy and db is not None:
        pool_map, why = pool_map_image(root, runs, strategy, root / db, out_dir / "pool_map.png")
        if pool_map is not None:
            images.append(pool_map)
        elif why:
            report.warnings.append(why)
    write_json(out_dir / "report.json", report.to_dict())
    atomic_write_text(out_dir / "report.md", _markdown(report, images))
    atomic_write_text(out_dir / "report.html", _html(report, images))
    return [*images, out_dir / "report.json", out_dir / "report.md", out_dir / "report.html"]
