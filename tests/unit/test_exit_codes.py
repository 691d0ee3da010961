"""One exit-code table, one error vocabulary, one mapping per face, and the CLI's spellings."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from pytest_rtgov.cli import main
from pytest_rtgov.cli.main import exit_code
from pytest_rtgov.core.constants import EXIT_GATE_BREACHED, EXIT_INTEGRITY, ExitCode
from pytest_rtgov.core.exit_codes import (
    MEANINGS,
    TABLE_BEGIN,
    TABLE_END,
    exit_code_for,
    render_table,
)
from pytest_rtgov.errors import (
    IntegrityError,
    InvalidOptionError,
    NotFoundError,
    ReadError,
    RecordFormatError,
    RecordNotFoundError,
    RefusedError,
    RtgovError,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "fixtures" / "records" / "run-v1.json"


def test_the_table_is_complete_and_pytest_keeps_its_codes():
    assert set(MEANINGS) == set(ExitCode)
    assert [int(c) for c in ExitCode] == list(range(17))
    assert (EXIT_GATE_BREACHED, EXIT_INTEGRITY) == (ExitCode.GATE_BREACHED, ExitCode.INTEGRITY)
    assert int(pytest.ExitCode.USAGE_ERROR) == ExitCode.BAD_INPUT
    assert int(pytest.ExitCode.TESTS_FAILED) == ExitCode.TESTS_FAILED


def test_docs_usage_shows_the_generated_table():
    text = (ROOT / "docs" / "usage.md").read_text(encoding="utf-8")
    start, end = text.index(TABLE_BEGIN), text.index(TABLE_END) + len(TABLE_END)
    assert text[start:end] + "\n" == render_table(), (
        "docs/usage.md's exit-code table is stale: paste render_table() between the markers"
    )
    for code in ExitCode:
        assert f"| {int(code)} | `{code.name}` |" in text


def test_docs_ledger_points_to_the_table_and_agrees_with_it():
    text = (ROOT / "docs" / "ledger.md").read_text(encoding="utf-8")
    section = text[text.index("## Exit codes") :].split("\n## ")[0]
    assert "usage.md#exit-codes" in section
    codes = {int(m) for m in re.findall(r"^\| (\d+) \|", section, re.M)}
    assert codes and codes <= {int(c) for c in ExitCode}
    assert {10, 11, 12, 13, 14, 15, 16} <= codes


def test_the_vocabulary_has_two_families():
    from pytest_rtgov.core.dsse import EnvelopeError, SignatureError
    from pytest_rtgov.core.gates_config import GatesConfigError
    from pytest_rtgov.core.keys import NoteFormatError
    from pytest_rtgov.core.notes import NoteVerificationError
    from pytest_rtgov.store.keys import KeyFileError, TrustAnchorError
    from pytest_rtgov.store.ledger import LedgerCorruptError
    from pytest_rtgov.store.sealed import SealError
    from pytest_rtgov.store.verify import VerifyFailure

    for cls in (RecordFormatError, GatesConfigError, KeyFileError, NoteFormatError, EnvelopeError):
        assert issubclass(cls, ReadError), cls
    checks = (SealError, SignatureError, NoteVerificationError, LedgerCorruptError, VerifyFailure)
    for cls in checks:
        assert issubclass(cls, IntegrityError), cls
    assert issubclass(RecordNotFoundError, NotFoundError)
    assert issubclass(TrustAnchorError, KeyFileError)
    assert issubclass(ReadError, RtgovError) and issubclass(IntegrityError, RtgovError)


@pytest.mark.parametrize(
    ("error", "cli", "session"),
    [
        (RecordNotFoundError("no run"), ExitCode.NOT_FOUND, ExitCode.BAD_INPUT),
        (RecordFormatError("f", "$", "x"), ExitCode.BAD_INPUT, ExitCode.BAD_INPUT),
        (ReadError("x"), ExitCode.BAD_INPUT, ExitCode.BAD_INPUT),
        (InvalidOptionError("x"), ExitCode.USAGE, ExitCode.BAD_INPUT),
        (RefusedError("x"), ExitCode.REFUSED, ExitCode.BAD_INPUT),
        (IntegrityError("x"), ExitCode.INTEGRITY, ExitCode.INTEGRITY),
        (RtgovError("x"), ExitCode.BAD_INPUT, ExitCode.BAD_INPUT),
        (OSError(5, "I/O error"), ExitCode.BAD_INPUT, ExitCode.BAD_INPUT),
    ],
)
def test_the_pure_mapping_of_each_face(error, cli, session):
    assert exit_code_for(error) == cli
    assert exit_code_for(error, face="session") == session


def test_the_cli_mapping_names_ledger_codes_by_command(tmp_path):
    from pytest_rtgov.core.shard import ShardMergeError
    from pytest_rtgov.store.keys import TrustAnchorError
    from pytest_rtgov.store.ledger import LedgerCorruptError, LedgerLockTimeout
    from pytest_rtgov.store.verify import VerifyFailure

    corrupt = LedgerCorruptError(tmp_path / "log", 0, 0, "bad frame")
    assert exit_code(corrupt, "graph") == ExitCode.LEDGER_FRAME
    assert exit_code(corrupt, "show") == ExitCode.BAD_INPUT  # needed only for coverage
    assert exit_code(VerifyFailure(ExitCode.SEAL, "x", "y"), "verify") == ExitCode.SEAL
    assert exit_code(TrustAnchorError("x"), "verify") == ExitCode.CHECKPOINT
    assert exit_code(TrustAnchorError("x"), "baseline") == ExitCode.BAD_INPUT
    assert exit_code(LedgerLockTimeout("held"), "ledger") == ExitCode.INTEGRITY
    assert exit_code(NotFoundError("no ledger"), "ledger") == ExitCode.NOT_FOUND
    assert exit_code(ShardMergeError("overlap"), "merge") == ExitCode.NOT_MERGEABLE


def _returns_value_or_code(node: ast.FunctionDef) -> bool:
    """``-> X | int`` (or ``int | X``, ``Optional``-like unions with int) with X not int."""
    ret = node.returns
    if ret is None:
        return False
    text = ast.unparse(ret)
    parts = {p.strip() for p in text.split("|")}
    return "int" in parts and len(parts) > 1


def test_no_cli_function_returns_either_a_value_or_an_exit_code():
    offenders = []
    for path in sorted((ROOT / "pytest_rtgov" / "cli").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and _returns_value_or_code(node):
                offenders.append(f"{path.name}:{node.lineno} {node.name}")
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "isinstance":
                if ast.unparse(node.args[1]) == "int":  # "if isinstance(result, int): return"
                    offenders.append(f"{path.name}:{node.lineno} isinstance(..., int)")
    assert not offenders, offenders


@pytest.fixture
def state(example_state: Path) -> Path:
    return example_state


def test_show_json_is_deprecated_but_still_works(state, capsys):
    assert main(["--dir", str(state), "show", "--format", "json"]) == ExitCode.OK
    new = capsys.readouterr()
    assert "is deprecated" not in new.err
    assert main(["--dir", str(state), "show", "--json"]) == ExitCode.OK
    old = capsys.readouterr()
    assert json.loads(old.out) == json.loads(new.out)
    assert "rtgov: warning: --json is deprecated; use --format json" in old.err.splitlines()


def test_export_output_is_deprecated_but_still_works(tmp_path, capsys):
    """``--output`` still names the file; an uncovered record is refused all the same (4)."""
    out = tmp_path / "x.json"
    code = main(["--dir", str(tmp_path / "none"), "export", "--output", str(out)])
    err = capsys.readouterr().err
    assert "rtgov: warning: --output is deprecated; use --out" in err
    assert code == ExitCode.NOT_FOUND
    import argparse

    from pytest_rtgov.cli import export as cli_export

    parser = argparse.ArgumentParser()
    cli_export.add_parsers(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["export", "--output", str(out)]).out == out
    assert parser.parse_args(["export", "-o", str(out)]).out == out
    capsys.readouterr()


def test_every_subcommand_spells_outputs_and_formats_one_way(capsys):
    """No ``--output`` or ``--json`` in any help text: ``-o/--out`` and ``--format``."""
    from pytest_rtgov.cli.main import _parser

    def walk(parser, path):
        yield path, parser
        for action in parser._actions:
            choices = getattr(action, "choices", None)
            if isinstance(choices, dict):
                for name, child in choices.items():
                    yield from walk(child, (*path, name))

    seen = 0
    for path, parser in walk(_parser(), ()):
        text = parser.format_help()
        assert "--output" not in text and "--json" not in text, (path, text)
        for action in parser._actions:
            if "--out" in action.option_strings:
                assert action.option_strings == ["-o", "--out"], path
                seen += 1
    assert seen >= 5  # keys generate, prove, graph export, report, export


def test_the_symlink_refusal_is_a_read_error(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "link").symlink_to(tmp_path)
    assert main(["--dir", str(tmp_path), "runs"]) == ExitCode.BAD_INPUT
    assert "is a symbolic link inside the state directory" in capsys.readouterr().err
