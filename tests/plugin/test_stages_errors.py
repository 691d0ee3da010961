"""Bad input to ``@stage``, end to end (issue 15, item 10): a value that is not arrays,
params that are not JSON, a dependency cycle, one stage declared twice, a corrupt cache
entry and a full disk each give a clear message naming the stage and the place, with no
traceback of the plugin's internals, and nothing cached or recorded before is lost."""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_rtgov.store import stage_cache
from tests.plugin._cli import cli

GOOD = '''\
import numpy as np

from pytest_rtgov import stage


@stage(params={"n": 4})
def good(params):
    return {"x": np.arange(params["n"], dtype=np.float64)}, {"rows": params["n"]}
'''

GOOD_TEST = """\
def test_good(good):
    assert good["x"].sum() == 6
"""

# A traceback entry of the plugin's own code: pytest prints "path:line: in function"
# (short style) or "path:line: ErrorType" (long style) for each.
INTERNAL_FRAME = re.compile(r"pytest_rtgov[/\\][\w/\\]+\.py:\d+")


def output(result: pytest.RunResult) -> str:
    return "\n".join(result.outlines + result.errlines)


def no_internal_traceback(text: str) -> None:
    assert "Traceback" not in text and "INTERNALERROR" not in text, text
    assert not INTERNAL_FRAME.search(text), text


def line_of(text: str, needle: str) -> int:
    """The 1-based line of ``needle`` in ``text`` (it occurs once)."""
    assert text.count(needle) == 1, needle
    return text[: text.index(needle)].count("\n") + 1


def events(root: Path) -> dict[str, dict[str, Any]]:
    """The latest run record's stage events, by stage (each set up once)."""
    base = root / ".rtgov"
    run_id = (base / "latest").read_text().strip()
    record = json.loads((base / "runs" / f"{run_id}.json").read_text())
    found = [s["stage"] for f in record["fixtures"] for s in f["setups"] if "stage" in s]
    by_stage = {e["stage"]: e for e in found}
    assert len(by_stage) == len(found), found
    return by_stage


def ledger_stage_outcomes(root: Path) -> list[tuple[str, str]]:
    from pytest_rtgov.store.ledger import Ledger

    leaves = [json.loads(f.payload) for f in Ledger(root / ".rtgov" / "ledger").frames()]
    return [(leaf["stage"], leaf["outcome"]) for leaf in leaves if leaf["kind"] == "stage"]


def run(pytester: pytest.Pytester, *args: str) -> tuple[int, str]:
    assert Path.cwd() == pytester.path  # never this repository's own suite
    result = pytester.runpytest("--rtgov", "-p", "no:randomly", "-p", "no:cacheprovider", *args)
    return int(result.ret), output(result)


# -- a value that is not named arrays -------------------------------------------------------

BAD_VALUES = {
    "list": (
        "return [np.zeros(2)]",
        " returned a list, expected a mapping of names to arrays, or (arrays, metadata)",
    ),
    "non-array": (
        'return {"x": [1.0, 2.0]}',
        ": output 'x' is a builtins.list, expected a numpy or cupy array",
    ),
    "object-dtype": (
        'return {"x": np.array([object()], dtype=object)}',
        ": output 'x' has dtype object, expected numbers (no pickles)",
    ),
    "output-name": (
        'return {"w/1": np.zeros(2)}',
        ": output name 'w/1', expected letters, digits, '_', '.' or '-', starting with a letter",
    ),
    "metadata": (
        'return {"x": np.zeros(2)}, {"loss": np.float64(0.5)}',
        ": metadata['loss'] is a numpy.float64, expected JSON: use .item() or .tolist()",
    ),
}


@pytest.mark.parametrize("kind", sorted(BAD_VALUES))
def test_a_value_that_is_not_named_arrays_is_named_with_its_place(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    body, message = BAD_VALUES[kind]
    conftest = GOOD + f"\n\n@stage\ndef bad(good):\n    {body}\n"
    pytester.makeconftest(conftest)
    pytester.makepyfile(test_a=GOOD_TEST + "\n\ndef test_bad(bad):\n    pass\n")
    ret, text = run(pytester)
    assert ret == pytest.ExitCode.TESTS_FAILED, text
    place = f"conftest.py:{line_of(conftest, 'def bad') - 1}"  # its decorator's line
    assert f"stage 'bad' ({pytester.path / place}){message}" in text, text
    assert "During handling" not in text
    assert "1 passed, 1 error" in text, text
    no_internal_traceback(text)
    # nothing recorded is lost: the good stage stored, the record, the ledger, verify
    found = events(pytester.path)
    assert set(found) == {"good"} and found["good"]["outcome"] == "stored"
    assert ledger_stage_outcomes(pytester.path) == [("good", "stored")]
    capsys.readouterr()
    assert cli(pytester, "verify") == 0, capsys.readouterr()
    ret, text = run(pytester, "-k", "good")
    assert ret == 0, text
    assert events(pytester.path)["good"]["outcome"] == "hit"


def test_under_xdist_a_bad_value_is_the_same_message(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    conftest = GOOD + "\n\n@stage\ndef bad(good):\n    return [good['x']]\n"
    pytester.makeconftest(conftest)
    pytester.makepyfile(test_a=GOOD_TEST + "\n\ndef test_bad(bad):\n    pass\n")
    result = pytester.runpytest_subprocess("--rtgov", "-n", "2", "-p", "no:randomly")
    text = output(result)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, text
    place = pytester.path / f"conftest.py:{line_of(conftest, 'def bad') - 1}"
    assert f"stage 'bad' ({place}) returned a list, expected a mapping" in text, text
    no_internal_traceback(text)
    # one setup of good per worker that needs it; the first one stores it
    assert ("good", "stored") in ledger_stage_outcomes(pytester.path)


def test_a_failing_body_shows_the_users_code_only(pytester: pytest.Pytester) -> None:
    conftest = GOOD + '\n\n@stage\ndef bad(good):\n    return {"x": good["x"] / missing}\n'
    pytester.makeconftest(conftest)
    pytester.makepyfile(test_a=GOOD_TEST + "\n\ndef test_bad(bad):\n    pass\n")
    ret, text = run(pytester)
    assert ret == pytest.ExitCode.TESTS_FAILED, text
    assert "NameError: name 'missing' is not defined" in text, text
    assert f"conftest.py:{line_of(conftest, '/ missing')}: NameError" in text, text
    assert not INTERNAL_FRAME.search(text), text  # the body's frames, none of the plugin's
    assert events(pytester.path)["good"]["outcome"] == "stored"


# -- params that are not JSON: at collection ----------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ('{"ids": {1, 2}}', "params['ids'] is a builtins.set, expected JSON"),
        ('{"lr": float("nan")}', "params['lr'] is nan, expected a finite number"),
        ('{"lr": np.float32(0.1)}', "params['lr'] is a numpy.float32, expected JSON"),
        ('{1: "a"}', "params has the key 1, expected a string"),
    ],
    ids=["set", "nan", "numpy", "key"],
)
def test_params_that_are_not_json_fail_collection_naming_stage_and_file(
    pytester: pytest.Pytester, params: str, message: str
) -> None:
    module = GOOD.replace('params={"n": 4}', f"params={params}").replace(
        'np.arange(params["n"], dtype=np.float64)', "np.zeros(2)"
    )
    module = module.replace(', {"rows": params["n"]}', "")
    pytester.makepyfile(test_a=module + "\n\ndef test_good(good):\n    pass\n")
    ret, text = run(pytester)
    assert ret == pytest.ExitCode.INTERRUPTED, text
    place = f"{pytester.path / 'test_a.py'}:{line_of(module, '@stage(')}"
    assert f"stage 'good' ({place}): {message}" in text, text
    assert "ERROR collecting test_a.py" in text
    no_internal_traceback(text)


def test_params_that_are_not_json_in_a_conftest_name_it(pytester: pytest.Pytester) -> None:
    conftest = GOOD.replace('params={"n": 4}', 'params={"n": 4, "when": object()}')
    pytester.makeconftest(conftest)
    pytester.makepyfile(test_a=GOOD_TEST)
    ret, text = run(pytester)
    assert ret == pytest.ExitCode.USAGE_ERROR, text
    place = f"{pytester.path / 'conftest.py'}:{line_of(conftest, '@stage(')}"
    assert f"stage 'good' ({place}): params['when'] is a builtins.object" in text, text
    no_internal_traceback(text)


# -- a dependency cycle -------------------------------------------------------------------

CYCLE = '''\
import numpy as np

from pytest_rtgov import stage


@stage
def alpha(beta):
    return {"x": beta["x"] + 1}


@stage
def beta(alpha):
    return {"x": alpha["x"] + 1}
'''


def test_a_dependency_cycle_names_both_stages_where_they_are_defined(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(CYCLE)
    pytester.makepyfile(test_a="def test_cycle(alpha):\n    pass\n")
    ret, text = run(pytester)
    assert ret == pytest.ExitCode.TESTS_FAILED, text
    assert "recursive dependency involving fixture 'alpha' detected" in text, text
    conftest = pytester.path / "conftest.py"
    # pytest's own message: the chain of requests, each where the user defined it
    chain = [
        f"file {pytester.path / 'test_a.py'}, line 1",
        "  def test_cycle(alpha):",
        f"file {conftest}, line {line_of(CYCLE, 'def alpha') - 1}",
        "  @stage",
        "  def alpha(beta):",
        f"file {conftest}, line {line_of(CYCLE, 'def beta') - 1}",
        "  @stage",
        "  def beta(alpha):",
    ]
    lines = text.splitlines()
    start = lines.index(chain[0])
    assert lines[start : start + len(chain)] == chain, text
    assert "pytest_rtgov" not in "\n".join(lines[start : start + len(chain) + 1])
    assert events(pytester.path) == {}  # the record is written, no stage in it


# -- one stage declared twice with two param sets -------------------------------------------


def test_one_stage_with_two_param_sets_names_both_places(pytester: pytest.Pytester) -> None:
    for sub, n in (("a", 4), ("b", 5)):
        pytester.mkpydir(f"sub_{sub}")
        (pytester.path / f"sub_{sub}" / "conftest.py").write_text(
            GOOD.replace('params={"n": 4}', f'params={{"n": {n}}}')
        )
        (pytester.path / f"sub_{sub}" / f"test_{sub}.py").write_text(
            f"def test_{sub}(good):\n    assert len(good['x']) == {n}\n"
        )
    ret, text = run(pytester)
    assert ret == pytest.ExitCode.TESTS_FAILED, text
    line = line_of(GOOD, "@stage(")
    first = f"{pytester.path / 'sub_a' / 'conftest.py'}:{line}"
    second = f"{pytester.path / 'sub_b' / 'conftest.py'}:{line}"
    declared = '{{"params":{{"n":{}}},"seeds":{{}}}}'
    assert (
        f"stage 'good' is requested with two param sets in this session: "
        f"{first} declares {declared.format(4)}, {second} declares {declared.format(5)}"
    ) in text, text
    assert "1 passed, 1 error" in text
    no_internal_traceback(text)
    assert events(pytester.path)["good"]["outcome"] == "stored"


# -- a corrupt entry: refused, re-executed, stored again ----------------------------------


def stage_store(root: Path) -> Path:
    return root / ".rtgov" / "stages"


def only(paths: list[Path]) -> Path:
    assert len(paths) == 1, paths
    return paths[0]


def corrupt_envelope(root: Path) -> str:
    entry = only(sorted((stage_store(root) / "entries" / "good").glob("*.dsse.json")))
    data = entry.read_bytes()
    entry.write_bytes(data[: len(data) // 2])  # a truncated envelope
    return "unreadable envelope ("


def corrupt_object(root: Path) -> str:
    blob = only(sorted((stage_store(root) / "objects").rglob("*.npy")))
    data = blob.read_bytes()
    blob.write_bytes(data[: len(data) // 2])  # a half-written object
    return "output x: bytes hash to sha256 "


def drop_object(root: Path) -> str:
    only(sorted((stage_store(root) / "objects").rglob("*.npy"))).unlink()
    return "output x: object "


@pytest.mark.parametrize("damage", [corrupt_envelope, corrupt_object, drop_object])
def test_a_corrupt_entry_is_refused_re_executed_and_stored_again(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str], damage: Any
) -> None:
    pytester.makeconftest(GOOD)
    pytester.makepyfile(test_a=GOOD_TEST)
    assert run(pytester)[0] == 0
    key = events(pytester.path)["good"]["key"]
    reason = damage(pytester.path)
    ret, text = run(pytester)
    assert ret == 0, text  # outside CI a refusal re-executes
    event = events(pytester.path)["good"]
    assert event["outcome"] == "refused" and event["key"] == key
    assert event["reason"].startswith(reason), event
    # the damaged entry is kept as evidence, a sound one replaces it
    assert only(sorted((stage_store(pytester.path) / "refused" / "good").glob("*.dsse.json")))
    no_internal_traceback(text)
    ret, text = run(pytester)
    assert ret == 0, text
    assert events(pytester.path)["good"]["outcome"] == "hit", events(pytester.path)
    assert ledger_stage_outcomes(pytester.path) == [
        ("good", "stored"),
        ("good", "refused"),
        ("good", "hit"),
    ]
    capsys.readouterr()
    assert cli(pytester, "verify") == 0, capsys.readouterr()


# -- a full disk while storing -------------------------------------------------------------

SECOND = '''

@stage(params={"scale": 2.0})
def second(good, params):
    return {"y": good["x"] * params["scale"]}
'''


def test_a_full_disk_while_storing_keeps_the_value_and_earlier_entries(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytester.makeconftest(GOOD)
    pytester.makepyfile(test_a=GOOD_TEST)
    assert run(pytester)[0] == 0
    stored = sorted(p.relative_to(pytester.path) for p in stage_store(pytester.path).rglob("*"))

    def full(self: Any, rel: str, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(self.root / rel))

    pytester.makeconftest(GOOD + SECOND)
    pytester.makepyfile(test_b="def test_second(second):\n    assert second['y'].sum() == 12\n")
    with monkeypatch.context() as patch:  # not monkeypatch.undo(): pytester's chdir is one
        patch.setattr(stage_cache.LocalBackend, "put", full)
        ret, text = run(pytester)
    assert ret == 0, text  # the value is used although it could not be stored
    found = events(pytester.path)
    assert found["good"]["outcome"] == "hit"
    assert found["second"]["outcome"] == "miss"
    assert found["second"]["reason"].startswith("not stored: [Errno 28] No space left on device")
    no_internal_traceback(text)
    after = sorted(p.relative_to(pytester.path) for p in stage_store(pytester.path).rglob("*"))
    assert [p for p in after if "second" in str(p) or p.suffix == ".npy"] == [
        p for p in stored if p.suffix == ".npy"
    ]  # no entry of second, no object of it, the earlier ones intact
    ret, text = run(pytester)
    assert ret == 0, text
    assert {s: e["outcome"] for s, e in events(pytester.path).items()} == {
        "good": "hit",
        "second": "stored",
    }
    capsys.readouterr()
    assert cli(pytester, "verify") == 0, capsys.readouterr()
