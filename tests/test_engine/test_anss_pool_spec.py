"""The AnSS pool options: defaults, validation and their key entry."""
import pytest
from _anss_runs import corpus_cfg

from vlltr_mm.engine.hooks import AnchorSentenceSelectionHook
from vlltr_mm.engine.hooks.anss_pool_spec import (
    POOL_DEFAULTS,
    check_pool_spec,
    pool_options,
)

AUTHORS_INAT = dict(split='train', max_per_class=50, mode='first',
                    draw='sqrt', pipeline='train', seed=0)


def test_defaults_are_todays_deterministic_pool():
    assert check_pool_spec(None) == POOL_DEFAULTS == dict(
        split='val', max_per_class=50, mode='first', draw=None,
        pipeline='val', seed=0, dataset=None)
    spec = check_pool_spec(AUTHORS_INAT)
    assert spec == dict(AUTHORS_INAT, dataset=None)
    # the caller's dict is not changed or aliased
    pipeline = [dict(type='LoadImageFromFile')]
    given = dict(pipeline=pipeline)
    spec = check_pool_spec(given)
    assert given == dict(pipeline=pipeline)
    assert spec['pipeline'] == pipeline and spec['pipeline'] is not pipeline


def test_options_entry_names_every_option():
    assert pool_options(check_pool_spec(None)) == (
        'split=val max_per_class=50 mode=first draw=None pipeline=val '
        'seed=0 dataset=split')
    custom = check_pool_spec(
        dict(AUTHORS_INAT, seed=3, pipeline=[dict(type='PackInputs')],
             dataset=dict(type='X')))
    assert pool_options(custom) == (
        'split=train max_per_class=50 mode=first draw=sqrt '
        'pipeline=custom seed=3 dataset=custom')


@pytest.mark.parametrize('pool, match', [
    (dict(draws='sqrt'), r"unknown keys \['draws'\]"),
    (dict(split='trainval'), 'split must be one of'),
    (dict(mode='last'), 'mode must be one of'),
    (dict(draw='uniform'), r"draw must be one of \(None, 'sqrt'\)"),
    (dict(pipeline='test'), "pipeline must be 'val', 'train' or a list"),
    (dict(pipeline=[]), 'non-empty list of transform configs'),
    (dict(pipeline=['LoadImageFromFile']), 'non-empty list'),
    (dict(max_per_class=0), 'max_per_class must be an int >= 1 or None'),
    (dict(max_per_class=2.5), 'max_per_class must be an int'),
    (dict(seed=-1), 'seed must be an int >= 0'),
    (dict(seed=True), 'seed must be an int >= 0'),
    (dict(dataset='ImageNet_LT_val.txt'), 'dataset must be a dataset'),
    (['val'], 'must be a dict'),
])
def test_bad_options_are_refused_when_the_hook_is_built(pool, match):
    with pytest.raises(ValueError, match=match):
        AnchorSentenceSelectionHook(corpus=corpus_cfg(
            dict(json='unused.json')), pool=pool)
