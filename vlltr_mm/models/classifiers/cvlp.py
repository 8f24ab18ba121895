"""Class-wise visual-linguistic pre-training (CVLP), VL-LTR stage 1."""
import math
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmpretrain.registry import MODELS, TASK_UTILS
from mmpretrain.structures import DataSample

from ..open_clip_adapter.factory import share_open_clip
from .clip_teacher import CLIPTeacher
from .strict_load import StrictLoadMixin


@MODELS.register_module()
class CVLP(StrictLoadMixin, BaseModel):
    """VL-LTR stage 1: class-wise contrastive image–text pre-training.

    Every image comes with one sentence drawn from its class (see
    ``ClassTextDataset``). Both are embedded (Eq. 1), and the model minimises
    ``L_pre = λ·L_ccl + (1 − λ)·L_dis`` (Eq. 8): the class-wise contrastive
    loss (Eq. 2) and the distillation from a frozen copy of the initial CLIP
    (Eq. 3). ``predict`` classifies zero-shot against per-class text
    prototypes, so validation during CVLP reports top-1 and
    many / medium / few accuracy. Loading weights outside a Runner refuses
    a state dict that lacks a tower (:class:`StrictLoadMixin`).

    Args:
        backbone (dict): Image tower config (``OpenCLIPVisual``).
        text_encoder (dict): Text tower config (``OpenCLIPTextEncoder``).
        corpus (dict): Class-text corpus config (``ClassTextCorpus``); used
            for the teacher's sentence-embedding cache and the zero-shot
            prototypes. The training data must use the same corpus.
        ccl_loss (dict): Class-wise contrastive loss config.
        distill_loss (dict, optional): Distillation loss config; None
            disables L_dis (then ``loss_lambda`` must be 1).
            Defaults to None.
        loss_lambda (float): λ of Eq. 8. Defaults to 0.5.
        teacher (dict, optional): ``CLIPTeacher`` options (``half``,
            ``cache_dir``, ``batch_size``). Defaults to None.
        logit_scale_init (float, optional): Initial 1/τ. None takes the
            loaded CLIP's own scale (≈100) as the authors do; random models
            fall back to 1/0.07. Defaults to None.
        logit_scale_max (float, optional): Clamp of 1/τ (CLIP uses 100);
            None leaves it unclamped, as the authors. Defaults to None.
        prototype_sentences (str): Sentences averaged into each class's
            zero-shot prototype: ``'prompts'`` (the templates, as zero-shot
            CLIP) or ``'all'``. Defaults to 'prompts'.
        prototype_batch_size (int): Sentences per text-encoder batch when
            building prototypes. Defaults to 256.
        data_preprocessor (dict, optional): Defaults to
            ``ClassTextDataPreprocessor``.
        init_cfg (dict, optional): Defaults to None.
    """

    def __init__(self,
                 backbone: dict,
                 text_encoder: dict,
                 corpus: dict,
                 ccl_loss: dict = dict(type='ClassWiseContrastiveLoss'),
                 distill_loss: Optional[dict] = None,
                 loss_lambda: float = 0.5,
                 teacher: Optional[dict] = None,
                 logit_scale_init: Optional[float] = None,
                 logit_scale_max: Optional[float] = None,
                 prototype_sentences: str = 'prompts',
                 prototype_batch_size: int = 256,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='ClassTextDataPreprocessor')
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if not 0.0 <= loss_lambda <= 1.0:
            raise ValueError(f'loss_lambda must be in [0, 1], '
                             f'got {loss_lambda}')
        if distill_loss is None and loss_lambda != 1.0:
            raise ValueError('distill_loss is None, so loss_lambda must be '
                             f'1.0 (got {loss_lambda})')
        if prototype_sentences not in ('prompts', 'all'):
            raise ValueError("prototype_sentences must be 'prompts' or "
                             f"'all', got {prototype_sentences!r}")

        if isinstance(backbone, dict) and isinstance(text_encoder, dict):
            # One open_clip model (one weights read) feeds both towers.
            backbone, text_encoder = share_open_clip(backbone, text_encoder)
        self.backbone = MODELS.build(backbone)
        self.text_encoder = MODELS.build(text_encoder)
        self.corpus = (
            TASK_UTILS.build(corpus) if isinstance(corpus, dict) else corpus)
        self.ccl_loss = MODELS.build(ccl_loss)
        self.distill_loss = (
            MODELS.build(distill_loss) if distill_loss is not None else None)
        self.loss_lambda = loss_lambda

        if logit_scale_init is None:
            log_scale = getattr(self.backbone, 'init_logit_scale', None)
            if log_scale is None:
                log_scale = math.log(1 / 0.07)
        else:
            log_scale = math.log(logit_scale_init)
        # Stored in log space like CLIP, so the checkpoint key
        # ``logit_scale`` means the same thing as in open_clip.
        self.logit_scale = torch.nn.Parameter(
            torch.tensor(float(log_scale)))
        self.logit_scale_max = logit_scale_max

        self.teacher = None
        if self.distill_loss is not None:
            # The teacher is the initial CLIP: a frozen copy of both towers
            # as just built (and loaded) from their source. A plain
            # attribute, not a submodule, so it stays out of the optimizer,
            # the state dict, DDP and ``model.to()``; a resumed run rebuilds
            # it the same way.
            object.__setattr__(
                self, 'teacher',
                CLIPTeacher(self.backbone, self.text_encoder, log_scale,
                            **(teacher or {})))

        self.prototype_sentences = prototype_sentences
        self.prototype_batch_size = prototype_batch_size
        self._prototypes = None

    # ------------------------------------------------------------------
    def scale(self) -> torch.Tensor:
        """1/τ: the exponentiated (and optionally clamped) logit scale."""
        log_scale = self.logit_scale
        if self.logit_scale_max is not None:
            log_scale = log_scale.clamp(max=math.log(self.logit_scale_max))
        return log_scale.exp()

    def extract_feat(self, inputs: torch.Tensor) -> tuple:
        """Image-tower outputs, as ``ImageClassifier.extract_feat`` (and
        MMPretrain's ``CLIP``) give them, for stock tools such as
        ``get_flops``.

        Args:
            inputs (Tensor): Images [B, 3, H, W].

        Returns:
            tuple[Tensor]: The backbone's outputs; the last is E^I [B, D].
        """
        return self.backbone(inputs)

    def extract_image_feat(self, images: torch.Tensor) -> torch.Tensor:
        """Image embeddings E^I [B, D] (raw, not normalised)."""
        return self.extract_feat(images)[-1]

    def extract_text_feat(self, texts: torch.Tensor) -> torch.Tensor:
        """Text embeddings E^T [B, D] (raw) from token ids [B, L]."""
        return self.text_encoder(texts)

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor',
                texts: Optional[torch.Tensor] = None,
                text_indices: Optional[torch.Tensor] = None):
        """Dispatch on ``mode`` like every MMPretrain model.

        Args:
            inputs (Tensor): Images [B, 3, H, W].
            data_samples (list[DataSample], optional): Labels.
            mode (str): ``'loss'``, ``'predict'`` or ``'tensor'``.
            texts (Tensor, optional): Token ids [B, L] of one sentence per
                image (needed for ``'loss'``).
            text_indices (Tensor, optional): Corpus indices [B] of those
                sentences (for the teacher's text cache).
        """
        if mode == 'tensor':
            return self.extract_image_feat(inputs)
        if mode == 'loss':
            if texts is None:
                raise ValueError(
                    'CVLP needs one sentence per image: wrap the training '
                    'dataset in ClassTextDataset and use '
                    'ClassTextDataPreprocessor.')
            return self.loss(inputs, texts, data_samples, text_indices)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        raise RuntimeError(f'Invalid mode "{mode}".')

    def loss(self, images: torch.Tensor, texts: torch.Tensor,
             data_samples: List[DataSample],
             text_indices: Optional[torch.Tensor] = None
             ) -> Dict[str, torch.Tensor]:
        """L_pre (Eq. 8) on one batch; keys with 'loss' are summed."""
        self._prototypes = None  # text encoder is changing
        labels = torch.cat([s.gt_label for s in data_samples]).to(
            images.device)
        # The losses normalise in float32 with autocast off: normalising
        # here would round the directions to the autocast dtype first.
        img = self.extract_image_feat(images)
        txt = self.extract_text_feat(texts)
        scale = self.scale()
        losses = dict(
            loss_ccl=self.loss_lambda *
            self.ccl_loss(img, txt, labels, scale))
        if self.distill_loss is not None:
            t_img, t_txt, t_scale = self.teacher.embed(
                images, texts, text_indices, self.corpus)
            losses['loss_distill'] = (1 - self.loss_lambda) * \
                self.distill_loss(img, txt, t_img, t_txt, scale, t_scale)
        losses['logit_scale'] = scale.detach()
        return losses

    # ------------------------------------------------------------------
    @torch.no_grad()
    def class_prototypes(self) -> torch.Tensor:
        """Normalised per-class text prototypes [C, D] (cached until the
        next training step)."""
        if self._prototypes is not None:
            return self._prototypes
        corpus = self.corpus
        labels = torch.as_tensor(corpus.sentence_labels)
        ids = torch.arange(len(labels))
        if self.prototype_sentences == 'prompts':
            is_prompt = torch.as_tensor(corpus.is_prompt)
            has_prompt = torch.zeros(corpus.num_classes, dtype=torch.bool)
            has_prompt[labels[is_prompt]] = True
            # Classes without prompts (templates off) use all sentences.
            keep = is_prompt | ~has_prompt[labels]
            ids, labels = ids[keep], labels[keep]
        device = self.logit_scale.device
        was_training = self.text_encoder.training
        self.text_encoder.eval()
        sums = torch.zeros(
            corpus.num_classes, self.backbone.embed_dim, device=device)
        for start in range(0, len(ids), self.prototype_batch_size):
            stop = start + self.prototype_batch_size
            tokens = corpus.get_tokens(ids[start:stop].numpy()).to(device)
            feats = F.normalize(self.extract_text_feat(tokens).float(), dim=-1)
            sums.index_add_(0, labels[start:stop].to(device), feats)
        self.text_encoder.train(was_training)
        self._prototypes = F.normalize(sums, dim=-1)
        return self._prototypes

    def predict(self,
                images: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None
                ) -> List[DataSample]:
        """Zero-shot classification against the class prototypes."""
        img = F.normalize(self.extract_image_feat(images).float(), dim=-1)
        logits = self.scale().float() * img @ self.class_prototypes().t()
        scores = logits.softmax(dim=-1)
        labels = scores.argmax(dim=-1, keepdim=True).detach()
        if data_samples is None:
            data_samples = [DataSample() for _ in range(images.size(0))]
        out = []
        for sample, score, label in zip(data_samples, scores, labels):
            out.append(sample.set_pred_score(score).set_pred_label(label))
        return out

    def train(self, mode: bool = True):
        self._prototypes = None
        return super().train(mode)
