"""Address → source line from the guest images' DWARF line programs (tui/source.py)."""

from __future__ import annotations

from elftools.elf.elffile import ELFFile

from tui.source import LineTable
from tui_fixtures import REPO
from vmm.symbols import SymbolTable

IMAGE = REPO / "guests" / "images" / "t_crash_null.elf"
STORE_TO_0x8 = bytes.fromhex("48c7042508000000")        # movq $1, 0x8


def crash_address(elf: bytes) -> int:
    """Where t_crash_null's kmain stores to 0x8 (found in its code, not hard-coded)."""
    kmain = SymbolTable.from_elf(elf).lookup(SymbolTable.from_elf(elf).address_of("kmain"))
    with IMAGE.open("rb") as f:
        text = ELFFile(f).get_section_by_name(".text")
        offset = kmain.address - text["sh_addr"]
        code = text.data()[offset:offset + kmain.size]
    return kmain.address + code.index(STORE_TO_0x8)


def test_the_crashing_store_maps_to_its_c_line():
    elf = IMAGE.read_bytes()
    table = LineTable.from_elf(elf)
    assert len(table) > 100
    location = table.lookup(crash_address(elf))
    assert (location.file, location.line) == ("tests/t_crash_null.c", 8)
    assert str(location) == "tests/t_crash_null.c:8"
    assert location.path is not None and location.path.is_file()
    assert 'movq $1, 0x8' in table.source_text(location)


def test_sources_are_found_under_the_search_dirs_when_the_build_dir_is_gone(tmp_path):
    from tui.source import _find_file

    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t_crash_null.c").write_text("int x;\n")
    built_elsewhere = "/nonexistent/checkout/guests/tests/t_crash_null.c"
    assert _find_file(built_elsewhere, "tests/t_crash_null.c", (tmp_path,)) == tmp_path / "tests" / "t_crash_null.c"
    assert _find_file(built_elsewhere, "tests/t_crash_null.c", ()) is None


def test_no_debug_info_means_no_lines():
    table = LineTable.from_elf(b"not an elf at all")
    assert len(table) == 0 and table.lookup(0x100000) is None


def test_addresses_outside_any_sequence_have_no_line():
    table = LineTable.from_elf(IMAGE.read_bytes())
    assert table.lookup(0x10) is None
