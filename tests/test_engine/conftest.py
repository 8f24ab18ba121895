"""Fixtures of the engine tests."""
import pytest
from _anss_runs import make_assets


@pytest.fixture(scope='module')
def assets(tmp_path_factory):
    """Tiny data, corpora and stage-1 checkpoints of the AnSS tests
    (:func:`_anss_runs.make_assets`)."""
    return make_assets(tmp_path_factory.mktemp('anss'))
