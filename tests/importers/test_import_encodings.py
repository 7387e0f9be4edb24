"""Files to import as Windows tools write them: a UTF-8 byte-order mark, UTF-16. They import
like plain UTF-8; a file in another encoding (Latin-1) is refused saying how to convert it,
not with Python's codec words (found by probe24)."""

from __future__ import annotations

import json


def test_an_export_saved_with_a_bom_or_as_utf_16_imports_like_utf_8(cli, tmp_path):
    assert cli("store", "Café opens at 8", "--namespace", "enc").code == 0
    assert cli("store", "Naïve Bayes baseline", "--namespace", "enc").code == 0
    exported = cli("export")
    assert exported.code == 0, exported.err
    for name, data in {
        "bom.jsonl": b"\xef\xbb\xbf" + exported.out.encode("utf-8"),
        "utf16.jsonl": exported.out.encode("utf-16"),  # with its byte-order mark
    }.items():
        (tmp_path / name).write_bytes(data)
        target = tmp_path / f"{name}.db"
        result = cli("--db", str(target), "import", str(tmp_path / name))
        assert result.code == 0, result.err
        listed = json.loads(cli("--db", str(target), "list", "--namespace", "enc", "--json").out)["items"]
        assert sorted(m["content"] for m in listed) == ["Café opens at 8", "Naïve Bayes baseline"]


def test_a_latin_1_file_is_refused_saying_how_to_convert_it(cli, tmp_path):
    source = tmp_path / "latin1.jsonl"
    source.write_bytes('{"content": "café"}\n'.encode("latin-1"))
    result = cli("import", str(source))
    assert result.code == 1, result.err
    line = result.err.strip()
    assert line == (
        f"error: {source} is not UTF-8 text (byte 0xe9 at offset 16): save it as UTF-8 and import that, "
        f"e.g. iconv -f latin1 -t utf-8 {source} > converted.jsonl"
    ), line
    assert "codec" not in line
