"""The one place that resolves where rtgov's files are: the state directory, the gates
file, the baseline directory and the keyring, for the ``rtgov`` command and for a pytest
session alike.

Rules (docs/usage.md): a path given as an option is taken relative to where the command
or pytest was invoked; the defaults are ``.rtgov`` there, and ``gates.toml`` and
``rtgov.keyring`` in the project (pytest's rootdir; the CLI's working directory); a
relative baseline directory is relative to the gates file, and must lie inside the
project (:func:`pytest_rtgov.store.gates_file.baseline_directory`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_rtgov.core.gates_config import GatesConfig
    from pytest_rtgov.store.keys import Trust

__all__ = [
    "DEFAULT_GATES",
    "DEFAULT_KEYRING",
    "DEFAULT_STATE_DIR",
    "STATE_GITIGNORE",
    "Paths",
    "create_state_dir",
    "write_state_gitignore",
]

DEFAULT_STATE_DIR = ".rtgov"
DEFAULT_GATES = "gates.toml"
DEFAULT_KEYRING = "rtgov.keyring"
# The state directory's own .gitignore, as pytest writes one into .pytest_cache: its runs,
# ledger and private keys are never committed by a `git add -A`.
STATE_GITIGNORE = (
    "# Written by pytest-rtgov: nothing in the state directory (runs, ledger, private keys)\n"
    "# is committed. Commit gates.toml, rtgov.keyring and the baseline directory instead.\n*\n"
)


def write_state_gitignore(state_dir: Path, *, replace: bool = False) -> bool:
    """Write ``state_dir/.gitignore`` (``*``) unless one is there (``replace``: even then);
    True when written. The directory must exist."""
    path = state_dir / ".gitignore"
    try:
        with open(path, "w" if replace else "x", encoding="utf-8") as fh:
            fh.write(STATE_GITIGNORE)
    except FileExistsError:
        return False
    return True


def create_state_dir(state_dir: Path) -> None:
    """Create a missing state directory with its :func:`write_state_gitignore` file. An
    existing one is left as it is (its owner may have chosen what git sees there)."""
    if state_dir.is_dir():
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    write_state_gitignore(state_dir)


def _under(base: Path, path: str | Path) -> Path:
    path = Path(path)
    return path if path.is_absolute() else base / path


@dataclass(frozen=True)
class Paths:
    """Where one command or session reads and writes. ``project``: the directories a
    baseline directory may lie in (besides the gates file's own)."""

    state_dir: Path
    gates_file: Path
    keyring: Path
    project: tuple[Path, ...]

    @classmethod
    def resolve(
        cls,
        *,
        invocation: Path,
        rootdir: Path | None = None,
        state_dir: str | Path | None = None,
        gates: str | Path | None = None,
        keyring: str | Path | None = None,
    ) -> Paths:
        """Options (``None``: not given) relative to ``invocation``; the gates file and the
        keyring default to ``rootdir`` (the project; default: ``invocation``)."""
        root = rootdir if rootdir is not None else invocation
        return cls(
            state_dir=_under(invocation, state_dir or DEFAULT_STATE_DIR),
            gates_file=_under(invocation, gates) if gates else root / DEFAULT_GATES,
            keyring=_under(invocation, keyring) if keyring else root / DEFAULT_KEYRING,
            project=(root,),
        )

    @property
    def runs_dir(self) -> Path:
        return self.state_dir / "runs"

    @property
    def ledger_dir(self) -> Path:
        return self.state_dir / "ledger"

    @property
    def keys_dir(self) -> Path:
        return self.state_dir / "keys"

    def load_gates(self) -> GatesConfig:
        """The gates file, parsed and validated (``GatesConfigError`` naming the place)."""
        from pytest_rtgov.store.gates_file import load_gates

        return load_gates(self.gates_file)

    def baseline_dir(self, gates: GatesConfig | None = None) -> Path:
        """The baseline directory ``gates`` (default: the gates file) names, refused
        unless it lies inside the project."""
        from pytest_rtgov.store.gates_file import baseline_directory

        return baseline_directory(gates if gates is not None else self.load_gates(), self.project)

    def baseline_dir_if_gated(self) -> Path | None:
        """:meth:`baseline_dir`, or None where there is no gates file (``rtgov verify``)."""
        return self.baseline_dir() if self.gates_file.is_file() else None

    def trust(self, *, required: bool) -> Trust:
        """The keyring's keys (or CI's), plus this state directory's local keys unless
        signatures are ``required``."""
        from pytest_rtgov.store.keys import load_trust

        return load_trust(keyring=self.keyring, state_dir=self.state_dir, required=required)
