"""CVLP model: losses, teacher, zero-shot predict, DDP equivalence."""
import copy
import json
import os
import os.path as osp
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import vlltr_mm  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

CLASSES = ['cat', 'dog', 'bird', 'fish']


def cvlp_cfg(cache_dir, distill=True, model_name='vlltr-tiny-vit',
             classes=CLASSES):
    cfg = dict(
        type='CVLP',
        backbone=dict(type='OpenCLIPVisual', model_name=model_name),
        text_encoder=dict(type='OpenCLIPTextEncoder', model_name=model_name),
        corpus=dict(
            type='ClassTextCorpus',
            class_names=list(classes),
            templates='simple',
            cache_dir=str(cache_dir)),
        ccl_loss=dict(type='ClassWiseContrastiveLoss', label_smoothing=0.1),
        distill_loss=dict(type='CLIPDistillationLoss') if distill else None,
        loss_lambda=0.5 if distill else 1.0,
        teacher=dict(cache_dir=str(cache_dir)),
        data_preprocessor=dict(type='ClassTextDataPreprocessor'))
    return cfg


def make_batch(model, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.tensor([0, 0, 1, 2, 2, 2, 3, 1])[:n]
    idx = torch.as_tensor(
        model.corpus.sample_indices(labels.numpy(), g)).long()
    texts = model.corpus.get_tokens(idx.numpy())
    images = torch.randn(n, 3, 32, 32, generator=g)
    samples = [DataSample().set_gt_label(int(y)) for y in labels]
    return images, texts, idx, samples


def total_loss(losses):
    return sum(v for k, v in losses.items() if 'loss' in k)


def test_loss_keys_and_teacher_isolation(tmp_path):
    torch.manual_seed(0)
    model = MODELS.build(cvlp_cfg(tmp_path))
    images, texts, idx, samples = make_batch(model)
    losses = model(images, samples, mode='loss', texts=texts,
                   text_indices=idx)
    assert set(losses) == {'loss_ccl', 'loss_distill', 'logit_scale'}
    assert all(torch.isfinite(v) for v in losses.values())

    # The teacher is outside the module tree: not a parameter, not saved.
    teacher_params = list(model.teacher.visual.parameters())
    own = {id(p) for p in model.parameters()}
    assert not any(id(p) in own for p in teacher_params)
    assert not any(k.startswith('teacher') for k in model.state_dict())
    assert all(not p.requires_grad for p in teacher_params)

    # One optimizer step: the student moves, the teacher does not.
    # The optimizer exactly as the shipped CVLP recipe builds it.
    optim_cfg = Config.fromfile(
        osp.join(ROOT, 'configs/vlltr/cvlp_r50_imagenet-lt.py')).optim_wrapper
    optim_cfg.optimizer.lr = 1e-2
    wrapper = build_optim_wrapper(model, optim_cfg)
    group_ids = {
        id(p)
        for g in wrapper.optimizer.param_groups for p in g['params']
    }
    assert not any(id(p) in group_ids for p in teacher_params)
    # The 0-dim logit scale is weight-decayed, as the authors' rule
    # (no decay iff 1-D or '*.bias') does.
    scale_groups = [
        g for g in wrapper.optimizer.param_groups
        if any(p is model.logit_scale for p in g['params'])
    ]
    assert len(scale_groups) == 1
    assert scale_groups[0]['weight_decay'] == optim_cfg.optimizer.weight_decay

    before_teacher = copy.deepcopy(model.teacher.visual.state_dict())
    before_student = copy.deepcopy(model.backbone.state_dict())
    wrapper.update_params(total_loss(losses))
    for k, v in model.teacher.visual.state_dict().items():
        assert torch.equal(v, before_teacher[k])
    assert any(not torch.equal(v, before_student[k])
               for k, v in model.backbone.state_dict().items())
    assert all(p.grad is None for p in teacher_params)


def test_losses_are_float32_under_bf16_autocast(tmp_path):
    """The towers run in bf16, the CVLP losses in float32 (Eqs. 2-3)."""
    torch.manual_seed(0)
    model = MODELS.build(cvlp_cfg(tmp_path))
    images, texts, idx, samples = make_batch(model)
    with torch.autocast('cpu', torch.bfloat16):
        feats = model.extract_image_feat(images)
        losses = model(images, samples, mode='loss', texts=texts,
                       text_indices=idx)
    assert feats.dtype == torch.bfloat16
    for key in ('loss_ccl', 'loss_distill'):
        assert losses[key].dtype == torch.float32, key
        assert torch.isfinite(losses[key])
    total_loss(losses).backward()
    assert model.logit_scale.grad.dtype == torch.float32
    assert all(torch.isfinite(p.grad).all() for p in model.parameters()
               if p.grad is not None)


def test_teacher_text_cache_keys(tmp_path):
    torch.manual_seed(0)
    model = MODELS.build(cvlp_cfg(tmp_path))
    images, texts, idx, samples = make_batch(model)
    model(images, samples, mode='loss', texts=texts, text_indices=idx)
    path = model.teacher.cache_path(model.corpus)
    assert os.path.isfile(path)
    cache = torch.load(path)
    assert cache.shape[0] == model.corpus.num_sentences
    # The cached rows equal the teacher's text tower on the same tokens.
    direct = model.teacher._encode_text(texts)
    torch.testing.assert_close(cache[idx], direct, rtol=1e-5, atol=1e-6)

    # Another corpus -> another key; other teacher weights -> another key.
    other = MODELS.build(cvlp_cfg(tmp_path, classes=CLASSES[::-1]))
    assert other.teacher.cache_path(other.corpus) != path
    torch.manual_seed(1)
    reinit = MODELS.build(cvlp_cfg(tmp_path))
    assert reinit.teacher.cache_path(reinit.corpus) != path

    # A truncated cache file is rebuilt, not trusted.
    with open(path, 'r+b') as f:
        f.truncate(10)
    model.teacher._text_cache = None
    rebuilt = model.teacher.text_cache(model.corpus, torch.device('cpu'))
    torch.testing.assert_close(rebuilt, cache)


@pytest.mark.parametrize('which', ['prompts', 'all'])
def test_zero_shot_predict(tmp_path, which):
    torch.manual_seed(0)
    desc = tmp_path / 'desc.json'
    desc.write_text(json.dumps({
        name: f'The {name} is an animal. A {name} has a tail and fur.'
        for name in CLASSES[:3]
    }))
    cfg = cvlp_cfg(tmp_path, distill=False)
    cfg['corpus']['json_file'] = str(desc)
    cfg['prototype_sentences'] = which
    model = MODELS.build(cfg)
    model.eval()
    images = torch.randn(3, 3, 32, 32)
    out = model(images, None, mode='predict')
    assert len(out) == 3
    scores = torch.stack([o.pred_score for o in out])
    assert scores.shape == (3, len(CLASSES))
    torch.testing.assert_close(scores.sum(-1), torch.ones(3))
    # Equal to cosine similarity with the mean prompt embedding per class.
    corpus = model.corpus
    with torch.no_grad():
        protos = []
        for c in range(corpus.num_classes):
            rows = np.arange(corpus.class_offsets[c],
                             corpus.class_offsets[c + 1])
            if which == 'prompts':
                rows = rows[corpus.is_prompt[rows]]
            t = model.text_encoder(corpus.get_tokens(rows))
            protos.append(torch.nn.functional.normalize(
                torch.nn.functional.normalize(t, dim=-1).mean(0), dim=0))
        img = torch.nn.functional.normalize(model.backbone(images)[-1], dim=-1)
        expected = (model.scale() * img @ torch.stack(protos).t()).softmax(-1)
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-6)


def test_invalid_arguments(tmp_path):
    cfg = cvlp_cfg(tmp_path, distill=False)
    cfg['loss_lambda'] = 0.5
    with pytest.raises(ValueError, match='loss_lambda must be 1.0'):
        MODELS.build(cfg)
    model = MODELS.build(cvlp_cfg(tmp_path, distill=False))
    images, texts, idx, samples = make_batch(model)
    with pytest.raises(ValueError, match='ClassTextDataset'):
        model(images, samples, mode='loss')


# ---------------------------------------------------------------------------
# Two gloo processes with half a batch each == one process with the batch.


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _grads_and_loss(model, images, texts, idx, samples):
    losses = model(images, samples, mode='loss', texts=texts,
                   text_indices=idx)
    loss = total_loss(losses)
    loss.backward()
    return loss.detach()


def _ddp_worker(rank, world, port, cfg, state, batch, out_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world)
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.load_state_dict(state)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    images, texts, idx, labels = batch
    samples = [DataSample().set_gt_label(int(y)) for y in labels]
    half = len(images) // world
    sl = slice(rank * half, (rank + 1) * half)
    losses = ddp(images[sl], samples[sl], mode='loss', texts=texts[sl],
                 text_indices=idx[sl])
    loss = total_loss(losses)
    loss.backward()
    # DDP averages gradients; the global loss is the mean of rank losses.
    gathered = [torch.zeros(()) for _ in range(world)]
    dist.all_gather(gathered, loss.detach())
    if rank == 0:
        grads = {
            n: p.grad.clone()
            for n, p in model.named_parameters() if p.grad is not None
        }
        torch.save(dict(loss=torch.stack(gathered).mean(), grads=grads),
                   os.path.join(out_dir, 'ddp.pt'))
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize('distill', [False, True])
def test_ddp_equals_single_process(tmp_path, distill):
    cfg = cvlp_cfg(tmp_path / 'cache', distill=distill)
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    state = copy.deepcopy(model.state_dict())
    batch = make_batch(model)
    loss = _grads_and_loss(model, *batch)
    labels = torch.cat([s.gt_label for s in batch[3]])
    batch = (*batch[:3], labels)
    ref = {
        n: p.grad.clone()
        for n, p in model.named_parameters() if p.grad is not None
    }

    mp.start_processes(
        _ddp_worker,
        args=(2, _free_port(), cfg, state, batch, str(tmp_path)),
        nprocs=2,
        start_method='spawn')
    out = torch.load(tmp_path / 'ddp.pt')
    torch.testing.assert_close(out['loss'], loss, rtol=0, atol=1e-5)
    assert set(out['grads']) == set(ref)
    for name, grad in ref.items():
        # Float32 sums in another order (two half batches, other thread
        # counts) differ by a few ulps: relative 1e-5 on gradients of up to
        # ~40 (positional embedding), far below a wrong scale or term.
        torch.testing.assert_close(
            out['grads'][name], grad, rtol=1e-5, atol=1e-5, msg=name)
