"""Language-guided recognition (LGR) head of VL-LTR (paper §3.3, Eqs. 4-9).

The text branch attends from the image embedding over the frozen anchor
sentence embeddings of every class, without forming the keys ``K``
[C, M, D] or the gathered texts ``G`` [B, C, D] (:mod:`.lgr_attention`,
``docs/design.md``); the literal form
(:func:`.lgr_attention.direct_cosine`) is the tests' and benchmarks' reference.
"""
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmpretrain.evaluation.metrics import Accuracy
from mmpretrain.models.heads import ClsHead
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ..utils.class_prior import ClassPrior
from .lgr_anchors import LGRAnchorStore
from .lgr_attention import keyed_efficient_cosine


@MODELS.register_module()
class LGRHead(LGRAnchorStore, ClsHead):
    """Language-guided recognition head (VL-LTR, Eqs. 4-7 and 9).

    With image embedding ``E^I`` [B, D] and anchors ``E^T`` [C, M, D]:
    ``Q = Linear(LN(E^I))`` (Eq. 4), ``K = Linear(LN(E^T))``, ``V = E^T``
    (Eq. 5), ``G = softmax_M(Q K^T / sqrt(D)) V`` (Eq. 6),
    ``logits_text = s * cos(E^I, G)`` and ``logits_image = MLP(E^I)``
    (Eq. 7). Training minimises ``loss(logits_image) + loss(logits_text)``
    (Eq. 9), returned as ``loss_image`` and ``loss_text``.

    ``forward`` returns the fused class probabilities [B, C] (see
    ``alpha``); ``predict`` stores them as ``pred_score`` and keeps the
    branch probabilities as ``pred_score_image`` / ``pred_score_text`` and
    the raw ``argmax(logits_image + logits_text)``, before any post-hoc
    adjustment, as ``pred_label_logit_sum`` (``LongTailAccuracy`` reads it).

    Anchors are persistent, non-trainable buffers (``anchors`` [C, M, D],
    raw un-normalised text embeddings; ``anchor_mask`` [C, M], True =
    valid; ``anchors_set``), filled by :meth:`set_anchors` and saved in
    checkpoints. Attention parameters are named ``attn_*`` so that one
    ``paramwise_cfg`` key (``'head.attn_'``) can give them their own lr.
    The key LayerNorm's bias and the key bias add the same number to every
    key score of an image, which the softmax over M cancels: their gradient
    is zero in both forms, as in the authors' model.

    Args:
        num_classes (int): Number of classes C.
        in_channels (int): Embedding size D of image and text.
        num_anchors (int): Anchor sentences per class M. Defaults to 64.
        mlp_ratio (int): Hidden width of the image-branch MLP in units of
            D. Defaults to 4.
        logit_scale (float): Initial multiplier ``s`` of the text-branch
            cosine; :meth:`set_anchors` usually overwrites it with the
            stage-1 value. Defaults to 100.0.
        learnable_scale (bool): Train ``log(s)``. Defaults to False.
        identity_init (bool): Initialise the query and key projections to
            the identity with zero bias, as the authors do. Defaults to True.
        qk_bias (bool): Give the query and key projections a bias. The
            authors' projections have none. Defaults to False.
        alpha (float): Image-branch weight of the fused probabilities
            ``alpha * P^I + (1 - alpha) * P^T``, in [0, 1]. 0.5 is Eq. 7
            (``P = P^I + P^T``) up to a factor 2, which changes no ranking;
            the authors infer with 0.2 on ImageNet-LT / Places-LT and 0.7
            on iNaturalist. Defaults to 0.5.
        posthoc_tau (float): Post-hoc logit adjustment (Menon et al., ICLR
            2021, Eq. 9), ``logits - tau * log(pi)``; 0 = none.
            Defaults to 0.0.
        posthoc_target (str): ``'image'``: adjust the image-branch logits
            (the MLP is the part trained as a plain classifier on the
            long-tailed data; the text branch scores fixed class
            sentences); ``'fused'``: the log fused probabilities.
            Defaults to ``'image'``.
        class_counts (Sequence[int], optional): Training counts for the
            prior ``pi``; None: set by ``ClassPriorHook``, then saved in the
            checkpoint. Defaults to None.
        class_chunk (int, optional): Classes per chunk in the efficient
            form; bounds temporary memory to O(B * class_chunk * M) (1024
            roughly halves the training peak at iNat size). None processes
            all classes at once. Defaults to None.
        detach_text_norm (bool): Divide ``G`` by its detached norm in
            ``cos(E^I, G)`` (Eq. 7): the same logits, no gradient through
            ``|G|``, as the authors' iNaturalist LGR models train
            (``LGR_*_v_detach_img_grad``, ``Block.forward`` in their
            ``models/finetune.py``). Defaults to False.
        loss (dict): Loss for each branch; soft targets (``gt_score`` from
            Mixup / CutMix) are passed to it as they are. Defaults to
            ``dict(type='CrossEntropyLoss', loss_weight=1.0)``.
        topk (int | tuple[int]): Top-k for ``cal_acc``. Defaults to (1, ).
        cal_acc (bool): Log training accuracy of the fused score (hard
            labels only). Defaults to False.
        init_cfg (dict, optional): Initialisation config. Defaults to the
            authors' truncated normal (std 0.02, bias 0) for Linear layers.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 num_anchors: int = 64,
                 mlp_ratio: int = 4,
                 logit_scale: float = 100.0,
                 learnable_scale: bool = False,
                 identity_init: bool = True,
                 qk_bias: bool = False,
                 alpha: float = 0.5,
                 posthoc_tau: float = 0.0,
                 posthoc_target: str = 'image',
                 class_counts: Optional[Sequence[int]] = None,
                 class_chunk: Optional[int] = None,
                 detach_text_norm: bool = False,
                 loss: dict = dict(type='CrossEntropyLoss', loss_weight=1.0),
                 topk: Union[int, Tuple[int]] = (1, ),
                 cal_acc: bool = False,
                 init_cfg: Optional[dict] = dict(
                     type='TruncNormal', layer='Linear', std=0.02, bias=0.)):
        super().__init__(
            loss=loss, topk=topk, cal_acc=cal_acc, init_cfg=init_cfg)
        positive = dict(num_classes=num_classes, in_channels=in_channels,
                        num_anchors=num_anchors, mlp_ratio=mlp_ratio)
        if class_chunk is not None:
            positive['class_chunk'] = class_chunk
        for name, value in positive.items():
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f'{name} must be a positive int, '
                                 f'got {value!r}')
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f'alpha must be in [0, 1], got {alpha}')
        if not posthoc_tau >= 0:
            raise ValueError(f'posthoc_tau must be >= 0, got {posthoc_tau}')
        if posthoc_target not in ('image', 'fused'):
            raise ValueError(f"posthoc_target must be 'image' or 'fused', "
                             f'got {posthoc_target!r}')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.num_anchors = num_anchors
        self.identity_init = identity_init
        self.alpha = alpha
        self.posthoc_tau = float(posthoc_tau)
        self.posthoc_target = posthoc_target
        self.class_prior = ClassPrior(class_counts, num_classes)
        self.class_chunk = class_chunk
        self.detach_text_norm = bool(detach_text_norm)

        dim = in_channels
        self.attn_norm_q = nn.LayerNorm(dim)
        self.attn_proj_q = nn.Linear(dim, dim, bias=qk_bias)
        self.attn_norm_k = nn.LayerNorm(dim)
        self.attn_proj_k = nn.Linear(dim, dim, bias=qk_bias)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.ReLU(inplace=True),
            nn.Linear(mlp_ratio * dim, num_classes))
        log_scale = torch.tensor(math.log(self._check_scale(logit_scale)))
        if learnable_scale:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer('log_scale', log_scale)
        self._init_anchors(num_classes, num_anchors, dim)
        self._reset_qk()

    def _reset_qk(self):
        if not self.identity_init:
            return
        for proj in (self.attn_proj_q, self.attn_proj_k):
            nn.init.eye_(proj.weight)
            if proj.bias is not None:
                nn.init.zeros_(proj.bias)

    def init_weights(self):
        """Apply ``init_cfg``, then restore the identity projections."""
        super().init_weights()
        self._reset_qk()

    def set_class_counts(self, class_counts) -> None:
        """Set the training counts [C] (called by ``ClassPriorHook``)."""
        self.class_prior.set_counts(class_counts)

    @property
    def logit_scale(self) -> torch.Tensor:
        """Tensor: The text-branch multiplier ``s`` (a scalar)."""
        return self.log_scale.exp()

    def branch_logits(
            self, feats: Tuple[torch.Tensor]
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Logits of both branches.

        Args:
            feats (tuple[Tensor]): Backbone / neck outputs; the last one is
                the image embedding ``E^I`` [B, D].

        Returns:
            tuple[Tensor, Tensor]: ``logits_image`` and ``logits_text``,
            each [B, C].
        """
        self._require_anchors()
        x = self.pre_logits(feats)
        if x.dim() != 2 or x.size(1) != self.in_channels:
            raise ValueError(f'LGRHead expects features of shape (B, '
                             f'{self.in_channels}), got {tuple(x.shape)}')
        logits_image = self.mlp(x)
        query = self.attn_proj_q(self.attn_norm_q(x))  # Eq. 4
        return logits_image, self.logit_scale * self.text_cosine(x, query)

    def text_cosine(self, x: torch.Tensor,
                    query: torch.Tensor) -> torch.Tensor:
        """``cos(E^I, G)`` [B, C] of Eqs. 5-7 in the efficient form.

        Args:
            x (Tensor): Image embeddings ``E^I`` [B, D].
            query (Tensor): Queries ``Q`` [B, D] (Eq. 4).

        Returns:
            Tensor: Cosine of each image with each class's attended text.
        """
        return keyed_efficient_cosine(x, query, self.attn_proj_k,
                                      self.attn_norm_k, self.anchors,
                                      self.anchor_mask, self._anchor_stats(),
                                      self.class_chunk,
                                      detach_norm=self.detach_text_norm)

    def fuse(self, logits_image: torch.Tensor,
             logits_text: torch.Tensor) -> torch.Tensor:
        """Fused class probabilities [B, C] (Eq. 7 weighted by ``alpha``)."""
        return self.branch_scores(logits_image, logits_text)[0]

    def branch_scores(
        self, logits_image: torch.Tensor, logits_text: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fused, image and text probabilities, each [B, C], with the
        post-hoc logit adjustment (``posthoc_tau``) applied."""
        adjust = self.posthoc_tau != 0
        if adjust:
            shift = self.posthoc_tau * self.class_prior.log_prior(
                logits_image.dtype)
        if adjust and self.posthoc_target == 'image':
            logits_image = logits_image - shift
        score_image = logits_image.softmax(-1)
        score_text = logits_text.softmax(-1)
        score = self.alpha * score_image + (1 - self.alpha) * score_text
        if adjust and self.posthoc_target == 'fused':
            score = (score.log() - shift).softmax(-1)
        return score, score_image, score_text

    def forward(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        """Fused class probabilities [B, C]."""
        return self.fuse(*self.branch_logits(feats))

    def loss(self, feats: Tuple[torch.Tensor], data_samples: List[DataSample],
             **kwargs) -> dict:
        """Eq. 9: the loss of each branch against the same targets.

        Returns:
            dict[str, Tensor]: ``loss_image`` and ``loss_text`` (and
            ``accuracy_top-k`` of the fused score if ``cal_acc``).
        """
        logits_image, logits_text = self.branch_logits(feats)
        if 'gt_score' in data_samples[0]:
            target = torch.stack([i.gt_score for i in data_samples])
        else:
            target = torch.cat([i.gt_label for i in data_samples])
        num = logits_image.size(0)
        losses = dict(
            loss_image=self.loss_module(
                logits_image, target, avg_factor=num, **kwargs),
            loss_text=self.loss_module(
                logits_text, target, avg_factor=num, **kwargs))
        if self.cal_acc:
            if target.dim() != 1:
                raise ValueError('cal_acc needs hard labels; disable it '
                                 'with batch augments such as Mixup')
            score = self.fuse(logits_image.detach(), logits_text.detach())
            acc = Accuracy.calculate(score, target, topk=self.topk)
            losses.update(
                {f'accuracy_top-{k}': a for k, a in zip(self.topk, acc)})
        return losses

    def predict(
        self,
        feats: Tuple[torch.Tensor],
        data_samples: Optional[List[Optional[DataSample]]] = None
    ) -> List[DataSample]:
        """Fused score and label, branch scores, ``pred_label_logit_sum``."""
        logits_image, logits_text = self.branch_logits(feats)
        score, score_image, score_text = (
            s.detach() for s in self.branch_scores(logits_image, logits_text))
        labels = score.argmax(dim=1, keepdim=True)
        # From the logits: probabilities at logit scale 100 underflow to ties.
        sum_labels = (logits_image + logits_text).argmax(1, keepdim=True)
        if data_samples is None:
            data_samples = [None] * score.size(0)
        data_samples = [DataSample() if s is None else s for s in data_samples]
        for i, sample in enumerate(data_samples):
            sample.set_pred_score(score[i]).set_pred_label(labels[i])
            sample.set_field(score_image[i], 'pred_score_image')
            sample.set_field(score_text[i], 'pred_score_text')
            sample.set_field(sum_labels[i], 'pred_label_logit_sum')
        return data_samples
