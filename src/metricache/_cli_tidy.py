"""The ``metricache`` commands that change a folder: verify --fix, gc, rm, pin, migrate, run."""

from __future__ import annotations

import inspect
from typing import Any

import click

from . import _gc
from ._cli_base import Folder, collected_names, human_size, load_manager, matches, matching
from ._cli_base import pass_folder as _pass
from ._folder import suffix_of
from ._layout import data_key
from ._migrate import migrate

__all__ = ["register"]


@click.command("verify")
@click.argument("patterns", nargs=-1)
@click.option("--fix", is_flag=True, help="Move damaged entries to the quarantine.")
@_pass
def verify_command(folder: Folder, patterns: tuple[str, ...], fix: bool) -> None:
    """Check every entry's data against its checksum; exit 1 if any is damaged.

    \b
    Example:
        metricache verify 'spectrum_*' --fix
    """
    report = folder.storage.check()
    damaged = [d for d in report.damaged if matches(d.name, patterns)]
    ok = [i for i in report.ok if matches(i.name, patterns)]
    for d in damaged:
        click.secho(f"damaged  {d.name}: {d.reason}", fg="red")
        if fix:
            where = folder.storage.quarantine(d.name)
            click.echo(f"         moved to {where}")
    legacy = sum(i.legacy for i in ok)
    note = f" ({legacy} legacy, without checksums)" if legacy else ""
    click.echo(f"{len(ok)} ok{note}, {len(damaged)} damaged")
    if damaged and not fix:
        raise click.exceptions.Exit(1)


@click.command("gc")
@click.option("--dry-run", "-n", is_flag=True, help="Say what would be removed; change nothing.")
@click.option(
    "--older-than",
    default="30d",
    show_default=True,
    metavar="AGE",
    help="Quarantine folders older than this go (30d, 12h, 2w).",
)
@click.option("--max-size", metavar="SIZE", help="Evict entries until the folder fits (50GB).")
@click.option("--keep", multiple=True, metavar="PATTERN", help="Never evict these names.")
@_pass
def gc_command(
    folder: Folder, dry_run: bool, older_than: str, max_size: str | None, keep: tuple[str, ...]
) -> None:
    """Remove dead writers' temp files, orphan records, old quarantine; evict to --max-size.

    Eviction goes by score (large, cheap to recompute, long unused first) and
    never touches an entry pinned with CM.pin(name) or matched by --keep.

    \b
    Example:
        metricache gc --max-size 50GB --keep 'model_*' --dry-run
    """
    try:
        age = _gc.parse_age(older_than)
        limit = _gc.parse_size(max_size) if max_size else None
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    storage, verb = folder.storage, "would remove" if dry_run else "removed"
    plan = None
    if limit is not None:
        # Planned from records, before check() reads (and so touches) every data file.
        pairs = [(i, data_key(i.name, suffix_of(i))) for i in storage.entries()]
        plan = _gc.plan_eviction(storage.store, pairs, limit, keep)
    report = storage.check()
    old = _gc.old_quarantine(storage.store, age)
    for key in [*report.temp_files, *report.orphans, *old]:
        click.echo(f"{verb} {key}")
    for info in plan.evict if plan else []:
        click.echo(
            f"{'would evict' if dry_run else 'evicted'} {info.name} ({human_size(info.size)})"
        )
    if dry_run:
        return
    storage.cleanup()
    for prefix in old:
        _gc.remove_folder(storage.store, prefix)
    for info in plan.evict if plan else []:
        folder.manager.delete(info.name)
    if plan and limit is not None and plan.remaining > limit:
        click.secho(f"still {human_size(plan.remaining)}: the rest is pinned or kept", fg="yellow")


@click.command("rm")
@click.argument("pattern")
@click.option("--downstream", is_flag=True, help="Also remove entries computed from them.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
@_pass
def rm_command(folder: Folder, pattern: str, downstream: bool, yes: bool) -> None:
    """Delete the entries matching PATTERN (a glob).

    \b
    Example:
        metricache rm 'spectrum_*' --downstream --yes
    """
    manager = folder.manager
    names = matching(manager.storage_interface.stored_names(), pattern)
    if downstream:
        names += _downstream(manager, set(names))
    click.echo("\n".join(names))
    if not yes:
        click.confirm(f"delete these {len(names)} entries?", abort=True)
    for name in names:
        manager.delete(name)
    click.echo(f"deleted {len(names)} entries")


def _downstream(manager: Any, names: set[str]) -> list[str]:
    """Every stored entry computed (transitively) from *names*, not in *names*."""
    edges = manager.graph().edges
    found: list[str] = []
    frontier = set(names)
    while frontier:
        nxt = {b for a, b in edges if a in frontier and b not in names and b not in found}
        found += sorted(nxt)
        frontier = nxt
    return found


@click.command("invalidate")
@click.argument("pattern")
@click.option("--no-downstream", is_flag=True, help="Mark only the matching entries.")
@_pass
def invalidate_command(folder: Folder, pattern: str, no_downstream: bool) -> None:
    """Mark the entries matching PATTERN stale (and what was computed from them).

    \b
    Example:
        metricache invalidate 'raw_*'
    """
    manager = folder.manager
    marked: list[str] = []
    for name in matching(manager.storage_interface.stored_names(), pattern):
        marked += [n for n in manager.invalidate(name, not no_downstream) if n not in marked]
    click.echo("\n".join(f"invalidated {n}" for n in marked) or "nothing to invalidate")


@click.command("pin")
@click.argument("names", nargs=-1, required=True)
@click.option("--remove", is_flag=True, help="Unpin instead.")
@_pass
def pin_command(folder: Folder, names: tuple[str, ...], remove: bool) -> None:
    """Pin NAMES so gc never evicts them (like CM.pin(name)).

    \b
    Example:
        metricache pin model_weights
    """
    for name in names:
        folder.storage.check_name(name)
        if remove:
            _gc.unpin(folder.storage.store, name)
        else:
            _gc.pin(folder.storage.store, name)
        click.echo(f"{'unpinned' if remove else 'pinned'} {name}")


@click.command("migrate")
@click.option("--dry-run", "-n", is_flag=True, help="List the legacy entries; change nothing.")
@_pass
def migrate_command(folder: Folder, dry_run: bool) -> None:
    """Give simple_metrics_manager entries records with checksums (their dates kept).

    \b
    Example:
        metricache migrate --dry-run
    """
    done = migrate(folder.storage, dry_run=dry_run)
    for item in done:
        click.echo(f"{'would migrate' if dry_run else 'migrated'} {item.legacy.name}")
    click.echo(f"{len(done)} legacy entries{' to migrate' if dry_run else ' migrated'}")


@click.command("run")
@click.argument("spec", metavar="MODULE:MANAGER")
@click.argument("metric")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--scheduler", metavar="ADDRESS", help="A Dask scheduler (tcp://host:8786).")
def run_command(spec: str, metric: str, jobs: int, scheduler: str | None) -> None:
    """Compute every parameter set of a collected METRIC (the overnight run).

    \b
    Example:
        metricache run analysis:CM spectrum --jobs 4
    """
    manager = load_manager(spec)
    front = getattr(manager, metric, None)
    names = collected_names(front) if front is not None else []
    if not names:
        manager.check_name(metric)
        names = [metric]
    get_all = getattr(front, "get_all", None)
    accepted = inspect.signature(get_all).parameters if get_all is not None else {}
    if jobs > 1 or scheduler:
        _run_parallel(get_all, accepted, jobs, scheduler)
    else:
        with click.progressbar(names, label=f"computing {metric}", show_pos=True) as bar:
            for name in bar:
                manager.get(name, verbose=False)
    click.echo(f"{len(names)} entries of {metric} stored")


def _run_parallel(get_all: Any, accepted: Any, jobs: int, scheduler: str | None) -> None:
    wanted = "client" if scheduler else "n_jobs"
    if get_all is None or wanted not in accepted:
        raise click.UsageError(
            f"this metricache cannot run in parallel yet (get_all has no {wanted}=): "
            "run without --jobs/--scheduler"
        )
    # The overnight run shows its progress even when its output goes to a log file.
    shown = {"progress": True} if "progress" in accepted else {}
    if scheduler:
        try:
            from dask.distributed import Client
        except ImportError:
            raise click.UsageError("--scheduler needs pip install 'metricache[dask]'") from None
        with Client(scheduler) as client:  # type: ignore[no-untyped-call]
            get_all(client=client, verbose=False, **shown)
    else:
        get_all(n_jobs=jobs, verbose=False, **shown)


def register(group: click.Group) -> None:
    """Add these commands to *group*."""
    for command in (
        verify_command,
        gc_command,
        rm_command,
        invalidate_command,
        pin_command,
        migrate_command,
        run_command,
    ):
        group.add_command(command)
