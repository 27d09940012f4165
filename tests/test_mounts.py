"""Network file systems keep one file per entry: detection from a (fake) mount table.

Each test hands the detection a mount table written like Linux's
``/proc/self/mountinfo``, so the folder "is" on NFS, Lustre, FUSE... without one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from metricache import AutoStorageInterface, DatedCacheManager
from metricache._homes import FILES, PACKED, auto_home, open_local_store, recorded_home
from metricache._layout import INDEX_KEY, LAYOUT_KEY
from metricache._mounts import filesystem_of, is_network_filesystem
from metricache._packed import PackedStore

#: Every test here sees the home metricache detects, whatever the suite default.
pytestmark = pytest.mark.usefixtures("detected_home")


def mount_table(tmp_path: Path, mounts: list[tuple[str, str]]) -> str:
    """A mountinfo file with one line per ``(mount point, type)``, root first.

    The mount points are made (a real mount point exists).
    """
    lines = ["22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw"]
    for i, (point, kind) in enumerate(mounts):
        Path(point).mkdir(parents=True, exist_ok=True)
        escaped = point.replace(" ", "\\040")
        lines.append(f"{30 + i} 22 0:{50 + i} / {escaped} rw shared:{2 + i} - {kind} srv:/x rw")
    path = tmp_path / "mountinfo"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize(
    "kind",
    ["nfs", "nfs4", "lustre", "gpfs", "cifs", "smb3", "fuse.sshfs", "fuseblk", "9p", "ceph"],
)
def test_network_file_systems_are_detected(tmp_path: Path, kind: str) -> None:
    table = mount_table(tmp_path, [(str(tmp_path / "shared"), kind)])
    assert filesystem_of(tmp_path / "shared" / "cache", table) == kind
    assert is_network_filesystem(tmp_path / "shared" / "not" / "yet" / "made", table)
    assert auto_home(str(tmp_path / "shared" / "cache"), table) == FILES


def test_local_file_systems_and_sibling_mounts_are_not(tmp_path: Path) -> None:
    # /x/shared is NFS, but /x/shared2 (a prefix match on characters only) is not in it.
    table = mount_table(
        tmp_path, [(str(tmp_path / "shared"), "nfs"), (str(tmp_path / "scratch"), "tmpfs")]
    )
    assert filesystem_of(tmp_path / "shared2", table) == "ext4"
    assert not is_network_filesystem(tmp_path / "shared2", table)
    assert auto_home(str(tmp_path / "shared2" / "cache"), table) == PACKED


def test_the_innermost_mount_wins_and_escapes_are_decoded(tmp_path: Path) -> None:
    outer, inner = tmp_path / "net", tmp_path / "net" / "local disk"
    table = mount_table(tmp_path, [(str(outer), "nfs4"), (str(inner), "xfs")])
    assert filesystem_of(inner / "cache", table) == "xfs"
    assert filesystem_of(outer / "cache", table) == "nfs4"


def test_an_unreadable_table_counts_as_local(tmp_path: Path) -> None:
    assert filesystem_of(tmp_path, str(tmp_path / "missing")) is None
    assert not is_network_filesystem(tmp_path, str(tmp_path / "missing"))
    garbage = tmp_path / "garbage"
    garbage.write_text("not a mount table\n\x00\x01 - \n")
    assert filesystem_of(tmp_path, str(garbage)) is None


def test_a_folder_on_nfs_gets_files_and_records_it(tmp_path: Path) -> None:
    folder = tmp_path / "shared" / "cache"
    table = mount_table(tmp_path, [(str(tmp_path / "shared"), "nfs")])
    store = open_local_store(str(folder), None, mountinfo=table)
    assert isinstance(store, PackedStore) and not store.packs()
    assert recorded_home(str(folder)) == FILES
    assert json.loads((folder / LAYOUT_KEY).read_text())["entries"] == "files"
    # Another process (another host) that sees a local disk follows the record.
    CM = DatedCacheManager(AutoStorageInterface(folder), verbose=False)
    CM.set_functions_dict({"m": lambda: np.arange(3.0)})
    CM.get("m")
    assert (folder / "m.npy").is_file()
    assert not (folder / INDEX_KEY).exists()


def test_a_recorded_packed_folder_stays_packed_whatever_a_host_detects(tmp_path: Path) -> None:
    folder = tmp_path / "shared" / "cache"
    AutoStorageInterface(folder).save("first", np.arange(2.0))  # local here: packed
    assert recorded_home(str(folder)) == PACKED
    table = mount_table(tmp_path, [(str(tmp_path / "shared"), "nfs")])
    store = open_local_store(str(folder), None, mountinfo=table)
    assert isinstance(store, PackedStore) and store.packs()


def test_packed_true_forces_the_index_even_on_a_network_mount(tmp_path: Path) -> None:
    folder = tmp_path / "shared" / "cache"
    table = mount_table(tmp_path, [(str(tmp_path / "shared"), "lustre")])
    store = open_local_store(str(folder), True, mountinfo=table)
    assert isinstance(store, PackedStore) and store.packs()
    assert recorded_home(str(folder)) == PACKED


def test_packed_must_be_a_bool_or_none(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="packed must be None, True or False"):
        AutoStorageInterface(tmp_path, packed="yes")  # type: ignore[arg-type]
