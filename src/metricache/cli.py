"""The ``metricache`` command line: look at a cache folder from the shell.

Every command reads the folder's records (every format, legacy files too)
without importing the user's code; ``--module MODULE:MANAGER`` imports it where
the current code is needed (``explain``, ``run``). Commands that change the
folder are in :mod:`metricache._cli_tidy`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import click

from ._cli_base import (
    Folder,
    MetricacheGroup,
    human_size,
    matching,
    parse_storage_options,
    pass_folder,
    table,
)
from ._cli_tidy import register
from ._folder import family_of
from ._report import render_report

__all__ = ["main"]

_MODULE = click.option(
    "--module",
    "module",
    metavar="MODULE:MANAGER",
    help="Import this manager (the user's code) to compare against the current code.",
)
_SORTS = ("name", "date", "size", "compute_time", "status", "format")


@click.group(cls=MetricacheGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--dir",
    "folder",
    envvar="METRICACHE_DIR",
    default=".",
    show_default="$METRICACHE_DIR, else the current folder",
    type=click.Path(file_okay=False),
    help="The cache folder, or an fsspec URL (s3://bucket/prefix).",
)
@click.option(
    "--storage-option",
    "storage_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="An fsspec option for a remote --dir (repeatable; dots nest: "
    "client_kwargs.endpoint_url=URL).",
)
@click.version_option(package_name="metricache")
@click.pass_context
def main(ctx: click.Context, folder: str, storage_options: tuple[str, ...]) -> None:
    """Look at, check and tidy a metricache folder, without the code that filled it.

    \b
    Examples:
        metricache --dir cache/ ls 'spectrum_*' --sort size
        metricache --dir s3://bucket/cache --storage-option profile=team verify
    """
    ctx.obj = Folder(folder, parse_storage_options(storage_options) or None)


@main.command("ls")
@click.argument("patterns", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="One JSON list of entries.")
@click.option("--sort", type=click.Choice(_SORTS), default="name", show_default=True)
@click.option("--reverse", "-r", is_flag=True, help="Reverse the order.")
@_MODULE
@pass_folder
def ls_command(
    folder: Folder,
    patterns: tuple[str, ...],
    as_json: bool,
    sort: str,
    reverse: bool,
    module: str | None,
) -> None:
    """List entries (all, or those matching glob PATTERNS).

    \b
    Example:
        metricache ls 'poly_*' --sort size -r
    """
    folder.use(module)
    rows = folder.rows(patterns)
    rows.sort(key=lambda r: _sort_key(getattr(r, sort)), reverse=reverse)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    colours = {"stale": "yellow", "damaged": "red", "legacy": "cyan"}
    lines = [
        [
            r.name + (" (pinned)" if r.pinned else ""),
            r.parameters,
            r.date,
            human_size(r.size),
            "" if r.compute_time is None else f"{r.compute_time:.3g}s",
            r.format,
            r.status,
        ]
        for r in rows
    ]
    header = ["name", "parameters", "date", "size", "time", "format", "status"]
    for i, line in enumerate(table(header, lines).splitlines()):
        status = rows[i - 1].status if i else ""
        click.secho(line, fg=colours.get(status), bold=i == 0)


def _sort_key(value: Any) -> tuple[int, Any]:
    return (1, 0) if value is None else (0, value)


@main.command("info")
@click.argument("name")
@pass_folder
def info_command(folder: Folder, name: str) -> None:
    """Every field of NAME's record: dates, checksum, dependencies, fingerprint.

    \b
    Example:
        metricache info spectrum_0p5
    """
    info = folder.manager.info(name)
    for key, value in vars(info).items():
        if key in ("dependencies", "code") and value:
            click.echo(f"{key}:")
            for part, digest in value:
                click.echo(f"  {part}  {digest}")
        else:
            click.echo(f"{key}: {'' if value is None else value}")


@main.command("explain")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
@_MODULE
@pass_folder
def explain_command(folder: Folder, name: str, as_json: bool, module: str | None) -> None:
    """Say whether NAME is stale, and why.

    Without --module only the records speak: dependencies recomputed with a new
    value, missing or invalidated. With it, code changes are found too.

    \b
    Example:
        metricache explain total --module analysis:CM
    """
    folder.use(module)
    report = folder.manager.explain(name)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    click.echo(str(report))
    if not module and report.known and not report.stale:
        click.echo("(code changes not compared: pass --module MODULE:MANAGER)")


@main.command("du")
@click.option("--json", "as_json", is_flag=True, help="Totals as JSON.")
@pass_folder
def du_command(folder: Folder, as_json: bool) -> None:
    """Bytes used: the whole folder, and per metric family.

    \b
    Example:
        metricache du
    """
    families: dict[str, list[int]] = {}
    for row in folder.rows():
        count = families.setdefault(row.family or family_of(row.name), [0, 0])
        count[0] += 1
        count[1] += row.size or 0
    total = _remote_bytes(folder) if folder.remote else _folder_bytes(folder.path)
    if as_json:
        shown = {f: {"entries": n, "bytes": b} for f, (n, b) in families.items()}
        click.echo(json.dumps({"total_bytes": total, "families": shown}, indent=2))
        return
    lines = [[f, str(n), human_size(b)] for f, (n, b) in sorted(families.items())]
    click.echo(table(["family", "entries", "size"], lines))
    click.echo(f"total (with records, locks and quarantine): {human_size(total)}")


def _remote_bytes(folder: Folder) -> int:
    """Bytes of every object under a remote folder (one listing, no HEAD per object)."""
    store: Any = getattr(folder.storage.store, "remote", folder.storage.store)
    store.fs.invalidate_cache()
    total: int = store.fs.du(store.root, total=True)
    return total


def _folder_bytes(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except FileNotFoundError:
                continue  # removed while we walked
    return total


@main.command("graph")
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot", "svg"]), default="mermaid")
@click.argument("patterns", nargs=-1)
@pass_folder
def graph_command(folder: Folder, fmt: str, patterns: tuple[str, ...]) -> None:
    """Print the dependency graph of the stored entries.

    \b
    Example:
        metricache graph --format dot | dot -Tpng > graph.png
    """
    graph = folder.manager.graph()
    if patterns:
        keep = {n for p in patterns for n in matching(graph.nodes, p)}
        graph.nodes = {n: s for n, s in graph.nodes.items() if n in keep}
        graph.edges = [(a, b) for a, b in graph.edges if a in keep and b in keep]
    out = {"mermaid": graph.to_mermaid, "dot": graph.to_dot, "svg": graph.to_svg}[fmt]()
    click.echo(out)


@main.command("report")
@click.option("--html", "path", required=True, type=click.Path(dir_okay=False, writable=True))
@click.option("--title", default=None, help="The page title (default: the folder).")
@_MODULE
@pass_folder
def report_command(folder: Folder, path: str, title: str | None, module: str | None) -> None:
    """Write a self-contained HTML page: the sortable table and the graph.

    \b
    Example:
        metricache report --html cache-report.html
    """
    folder.use(module)
    rows = folder.rows()
    page = render_report(rows, folder.manager.graph(), title or f"metricache: {folder.path}")
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    click.echo(f"wrote {path} ({len(rows)} entries)")


register(main)
