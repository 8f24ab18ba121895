import math
import os
import re
import time

import open_clip
import pytest
import timm
import torch
import torch.nn.functional as F

from vlltr_mm.demo import demo_clip as dc

try:
    EFFNET_FILE = dc.efficientnet_lite0_weights_file()
    MINILM_DIR = dc.minilm_dir()
except (ModuleNotFoundError, FileNotFoundError) as e:  # pragma: no cover
    pytestmark = pytest.mark.skip(reason=f'demo encoders missing: {e}')

SENTENCES = ['A sneaker is a low sports shoe with a rubber sole.',
             'a photo of a coat.', 'bag']


def package_weights():
    return torch.load(EFFNET_FILE, map_location='cpu', weights_only=True)


def same_pad(x, k, s):
    """TensorFlow 'SAME' padding: output side = ceil(input side / s)."""
    h, w = x.shape[-2:]
    ph = max((math.ceil(h / s) - 1) * s + k - h, 0)
    pw = max((math.ceil(w / s) - 1) * s + k - w, 0)
    return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])


def conv_bn(x, sd, conv, bn, stride=1, depthwise=False, act=True):
    w = sd[f'{conv}.weight']
    x = F.conv2d(same_pad(x, w.shape[-1], stride), w, stride=stride,
                 groups=x.shape[1] if depthwise else 1)
    x = F.batch_norm(x, sd[f'{bn}.running_mean'], sd[f'{bn}.running_var'],
                     sd[f'{bn}.weight'], sd[f'{bn}.bias'], False, 0., 1e-3)
    return F.relu6(x) if act else x


def reference_lite0(sd, x):
    """EfficientNet-Lite0 written from the package's own key names.

    Follows the TF Lite network the weights were converted from: ReLU6,
    BatchNorm eps 1e-3, SAME padding, stage strides 1-2-2-2-1-2-1 with
    1-2-2-3-3-4-1 blocks, residual when shape is kept, no SE.
    """
    x = conv_bn(x, sd, '_conv_stem', '_bn0', stride=2)
    strides = [s if r == 0 else 1 for s, n in zip(
        [1, 2, 2, 2, 1, 2, 1], [1, 2, 2, 3, 3, 4, 1]) for r in range(n)]
    for b, s in enumerate(strides):
        p, inp = f'_blocks.{b}.', x
        if f'{p}_expand_conv.weight' in sd:
            x = conv_bn(x, sd, f'{p}_expand_conv', f'{p}_bn0')
        x = conv_bn(x, sd, f'{p}_depthwise_conv', f'{p}_bn1', s, True)
        x = conv_bn(x, sd, f'{p}_project_conv', f'{p}_bn2', act=False)
        if s == 1 and x.shape == inp.shape:
            x = x + inp
    x = conv_bn(x, sd, '_conv_head', '_bn1')
    feats = x.mean((2, 3))
    return feats, F.linear(feats, sd['_fc.weight'], sd['_fc.bias'])


@pytest.fixture(scope='module')
def ckpt(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('demo') / 'demo_clip.pth')
    start = time.perf_counter()
    dc.build_demo_clip_checkpoint(out)
    return out, time.perf_counter() - start


@pytest.fixture(scope='module')
def model(ckpt):
    with dc.hf_offline():
        return open_clip.create_model(dc.DEMO_MODEL_NAME,
                                      pretrained=ckpt[0]).eval()


@pytest.fixture(scope='module')
def images():
    gen = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, dc.DEMO_IMAGE_SIZE, dc.DEMO_IMAGE_SIZE,
                      generator=gen) * 2 - 1


@pytest.fixture(scope='module')
def tokens():
    return open_clip.get_tokenizer(dc.DEMO_MODEL_NAME)(SENTENCES)


def test_config_and_tokenizer(tokens):
    assert dc.DEMO_MODEL_NAME in open_clip.list_models()
    cfg = open_clip.get_model_config(dc.DEMO_MODEL_NAME)
    assert cfg['text_cfg']['hf_model_name'] == MINILM_DIR
    assert cfg['embed_dim'] == dc.DEMO_EMBED_DIM
    assert tokens.dtype == torch.long
    assert tokens.shape == (3, dc.DEMO_CONTEXT_LENGTH)
    # BERT word pieces: [CLS] ... [SEP], zero padding, lower-cased.
    assert (tokens[:, 0] == 101).all()
    assert tokens[2].tolist()[:4] == [101, 4524, 102, 0]


def test_config_survives_rescans(tmp_path):
    # Registered from a temporary file that is gone by now: open_clip's
    # rescans (any add_model_config) must keep the entry, and registering
    # again is a no-op that still reports success.
    cfg = open_clip.get_model_config(dc.DEMO_MODEL_NAME)
    open_clip.add_model_config(tmp_path)
    assert open_clip.get_model_config(dc.DEMO_MODEL_NAME) == cfg
    assert dc.register_demo_clip_config()
    assert open_clip.get_model_config(dc.DEMO_MODEL_NAME) == cfg


def test_hf_offline_restores_environment(monkeypatch):
    import huggingface_hub.constants as constants
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
    monkeypatch.setenv('TRANSFORMERS_OFFLINE', '0')
    before = constants.HF_HUB_OFFLINE
    with dc.hf_offline():
        assert os.environ['HF_HUB_OFFLINE'] == '1'
        assert os.environ['TRANSFORMERS_OFFLINE'] == '1'
        assert constants.HF_HUB_OFFLINE is True
    assert 'HF_HUB_OFFLINE' not in os.environ
    assert os.environ['TRANSFORMERS_OFFLINE'] == '0'
    assert constants.HF_HUB_OFFLINE == before


def test_efficientnet_mapping_matches_package_network(model, images):
    sd = package_weights()
    ref_feats, ref_logits = reference_lite0(sd, images)
    # A timm model with classifier, filled by the in-order mapping, gives
    # the package network's ImageNet logits.
    full = timm.create_model(dc.DEMO_TIMM_MODEL).eval()
    dc.load_efficientnet_lite0(full)
    with torch.no_grad():
        logits = full(images)
        trunk_feats = model.visual.trunk(images)
    torch.testing.assert_close(logits, ref_logits, atol=1e-4, rtol=1e-4)
    # The tower's trunk (no classifier) reproduces the pooled features.
    torch.testing.assert_close(trunk_feats, ref_feats, atol=1e-5,
                               rtol=1e-4)
    assert trunk_feats.shape == (2, 1280)
    with torch.no_grad():
        emb = model.encode_image(images)
    torch.testing.assert_close(
        emb, trunk_feats @ model.visual.head.proj.weight.T)


def test_mapping_fails_loudly():
    sd = package_weights()
    dst = timm.create_model(dc.DEMO_TIMM_MODEL, num_classes=0).state_dict()
    keys = list(sd)
    # Two neighbours of different shapes swapped in order.
    swapped = {k: sd[k] for k in keys[:6] + [keys[7], keys[6]] + keys[8:]}
    with pytest.raises(ValueError, match=r'key #6 does not line up: '
                       r'package _blocks\.0\._bn1\.weight'):
        dc.map_efficientnet_lite0_state_dict(swapped, dst)
    missing = {k: sd[k] for k in keys[1:]}
    with pytest.raises(ValueError, match='have 293 tensors but the timm '
                       'model has 294'):
        dc.map_efficientnet_lite0_state_dict(missing, dst)
    mapped = dc.map_efficientnet_lite0_state_dict(sd, dst)
    assert list(mapped) == list(dst)
    assert mapped['conv_stem.weight'] is sd['_conv_stem.weight']


def test_minilm_tower_matches_transformers(model, tokens):
    from transformers import AutoModel
    with dc.hf_offline():
        bert = AutoModel.from_pretrained(MINILM_DIR).eval()
    mask = (tokens != 0).long()
    with torch.no_grad():
        hidden = bert(input_ids=tokens, attention_mask=mask)[0]
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, True)
        emb = model.encode_text(tokens)
    torch.testing.assert_close(emb, pooled @ model.text.proj.weight.T,
                               atol=1e-5, rtol=1e-5)
    assert emb.shape == (3, dc.DEMO_EMBED_DIM)


def test_build_is_quiet(capfd):
    # Expected leftovers (the BERT pooler, the random towers open_clip
    # creates before our loaders run) are not reported on every build.
    dc.build_demo_clip_model(seed=0)
    out = ''.join(capfd.readouterr())
    for noise in ('LOAD REPORT', 'initialized partially',
                  'initialized randomly', 'Loading weights'):
        assert noise not in out


def test_minilm_mismatch_is_an_error(model, tmp_path):
    from safetensors.torch import load_file, save_file
    src = load_file(os.path.join(MINILM_DIR, 'model.safetensors'))
    assert {k for k in src if k.startswith('pooler.')} == {
        'pooler.dense.weight', 'pooler.dense.bias'}
    bad = dict(src)
    del bad['encoder.layer.0.output.dense.bias']
    bad['encoder.extra.weight'] = torch.zeros(2)
    bad['embeddings.LayerNorm.weight'] = bad[
        'embeddings.LayerNorm.weight'].double()
    save_file(bad, str(tmp_path / 'model.safetensors'))
    with pytest.raises(RuntimeError, match=(
            rf'MiniLM weights {re.escape(str(tmp_path))}/model\.safetensors '
            r'do not fit the '
            r'demo text tower: missing keys \(1\): encoder\.layer\.0\.'
            r'output\.dense\.bias; unexpected keys \(1\): encoder\.extra'
            r'\.weight; shape / dtype mismatches \(1\): embeddings\.'
            r'LayerNorm\.weight: checkpoint torch\.float64 vs model '
            r'torch\.float32')):
        dc.load_minilm(model.text, str(tmp_path))


def test_checkpoint_reloads_identically(ckpt, model, images, tokens):
    path, seconds = ckpt
    assert seconds < 20
    fresh = dc.build_demo_clip_model(seed=0)
    saved = torch.load(path, map_location='cpu', weights_only=True)
    assert list(saved) == list(fresh.state_dict())
    for key, value in fresh.state_dict().items():
        assert torch.equal(saved[key], value), key
    with torch.no_grad():
        assert torch.equal(model.encode_image(images),
                           fresh.encode_image(images))
        assert torch.equal(model.encode_text(tokens),
                           fresh.encode_text(tokens))
    # Projections: seeded N(0, 1 / d_in), the same for every build.
    proj = saved['visual.head.proj.weight']
    assert proj.shape == (dc.DEMO_EMBED_DIM, 1280)
    assert abs(proj.std().item() * math.sqrt(1280) - 1) < 0.02
    assert saved['text.proj.weight'].shape == (dc.DEMO_EMBED_DIM, 384)
    assert saved['logit_scale'].item() == pytest.approx(math.log(1 / .07))


def test_towers_load_checkpoint(ckpt, model, images, tokens):
    from vlltr_mm.models.backbones import OpenCLIPVisual
    from vlltr_mm.models.necks import OpenCLIPTextEncoder
    from vlltr_mm.models.open_clip_adapter import build_open_clip

    # Our generic loader reads the file (one build shared by both towers).
    clip_model = build_open_clip(dc.DEMO_MODEL_NAME, ckpt[0])
    visual = OpenCLIPVisual(dc.DEMO_MODEL_NAME, pretrained=ckpt[0],
                            clip_model=clip_model).eval()
    text = OpenCLIPTextEncoder(dc.DEMO_MODEL_NAME, pretrained=ckpt[0],
                               clip_model=clip_model).eval()
    with torch.no_grad():
        assert torch.equal(visual(images)[0], model.encode_image(images))
        assert torch.equal(text(tokens), model.encode_text(tokens))
    assert visual.embed_dim == text.embed_dim == dc.DEMO_EMBED_DIM


def test_checkpoint_skip_and_rebuild(ckpt, tmp_path):
    path = ckpt[0]
    mtime = os.stat(path).st_mtime_ns
    assert dc.build_demo_clip_checkpoint(path) == path
    assert os.stat(path).st_mtime_ns == mtime
    # A damaged copy (sha256 mismatch) or another seed is rebuilt.
    copy = str(tmp_path / 'copy.pth')
    with open(path, 'rb') as src, open(copy, 'wb') as dst:
        dst.write(src.read()[:-1] + b'\0')
    with open(path + '.meta.json') as src, \
            open(copy + '.meta.json', 'w') as dst:
        dst.write(src.read())
    dc.build_demo_clip_checkpoint(copy)
    with open(path, 'rb') as a, open(copy, 'rb') as b:
        assert a.read() == b.read()
    dc.build_demo_clip_checkpoint(copy, seed=1)
    other = torch.load(copy, map_location='cpu', weights_only=True)
    saved = torch.load(path, map_location='cpu', weights_only=True)
    assert not torch.equal(other['text.proj.weight'],
                           saved['text.proj.weight'])
    assert torch.equal(other['visual.trunk.conv_stem.weight'],
                       saved['visual.trunk.conv_stem.weight'])


def test_speed_options_keep_the_numbers(ckpt, model, images, tokens):
    """channels_last images and trimmed padding give the towers' outputs
    and gradients up to float rounding (the demo configs switch both on)."""
    from vlltr_mm.models.backbones import OpenCLIPVisual
    from vlltr_mm.models.necks import OpenCLIPTextEncoder
    from vlltr_mm.models.open_clip_adapter import build_open_clip

    clip_model = build_open_clip(dc.DEMO_MODEL_NAME, ckpt[0])
    plain = OpenCLIPVisual(dc.DEMO_MODEL_NAME, clip_model=clip_model)
    fast = OpenCLIPVisual(dc.DEMO_MODEL_NAME, clip_model=clip_model,
                          channels_last=True)
    outs, grads = [], []
    for tower in (plain, fast):
        tower.eval()
        tower.zero_grad()
        out = tower(images)[0]
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append(torch.cat([p.grad.flatten() for p in
                                tower.parameters() if p.grad is not None]))
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-4, atol=1e-5)
    gap = (grads[1] - grads[0]).norm() / grads[0].norm()
    assert gap < 1e-4, gap

    text = OpenCLIPTextEncoder(dc.DEMO_MODEL_NAME, clip_model=clip_model,
                               trim_padding=True).eval()
    with torch.no_grad():
        full = model.encode_text(tokens)
        trimmed = text(tokens)
    # The longest sentence decides the width; the rest is padding.
    width = int((tokens != 0).any(0).nonzero().max()) + 1
    assert width < tokens.shape[1]
    torch.testing.assert_close(trimmed, full, rtol=1e-5, atol=1e-6)


def test_trim_padding_needs_a_hugging_face_tower():
    from vlltr_mm.models.necks import OpenCLIPTextEncoder
    with pytest.raises(ValueError, match='trim_padding needs a Hugging Face'):
        OpenCLIPTextEncoder('vlltr-tiny-rn', trim_padding=True)
