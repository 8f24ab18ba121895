"""Tests of the open_clip image backbone, text neck and weight loading."""
import json
import logging
import math

import open_clip
import pytest
import torch
from mmengine.config import ConfigDict
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from open_clip.transformer import QuickGELU
from safetensors.torch import save_file
from torch.nn.modules.batchnorm import _BatchNorm

from vlltr_mm.models.backbones import OpenCLIPVisual
from vlltr_mm.models.necks import OpenCLIPTextEncoder
from vlltr_mm.models.open_clip_adapter import (
    build_open_clip,
    register_open_clip_configs,
    share_open_clip,
)

TINY = ('vlltr-tiny-rn', 'vlltr-tiny-vit')
TINY_TEXT = dict(context_length=77, vocab_size=49408, width=16, heads=2,
                 layers=1)


def _reference(name, seed=0, **kwargs):
    """A plain open_clip CLIP with every weight and BN statistic random."""
    torch.manual_seed(seed)
    model = open_clip.create_model(name, **kwargs)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
        for module in model.modules():
            if isinstance(module, _BatchNorm):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 1.5)
        model.logit_scale.fill_(math.log(50.0))
    return model.eval()


def _inputs():
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(3, 3, 32, 32, generator=gen)
    tokens = open_clip.tokenize(
        ['a photo of a cat.', 'a dog', 'tiny models on a CPU'])
    return images, tokens


def _towers(name, path, **kwargs):
    visual = OpenCLIPVisual(name, pretrained=str(path), **kwargs).eval()
    text = OpenCLIPTextEncoder(name, pretrained=str(path), **kwargs).eval()
    return visual, text


def _assert_reproduces(ref, visual, text):
    images, tokens = _inputs()
    with torch.no_grad():
        assert torch.equal(visual(images)[0], ref.encode_image(images))
        assert torch.equal(text(tokens), ref.encode_text(tokens))
    assert visual.init_logit_scale == float(ref.logit_scale)
    assert text.init_logit_scale == float(ref.logit_scale)


def test_tiny_configs_registered(tmp_path):
    assert set(TINY) <= set(open_clip.list_models())
    assert set(TINY) <= set(register_open_clip_configs())
    assert register_open_clip_configs(tmp_path) == []
    with pytest.raises(FileNotFoundError, match='no_such_dir'):
        register_open_clip_configs(tmp_path / 'no_such_dir')


@pytest.mark.parametrize('name', TINY)
def test_state_dict_reproduces_open_clip(tmp_path, name):
    ref = _reference(name)
    path = tmp_path / 'clip.pth'
    torch.save(ref.state_dict(), path)
    visual, text = _towers(name, path)
    _assert_reproduces(ref, visual, text)
    # Each module keeps only its own tower.
    assert all(k.startswith('visual.') for k in visual.state_dict())
    assert all(k.startswith('text.') for k in text.state_dict())
    assert visual.embed_dim == text.embed_dim == 16
    assert visual.image_size == (32, 32) and text.context_length == 77


def test_openai_torchscript_archive(tmp_path):
    # OpenAI's archives are traced CLIPs trained with QuickGELU, with fp16
    # weights and three non-weight scalars in the state dict. Tracing one
    # method is enough: the archive keeps every submodule's weights.
    ref = _reference('vlltr-tiny-rn', force_quick_gelu=True)
    for key, value in (('input_resolution', 32), ('context_length', 77),
                       ('vocab_size', 49408)):
        if hasattr(ref, key):
            delattr(ref, key)
        ref.register_buffer(key, torch.tensor(value))
    _, tokens = _inputs()
    traced = torch.jit.trace_module(ref, dict(encode_text=(tokens, )))
    for half in (False, True):
        if half:
            traced.half()
            ref.half().float()
        path = tmp_path / f'RN-openai-{half}.pt'
        torch.jit.save(traced, str(path))
        visual, text = _towers('vlltr-tiny-rn', path)
        assert isinstance(text.text.transformer.resblocks[0].mlp.gelu,
                          QuickGELU)
        _assert_reproduces(ref, visual, text)
        assert all(p.dtype == torch.float32 for p in visual.parameters())

    # Forcing GELU shows that the automatic QuickGELU choice matters.
    gelu = OpenCLIPTextEncoder(
        'vlltr-tiny-rn', pretrained=str(path), quick_gelu=False).eval()
    with torch.no_grad():
        assert not torch.allclose(gelu(tokens), ref.encode_text(tokens))


@pytest.mark.parametrize('nest', ['state_dict', 'model'])
def test_nested_prefixed_checkpoint(tmp_path, nest):
    ref = _reference('vlltr-tiny-vit', seed=3)
    weights = {f'module.{k}': v for k, v in ref.state_dict().items()}
    path = tmp_path / 'ddp.pth'
    torch.save({nest: weights, 'meta': {'epoch': 3}}, path)
    _assert_reproduces(ref, *_towers('vlltr-tiny-vit', path))


def test_custom_text_layout_and_safetensors(tmp_path):
    # Our own CustomTextCLIP layout ('text.*' keys), as safetensors.
    ref = _reference('vlltr-tiny-rn', seed=4, force_custom_text=True)
    path = tmp_path / 'clip.safetensors'
    save_file(ref.state_dict(), str(path))
    _assert_reproduces(ref, *_towers('vlltr-tiny-rn', path))


def test_loading_errors(tmp_path):
    missing = tmp_path / 'nowhere' / 'RN50.pt'
    with pytest.raises(FileNotFoundError, match=str(missing)):
        OpenCLIPVisual('vlltr-tiny-rn', pretrained=str(missing))
    with pytest.raises(ValueError, match='neither a file nor a pretrained'):
        OpenCLIPTextEncoder('vlltr-tiny-rn', pretrained='no-such-tag')
    with pytest.raises(ValueError, match=r"its tags: \[.*'openai'"):
        OpenCLIPVisual('RN50', pretrained='no-such-tag')

    vit_path = tmp_path / 'vit.pth'
    torch.save(_reference('vlltr-tiny-vit').state_dict(), vit_path)
    with pytest.raises(RuntimeError, match=r'(?s)missing keys \(\d+\): .*'
                       r'visual\.attnpool.*unexpected keys \(\d+\): .*'
                       r'visual\.class_embedding'):
        OpenCLIPVisual('vlltr-tiny-rn', pretrained=str(vit_path))

    weights = _reference('vlltr-tiny-rn').state_dict()
    weights['text_projection'] = torch.zeros(16, 8)
    bad_shape = tmp_path / 'shape.pth'
    torch.save(weights, bad_shape)
    with pytest.raises(RuntimeError, match=r'shape mismatches.*'
                       r'text\.text_projection: checkpoint \(16, 8\) vs '
                       r'model \(16, 16\)'):
        OpenCLIPTextEncoder('vlltr-tiny-rn', pretrained=str(bad_shape))

    not_weights = tmp_path / 'list.pth'
    torch.save([1, 2, 3], not_weights)
    with pytest.raises(TypeError, match='holds no state dict'):
        OpenCLIPVisual('vlltr-tiny-rn', pretrained=str(not_weights))


def _train_step(module, frozen_names):
    """One SGD step; exactly the ``frozen_names`` parameters stay put."""
    with torch.no_grad():
        # CLIP's ResNet init zeroes each block's last BN, cutting gradients.
        for param in module.parameters():
            param.add_(0.05 * torch.randn_like(param))
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    module.train()
    out = module(_inputs()[0])[0]
    out.square().sum().backward()
    params = [p for p in module.parameters() if p.requires_grad]
    torch.optim.SGD(params, lr=0.1).step()
    after = dict(module.named_parameters())
    for name, old in before.items():
        same = torch.equal(old, after[name])
        assert same == (name in frozen_names), name


def test_random_build_does_not_claim_random_weights(caplog):
    # open_clip warns "initialized randomly" for pretrained=None, but the
    # weights of such a tower come from a checkpoint loaded later
    # (RunSummaryHook warns when none is). Other root warnings still pass.
    with caplog.at_level(logging.INFO):
        OpenCLIPVisual('vlltr-tiny-rn')
        logging.getLogger().warning('another open_clip warning')
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if 'initialized randomly' in m]
    assert 'another open_clip warning' in messages
    assert [m for m in messages if 'vlltr-tiny-rn' in m], messages


def test_frozen_towers():
    visual = OpenCLIPVisual('vlltr-tiny-rn', frozen=True).train()
    assert not any(p.requires_grad for p in visual.parameters())
    assert not any(m.training for m in visual.modules())
    text = OpenCLIPTextEncoder('vlltr-tiny-vit', frozen=True).train()
    assert not any(p.requires_grad for p in text.parameters())
    assert not any(m.training for m in text.modules())
    # Frozen weights stay put through a step of a model around them.
    head = torch.nn.Linear(16, 2)
    before = [p.clone() for p in visual.parameters()]
    loss = head(visual(_inputs()[0])[0]).sum()
    loss.backward()
    torch.optim.SGD(list(visual.parameters()) + list(head.parameters()),
                    lr=0.1).step()
    assert all(torch.equal(a, b) for a, b in zip(before, visual.parameters()))


def test_frozen_stages_resnet():
    visual = OpenCLIPVisual('vlltr-tiny-rn', frozen_stages=2).train()
    frozen = ('visual.conv', 'visual.bn', 'visual.layer1', 'visual.layer2')
    frozen_names = {n for n, _ in visual.named_parameters()
                    if n.startswith(frozen)}
    assert frozen_names and all(
        p.requires_grad == (n not in frozen_names)
        for n, p in visual.named_parameters())
    assert not visual.visual.bn1.training
    assert not visual.visual.layer2[0].bn1.training
    assert visual.visual.layer3[0].bn1.training
    assert visual.visual.attnpool.training
    stats = visual.visual.layer1[0].bn1.running_mean.clone()
    _train_step(visual, frozen_names)
    assert torch.equal(stats, visual.visual.layer1[0].bn1.running_mean)


def test_frozen_stages_vit():
    visual = OpenCLIPVisual('vlltr-tiny-vit', frozen_stages=1).train()
    frozen_names = {
        n
        for n, _ in visual.named_parameters()
        if not n.startswith(('visual.ln_post', 'visual.proj'))
    }
    assert 'visual.transformer.resblocks.0.attn.in_proj_weight' in \
        frozen_names and 'visual.class_embedding' in frozen_names
    _train_step(visual, frozen_names)
    assert not visual.visual.transformer.resblocks[0].training
    assert visual.visual.ln_post.training
    embed_only = OpenCLIPVisual('vlltr-tiny-vit', frozen_stages=0)
    assert embed_only.visual.transformer.resblocks[0].attn.in_proj_weight \
        .requires_grad
    assert not embed_only.visual.positional_embedding.requires_grad
    with pytest.raises(ValueError, match=r'frozen_stages must be in'
                       r' \[-1, 1\]'):
        OpenCLIPVisual('vlltr-tiny-vit', frozen_stages=2)
    with pytest.raises(ValueError, match=r'\[-1, 4\].*got 5'):
        OpenCLIPVisual('vlltr-tiny-rn', frozen_stages=5)


def test_norm_eval():
    visual = OpenCLIPVisual('vlltr-tiny-rn', norm_eval=True).train()
    bns = [m for m in visual.modules() if isinstance(m, _BatchNorm)]
    assert bns and not any(m.training for m in bns)
    assert visual.training and visual.visual.conv1.training
    assert all(p.requires_grad for p in visual.parameters())
    stats = [m.running_mean.clone() for m in bns]
    visual(_inputs()[0])
    assert all(torch.equal(a, m.running_mean) for a, m in zip(stats, bns))
    plain = OpenCLIPVisual('vlltr-tiny-rn').train()
    assert all(m.training for m in plain.modules())


@pytest.fixture
def timm_tower_name(tmp_path):
    cfg = dict(
        embed_dim=16,
        vision_cfg=dict(timm_model_name='test_resnet', timm_pool='avg',
                        timm_proj='linear', image_size=32),
        text_cfg=TINY_TEXT)
    (tmp_path / 'vlltr-test-timm.json').write_text(json.dumps(cfg))
    assert register_open_clip_configs(tmp_path) == ['vlltr-test-timm']
    return 'vlltr-test-timm'


def test_timm_tower(timm_tower_name):
    visual = OpenCLIPVisual(timm_tower_name, norm_eval=True).train()
    assert visual(_inputs()[0])[0].shape == (3, 16)
    assert visual.embed_dim == 16 and visual.image_size == (32, 32)
    assert not any(m.training for m in visual.modules()
                   if isinstance(m, _BatchNorm))
    # timm's own init_weights must not run over the built weights.
    before = {k: v.clone() for k, v in visual.state_dict().items()}
    visual.init_weights()
    assert all(torch.equal(v, visual.state_dict()[k])
               for k, v in before.items())
    with pytest.raises(NotImplementedError, match='TimmModel'):
        OpenCLIPVisual(timm_tower_name, frozen_stages=1)
    frozen = OpenCLIPVisual(timm_tower_name, frozen=True)
    assert not any(p.requires_grad for p in frozen.parameters())


def test_init_cfg_pretrained(tmp_path):
    source = OpenCLIPVisual('vlltr-tiny-rn')
    path = tmp_path / 'mm.pth'
    torch.save({'state_dict': {f'backbone.{k}': v
                               for k, v in source.state_dict().items()}},
               path)
    visual = OpenCLIPVisual(
        'vlltr-tiny-rn',
        init_cfg=dict(type='Pretrained', checkpoint=str(path),
                      prefix='backbone.'))
    assert not torch.equal(visual.visual.conv1.weight,
                           source.visual.conv1.weight)
    visual.init_weights()
    assert all(torch.equal(v, visual.state_dict()[k])
               for k, v in source.state_dict().items())


def test_share_open_clip(tmp_path):
    ref = _reference('vlltr-tiny-rn', seed=7)
    path = str(tmp_path / 'clip.pth')
    torch.save(ref.state_dict(), path)
    vis_cfg = ConfigDict(type='OpenCLIPVisual', model_name='vlltr-tiny-rn',
                         pretrained=path, norm_eval=True)
    txt_cfg = dict(type='OpenCLIPTextEncoder', model_name='vlltr-tiny-rn',
                   pretrained=path, frozen=True)
    vis_cfg, txt_cfg = share_open_clip(vis_cfg, txt_cfg)
    clip_model = vis_cfg['clip_model']
    assert txt_cfg['clip_model'] is clip_model
    visual, text = MODELS.build(vis_cfg).eval(), MODELS.build(txt_cfg)
    assert visual.visual is clip_model.visual
    assert text.text is clip_model.text
    # With no parameter needing gradients, torch's MultiheadAttention takes
    # its fused path (about 1e-6 apart), so compare like with like.
    _assert_reproduces(ref.requires_grad_(False), visual, text.eval())

    other = dict(txt_cfg, clip_model=None, pretrained=None)
    a, b = share_open_clip(dict(vis_cfg, clip_model=None), other)
    assert a['clip_model'] is None and b['clip_model'] is None


def test_text_encoder_token_checks():
    text = OpenCLIPTextEncoder('vlltr-tiny-rn')
    with pytest.raises(ValueError, match='length 77'):
        text(torch.zeros(2, 10, dtype=torch.long))
    with pytest.raises(ValueError, match=r'\[B, L\]'):
        text(torch.zeros(77, dtype=torch.long))


def test_quick_gelu_switch():
    model = build_open_clip('vlltr-tiny-vit', quick_gelu=True)
    assert isinstance(model.text.transformer.resblocks[0].mlp.gelu,
                      QuickGELU)
    model = build_open_clip('vlltr-tiny-vit')
    assert isinstance(model.text.transformer.resblocks[0].mlp.gelu,
                      torch.nn.GELU)


@pytest.mark.parametrize('name', TINY)
def test_in_image_classifier(tmp_path, name):
    ref = _reference(name, seed=5)
    path = str(tmp_path / 'clip.pth')
    torch.save(ref.state_dict(), path)
    model = MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(type='OpenCLIPVisual', model_name=name,
                          pretrained=path, norm_eval=True),
            head=dict(
                type='LinearClsHead',
                num_classes=3,
                in_channels=16,
                loss=dict(type='CrossEntropyLoss'))))
    model.init_weights()
    images, _ = _inputs()
    with torch.no_grad():
        assert torch.equal(
            model.backbone.eval()(images)[0], ref.encode_image(images))
    samples = [DataSample().set_gt_label(i) for i in (0, 2, 1)]
    model.train()
    losses = model(images, samples, mode='loss')
    assert torch.isfinite(losses['loss'])
    losses['loss'].backward()
    assert model.backbone.visual.attnpool.c_proj.weight.grad is not None \
        if name.endswith('rn') else model.backbone.visual.proj.grad is not None
    model.eval()
    preds = model(images, [DataSample() for _ in range(3)], mode='predict')
    assert len(preds) == 3 and preds[0].pred_score.shape == (3, )
    assert torch.allclose(preds[0].pred_score.sum(), torch.tensor(1.0))


@pytest.mark.parametrize('stages', [0, 1])
def test_text_frozen_stages(stages):
    enc = OpenCLIPTextEncoder('vlltr-tiny-vit', frozen_stages=stages)
    text = enc.text
    assert not text.token_embedding.weight.requires_grad
    assert not text.positional_embedding.requires_grad
    block = text.transformer.resblocks[0]
    assert all(p.requires_grad == (stages == 0) for p in block.parameters())
    assert all(p.requires_grad for p in text.ln_final.parameters())
    enc.train()
    assert block.training == (stages == 0)
    with pytest.raises(ValueError, match='frozen_stages must be in'):
        OpenCLIPTextEncoder('vlltr-tiny-vit', frozen_stages=5)


def test_text_frozen_stages_hf_tower():
    from vlltr_mm.demo.demo_clip import (
        DEMO_MODEL_NAME,
        build_demo_clip_model,
    )
    model = build_demo_clip_model()
    enc = OpenCLIPTextEncoder(
        DEMO_MODEL_NAME, frozen_stages=5, clip_model=model)
    hf = enc.text.transformer
    assert not any(p.requires_grad for p in hf.embeddings.parameters())
    assert not any(p.requires_grad for p in hf.encoder.layer[4].parameters())
    assert all(p.requires_grad for p in hf.encoder.layer[5].parameters())
    assert all(p.requires_grad for p in enc.text.proj.parameters())
