import pytest


@pytest.fixture(autouse=True)
def _clean_signing_env(clean_signing_env):
    return None
