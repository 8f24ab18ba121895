"""The image tower of an open_clip model as an MMPretrain backbone."""
from typing import Iterator, List, Optional, Tuple, Union

import torch
from mmpretrain.registry import MODELS
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..open_clip_adapter.tower import OpenCLIPTower, StageMember


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

    def __init__(self,
                 model_name: str,
                 pretrained: Optional[str] = None,
                 frozen: bool = False,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 quick_gelu: Optional[bool] = None,
                 clip_model: Optional[nn.Module] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(
            model_name,
            pretrained=pretrained,
            frozen=frozen,
            quick_gelu=quick_gelu,
            clip_model=clip_model,
            init_cfg=init_cfg)
        self.norm_eval = norm_eval
        self.frozen_stages = frozen_stages
        if frozen_stages != -1:
            num_stages = len(self._stages())
            if not 0 <= frozen_stages < num_stages:
                raise ValueError(
                    f'frozen_stages must be in [-1, {num_stages - 1}] for '
                    f"'{model_name}', got {frozen_stages}")
        self._freeze()

    def _keep_tower(self, clip_model: nn.Module) -> None:
        self.visual = clip_model.visual
        self.embed_dim = getattr(self.visual, 'output_dim', None) or \
            self._config_embed_dim()
        size = self.visual.image_size
        self.image_size = tuple(size) if isinstance(
            size, (tuple, list)) else (int(size), int(size))

    def _stages(self) -> List[List[StageMember]]:
        """The tower's stages in order, as lists of modules / parameters."""
        visual = self.visual
        if isinstance(visual, ModifiedResNet):
            stem = [visual.conv1, visual.bn1, visual.conv2, visual.bn2,
                    visual.conv3, visual.bn3]
            layers = [[getattr(visual, f'layer{i}')] for i in range(1, 5)]
            return [stem] + layers
        if isinstance(visual, VisionTransformer):
            embed = [visual.conv1, visual.class_embedding,
                     visual.positional_embedding, visual.ln_pre]
            blocks = [[blk] for blk in visual.transformer.resblocks]
            return [embed] + blocks
        raise NotImplementedError(
            f'frozen_stages is not supported for {type(visual).__name__} '
            'image towers (only ModifiedResNet and VisionTransformer); use '
            'frozen=True to freeze the whole tower')

    def _frozen_members(self) -> List[StageMember]:
        members = super()._frozen_members()
        if self.frozen_stages >= 0 and not self.frozen:
            for stage in self._stages()[:self.frozen_stages + 1]:
                members.extend(stage)
        return members

    def _eval_modules(self) -> Iterator[nn.Module]:
        yield from super()._eval_modules()
        if self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    yield module

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor]:
        """Embed images with CLIP's image encoder.

        Args:
            images (Tensor): Images, [B, 3, H, W], (H, W) = ``image_size``.

        Returns:
            tuple[Tensor]: One element, the image embeddings E^I [B, D],
            not normalised; a tuple so that MMPretrain necks and heads,
            which read ``feats[-1]``, can follow.
        """
        return (self.visual(images), )
