"""AnchorSentenceSelectionHook inside real MMEngine runners (tiny CLIP)."""
import importlib.util
import json
import math
import os
import os.path as osp
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmpretrain.registry import DATASETS, MODELS, TASK_UTILS

import vlltr_mm  # registers everything
from vlltr_mm.engine.hooks import AnchorSentenceSelectionHook
from vlltr_mm.engine.hooks.anss_artifact import artifact_key
from vlltr_mm.engine.hooks.anss_inputs import embed_sentences
from vlltr_mm.engine.hooks.anss_report import check_corpus
from vlltr_mm.engine.hooks.anss_scoring import lin_loss_scores, select_anchors

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MODEL = 'vlltr-tiny-rn'
NUM_ANCHORS = 8
LOG_SCALE = math.log(20.0)
MEAN = [0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255]
STD = [0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255]


pytestmark = pytest.mark.usefixtures('one_thread')


def _make_tiny_lt():
    spec = importlib.util.spec_from_file_location(
        'make_tiny_lt', osp.join(REPO, 'tools', 'data', 'make_tiny_lt.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_tiny_lt


def _save_stage1(path, seed):
    torch.manual_seed(seed)
    visual = MODELS.build(dict(type='OpenCLIPVisual', model_name=MODEL))
    text = MODELS.build(dict(type='OpenCLIPTextEncoder', model_name=MODEL))
    state = {f'backbone.{k}': v for k, v in visual.state_dict().items()}
    state.update(
        {f'text_encoder.{k}': v
         for k, v in text.state_dict().items()})
    state['logit_scale'] = torch.tensor(LOG_SCALE)
    state['teacher.ignored'] = torch.zeros(1)
    torch.save({'state_dict': state, 'meta': {}}, path)
    return path


@pytest.fixture(scope='module')
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp('anss')
    info = _make_tiny_lt()(
        str(root / 'data'),
        num_classes=4,
        counts=[12, 8, 4, 2],
        val_per_class=3,
        test_per_class=1)
    names = info['classes']
    # Classes 0-2 get templates + descriptions (>= M sentences), class 3
    # only the 7 'simple' templates (< M = 8 -> one padded slot).
    desc = {
        names[0]: 'It is a red thing with stripes. Many red things exist. '
        'Its stripes run across the picture.',
        names[1]: 'A green object is often seen in gardens. Green is the '
        'colour of grass.',
        names[2]: 'Blue is a primary colour. The sky looks blue on clear '
        'days. Oceans also appear blue.',
    }
    json_file = root / 'desc.json'
    json_file.write_text(json.dumps(desc))
    other_json = root / 'desc_other.json'
    other_json.write_text(
        json.dumps(dict(desc, **{names[3]: 'A brand new sentence here.'})))
    return dict(
        root=root,
        data=info['root'],
        names=names,
        json=str(json_file),
        other_json=str(other_json),
        ckpt=_save_stage1(str(root / 'cvlp.pth'), 0),
        other_ckpt=_save_stage1(str(root / 'cvlp_other.pth'), 1))


def _dataset(assets, split):
    return dict(
        type='LongTailListDataset',
        data_root=assets['data'],
        ann_file=f'ImageNet_LT_{split}.txt',
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='PackInputs')])


def _corpus(assets, json_key='json'):
    return dict(
        type='ClassTextCorpus',
        json_file=assets[json_key],
        templates='simple',
        tokenizer='RN50')


def _cfg(assets, work_dir, with_hook=True, max_epochs=1, **hook):
    hook_cfg = dict(
        type='AnchorSentenceSelectionHook',
        corpus=_corpus(assets),
        text_encoder=dict(type='OpenCLIPTextEncoder', model_name=MODEL),
        batch_size=5,
        num_workers=0,
        chunk_size=7)
    hook_cfg.update(hook)
    return Config(
        dict(
            model=dict(
                type='ImageClassifier',
                data_preprocessor=dict(
                    type='ClsDataPreprocessor',
                    mean=MEAN,
                    std=STD,
                    to_rgb=True),
                backbone=dict(
                    type='OpenCLIPVisual', model_name=MODEL, frozen=True),
                head=dict(
                    type='LGRHead',
                    num_classes=4,
                    in_channels=16,
                    num_anchors=NUM_ANCHORS)),
            work_dir=str(work_dir),
            train_dataloader=dict(
                dataset=_dataset(assets, 'train'),
                sampler=dict(type='DefaultSampler', shuffle=True),
                batch_size=8,
                num_workers=0),
            val_dataloader=dict(
                dataset=_dataset(assets, 'val'),
                sampler=dict(type='DefaultSampler', shuffle=False),
                batch_size=8,
                num_workers=0),
            val_evaluator=dict(type='Accuracy', topk=(1, )),
            train_cfg=dict(by_epoch=True, max_epochs=max_epochs,
                           val_interval=100),
            val_cfg=dict(),
            optim_wrapper=dict(
                optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.0)),
            default_hooks=dict(
                checkpoint=dict(type='CheckpointHook', interval=1),
                logger=dict(type='LoggerHook', interval=100)),
            custom_hooks=[hook_cfg] if with_hook else [],
            load_from=assets['ckpt'],
            log_level='WARNING',
            default_scope='mmpretrain',
            randomness=dict(seed=0)))


def _train(cfg):
    runner = Runner.from_cfg(cfg)
    runner.train()
    hook = [h for h in runner.hooks
            if isinstance(h, AnchorSentenceSelectionHook)]
    return runner, (hook[0] if hook else None)


def _reference(assets, runner):
    """Anchors computed directly from the stage-1 parts, no hook code."""
    state = torch.load(assets['ckpt'], weights_only=True)['state_dict']
    text = MODELS.build(dict(type='OpenCLIPTextEncoder', model_name=MODEL))
    text.load_state_dict({
        k[13:]: v
        for k, v in state.items() if k.startswith('text_encoder.')
    })
    corpus = TASK_UTILS.build(
        dict(_corpus(assets), class_names=assets['names']))
    model = runner.model
    cfg = dict(_dataset(assets, 'val'))
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
    runner, hook = _train(_cfg(assets, tmp_path))
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
    runner2, hook2 = _train(_cfg(assets, tmp_path))
    assert hook2.reused is True and os.stat(out).st_mtime_ns == mtime
    torch.testing.assert_close(runner2.model.head.anchors, head.anchors)

    # resuming (load_from dropped, as tools/train.py --resume does) finds
    # the stage-1 checkpoint in the checkpoint meta and reuses the artifact
    cfg = _cfg(assets, tmp_path, max_epochs=2)
    cfg.resume, cfg.load_from = True, None
    runner3, hook3 = _train(cfg)
    assert hook3.reused is True and os.stat(out).st_mtime_ns == mtime
    assert runner3.epoch == 2

    # another corpus -> recomputed (with a warning), artifact replaced
    _, hook4 = _train(
        _cfg(assets, tmp_path, corpus=_corpus(assets, 'other_json')))
    assert hook4.reused is False
    art4 = torch.load(out, weights_only=True)
    assert art4['meta']['corpus_fingerprint'] != meta['corpus_fingerprint']
    assert art4['mask'].all()  # class 3 has 8 sentences now

    # another stage-1 checkpoint -> recomputed as well
    _, hook5 = _train(_cfg(assets, tmp_path, checkpoint=assets['other_ckpt']))
    assert hook5.reused is False
    art5 = torch.load(out, weights_only=True)
    assert art5['meta']['checkpoint_sha256'] != meta['checkpoint_sha256']


def test_explicit_artifact_must_match(assets, tmp_path):
    _train(_cfg(assets, tmp_path / 'a'))
    good = str(tmp_path / 'a' / 'anss_anchors.pth')
    _, hook = _train(_cfg(assets, tmp_path / 'b', artifact=good))
    assert hook.reused is True
    with pytest.raises(ValueError, match='checkpoint_sha256'):
        _train(
            _cfg(assets, tmp_path / 'c', artifact=good,
                 checkpoint=assets['other_ckpt']))
    with pytest.raises(ValueError, match='corpus_fingerprint'):
        _train(
            _cfg(assets, tmp_path / 'd', artifact=good,
                 corpus=_corpus(assets, 'other_json')))
    with pytest.raises(FileNotFoundError, match='artifact'):
        _train(
            _cfg(assets, tmp_path / 'e',
                 artifact=str(tmp_path / 'nope.pth')))


def test_cutoff_selection(assets, tmp_path):
    runner, hook = _train(_cfg(assets, tmp_path, selection='cutoff'))
    art = torch.load(tmp_path / 'anss_anchors.pth', weights_only=True)
    offsets = torch.from_numpy(hook_corpus_offsets(assets))
    expected = offsets[:-1, None] + torch.arange(NUM_ANCHORS)
    expected[3, 7] = offsets[3]  # padding repeats the first sentence
    assert torch.equal(art['indices'], expected)
    assert art['meta']['pool_sha256'] == 'unused'
    assert torch.isnan(art['scores']).all()
    assert runner.model.head.has_anchors


def hook_corpus_offsets(assets):
    corpus = TASK_UTILS.build(
        dict(_corpus(assets), class_names=assets['names']))
    return corpus.class_offsets


def test_pool_from_train_split_first_k(assets, tmp_path):
    _, hook = _train(
        _cfg(assets, tmp_path,
             pool=dict(split='train', max_per_class=3, mode='random')))
    art = torch.load(tmp_path / 'anss_anchors.pth', weights_only=True)
    assert art['meta']['num_pool_images'] == 3 + 3 + 3 + 2


def test_missing_checkpoint_is_a_clear_error(assets, tmp_path):
    cfg = _cfg(assets, tmp_path, checkpoint=str(tmp_path / 'missing.pth'))
    with pytest.raises(FileNotFoundError, match='stage-1 checkpoint'):
        _train(cfg)
    cfg = _cfg(assets, tmp_path)
    cfg.load_from = None
    with pytest.raises(ValueError, match='needs the stage-1'):
        _train(cfg)


def test_checkpoint_without_text_encoder(assets, tmp_path):
    state = torch.load(assets['ckpt'], weights_only=True)['state_dict']
    bad = str(tmp_path / 'visual_only.pth')
    torch.save({'state_dict': {k: v for k, v in state.items()
                               if not k.startswith('text_encoder.')},
                'meta': {}}, bad)
    with pytest.raises(KeyError, match=r'text_encoder\.\* weights'):
        _train(_cfg(assets, tmp_path, checkpoint=bad))


def test_head_without_anchors_is_never_used(assets, tmp_path):
    with pytest.raises(RuntimeError, match='anchor'):
        _train(_cfg(assets, tmp_path, with_hook=False))


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
    _train(_cfg(assets, tmp_path / 'single', chunk_size=4096))
    cfg = _cfg(assets, tmp_path / 'dist')
    cfg.log_level = 'INFO'
    cfg.custom_imports = dict(imports=['vlltr_mm'],
                              allow_failed_imports=False)
    cfg_file = str(tmp_path / 'lgr.py')
    cfg.dump(cfg_file)
    log = _torchrun_train(cfg_file, tmp_path / 'dist')
    assert 'Distributed training: True' in log
    assert 'AnSS: computing anchors' in log and 'chose' in log
    single = torch.load(tmp_path / 'single' / 'anss_anchors.pth',
                        weights_only=True)
    double = torch.load(tmp_path / 'dist' / 'anss_anchors.pth',
                        weights_only=True)
    assert torch.equal(single['indices'], double['indices'])
    torch.testing.assert_close(single['scores'], double['scores'])
    torch.testing.assert_close(single['anchors'], double['anchors'])
    mask = single['mask']
    ckpt = torch.load(tmp_path / 'dist' / 'epoch_1.pth', weights_only=True)
    torch.testing.assert_close(ckpt['state_dict']['head.anchors'][mask],
                               single['anchors'][mask])
    # second run: rank 0 reuses the artifact and broadcasts it; the hook
    # checks that every rank ends up with the same anchors
    log = _torchrun_train(cfg_file, tmp_path / 'dist')
    assert 'AnSS: reusing' in log and 'identical on all 2 ranks' in log


def test_sentence_embedding_builds_no_autograd_graph(assets):
    """Embedding the corpus must not keep activations for backward."""
    corpus = TASK_UTILS.build(
        dict(_corpus(assets), class_names=['a', 'b', 'c', 'd', 'e', 'f']))
    feats = embed_sentences(
        dict(type='OpenCLIPTextEncoder', model_name=MODEL), assets['ckpt'],
        corpus, torch.device('cpu'), 5)
    assert feats.shape[0] == corpus.num_sentences
    assert not feats.requires_grad and feats.grad_fn is None


def _log_text(runner):
    with open(osp.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        return f.read()


def _report_sections(text):
    """class index -> (kept rows, dropped rows, kinds by row) of a report."""
    sections, part = {}, None
    for line in text.splitlines():
        if line.startswith('## '):
            c = int(line[3:].split(':')[0])
            sections[c] = ([], [], {})
        elif line in ('### Kept', '### Dropped'):
            part = 0 if line == '### Kept' else 1
        elif line.startswith('| ') and line[2].isdigit():
            cells = [x.strip() for x in line.strip('|').split(' | ')]
            row = int(cells[3])
            sections[c][part].append(row)
            sections[c][2][row] = cells[2]
    return sections


def test_report_lists_kept_then_dropped_and_tool_renders_it(assets,
                                                           tmp_path):
    runner, _ = _train(_cfg(assets, tmp_path))
    art = torch.load(tmp_path / 'anss_anchors.pth', weights_only=True)
    report = tmp_path / 'anss_anchors_report.md'
    corpus = TASK_UTILS.build(
        dict(_corpus(assets), class_names=assets['names']))
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
    # another corpus does not fit the artifact
    other = TASK_UTILS.build(
        dict(_corpus(assets, 'other_json'), class_names=assets['names']))
    with pytest.raises(ValueError, match='not the one of the AnSS artifact'):
        check_corpus(art, other, 'artifact')


def test_key_covers_pool_pipeline(assets, tmp_path):
    _train(_cfg(assets, tmp_path))
    out = tmp_path / 'anss_anchors.pth'
    pipeline = [dict(type='LoadImageFromFile', to_float32=True),
                dict(type='PackInputs')]
    runner, hook = _train(_cfg(assets, tmp_path,
                               pool=dict(pipeline=pipeline)))
    assert hook.reused is False
    log = _log_text(runner)
    why = log[log.index('AnSS: computing anchors'):].splitlines()[0]
    # the pipeline and nothing else differs
    assert 'pool_pipeline_sha256' in why and why.count('!=') == 1
    meta = torch.load(out, weights_only=True)['meta']
    assert meta['pool_list_sha256'] == vlltr_mm.utils.file_sha256(
        osp.join(assets['data'], 'ImageNet_LT_val.txt'))


def test_key_covers_towers_selection_and_m(assets):
    corpus = TASK_UTILS.build(
        dict(_corpus(assets), class_names=assets['names']))
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
    pool = dict(dataset=dict(_dataset(assets, 'val'), ann_file=str(lst)))
    runner, _ = _train(_cfg(assets, tmp_path, pool=pool))
    assert (f"val_no3.txt) has no image of 1 classes ['{assets['names'][3]}']"
            in _log_text(runner))
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
        _train(_cfg(assets, tmp_path, checkpoint=bad))
    empty = tmp_path / 'cvlp_empty.pth'
    empty.write_bytes(b'')
    with pytest.raises(ValueError, match=r'cannot read .*cvlp_empty\.pth'):
        _train(_cfg(assets, tmp_path, checkpoint=str(empty)))


def test_num_anchors_is_the_heads(assets, tmp_path):
    # equal to the head's: accepted (old configs); different: refused
    _, hook = _train(_cfg(assets, tmp_path, num_anchors=NUM_ANCHORS,
                          selection='cutoff'))
    assert hook.reused is False
    with pytest.raises(ValueError, match="head's value is used"):
        _train(_cfg(assets, tmp_path, num_anchors=NUM_ANCHORS + 1))
