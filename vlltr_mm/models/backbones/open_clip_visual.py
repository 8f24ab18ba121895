"""The image tower of an open_clip model as an MMPretrain backbone."""
from typing import List, Optional, Tuple, Union

import torch
from mmpretrain.registry import MODELS
from torch import nn

from ..open_clip_adapter.tower import OpenCLIPTower, StageLayout


@MODELS.register_module()
class OpenCLIPVisual(OpenCLIPTower):
    """CLIP image encoder E_vis of VL-LTR (paper §3.1) from open_clip.

    Wraps the image tower of any open_clip model: CLIP's ModifiedResNet
    (RN50, D = 1024), ViTs (ViT-B/16, D = 512), timm towers, or the tiny
    ``vlltr-tiny-*`` test configs. Only the image tower is kept.

    What a stage is for ``frozen_stages``:

    - ModifiedResNet: stage 0 is the three-convolution stem, stages 1-4
      are ``layer1`` .. ``layer4``; the attention pool is never frozen by
      stage (use ``frozen=True``).
    - VisionTransformer: stage 0 is the patch embedding (``conv1``, class
      token, position embedding, ``ln_pre``), stage k (k >= 1) is
      transformer block k; ``ln_post`` and ``proj`` are never frozen by
      stage.
    - Other towers (timm, ...): not supported, only ``frozen``.

    Frozen stages get no gradients and stay in eval mode during training.

    Args:
        model_name (str): open_clip model name, e.g. ``'RN50'``,
            ``'ViT-B-16'`` or ``'vlltr-tiny-rn'``.
        pretrained (str, optional): open_clip pretrained tag (e.g.
            ``'openai'``) or local file: an OpenAI TorchScript archive or a
            state dict (plain, nested under ``'state_dict'`` / ``'model'``,
            optionally ``'module.'``-prefixed). Defaults to None (random).
        frozen (bool): Freeze the whole tower and keep it in eval mode.
            Defaults to False.
        frozen_stages (int): Freeze stages 0 .. ``frozen_stages``; -1
            freezes none. Defaults to -1.
        norm_eval (bool): Keep every BatchNorm layer in eval mode during
            training (running statistics fixed), as the authors do for
            ImageNet-LT and Places-LT. Defaults to False.
        quick_gelu (bool, optional): Force QuickGELU on / off; None decides
            from the weights (see ``build_open_clip``). Defaults to None.
        channels_last (bool): Feed the tower NHWC (``channels_last``)
            images. CPU convolutions (oneDNN) run faster on them (1.45x for
            the demo's EfficientNet-Lite0 on 2 cores); values change only
            by float rounding, weights and checkpoints not at all. A
            per-config speed option, not a global setting. Defaults to
            False.
        clip_model (nn.Module, optional): Prebuilt model from
            ``build_open_clip`` to take the image tower from. Defaults to
            None.
        init_cfg (dict | list[dict], optional): MMEngine init config,
            applied on top of the loaded weights. Defaults to None.

    Attributes:
        embed_dim (int): Embedding size D.
        image_size (tuple[int, int]): Input size (H, W) the tower expects.
        init_logit_scale (float): The model's logit scale, log-space as
            CLIP stores it (ln 100 for OpenAI weights, ln(1 / 0.07) for a
            random init).
    """

    tower_name = 'visual'
    stage_layouts = (
        # ModifiedResNet: the three-convolution stem, then layer1 .. layer4.
        StageLayout(('conv1', 'bn1', 'conv2', 'bn2', 'conv3', 'bn3'),
                    ('layer1', 'layer2', 'layer3', 'layer4')),
        # VisionTransformer: the patch embedding, then one stage per block.
        StageLayout(('conv1', 'class_embedding', 'positional_embedding',
                     'ln_pre'), 'transformer.resblocks'),
    )

    def __init__(self,
                 model_name: str,
                 pretrained: Optional[str] = None,
                 frozen: bool = False,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 quick_gelu: Optional[bool] = None,
                 channels_last: bool = False,
                 clip_model: Optional[nn.Module] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        self.channels_last = bool(channels_last)
        super().__init__(
            model_name,
            pretrained=pretrained,
            frozen=frozen,
            frozen_stages=frozen_stages,
            norm_eval=norm_eval,
            quick_gelu=quick_gelu,
            clip_model=clip_model,
            init_cfg=init_cfg)

    def _keep_tower(self, clip_model: nn.Module) -> None:
        self.visual = clip_model.visual
        self.embed_dim = getattr(self.visual, 'output_dim', None) or \
            self._config_embed_dim()
        size = self.visual.image_size
        self.image_size = tuple(size) if isinstance(
            size, (tuple, list)) else (int(size), int(size))

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor]:
        """Embed images with CLIP's image encoder.

        Args:
            images (Tensor): Images, [B, 3, H, W], (H, W) = ``image_size``.

        Returns:
            tuple[Tensor]: One element, the image embeddings E^I [B, D],
            not normalised; a tuple so that MMPretrain necks and heads,
            which read ``feats[-1]``, can follow.
        """
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return (self.visual(images), )
