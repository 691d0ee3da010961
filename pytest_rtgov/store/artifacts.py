"""Model artifacts (``.npz``) saved through the plugin: signed on save, verified on load.

Each process writes under ``<state>/artifacts/<run id>/<worker>/``, so xdist workers
never share a file. Every ``.npz`` has a DSSE envelope beside it
(``NAME.npz.dsse.json``) over an in-toto statement naming the file and its sha256.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_rtgov.core.keys import Signer
from pytest_rtgov.errors import RtgovError
from pytest_rtgov.store.keys import Trust
from pytest_rtgov.store.sealed import (
    ARTIFACT_PREDICATE,
    ENVELOPE_SUFFIX,
    SealCheck,
    open_sealed,
    save_npz,
    seal,
    sha256_file,
)

__all__ = ["ArtifactError", "ArtifactStore"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class ArtifactError(RtgovError):
    """An artifact name is unusable or the artifact does not exist."""


class ArtifactStore:
    def __init__(
        self, directory: Path, signer: Signer, trust: Trust, *, run_id: str, worker: str
    ) -> None:
        self.directory = directory
        self.signer = signer
        self.trust = trust
        self.run_id = run_id
        self.worker = worker

    def path_for(self, name: str) -> Path:
        if not _NAME.match(name):
            raise ArtifactError(
                f"invalid artifact name {name!r}, expected letters, digits, '_', '.', '-'"
            )
        return self.directory / f"{name}.npz"

    def save(self, name: str, arrays: Mapping[str, Any]) -> tuple[Path, str]:
        """Write and sign; returns the path and ``sha256:<hex>`` of the file."""
        path = self.path_for(name)
        save_npz(path, arrays)
        seal(
            path.parent,
            [path.name],
            path.with_name(path.name + ENVELOPE_SUFFIX),
            [self.signer],
            predicate_type=ARTIFACT_PREDICATE,
            predicate={"run_id": self.run_id, "worker": self.worker, "arrays": sorted(arrays)},
        )
        return path, "sha256:" + sha256_file(path)

    def load(self, name: str) -> tuple[dict[str, Any], SealCheck]:
        """The arrays, only if the file verifies under the keyring (or the local key)."""
        import numpy as np

        path = self.path_for(name)
        if not path.exists():
            raise ArtifactError(f"{path}: no artifact {name!r} saved in this process")
        data, check = open_sealed(path, self.trust, predicate_type=ARTIFACT_PREDICATE)
        if self.trust.required and not check.trusted:
            raise ArtifactError(
                f"{path}: signed by {', '.join(check.signed_by)}, not by a keyring key"
            )
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}, check
