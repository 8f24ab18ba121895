"""AnchorSentenceSelectionHook inside real MMEngine runners (tiny CLIP)."""
import os
import os.path as osp
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from _anss_runs import (
    AUTHORS_POOL,
    LOG_SCALE,
    MEAN,
    MODEL,
    NUM_ANCHORS,
    REPO,
    TRAIN_PIPELINE,
    built_corpus,
    corpus_cfg,
    dataset_cfg,
    lgr_cfg,
    log_text,
    train,
)
from mmpretrain.registry import DATASETS, MODELS, TASK_UTILS

import vlltr_mm  # registers everything
from vlltr_mm.engine.hooks.anss_artifact import artifact_key
from vlltr_mm.engine.hooks.anss_inputs import embed_sentences
from vlltr_mm.engine.hooks.anss_report import check_corpus
from vlltr_mm.engine.hooks.anss_scoring import lin_loss_scores, select_anchors

pytestmark = pytest.mark.usefixtures('one_thread')


def _reference(assets, runner):
    """Anchors computed directly from the stage-1 parts, no hook code."""
    state = torch.load(assets['ckpt'], weights_only=True)['state_dict']
    text = MODELS.build(dict(type='OpenCLIPTextEncoder', model_name=MODEL))
    text.load_state_dict({
        k[13:]: v
        for k, v in state.items() if k.startswith('text_encoder.')
    })
    corpus = built_corpus(assets)
    model = runner.model
    cfg = dict(dataset_cfg(assets, 'val'))
    pool = DATASETS.build(cfg)
    with torch.no_grad():
        text_embeds = text.eval()(corpus.get_tokens(
            np.arange(corpus.num_sentences)))
        batch = model.data_preprocessor(
            dict(inputs=[pool[i]['inputs'] for i in range(len(pool))]),
            False)
        images = model.backbone.eval()(batch['inputs'])[-1]
    scores = lin_loss_scores(text_embeds, images, corpus.sentence_labels,
                             pool.get_gt_labels(), 20.0)
    indices, mask = select_anchors(scores, corpus.class_offsets,
                                   NUM_ANCHORS)
    return corpus, text_embeds, scores, indices, mask


def test_anchors_computed_loaded_and_reused(assets, tmp_path):
    runner, hook = train(lgr_cfg(assets, tmp_path))
    out = tmp_path / 'anss_anchors.pth'
    assert hook.reused is False and out.is_file()
    art = torch.load(out, weights_only=True)
    corpus, text_embeds, scores, indices, mask = _reference(assets, runner)

    # the artifact equals a direct computation of Eq. 2 + selection
    torch.testing.assert_close(art['scores'], scores, rtol=1e-5, atol=1e-5)
    assert torch.equal(art['indices'], indices)
    assert torch.equal(art['mask'], mask)
    assert mask[3].sum() == 7 and mask[:3].all()  # class 3 padded
    torch.testing.assert_close(
        art['anchors'], text_embeds[indices], rtol=1e-5, atol=1e-6)
    meta = art['meta']
    assert meta['corpus_fingerprint'] == corpus.fingerprint
    assert meta['selection'] == 'anss' and meta['num_anchors'] == 8
    assert meta['num_pool_images'] == 12
    assert meta['logit_scale'] == pytest.approx(LOG_SCALE)

    # the head got them (masked slots are zeroed by the head)
    head = runner.model.head
    assert head.has_anchors
    assert torch.equal(head.anchor_mask, mask)
    torch.testing.assert_close(head.anchors[mask], art['anchors'][mask])
    assert float(head.logit_scale) == pytest.approx(20.0, rel=1e-6)

    # the saved checkpoint records the stage-1 checkpoint and carries them
    ckpt = torch.load(tmp_path / 'epoch_1.pth', weights_only=True)
    assert ckpt['meta']['anss']['checkpoint'] == osp.abspath(assets['ckpt'])
    assert torch.equal(ckpt['state_dict']['head.anchor_mask'], mask)

    # a second run with the same inputs reuses the artifact untouched
    mtime = os.stat(out).st_mtime_ns
    runner2, hook2 = train(lgr_cfg(assets, tmp_path))
    assert hook2.reused is True and os.stat(out).st_mtime_ns == mtime
    torch.testing.assert_close(runner2.model.head.anchors, head.anchors)

    # resuming (load_from dropped, as tools/train.py --resume does) finds
    # the stage-1 checkpoint in the checkpoint meta and reuses the artifact
    cfg = lgr_cfg(assets, tmp_path, max_epochs=2)
    cfg.resume, cfg.load_from = True, None
    runner3, hook3 = train(cfg)
    assert hook3.reused is True and os.stat(out).st_mtime_ns == mtime
    assert runner3.epoch == 2

    # another corpus -> recomputed (with a warning), artifact replaced
    _, hook4 = train(
        lgr_cfg(assets, tmp_path, corpus=corpus_cfg(assets, 'other_json')))
    assert hook4.reused is False
    art4 = torch.load(out, weights_only=True)
    assert art4['meta']['corpus_fingerprint'] != meta['corpus_fingerprint']
    assert art4['mask'].all()  # class 3 has 8 sentences now

    # another stage-1 checkpoint -> recomputed as well
    _, hook5 = train(
        lgr_cfg(assets, tmp_path, checkpoint=assets['other_ckpt']))
    assert hook5.reused is False
    art5 = torch.load(out, weights_only=True)
    assert art5['meta']['checkpoint_sha256'] != meta['checkpoint_sha256']


def test_explicit_artifact_must_match(assets, tmp_path):
    train(lgr_cfg(assets, tmp_path / 'a'))
    good = str(tmp_path / 'a' / 'anss_anchors.pth')
    _, hook = train(lgr_cfg(assets, tmp_path / 'b', artifact=good))
    assert hook.reused is True
    with pytest.raises(ValueError, match='checkpoint_sha256'):
        train(
            lgr_cfg(assets, tmp_path / 'c', artifact=good,
                    checkpoint=assets['other_ckpt']))
    with pytest.raises(ValueError, match='corpus_fingerprint'):
        train(
            lgr_cfg(assets, tmp_path / 'd', artifact=good,
                    corpus=corpus_cfg(assets, 'other_json')))
    with pytest.raises(FileNotFoundError, match='artifact'):
        train(
            lgr_cfg(assets, tmp_path / 'e',
                    artifact=str(tmp_path / 'nope.pth')))


def test_cutoff_selection(assets, tmp_path):
    runner, hook = train(lgr_cfg(assets, tmp_path, selection='cutoff'))
    art = torch.load(tmp_path / 'anss_anchors.pth', weights_only=True)
    offsets = torch.from_numpy(hook_corpus_offsets(assets))
    expected = offsets[:-1, None] + torch.arange(NUM_ANCHORS)
    expected[3, 7] = offsets[3]  # padding repeats the first sentence
    assert torch.equal(art['indices'], expected)
    assert art['meta']['pool_sha256'] == 'unused'
    assert torch.isnan(art['scores']).all()
    assert runner.model.head.has_anchors


def hook_corpus_offsets(assets):
    corpus = built_corpus(assets)
    return corpus.class_offsets


def test_pool_from_train_split_first_k(assets, tmp_path):
    _, hook = train(
        lgr_cfg(assets, tmp_path,
                pool=dict(split='train', max_per_class=3, mode='random')))
    art = torch.load(tmp_path / 'anss_anchors.pth', weights_only=True)
    assert art['meta']['num_pool_images'] == 3 + 3 + 3 + 2


def test_missing_checkpoint_is_a_clear_error(assets, tmp_path):
    cfg = lgr_cfg(assets, tmp_path, checkpoint=str(tmp_path / 'missing.pth'))
    with pytest.raises(FileNotFoundError, match='stage-1 checkpoint'):
        train(cfg)
    cfg = lgr_cfg(assets, tmp_path)
    cfg.load_from = None
    with pytest.raises(ValueError, match='needs the stage-1'):
        train(cfg)


def test_checkpoint_without_text_encoder(assets, tmp_path):
    state = torch.load(assets['ckpt'], weights_only=True)['state_dict']
    bad = str(tmp_path / 'visual_only.pth')
    torch.save({'state_dict': {k: v for k, v in state.items()
                               if not k.startswith('text_encoder.')},
                'meta': {}}, bad)
    with pytest.raises(KeyError, match=r'text_encoder\.\* weights'):
        train(lgr_cfg(assets, tmp_path, checkpoint=bad))


def test_head_without_anchors_is_never_used(assets, tmp_path):
    with pytest.raises(RuntimeError, match='anchor'):
        train(lgr_cfg(assets, tmp_path, with_hook=False))


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _torchrun_train(cfg_file, work_dir):
    """Run tools/train.py in 2 gloo processes; return the run's log."""
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1')
    proc = subprocess.run([
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
        f'--master_port={_free_port()}',
        osp.join(REPO, 'tools', 'train.py'), cfg_file, '--launcher',
        'pytorch', '--work-dir', str(work_dir)
    ], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    logs = sorted(
        osp.join(d, f) for d, _, files in os.walk(work_dir) for f in files
        if f.endswith('.log'))
    with open(logs[-1]) as f:
        return f.read()


@pytest.mark.slow
def test_two_processes_match_single_process(assets, tmp_path):
    # The authors' iNat pool: a random draw and random augmentation, each
    # rank embedding its shard of it.
    def cfg_of(work, **hook):
        return lgr_cfg(assets, tmp_path / work, pool=AUTHORS_POOL,
                       train_pipeline=TRAIN_PIPELINE, **hook)

    train(cfg_of('single', chunk_size=4096))

    def dump(cfg, name):
        cfg.log_level = 'INFO'
        cfg.custom_imports = dict(imports=['vlltr_mm'],
                                  allow_failed_imports=False)
        cfg.dump(str(tmp_path / name))
        return str(tmp_path / name)

    log = _torchrun_train(dump(cfg_of('dist'), 'lgr.py'), tmp_path / 'dist')
    assert 'Distributed training: True' in log
    assert 'AnSS: computing anchors' in log and 'chose' in log
    single = torch.load(tmp_path / 'single' / 'anss_anchors.pth',
                        weights_only=True)
    double = torch.load(tmp_path / 'dist' / 'anss_anchors.pth',
                        weights_only=True)
    assert single['meta']['pool_sha256'] == double['meta']['pool_sha256']
    assert torch.equal(single['indices'], double['indices'])
    torch.testing.assert_close(single['scores'], double['scores'])
    torch.testing.assert_close(single['anchors'], double['anchors'])
    mask = single['mask']
    ckpt = torch.load(tmp_path / 'dist' / 'epoch_1.pth', weights_only=True)
    torch.testing.assert_close(ckpt['state_dict']['head.anchors'][mask],
                               single['anchors'][mask])
    # a run given that artifact: rank 0 reads it and broadcasts it; the
    # hook checks that every rank ends up with the same anchors
    artifact = str(tmp_path / 'dist' / 'anss_anchors.pth')
    log = _torchrun_train(dump(cfg_of('dist2', artifact=artifact),
                               'lgr2.py'), tmp_path / 'dist2')
    assert 'AnSS: reusing' in log and 'identical on all 2 ranks' in log


def test_sentence_embedding_builds_no_autograd_graph(assets):
    """Embedding the corpus must not keep activations for backward."""
    corpus = TASK_UTILS.build(
        dict(corpus_cfg(assets), class_names=['a', 'b', 'c', 'd', 'e', 'f']))
    feats = embed_sentences(
        dict(type='OpenCLIPTextEncoder', model_name=MODEL), assets['ckpt'],
        corpus, torch.device('cpu'), 5)
    assert feats.shape[0] == corpus.num_sentences
    assert not feats.requires_grad and feats.grad_fn is None


def _report_sections(text):
    """class index -> (kept rows, dropped rows, kinds by row) of a report."""
    sections, part, c = {}, None, None
    for line in text.splitlines():
        if line.startswith('## ') and line[3].isdigit():
            c = int(line[3:].split(':')[0])
            sections[c] = ([], [], {})
        elif line in ('### Kept', '### Dropped'):
            part = 0 if line == '### Kept' else 1
        elif c is not None and line.startswith('| ') and line[2].isdigit():
            cells = [x.strip() for x in line.strip('|').split(' | ')]
            row = int(cells[3])
            sections[c][part].append(row)
            sections[c][2][row] = cells[2]
    return sections


def test_report_lists_kept_then_dropped_and_tool_renders_it(assets,
                                                           tmp_path):
    runner, _ = train(lgr_cfg(assets, tmp_path))
    art = torch.load(tmp_path / 'anss_anchors.pth', weights_only=True)
    report = tmp_path / 'anss_anchors_report.md'
    corpus = built_corpus(assets)
    sections = _report_sections(report.read_text())
    assert sorted(sections) == [0, 1, 2, 3]
    for c, name in enumerate(assets['names']):
        assert f'## {c}: {name}' in report.read_text()
        kept, dropped, kinds = sections[c]
        # exactly the artifact's selection, best first, then the rest
        assert kept == art['indices'][c][art['mask'][c]].tolist()
        rows = range(corpus.class_offsets[c], corpus.class_offsets[c + 1])
        assert sorted(kept + dropped) == list(rows)
        assert np.all(np.diff(art['scores'][kept + dropped].numpy()) >= 0)
        assert all(kinds[i] == ('prompt' if corpus.is_prompt[i] else
                                'description') for i in rows)
    assert any(v == 'description' for v in sections[0][2].values())
    # the tool renders the same report from the artifact and the config
    cfg_file = str(tmp_path / 'lgr.py')
    runner.cfg.dump(cfg_file)
    out = tmp_path / 'tool_report.md'
    proc = subprocess.run([
        sys.executable,
        osp.join(REPO, 'tools', 'analysis', 'anss_report.py'),
        str(tmp_path / 'anss_anchors.pth'), cfg_file, '--out', str(out)
    ], cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1'),
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.read_text() == report.read_text()
    assert 'AnSS summary: 4 classes; ' in proc.stdout
    # another corpus does not fit the artifact
    other = built_corpus(assets, 'other_json')
    with pytest.raises(ValueError, match='not the one of the AnSS artifact'):
        check_corpus(art, other, 'artifact')


def test_key_covers_pool_pipeline(assets, tmp_path):
    train(lgr_cfg(assets, tmp_path))
    out = tmp_path / 'anss_anchors.pth'
    pipeline = [dict(type='LoadImageFromFile', to_float32=True),
                dict(type='PackInputs')]
    runner, hook = train(
        lgr_cfg(assets, tmp_path, pool=dict(pipeline=pipeline)))
    assert hook.reused is False
    log = log_text(runner)
    why = log[log.index('AnSS: computing anchors'):].splitlines()[0]
    # the pipeline (its config and the option) and nothing else differs
    assert why.count('!=') == 2
    assert 'pool_pipeline_sha256' in why
    assert "pool_options: artifact 'split=val max_per_class=50 mode=first " \
        "draw=None pipeline=val seed=0 dataset=split' != expected " \
        "'split=val max_per_class=50 mode=first draw=None " \
        "pipeline=custom seed=0 dataset=split'" in why
    meta = torch.load(out, weights_only=True)['meta']
    assert meta['pool_list_sha256'] == vlltr_mm.utils.file_sha256(
        osp.join(assets['data'], 'ImageNet_LT_val.txt'))


def test_key_covers_towers_selection_and_m(assets):
    corpus = built_corpus(assets)
    text = dict(type='OpenCLIPTextEncoder', model_name=MODEL)
    model = dict(backbone=dict(type='OpenCLIPVisual', model_name=MODEL),
                 data_preprocessor=dict(mean=MEAN))
    base = artifact_key(corpus, assets['ckpt'], text, model, None, 'cutoff',
                        8)
    assert base['pool_sha256'] == base['image_encoder_sha256'] == 'unused'

    def changed(**kw):
        args = dict(corpus=corpus, checkpoint=assets['ckpt'],
                    text_cfg=text, model_cfg=model, pool=None,
                    selection='cutoff', num_anchors=8)
        args.update(kw)
        key = artifact_key(**args)
        return sorted(k for k in base if key[k] != base[k])

    assert changed(text_cfg=dict(text, quick_gelu=True)) == [
        'text_encoder_sha256']
    assert changed(checkpoint=assets['other_ckpt']) == ['checkpoint_sha256']
    assert changed(num_anchors=9) == ['num_anchors']
    assert changed(selection='anss') == ['selection']


def test_pool_without_a_class_warns_with_its_name(assets, tmp_path):
    lines = open(osp.join(assets['data'], 'ImageNet_LT_val.txt')).readlines()
    lst = tmp_path / 'val_no3.txt'
    lst.write_text(''.join(x for x in lines if not x.rstrip().endswith(' 3')))
    pool = dict(dataset=dict(dataset_cfg(assets, 'val'), ann_file=str(lst)))
    runner, _ = train(lgr_cfg(assets, tmp_path, pool=pool))
    assert (f"val_no3.txt) has no image of 1 classes ['{assets['names'][3]}']"
            in log_text(runner))
    art = torch.load(tmp_path / 'anss_anchors.pth', weights_only=True)
    offsets = hook_corpus_offsets(assets)
    assert torch.isinf(art['scores'][offsets[3]:offsets[4]]).all()
    # cut-off order for that class: its 7 sentences, then one padded slot
    assert art['indices'][3].tolist() == list(range(offsets[3],
                                                    offsets[4])) + [
                                                        offsets[3]]


def test_nan_stage1_checkpoint_names_the_file(assets, tmp_path):
    ckpt = torch.load(assets['ckpt'], weights_only=True)
    name = next(k for k in ckpt['state_dict']
                if k.startswith('text_encoder.'))
    ckpt['state_dict'][name] = ckpt['state_dict'][name].clone()
    ckpt['state_dict'][name].view(-1)[0] = float('nan')
    bad = str(tmp_path / 'cvlp_nan.pth')
    torch.save(ckpt, bad)
    with pytest.raises(ValueError, match=r'cvlp_nan\.pth.*non-finite'):
        train(lgr_cfg(assets, tmp_path, checkpoint=bad))
    empty = tmp_path / 'cvlp_empty.pth'
    empty.write_bytes(b'')
    with pytest.raises(ValueError, match=r'cannot read .*cvlp_empty\.pth'):
        train(lgr_cfg(assets, tmp_path, checkpoint=str(empty)))


def test_num_anchors_is_the_heads(assets, tmp_path):
    # equal to the head's: accepted (old configs); different: refused
    _, hook = train(lgr_cfg(assets, tmp_path, num_anchors=NUM_ANCHORS,
                            selection='cutoff'))
    assert hook.reused is False
    with pytest.raises(ValueError, match="head's value is used"):
        train(lgr_cfg(assets, tmp_path, num_anchors=NUM_ANCHORS + 1))


def test_corpus_in_another_class_order_is_refused(assets, tmp_path):
    names = assets['names']
    swapped = [names[1], names[0], *names[2:]]
    cfg = lgr_cfg(assets, tmp_path,
                  corpus=dict(corpus_cfg(assets), class_names=swapped))
    with pytest.raises(ValueError,
                       match=r'the AnSS corpus .* order the classes'):
        train(cfg)
